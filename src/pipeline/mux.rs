//! The muxing end: a muxer cutting fragments (segments) and chunks (parts) on the HLS grid,
//! its first fragment a single part, and the appsink that splits its output into
//! [`MuxOutput`]s (the init segment, then one chunk per part).

use anyhow::{Context, Result};
use bytes::Bytes;
use gst::prelude::*;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::media::{ChunkMeta, MuxOutput};
use crate::spec::HlsTiming;

/// A muxer cutting fragments (segments) and chunks (parts) on the grid, and the appsink that
/// hands its output to `out` as the chunks of `rendition`.
pub(super) fn mux_to_appsink(
    muxer: &str,
    timing: &HlsTiming,
    rendition: usize,
    out: mpsc::UnboundedSender<MuxOutput>,
) -> Result<(gst::Element, gst::Element)> {
    let mux = gst::ElementFactory::make(muxer)
        .property("fragment-duration", gst::ClockTime::from_nseconds(timing.fragment_ns()))
        .property("chunk-duration", gst::ClockTime::from_nseconds(timing.part_ns()))
        .property("latency", gst::ClockTime::from_nseconds(timing.mux_latency_ns()))
        .build()
        .with_context(|| format!("creating {muxer}"))?;
    let sink = gst_app::AppSink::builder().sync(false).buffer_list(true).build();
    let all_sync = timing.audio_grid;
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                for item in split_sample(&sample, rendition, all_sync) {
                    if out.send(item).is_err() {
                        return Err(gst::FlowError::Flushing);
                    }
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    Ok((mux, sink.upcast()))
}

/// A buffer's running time on `pad` (its PTS where the pad has no time segment).
pub(super) fn running_time(pad: &gst::Pad, buf: &gst::BufferRef) -> Option<gst::ClockTime> {
    let segment = pad.sticky_event::<gst::event::Segment>(0);
    match (buf.pts(), segment.as_ref().and_then(|s| s.segment().downcast_ref::<gst::ClockTime>().cloned())) {
        (Some(pts), Some(seg)) => seg.to_running_time(pts),
        (pts, _) => pts,
    }
}

/// Makes the first fragment (hence the first segment) a single part: on the first buffer
/// into the muxer, asks it to split one part later, and every later fragment follows a whole
/// segment after that, on the encoder's GOP cadence. See [`HlsTiming`] for why.
///
/// With `from_encoder` (`pad` is the video encoder's output) the encoder is also asked for
/// the keyframe there. The muxer asks for it too, but only once every stream has data; with
/// sound that can be after that frame went in, which left the first segment a frame or two
/// long. Not before the encoder's first frame is out: GStreamer 1.22's encoder base class then
/// compares the request with that frame's shifted time (x264enc's 1000 h), makes it a
/// keyframe, and drops the muxer's request as already served.
pub(super) fn split_after_first_part(pad: &gst::Pad, mux: &gst::Element, part_ns: u64, from_encoder: bool) {
    let mux = mux.downgrade();
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(buf) = info.buffer() else { return gst::PadProbeReturn::Ok };
        let Some(rt) = running_time(pad, buf) else { return gst::PadProbeReturn::Remove };
        let at = rt + gst::ClockTime::from_nseconds(part_ns);
        if let Some(mux) = mux.upgrade() {
            mux.emit_by_name::<()>("split-at-running-time", &[&at]);
            debug!(first_running_time = %rt, "first segment: one part");
        }
        if from_encoder && !pad.send_event(gst_video::UpstreamForceKeyUnitEvent::builder().running_time(at).all_headers(true).build()) {
            warn!("the encoder refused a keyframe request for the first segment's end");
        }
        gst::PadProbeReturn::Remove
    });
}

/// Splits one cmafmux output (a buffer list) into the init segment and the chunk.
/// cmafmux marks the init segment DISCONT|HEADER, each fragment/chunk header HEADER
/// (plus DELTA_UNIT when it is a chunk inside a fragment), and media buffers DELTA_UNIT.
/// `all_sync`: every frame is a sync sample (sound alone), so every chunk is independent.
fn split_sample(sample: &gst::Sample, rendition: usize, all_sync: bool) -> Vec<MuxOutput> {
    let mut out = Vec::new();
    let buffers: Vec<gst::Buffer> = match (sample.buffer_list(), sample.buffer()) {
        (Some(list), _) => list.iter_owned().collect(),
        (None, Some(b)) => vec![b.to_owned()],
        _ => return out,
    };
    // Encoders may shift timestamps (x264enc starts at 1000 h so DTS never goes negative):
    // report running time, which is what the capture clock mapping is in.
    let segment = sample.segment().and_then(|s| s.downcast_ref::<gst::ClockTime>().cloned());
    let running = |t: Option<gst::ClockTime>| -> u64 {
        match (&segment, t) {
            (Some(seg), Some(t)) => seg.to_running_time(t).unwrap_or(t).nseconds(),
            (None, Some(t)) => t.nseconds(),
            _ => 0,
        }
    };
    let mut chunk: Option<(ChunkMeta, Vec<u8>)> = None;
    for buf in buffers {
        let flags = buf.flags();
        let Ok(map) = buf.map_readable() else { continue };
        if flags.contains(gst::BufferFlags::HEADER) && flags.contains(gst::BufferFlags::DISCONT) {
            out.push(MuxOutput::Init(rendition, Bytes::copy_from_slice(&map)));
        } else if flags.contains(gst::BufferFlags::HEADER) {
            if let Some((meta, data)) = chunk.take() {
                out.push(MuxOutput::Chunk(meta, data.into()));
            }
            let meta = ChunkMeta {
                pts_ns: running(buf.pts()),
                duration_ns: buf.duration().map(|t| t.nseconds()).unwrap_or(0),
                fragment_start: !flags.contains(gst::BufferFlags::DELTA_UNIT),
                independent: all_sync || !flags.contains(gst::BufferFlags::DELTA_UNIT),
                wallclock_ms: 0,
                rendition,
            };
            chunk = Some((meta, map.to_vec()));
        } else if let Some((_, data)) = chunk.as_mut() {
            data.extend_from_slice(&map);
        }
    }
    if let Some((meta, data)) = chunk {
        out.push(MuxOutput::Chunk(meta, data.into()));
    }
    out
}

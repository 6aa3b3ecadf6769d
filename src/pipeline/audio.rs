//! The page's sound, encoded once: pulsesrc on the egress's own sound server, stamped by
//! arrival, held at a gate until the first frame, made continuous (gaps become silence),
//! shifted by the capture path's latency, AAC or Opus, into a tee that feeds every muxer.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{Context, Result};
use gst::prelude::*;
use tracing::debug;

use super::shared::{Shared, UNSET};
use super::{audio_clock, make, queue};
use crate::spec::{AudioCodec, AudioSpec};

/// The page's sound: its sound server, the source to record there, and how to encode it.
pub struct AudioInput<'a> {
    pub spec: &'a AudioSpec,
    pub server: &'a str,
    pub device: &'a str,
}

/// The tee (one branch per muxer is linked to it) and the source (which must be told EOS).
pub(super) type AudioBranch = (gst::Element, gst::Element);

/// `gated`: hold the sound until the first frame (see [`Shared::audio_gate`]).
pub(super) fn audio_branch(pipeline: &gst::Pipeline, a: &AudioInput, shared: &Arc<Shared>, gated: bool) -> Result<AudioBranch> {
    let spec = a.spec;
    let src = gst::ElementFactory::make("pulsesrc")
        .property("server", a.server)
        .property("device", a.device)
        // The pipeline runs on the system clock, onto which video capture times are mapped.
        .property("provide-clock", false)
        // 10 ms reads, 50 ms of buffer: little latency, no underruns on a busy machine.
        .property("latency-time", 10_000i64)
        .property("buffer-time", 50_000i64)
        .build()
        .context("creating pulsesrc (apt install gstreamer1.0-pulseaudio)")?;
    // A pure sample count (no resyncs), put onto the clock by audio_clock.
    src.set_property_from_str("slave-method", "none");
    let delay = Arc::clone(shared);
    audio_clock::stamp_by_arrival(&src.static_pad("src").context("pulsesrc has no src pad")?, move || {
        delay.picture_delay_ns.load(Ordering::Relaxed)
    });
    let caps = gst::ElementFactory::make("capsfilter")
        .property(
            "caps",
            gst::Caps::builder("audio/x-raw").field("rate", spec.sample_rate as i32).field("channels", spec.channels as i32).build(),
        )
        .build()?;
    // Leaky: while the gate holds the sound back for the first frame, the oldest goes rather
    // than pulsesrc blocking (which would make it drop samples and leave a hole).
    let q = queue()?;
    q.set_property_from_str("leaky", "downstream");
    let (enc, parse) = match spec.codec {
        AudioCodec::Aac => (
            // FFmpeg's native AAC-LC encoder (Debian's GStreamer has no fdkaacenc; voaacenc is
            // the other choice and sounds worse at the same rate).
            gst::ElementFactory::make("avenc_aac")
                .property("bitrate", (spec.bitrate_kbps * 1000) as i32)
                .build()
                .context("creating avenc_aac (apt install gstreamer1.0-libav)")?,
            Some(make("aacparse")?),
        ),
        AudioCodec::Opus => (
            gst::ElementFactory::make("opusenc")
                .property("bitrate", (spec.bitrate_kbps * 1000) as i32)
                .build()
                .context("creating opusenc")?,
            None,
        ),
    };
    let tee = make("tee")?;
    // Continuous sound whatever happened upstream (samples pulsesrc or the leaky queue
    // dropped): gaps become silence, overlaps are cut, so a player's buffer never has a hole
    // in it. Below 5 ms the timeline is trusted as it is.
    let rate = gst::ElementFactory::make("audiorate")
        .property("skip-to-first", true)
        .property("tolerance", 5_000_000u64)
        .build()
        .context("creating audiorate")?;
    let mut chain = vec![src.clone(), make("audioconvert")?, make("audioresample")?, caps, q.clone(), rate, enc.clone()];
    chain.extend(parse);
    chain.push(tee.clone());
    pipeline.add_many(&chain)?;
    gst::Element::link_many(&chain).context("linking the audio branch")?;
    let gate_pad = q.static_pad("src").context("queue has no src pad")?;
    if gated {
        let gate = gate_pad.add_probe(gst::PadProbeType::BLOCK_DOWNSTREAM, |_, _| gst::PadProbeReturn::Ok).map(|id| (gate_pad, id));
        *shared.audio_gate.lock().unwrap_or_else(|p| p.into_inner()) = gate;
    }
    // Shift by the capture path's fixed latency, and start with the picture.
    let offset_ns = spec.offset_ms as i64 * 1_000_000;
    let pad = enc.static_pad("sink").context("the audio encoder has no sink pad")?;
    let shared = Arc::clone(shared);
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let first = shared.first_video_pts.load(Ordering::Acquire);
        let Some(buf) = info.buffer_mut() else { return gst::PadProbeReturn::Ok };
        let Some(pts) = buf.pts() else { return gst::PadProbeReturn::Drop };
        let shifted = (pts.nseconds() as i64 + offset_ns).max(0) as u64;
        let end = shifted + buf.duration().map(|d| d.nseconds()).unwrap_or(0);
        if first == UNSET || end <= first {
            debug!(pts = shifted, first_video = first, "audio before the first video frame: dropped");
            return gst::PadProbeReturn::Drop;
        }
        if offset_ns != 0 {
            buf.make_mut().set_pts(gst::ClockTime::from_nseconds(shifted));
        }
        gst::PadProbeReturn::Ok
    });
    Ok((tee, src))
}

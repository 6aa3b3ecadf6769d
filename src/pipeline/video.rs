//! The picture: source → scale → I420 → constant rate → tee, then one encoder branch per
//! rendition (the main picture and each ladder rung), each into a muxer also fed the sound.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{Context, Result};
use gst::prelude::*;
use tokio::sync::mpsc;

use super::mux::{mux_to_appsink, split_after_first_part};
use super::shared::Shared;
use super::source::{picture_source, PictureInput, Screen};
use super::{encoder, make, queue};
use crate::media::MuxOutput;
use crate::spec::{HlsSpec, HlsTiming, VideoSpec};

/// Where every rendition's muxer goes: the grid it cuts on, the sound's tee (if there is
/// sound) and the channel its chunks go to.
pub(super) struct Muxing<'a> {
    pub timing: &'a HlsTiming,
    pub audio_tee: Option<&'a gst::Element>,
    pub out: &'a mpsc::UnboundedSender<MuxOutput>,
}

/// The picture: source → … → tee, then an encoder branch per rendition, each muxer also fed
/// from the sound's tee if there is one.
pub(super) fn video_branches(
    pipeline: &gst::Pipeline,
    video: &VideoSpec,
    input: PictureInput,
    shared: &Arc<Shared>,
    hls: &HlsSpec,
    muxing: Muxing,
) -> Result<(Option<gst_app::AppSrc>, Option<Screen>, gst::Element)> {
    let Muxing { timing, audio_tee, out } = muxing;
    let (source, appsrc, screen) = picture_source(video, input, shared)?;
    let scale = make("videoscale")?;
    let convert = make("videoconvert")?;
    let size_caps = gst::ElementFactory::make("capsfilter")
        .property(
            "caps",
            gst::Caps::builder("video/x-raw")
                .field("format", "I420")
                .field("width", video.width as i32)
                .field("height", video.height as i32)
                .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
                .build(),
        )
        .build()?;
    let rate = gst::ElementFactory::make("videorate").property("skip-to-first", true).build()?;
    let rate_caps = gst::ElementFactory::make("capsfilter")
        .property("caps", gst::Caps::builder("video/x-raw").field("framerate", gst::Fraction::new(video.framerate as i32, 1)).build())
        .build()?;
    let tee = make("tee")?;
    let into = Arc::clone(shared);
    tee.static_pad("sink").context("tee has no sink pad")?.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(pts) = info.buffer().and_then(|b| b.pts()) {
            into.into_encoder.store(pts.nseconds(), Ordering::Relaxed);
        }
        gst::PadProbeReturn::Ok
    });
    let mut head: Vec<&gst::Element> = source.iter().collect();
    head.extend([&scale, &convert, &size_caps, &rate, &rate_caps, &tee]);
    pipeline.add_many(&head)?;
    gst::Element::link_many(&head).context("linking the capture half of the pipeline")?;
    let main = (video.width, video.height, video.bitrate_kbps);
    let rungs = std::iter::once(main).chain(hls.ladder.iter().map(|r| (r.width, r.height, r.bitrate_kbps)));
    for (rendition, (width, height, bitrate_kbps)) in rungs.enumerate() {
        let v = VideoSpec { width, height, bitrate_kbps, ..video.clone() };
        let (branch, encoder) = encode_branch(&v, rendition > 0, audio_tee.is_some(), timing, rendition, out.clone())?;
        if rendition == 0 {
            count_encoded(&encoder, shared)?;
        }
        let refs: Vec<&gst::Element> = branch.iter().collect();
        pipeline.add_many(&refs)?;
        gst::Element::link_many(&refs).context("linking an encoder branch")?;
        tee.link(&branch[0]).context("linking the tee")?;
        if let Some(audio_tee) = audio_tee {
            let queue = queue()?;
            let mux = &branch[branch.len() - 2];
            pipeline.add(&queue)?;
            gst::Element::link_many([audio_tee, &queue, mux]).context("linking the audio into a muxer")?;
        }
    }
    Ok((appsrc, screen, rate))
}

/// Counts the encoder's output and remembers its last input time. x264enc shifts its
/// timestamps (by 1000 h, so DTS never goes negative): compare in running time.
fn count_encoded(encoder: &gst::Element, shared: &Arc<Shared>) -> Result<()> {
    let shared = Arc::clone(shared);
    encoder.static_pad("src").context("encoder has no src pad")?.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(pts) = info.buffer().and_then(|b| b.pts()) else { return gst::PadProbeReturn::Ok };
        let segment = pad.sticky_event::<gst::event::Segment>(0);
        let running = segment.as_ref().and_then(|s| s.segment().downcast_ref::<gst::ClockTime>().and_then(|s| s.to_running_time(pts)));
        shared.encoded.fetch_add(1, Ordering::Relaxed);
        // Frames come out in decode order: keep the latest presentation time seen.
        shared.out_of_encoder.fetch_max(running.unwrap_or(pts).nseconds(), Ordering::Relaxed);
        gst::PadProbeReturn::Ok
    });
    Ok(())
}

/// queue → [scale to the rung's size] → x264 → h264parse → muxer → appsink, for one rendition.
fn encode_branch(
    v: &VideoSpec,
    scaled: bool,
    with_audio: bool,
    timing: &HlsTiming,
    rendition: usize,
    out: mpsc::UnboundedSender<MuxOutput>,
) -> Result<(Vec<gst::Element>, gst::Element)> {
    let mut chain = vec![queue()?];
    if scaled {
        chain.push(make("videoscale")?);
        chain.push(
            gst::ElementFactory::make("capsfilter")
                .property(
                    "caps",
                    gst::Caps::builder("video/x-raw")
                        .field("width", v.width as i32)
                        .field("height", v.height as i32)
                        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
                        .build(),
                )
                .build()?,
        );
    }
    let (enc, enc_caps) = encoder::h264(v)?;
    let (mux, sink) = mux_to_appsink(if with_audio { "isofmp4mux" } else { "cmafmux" }, timing, rendition, out)?;
    let parse = make("h264parse")?;
    split_after_first_part(&enc.static_pad("src").context("encoder has no src pad")?, &mux, timing.part_ns(), true);
    chain.extend([enc.clone(), enc_caps, parse, mux, sink]);
    Ok((chain, enc))
}

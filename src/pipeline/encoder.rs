//! Video encoders. Only x264 for now; hardware encoders plug in here.

use anyhow::{Context, Result};

use crate::job::spec::VideoSpec;

/// Frames from one IDR to the next.
pub fn gop_frames(video: &VideoSpec) -> u32 {
    ((video.framerate as f64) * video.keyframe_interval).round().max(1.0) as u32
}

/// x264 tuned for live segmenting: a keyframe exactly every `keyframe_interval` (no scene-cut
/// keyframes, so every segment starts on an IDR at the same cadence), CBR at the requested rate.
pub fn x264(video: &VideoSpec) -> Result<(gst::Element, gst::Element)> {
    let gop = gop_frames(video);
    let enc = gst::ElementFactory::make("x264enc")
        .property("bitrate", video.bitrate_kbps)
        .property("key-int-max", gop)
        .property_from_str("speed-preset", &video.x264_preset)
        .property_from_str("tune", &video.x264_tune)
        // VBV of one second smooths the rate without adding latency beyond the encoder's own.
        .property("vbv-buf-capacity", 1000u32)
        .property("option-string", "scenecut=0")
        .build()
        .context("creating x264enc (gstreamer1.0-plugins-ugly)")?;
    let caps = gst::ElementFactory::make("capsfilter")
        .property("caps", gst::Caps::builder("video/x-h264").field("profile", video.profile.as_str()).build())
        .build()?;
    Ok((enc, caps))
}

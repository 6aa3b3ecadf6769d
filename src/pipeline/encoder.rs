//! Video encoders: x264, or a hardware H.264 encoder (VA-API, NVENC) when the machine has
//! one. Every encoder gives the same stream shape: CBR at the requested rate, an IDR exactly
//! every `keyframe_interval` (and where the muxer asks for one), no B-frames, so segments
//! and parts line up across renditions and players start on any segment.

use anyhow::{bail, Context, Result};
use gst::glib;
use gst::prelude::*;
use tracing::{info, warn};

use crate::config::VideoEncoder;
use crate::spec::VideoSpec;

/// Frames from one IDR to the next.
pub fn gop_frames(video: &VideoSpec) -> u32 {
    ((video.framerate as f64) * video.keyframe_interval).round().max(1.0) as u32
}

fn has_element(name: &str) -> bool {
    gst::ElementFactory::find(name).is_some()
}

/// A VA-API encoder needs its element and a DRM render node to run on.
fn vaapi_usable() -> bool {
    has_element("vaapih264enc")
        && std::fs::read_dir("/dev/dri")
            .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with("renderD")))
            .unwrap_or(false)
}

/// GStreamer's nvcodec plugin registers nvh264enc only when it finds a CUDA device.
fn nvenc_usable() -> bool {
    has_element("nvh264enc")
}

/// The concrete encoder for a configured choice: `auto` takes NVENC, then VA-API, then x264;
/// an explicit hardware choice that this machine cannot run is an error, not a silent fallback.
pub fn resolve(choice: VideoEncoder) -> Result<VideoEncoder> {
    crate::pipeline::init()?;
    let resolved = match choice {
        VideoEncoder::Auto if nvenc_usable() => VideoEncoder::Nvenc,
        VideoEncoder::Auto if vaapi_usable() => VideoEncoder::Vaapi,
        VideoEncoder::Auto | VideoEncoder::X264 => VideoEncoder::X264,
        VideoEncoder::Vaapi if vaapi_usable() => VideoEncoder::Vaapi,
        VideoEncoder::Vaapi => {
            bail!("encoder.video is vaapi, but vaapih264enc or a /dev/dri render node is missing (apt install gstreamer1.0-vaapi)")
        }
        VideoEncoder::Nvenc if nvenc_usable() => VideoEncoder::Nvenc,
        VideoEncoder::Nvenc => {
            bail!("encoder.video is nvenc, but nvh264enc is not available (GStreamer's nvcodec plugin and an NVIDIA GPU are needed)")
        }
    };
    if resolved == VideoEncoder::X264 && !has_element("x264enc") {
        bail!("x264enc is not available (apt install gstreamer1.0-plugins-ugly)");
    }
    info!(configured = ?choice, encoder = ?resolved, "video encoder");
    Ok(resolved)
}

/// The encoder element and the caps after it (the H.264 profile).
pub fn h264(video: &VideoSpec) -> Result<(gst::Element, gst::Element)> {
    let enc = match video.encoder {
        VideoEncoder::X264 => x264(video)?,
        VideoEncoder::Vaapi => vaapi(video)?,
        VideoEncoder::Nvenc => nvenc(video)?,
        // A spec made without the service's resolution (roomcast run): resolve here.
        VideoEncoder::Auto => return h264(&VideoSpec { encoder: resolve(VideoEncoder::Auto)?, ..video.clone() }),
    };
    let caps = gst::ElementFactory::make("capsfilter")
        .property("caps", gst::Caps::builder("video/x-h264").field("profile", video.profile.as_str()).build())
        .build()?;
    Ok((enc, caps))
}

/// x264 tuned for live segmenting: no scene-cut keyframes, so every segment starts on an IDR
/// at the same cadence; preset and tune from the config.
fn x264(video: &VideoSpec) -> Result<gst::Element> {
    gst::ElementFactory::make("x264enc")
        .property("bitrate", video.bitrate_kbps)
        .property("key-int-max", gop_frames(video))
        .property_from_str("speed-preset", &video.x264_preset)
        .property_from_str("tune", &video.x264_tune)
        // VBV of one second smooths the rate without adding latency beyond the encoder's own.
        .property("vbv-buf-capacity", 1000u32)
        .property("option-string", "scenecut=0")
        .build()
        .context("creating x264enc (gstreamer1.0-plugins-ugly)")
}

/// Sets a property from its string form if the element has it: hardware encoders' property
/// sets differ between versions, and a missing one must not bring the egress down.
fn set_str(enc: &gst::Element, name: &str, value: &str) {
    let Some(pspec) = enc.find_property(name) else {
        warn!(element = %enc.name(), property = name, "encoder has no such property; left at its default");
        return;
    };
    match glib::Value::deserialize_with_pspec(value, &pspec) {
        Ok(v) => enc.set_property(name, v),
        Err(_) => warn!(element = %enc.name(), property = name, value, "encoder property value not accepted; left at its default"),
    }
}

/// Untested here (no GPU on the machines roomcast is developed on): the properties are those
/// GStreamer 1.22 documents for vaapih264enc.
fn vaapi(video: &VideoSpec) -> Result<gst::Element> {
    let enc = gst::ElementFactory::make("vaapih264enc").build().context("creating vaapih264enc")?;
    set_str(&enc, "rate-control", "cbr");
    set_str(&enc, "bitrate", &video.bitrate_kbps.to_string());
    set_str(&enc, "keyframe-period", &gop_frames(video).to_string());
    set_str(&enc, "max-bframes", "0");
    Ok(enc)
}

/// Untested here (no GPU): the properties are those GStreamer 1.22 documents for nvh264enc.
fn nvenc(video: &VideoSpec) -> Result<gst::Element> {
    let enc = gst::ElementFactory::make("nvh264enc").build().context("creating nvh264enc")?;
    set_str(&enc, "rc-mode", "cbr");
    set_str(&enc, "preset", "low-latency-hq");
    set_str(&enc, "zerolatency", "true");
    set_str(&enc, "bitrate", &video.bitrate_kbps.to_string());
    set_str(&enc, "gop-size", &gop_frames(video).to_string());
    set_str(&enc, "bframes", "0");
    Ok(enc)
}

//! A request's encoding options (a preset or advanced options, whichever request they came in)
//! turned into the picture's and the sound's settings, with the service's encoder config.

use livekit_protocol as proto;

use super::types::*;
use super::SpecError;
use crate::config::Config;

/// Resolution, frame rate and bitrate of a LiveKit preset.
pub fn preset_dims(preset: i32) -> Result<(u32, u32, u32, u32), SpecError> {
    use proto::EncodingOptionsPreset as P;
    Ok(match P::try_from(preset).map_err(|_| SpecError::invalid(format!("unknown preset {preset}")))? {
        P::H264720p30 => (DEFAULT_WIDTH, DEFAULT_HEIGHT, DEFAULT_FRAMERATE, DEFAULT_VIDEO_KBPS),
        P::H264720p60 => (1280, 720, 60, 4500),
        P::H2641080p30 => (1920, 1080, 30, 4500),
        P::H2641080p60 => (1920, 1080, 60, 6000),
        P::PortraitH264720p30 => (720, 1280, 30, 3000),
        P::PortraitH264720p60 => (720, 1280, 60, 4500),
        P::PortraitH2641080p30 => (1080, 1920, 30, 4500),
        P::PortraitH2641080p60 => (1080, 1920, 60, 6000),
        other => return Err(SpecError::Unsupported(format!("preset {} needs a track source", other.as_str_name()))),
    })
}

/// A request's encoding options, whichever request they came in (each has its own oneof).
#[derive(Clone, Copy)]
pub enum Encoding<'a> {
    Default,
    Preset(i32),
    Advanced(&'a proto::EncodingOptions),
}

impl<'a> From<Option<&'a proto::web_egress_request::Options>> for Encoding<'a> {
    fn from(o: Option<&'a proto::web_egress_request::Options>) -> Self {
        use proto::web_egress_request::Options as O;
        match o {
            None => Self::Default,
            Some(O::Preset(p)) => Self::Preset(*p),
            Some(O::Advanced(a)) => Self::Advanced(a),
        }
    }
}

impl<'a> From<Option<&'a proto::room_composite_egress_request::Options>> for Encoding<'a> {
    fn from(o: Option<&'a proto::room_composite_egress_request::Options>) -> Self {
        use proto::room_composite_egress_request::Options as O;
        match o {
            None => Self::Default,
            Some(O::Preset(p)) => Self::Preset(*p),
            Some(O::Advanced(a)) => Self::Advanced(a),
        }
    }
}

pub(super) fn video_spec(options: Encoding, cfg: &Config) -> Result<VideoSpec, SpecError> {
    let (mut w, mut h, mut fps, mut kbps) = preset_dims(0)?;
    let mut kfi = DEFAULT_KEYFRAME_INTERVAL;
    let mut profile = "main".to_string();
    match options {
        Encoding::Default => {}
        Encoding::Preset(p) => (w, h, fps, kbps) = preset_dims(p)?,
        Encoding::Advanced(a) => {
            if a.width != 0 || a.height != 0 {
                if a.width < 16 || a.height < 16 || a.width > 3840 || a.height > 3840 {
                    return Err(SpecError::invalid("advanced.width and advanced.height must be within 16..=3840"));
                }
                if a.width % 2 != 0 || a.height % 2 != 0 {
                    return Err(SpecError::invalid("advanced.width and advanced.height must be even"));
                }
                (w, h) = (a.width as u32, a.height as u32);
            }
            if a.framerate != 0 {
                if !(1..=60).contains(&a.framerate) {
                    return Err(SpecError::invalid("advanced.framerate must be within 1..=60"));
                }
                fps = a.framerate as u32;
            }
            if a.video_bitrate != 0 {
                if !(100..=50_000).contains(&a.video_bitrate) {
                    return Err(SpecError::invalid("advanced.video_bitrate must be within 100..=50000 kbps"));
                }
                kbps = a.video_bitrate as u32;
            }
            if a.key_frame_interval != 0.0 {
                if !(a.key_frame_interval.is_finite() && (0.1..=20.0).contains(&a.key_frame_interval)) {
                    return Err(SpecError::invalid("advanced.key_frame_interval must be within 0.1..=20 seconds"));
                }
                kfi = a.key_frame_interval;
            }
            use proto::VideoCodec as V;
            profile = match V::try_from(a.video_codec).map_err(|_| SpecError::invalid("unknown advanced.video_codec"))? {
                V::DefaultVc | V::H264Main => "main",
                V::H264Baseline => "baseline",
                V::H264High => "high",
                other => return Err(SpecError::Unsupported(format!("video codec {} is not supported", other.as_str_name()))),
            }
            .to_string();
        }
    }
    Ok(VideoSpec {
        width: w,
        height: h,
        framerate: fps,
        bitrate_kbps: kbps,
        keyframe_interval: kfi,
        profile,
        encoder: cfg.encoder.video,
        x264_preset: cfg.encoder.x264_preset.clone(),
        x264_tune: cfg.encoder.x264_tune.clone(),
        jpeg_quality: cfg.encoder.jpeg_quality,
        capture: cfg.capture.backend,
    })
}

/// Audio settings: AAC-LC 48 kHz stereo at 128 kbps unless `advanced` says otherwise.
pub(super) fn audio_spec(options: Encoding, cfg: &Config) -> Result<AudioSpec, SpecError> {
    let mut a = AudioSpec {
        codec: AudioCodec::Aac,
        bitrate_kbps: DEFAULT_AUDIO_KBPS,
        sample_rate: DEFAULT_SAMPLE_RATE,
        channels: DEFAULT_CHANNELS,
        offset_ms: cfg.audio.offset_ms.unwrap_or_else(|| cfg.capture.default_audio_offset_ms()),
        pulseaudio_path: cfg.audio.pulseaudio_path.display().to_string(),
    };
    if let Encoding::Advanced(adv) = options {
        use proto::AudioCodec as C;
        a.codec = match C::try_from(adv.audio_codec).map_err(|_| SpecError::invalid("unknown advanced.audio_codec"))? {
            C::DefaultAc | C::Aac => AudioCodec::Aac,
            C::Opus => AudioCodec::Opus,
            other => return Err(SpecError::Unsupported(format!("audio codec {} is not supported", other.as_str_name()))),
        };
        if adv.audio_bitrate != 0 {
            if !(16..=512).contains(&adv.audio_bitrate) {
                return Err(SpecError::invalid("advanced.audio_bitrate must be within 16..=512 kbps"));
            }
            a.bitrate_kbps = adv.audio_bitrate as u32;
        }
        match (adv.audio_frequency, a.codec) {
            (0, _) => {}
            (48_000, _) | (44_100, AudioCodec::Aac) => a.sample_rate = adv.audio_frequency as u32,
            (f, AudioCodec::Opus) => return Err(SpecError::invalid(format!("advanced.audio_frequency {f}: Opus is 48000 Hz"))),
            (f, _) => return Err(SpecError::invalid(format!("advanced.audio_frequency {f}: use 44100 or 48000"))),
        }
    }
    Ok(a)
}

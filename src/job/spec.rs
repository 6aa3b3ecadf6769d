//! What one egress does, checked and normalised from an API request: the page, the video
//! encoding, the outputs. The worker receives exactly this (as JSON), nothing else.

use livekit_protocol as proto;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::{CaptureBackend, Config, Rung, Sfu, VideoEncoder, XServerKind};

/// A request field that cannot be honoured; becomes Twirp `invalid_argument` or `unimplemented`.
#[derive(Debug, Error, PartialEq)]
pub enum SpecError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unsupported(String),
}

fn invalid(msg: impl Into<String>) -> SpecError {
    SpecError::Invalid(msg.into())
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VideoSpec {
    pub width: u32,
    pub height: u32,
    pub framerate: u32,
    pub bitrate_kbps: u32,
    /// Seconds between IDR frames; segments are cut on them.
    pub keyframe_interval: f64,
    /// `baseline`, `main` or `high`.
    pub profile: String,
    /// The H.264 encoder (resolved from `auto` when the service starts).
    #[serde(default)]
    pub encoder: VideoEncoder,
    pub x264_preset: String,
    pub x264_tune: String,
    pub jpeg_quality: u32,
    /// How the picture is taken from the page.
    #[serde(default)]
    pub capture: CaptureBackend,
}

/// Audio codec of an egress's output.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum AudioCodec {
    /// AAC-LC (FFmpeg's encoder), what HLS, MP4 and RTMP players all take.
    Aac,
    /// Opus (opusenc), in the fMP4 segments as CMAF allows.
    Opus,
}

/// What the page plays, captured from its own sound server and encoded beside the picture.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AudioSpec {
    pub codec: AudioCodec,
    pub bitrate_kbps: u32,
    pub sample_rate: u32,
    pub channels: u32,
    /// Added to audio timestamps to compensate the capture path's fixed latency (config).
    pub offset_ms: i32,
    pub pulseaudio_path: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HlsSpec {
    /// Full-length playlist of the whole event (relative to the egress folder).
    pub playlist_name: String,
    /// Sliding-window live playlist.
    pub live_playlist_name: String,
    /// Segment file name prefix (may contain sub-folders).
    pub segment_prefix: String,
    pub segment_duration: u32,
    pub part_duration_ms: u32,
    pub live_window: usize,
    /// Extra renditions (smaller than the main picture), each in a folder of its name.
    pub ladder: Vec<Rung>,
}

/// Name of the multivariant playlist every egress gets, beside its media playlists.
pub const MULTIVARIANT_NAME: &str = "master.m3u8";

/// The frame-exact timing grid of an HLS output: parts are a whole number of frames, segments
/// a whole number of GOPs, so every part and segment duration is known before it is made and
/// PART-TARGET / TARGETDURATION never change during a stream. Without a picture the frames are
/// the audio codec's (AAC: 1024 samples, Opus: 20 ms) and segments a whole number of parts.
///
/// The first segment is a single part (the muxer is told to split there and requests a
/// keyframe for it): players that need a whole segment before they start, as hls.js does, can
/// then start one part after the first frame instead of one segment after it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HlsTiming {
    /// Frames per second as `rate_num / rate_den` (an AAC frame rate is not whole).
    pub rate_num: u64,
    pub rate_den: u64,
    pub part_frames: u32,
    pub segment_frames: u32,
    /// The sound alone: every frame is a sync sample, and the muxer needs time to see where
    /// the last frame of a part ends (see [`HlsTiming::mux_latency_ns`]).
    pub audio_grid: bool,
}

impl HlsTiming {
    /// The grid of an egress's tracks: the picture's frames if it has one, else the sound's.
    pub fn new(video: Option<&VideoSpec>, audio: Option<&AudioSpec>, hls: &HlsSpec) -> Self {
        match (video, audio) {
            (Some(v), _) => Self::video(v, hls),
            (None, Some(a)) => Self::audio(a, hls),
            // No tracks is refused when the request is read; any grid will do.
            (None, None) => Self { rate_num: 30, rate_den: 1, part_frames: 6, segment_frames: 60, audio_grid: false },
        }
    }

    fn video(video: &VideoSpec, hls: &HlsSpec) -> Self {
        let fps = video.framerate.max(1);
        let part_frames = ((hls.part_duration_ms as f64 * fps as f64 / 1000.0).round() as u32).max(1);
        let gop = crate::pipeline::encoder::gop_frames(video);
        // cmafmux cuts a fragment at the first keyframe at or after the fragment duration.
        let segment_frames = (hls.segment_duration * fps).div_ceil(gop).max(1) * gop;
        Self { rate_num: fps as u64, rate_den: 1, part_frames, segment_frames, audio_grid: false }
    }

    fn audio(audio: &AudioSpec, hls: &HlsSpec) -> Self {
        let samples = match audio.codec {
            AudioCodec::Aac => 1024,
            AudioCodec::Opus => audio.sample_rate as u64 / 50,
        };
        let (num, den) = (audio.sample_rate.max(1) as u64, samples);
        let frame_ms = den as f64 * 1000.0 / num as f64;
        let part_frames = ((hls.part_duration_ms as f64 / frame_ms).round() as u32).max(1);
        let parts = ((hls.segment_duration as f64 * 1000.0) / (part_frames as f64 * frame_ms)).round().max(1.0) as u32;
        Self { rate_num: num, rate_den: den, part_frames, segment_frames: part_frames * parts, audio_grid: true }
    }

    pub fn frame_secs(&self) -> f64 {
        self.rate_den as f64 / self.rate_num as f64
    }

    /// `frames` frames in ns, rounded down: a muxer cutting there never counts the frame that
    /// starts the next part (whose timestamp is also rounded down) into this one.
    fn frames_ns(&self, frames: u32) -> u64 {
        frames as u64 * self.rate_den * 1_000_000_000 / self.rate_num
    }

    /// Chunk duration for the muxer.
    pub fn part_ns(&self) -> u64 {
        self.frames_ns(self.part_frames)
    }

    pub fn fragment_ns(&self) -> u64 {
        self.frames_ns(self.segment_frames)
    }

    /// How long the muxer waits for a late stream before cutting without it. Video: never
    /// needed (the picture drives the cut). Sound alone: fmp4mux closes a chunk once a frame
    /// starting after its end is in, and the frame after that tells it the last one is
    /// complete: about two frames after the part's end. Cut sooner (at the deadline of a live
    /// aggregator with no latency of its own) and the part loses its last frame (measured: 8
    /// of 9 AAC frames in every part).
    pub fn mux_latency_ns(&self) -> u64 {
        if self.audio_grid { 100_000_000 } else { 0 }
    }

    pub fn segment_secs(&self) -> f64 {
        self.segment_frames as f64 * self.frame_secs()
    }

    /// PART-TARGET in seconds, rounded up to the millisecond.
    pub fn part_target(&self) -> f64 {
        (self.part_frames as f64 * self.frame_secs() * 1000.0 - 1e-9).ceil() / 1000.0
    }

    /// EXT-X-TARGETDURATION: whole seconds, at least every segment's rounded duration.
    pub fn target_duration(&self) -> u32 {
        (self.segment_secs() - 1e-9).ceil().max(1.0) as u32
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BrowserSpec {
    pub chromium_path: String,
    /// The build that takes begin-frame control (for [`CaptureBackend::BeginFrame`]).
    pub headless_shell_path: String,
    /// The X server for [`CaptureBackend::X11`], and the binaries of both kinds (Xvfb also
    /// stands in for Xorg where Xorg's dummy driver cannot make the screen).
    #[serde(default)]
    pub x_server: XServerKind,
    #[serde(default)]
    pub xorg_path: String,
    #[serde(default)]
    pub xvfb_path: String,
    pub extra_flags: Vec<String>,
    pub resolver_exclude: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobSpec {
    pub egress_id: String,
    pub url: String,
    pub await_start_signal: bool,
    pub start_timeout_secs: u64,
    /// None for `audio_only` egresses.
    pub video: Option<VideoSpec>,
    /// None for `video_only` egresses.
    pub audio: Option<AudioSpec>,
    pub hls: Option<HlsSpec>,
    pub browser: BrowserSpec,
    /// Set for room composites: the room the template joins.
    #[serde(default)]
    pub room: Option<RoomSpec>,
    /// Whether `hls` is an output (a segment output was asked for) or only the muxer's grid.
    #[serde(default = "yes")]
    pub serve_hls: bool,
    /// RTMP(S)/SRT URLs the supervisor pushes the main rendition to (checked).
    #[serde(default)]
    pub streams: Vec<String>,
    #[serde(default)]
    pub files: Vec<FileSpec>,
    #[serde(default)]
    pub images: Vec<ImageSpec>,
}

fn yes() -> bool {
    true
}

/// The room a room-composite template joins.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RoomSpec {
    pub room_name: String,
    pub layout: String,
    pub sfu: Sfu,
}

/// The [`Outputs`] of a request: web and room composite requests have the same output fields,
/// each with its own type for the deprecated single `output` oneof.
macro_rules! outputs_of {
    ($req:expr, $Output:path) => {{
        use $Output as O;
        let mut o = Outputs {
            segments: $req.segment_outputs.iter().collect(),
            files: $req.file_outputs.iter().collect(),
            streams: $req.stream_outputs.iter().collect(),
            images: $req.image_outputs.iter().collect(),
        };
        match &$req.output {
            Some(O::Segments(s)) => o.segments.push(s),
            Some(O::Stream(s)) => o.streams.push(s),
            Some(O::File(f)) => o.files.push(f),
            None => {}
        }
        o
    }};
}

/// The outputs a request names, whichever request it is.
struct Outputs<'a> {
    segments: Vec<&'a proto::SegmentedFileOutput>,
    files: Vec<&'a proto::EncodedFileOutput>,
    streams: Vec<&'a proto::StreamOutput>,
    images: Vec<&'a proto::ImageOutput>,
}

/// A file output's container.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// MP4 (H.264 + AAC or Opus), fragmented while written, index first once finished.
    Mp4,
    /// Ogg/Opus, the sound alone.
    Ogg,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileSpec {
    /// Relative to the egress's folder.
    pub filepath: String,
    pub kind: FileKind,
}

/// How snapshot files are named (LiveKit's `ImageFileSuffix`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ImageSuffix {
    Index,
    Timestamp,
    Overwrite,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageSpec {
    /// Relative to the egress's folder.
    pub filename_prefix: String,
    pub interval_secs: u32,
    pub width: u32,
    pub height: u32,
    pub suffix: ImageSuffix,
}

/// Stream URLs one egress may push to at once.
pub const MAX_STREAM_URLS: usize = 10;

/// Checks a stream URL for a request (its scheme against the output's protocol, if named).
pub fn stream_url(url: &str, protocol: i32) -> Result<String, SpecError> {
    let url = crate::output::stream::check_url(url).map_err(SpecError::Invalid)?;
    use proto::StreamProtocol as P;
    let srt = url.starts_with("srt:");
    match P::try_from(protocol).map_err(|_| invalid("unknown stream protocol"))? {
        P::DefaultProtocol => Ok(url),
        P::Rtmp if !srt => Ok(url),
        P::Srt if srt => Ok(url),
        P::Rtmp | P::Srt => Err(invalid(format!("stream url {:?} does not match its protocol", crate::output::stream::redact(&url)))),
        other => Err(SpecError::Unsupported(format!("stream protocol {} is not supported", other.as_str_name()))),
    }
}

impl<'a> Outputs<'a> {
    /// The segment output (at most one) and the stream URLs.
    fn check(&self) -> Result<(Option<&'a proto::SegmentedFileOutput>, Vec<String>), SpecError> {
        if self.segments.len() > 1 {
            return Err(invalid("at most one segment output per egress"));
        }
        let mut urls = vec![];
        for s in &self.streams {
            if s.urls.is_empty() {
                return Err(invalid("a stream output needs at least one url"));
            }
            for u in &s.urls {
                let u = stream_url(u, s.protocol)?;
                if !urls.contains(&u) {
                    urls.push(u);
                }
            }
        }
        if urls.len() > MAX_STREAM_URLS {
            return Err(invalid(format!("at most {MAX_STREAM_URLS} stream urls per egress")));
        }
        if self.segments.is_empty() && urls.is_empty() && self.files.is_empty() && self.images.is_empty() {
            return Err(invalid("no output: add a segment, stream, file or image output"));
        }
        Ok((self.segments.first().copied(), urls))
    }

    /// The file outputs (at most one), for a picture or not.
    fn files(&self, has_video: bool) -> Result<Vec<FileSpec>, SpecError> {
        if self.files.len() > 1 {
            return Err(invalid("at most one file output per egress"));
        }
        let now = crate::clock::file_stamp(crate::clock::unix_secs());
        let mut out = vec![];
        for f in &self.files {
            if f.output.is_some() {
                return Err(SpecError::Unsupported("cloud uploads (s3/gcp/azure/aliOSS) are not supported: files are written to the egress's folder".into()));
            }
            use proto::EncodedFileType as T;
            let kind = match T::try_from(f.file_type).map_err(|_| invalid("unknown file_type"))? {
                T::DefaultFiletype if has_video => FileKind::Mp4,
                T::DefaultFiletype => FileKind::Ogg,
                T::Mp4 => FileKind::Mp4,
                T::Ogg if has_video => return Err(invalid("OGG files hold sound only: use MP4 with a picture, or audio_only")),
                T::Ogg => FileKind::Ogg,
                other => return Err(SpecError::Unsupported(format!("file type {} is not supported", other.as_str_name()))),
            };
            let ext = match kind {
                FileKind::Mp4 => ".mp4",
                FileKind::Ogg => ".ogg",
            };
            let default = format!("recording-{{time}}{ext}");
            let filepath = output_name(&f.filepath, &default, "filepath", &now)?;
            if !filepath.ends_with(ext) {
                return Err(invalid(format!("filepath {filepath:?} must end in {ext}")));
            }
            out.push(FileSpec { filepath, kind });
        }
        Ok(out)
    }

    /// The image outputs, sized against the picture.
    fn images(&self, video: Option<&VideoSpec>) -> Result<Vec<ImageSpec>, SpecError> {
        if self.images.len() > 4 {
            return Err(invalid("at most 4 image outputs per egress"));
        }
        let mut out = vec![];
        for i in &self.images {
            let Some(v) = video else { return Err(invalid("image outputs need a picture (not audio_only)")) };
            if i.output.is_some() {
                return Err(SpecError::Unsupported("cloud uploads are not supported: images are written to the egress's folder".into()));
            }
            if proto::ImageCodec::try_from(i.image_codec).map_err(|_| invalid("unknown image_codec"))? != proto::ImageCodec::IcDefault
                && i.image_codec != proto::ImageCodec::IcJpeg as i32
            {
                return Err(SpecError::Unsupported("image codec: JPEG only".into()));
            }
            let (width, height) = match (i.width, i.height) {
                (0, 0) => (v.width, v.height),
                (w, h) if (16..=3840).contains(&w) && (16..=3840).contains(&h) && w % 2 == 0 && h % 2 == 0 => (w as u32, h as u32),
                _ => return Err(invalid("image width and height must be even and within 16..=3840 (or both 0: the picture's size)")),
            };
            let interval_secs = match i.capture_interval {
                0 => 10,
                n if n <= 3600 => n,
                _ => return Err(invalid("capture_interval must be at most 3600 seconds")),
            };
            use proto::ImageFileSuffix as X;
            let suffix = match X::try_from(i.filename_suffix).map_err(|_| invalid("unknown filename_suffix"))? {
                X::ImageSuffixIndex => ImageSuffix::Index,
                X::ImageSuffixTimestamp => ImageSuffix::Timestamp,
                X::ImageSuffixNoneOverwrite => ImageSuffix::Overwrite,
            };
            let now = crate::clock::file_stamp(crate::clock::unix_secs());
            let filename_prefix = output_name(&i.filename_prefix, "image", "filename_prefix", &now)?;
            out.push(ImageSpec { filename_prefix, interval_secs, width, height, suffix });
        }
        Ok(out)
    }
}

/// Resolution, frame rate and bitrate of a LiveKit preset.
pub fn preset_dims(preset: i32) -> Result<(u32, u32, u32, u32), SpecError> {
    use proto::EncodingOptionsPreset as P;
    Ok(match P::try_from(preset).map_err(|_| invalid(format!("unknown preset {preset}")))? {
        P::H264720p30 => (1280, 720, 30, 3000),
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

fn video_spec(options: Encoding, cfg: &Config) -> Result<VideoSpec, SpecError> {
    let (mut w, mut h, mut fps, mut kbps) = preset_dims(0)?;
    let mut kfi = 2.0;
    let mut profile = "main".to_string();
    match options {
        Encoding::Default => {}
        Encoding::Preset(p) => (w, h, fps, kbps) = preset_dims(p)?,
        Encoding::Advanced(a) => {
            if a.width != 0 || a.height != 0 {
                if a.width < 16 || a.height < 16 || a.width > 3840 || a.height > 3840 {
                    return Err(invalid("advanced.width and advanced.height must be within 16..=3840"));
                }
                if a.width % 2 != 0 || a.height % 2 != 0 {
                    return Err(invalid("advanced.width and advanced.height must be even"));
                }
                (w, h) = (a.width as u32, a.height as u32);
            }
            if a.framerate != 0 {
                if !(1..=60).contains(&a.framerate) {
                    return Err(invalid("advanced.framerate must be within 1..=60"));
                }
                fps = a.framerate as u32;
            }
            if a.video_bitrate != 0 {
                if !(100..=50_000).contains(&a.video_bitrate) {
                    return Err(invalid("advanced.video_bitrate must be within 100..=50000 kbps"));
                }
                kbps = a.video_bitrate as u32;
            }
            if a.key_frame_interval != 0.0 {
                if !(a.key_frame_interval.is_finite() && (0.1..=20.0).contains(&a.key_frame_interval)) {
                    return Err(invalid("advanced.key_frame_interval must be within 0.1..=20 seconds"));
                }
                kfi = a.key_frame_interval;
            }
            use proto::VideoCodec as V;
            profile = match V::try_from(a.video_codec).map_err(|_| invalid("unknown advanced.video_codec"))? {
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
fn audio_spec(options: Encoding, cfg: &Config) -> Result<AudioSpec, SpecError> {
    let mut a = AudioSpec {
        codec: AudioCodec::Aac,
        bitrate_kbps: 128,
        sample_rate: 48_000,
        channels: 2,
        offset_ms: cfg.audio.offset_ms.unwrap_or_else(|| cfg.capture.default_audio_offset_ms()),
        pulseaudio_path: cfg.audio.pulseaudio_path.display().to_string(),
    };
    if let Encoding::Advanced(adv) = options {
        use proto::AudioCodec as C;
        a.codec = match C::try_from(adv.audio_codec).map_err(|_| invalid("unknown advanced.audio_codec"))? {
            C::DefaultAc | C::Aac => AudioCodec::Aac,
            C::Opus => AudioCodec::Opus,
            other => return Err(SpecError::Unsupported(format!("audio codec {} is not supported", other.as_str_name()))),
        };
        if adv.audio_bitrate != 0 {
            if !(16..=512).contains(&adv.audio_bitrate) {
                return Err(invalid("advanced.audio_bitrate must be within 16..=512 kbps"));
            }
            a.bitrate_kbps = adv.audio_bitrate as u32;
        }
        match (adv.audio_frequency, a.codec) {
            (0, _) => {}
            (48_000, _) | (44_100, AudioCodec::Aac) => a.sample_rate = adv.audio_frequency as u32,
            (f, AudioCodec::Opus) => return Err(invalid(format!("advanced.audio_frequency {f}: Opus is 48000 Hz"))),
            (f, _) => return Err(invalid(format!("advanced.audio_frequency {f}: use 44100 or 48000"))),
        }
    }
    Ok(a)
}

/// Fills LiveKit's filename placeholders and checks the result stays inside the egress folder.
fn output_name(template: &str, default: &str, what: &str, now: &str) -> Result<String, SpecError> {
    let raw = if template.is_empty() { default } else { template };
    let name = raw.replace("{time}", now).replace("{utc}", now).replace("{room_name}", "").replace("{room_id}", "");
    let ok_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c));
    let ok_path = !name.is_empty()
        && !name.starts_with('/')
        && name.split('/').all(|p| !p.is_empty() && p != "." && p != "..");
    if !ok_chars || !ok_path {
        return Err(invalid(format!(
            "{what} {raw:?} must be a relative path of letters, digits, '.', '_', '-' and '/'"
        )));
    }
    Ok(name)
}

fn hls_spec(out: &proto::SegmentedFileOutput, video: Option<&VideoSpec>, cfg: &Config) -> Result<HlsSpec, SpecError> {
    if out.output.is_some() {
        return Err(SpecError::Unsupported(
            "cloud uploads (s3/gcp/azure/aliOSS) are not supported: roomcast serves segments from its own origin".into(),
        ));
    }
    let now = crate::clock::file_stamp(crate::clock::unix_secs());
    let playlist_name = output_name(&out.playlist_name, "playlist.m3u8", "playlist_name", &now)?;
    let live_playlist_name = output_name(&out.live_playlist_name, "live.m3u8", "live_playlist_name", &now)?;
    for n in [&playlist_name, &live_playlist_name] {
        if !n.ends_with(".m3u8") {
            return Err(invalid(format!("playlist name {n:?} must end in .m3u8")));
        }
    }
    if playlist_name == live_playlist_name {
        return Err(invalid("playlist_name and live_playlist_name must differ"));
    }
    if playlist_name == MULTIVARIANT_NAME || live_playlist_name == MULTIVARIANT_NAME {
        return Err(invalid(format!("{MULTIVARIANT_NAME} is the multivariant playlist's name; choose another playlist name")));
    }
    let segment_prefix = output_name(&out.filename_prefix, "segment", "filename_prefix", &now)?;
    let segment_duration = match out.segment_duration {
        0 => cfg.hls.segment_duration,
        d if (1..=20).contains(&d) => d,
        _ => return Err(invalid("segment_duration must be within 1..=20 seconds")),
    };
    Ok(HlsSpec {
        playlist_name,
        live_playlist_name,
        segment_prefix,
        segment_duration,
        part_duration_ms: cfg.hls.part_duration_ms,
        live_window: cfg.hls.live_window,
        // A rung as large as the main picture would only repeat it; no picture, no rungs.
        ladder: match video {
            Some(v) => cfg.hls.ladder.iter().filter(|r| r.width < v.width && r.height < v.height).cloned().collect(),
            None => vec![],
        },
    })
}

/// Checks a page URL: it must parse and be http(s).
pub fn check_page_url(url: &str) -> Result<String, SpecError> {
    let parsed = url::Url::parse(url).map_err(|e| invalid(format!("url {url:?} is not a valid URL: {e}")))?;
    match parsed.scheme() {
        "http" | "https" => Ok(parsed.to_string()),
        s => Err(invalid(format!("url scheme {s:?} is not allowed: use http or https"))),
    }
}

impl JobSpec {
    // The deprecated single-output fields are still what older SDKs send.
    #[allow(deprecated)]
    pub fn from_web_request(egress_id: &str, req: &proto::WebEgressRequest, cfg: &Config) -> Result<Self, SpecError> {
        let url = check_page_url(&req.url)?;
        let outputs = outputs_of!(req, proto::web_egress_request::Output);
        let mut spec = Self::build(egress_id, url, req.audio_only, req.video_only, req.options.as_ref().into(), outputs, cfg)?;
        spec.await_start_signal = req.await_start_signal;
        Ok(spec)
    }

    /// A room composite: the template (ours, or the request's `custom_base_url`) joins
    /// `room_name` as a hidden recorder with a token minted here, and recording starts at its
    /// START_RECORDING.
    #[allow(deprecated)]
    pub fn from_room_request(egress_id: &str, req: &proto::RoomCompositeEgressRequest, cfg: &Config) -> Result<Self, SpecError> {
        let room = req.room_name.trim();
        if room.is_empty() {
            return Err(invalid("room_name is required"));
        }
        if room.len() > 256 || room.chars().any(char::is_control) {
            return Err(invalid("room_name must be at most 256 characters, without control characters"));
        }
        if req.layout.len() > 128 || req.layout.chars().any(char::is_control) {
            return Err(invalid("layout must be at most 128 characters, without control characters"));
        }
        let base = match req.custom_base_url.as_str() {
            "" => cfg.template_base(),
            custom => check_page_url(custom).map_err(|e| invalid(format!("custom_base_url: {e}")))?,
        };
        let base = url::Url::parse(&base).map_err(|e| invalid(format!("template base {base:?}: {e}")))?;
        let (key, secret) = cfg.sfu_keys().map_err(|e| invalid(format!("{e:#}")))?;
        let ttl = std::time::Duration::from_secs(cfg.room.token_ttl_secs);
        let token = crate::room::recorder_token(&key, &secret, room, egress_id, ttl).map_err(|e| invalid(format!("{e:#}")))?;
        let url = crate::room::template_url(&base, cfg.room.sfu, &cfg.room.url, &token, &req.layout);
        let outputs = outputs_of!(req, proto::room_composite_egress_request::Output);
        let mut spec = Self::build(egress_id, url, req.audio_only, req.video_only, req.options.as_ref().into(), outputs, cfg)?;
        spec.await_start_signal = true;
        spec.start_timeout_secs = cfg.room.start_timeout_secs;
        spec.room = Some(RoomSpec { room_name: room.to_string(), layout: req.layout.clone(), sfu: cfg.room.sfu });
        Ok(spec)
    }

    fn build(
        egress_id: &str,
        url: String,
        audio_only: bool,
        video_only: bool,
        encoding: Encoding,
        outputs: Outputs,
        cfg: &Config,
    ) -> Result<Self, SpecError> {
        if audio_only && video_only {
            return Err(invalid("audio_only and video_only cannot both be set"));
        }
        let (seg, streams) = outputs.check()?;
        let has_video = !audio_only;
        // Without a segment output the muxer still cuts on the HLS grid (stream outputs take
        // its chunks), but nothing is served or written.
        let default_seg = proto::SegmentedFileOutput::default();
        // Checked even for audio_only, so a bad request is refused the same either way.
        let video = video_spec(encoding, cfg)?;
        let files = outputs.files(has_video)?;
        let mut audio = if video_only { None } else { Some(audio_spec(encoding, cfg)?) };
        let video = if audio_only { None } else { Some(video) };
        let images = outputs.images(video.as_ref())?;
        if files.iter().any(|f| f.kind == FileKind::Ogg) {
            // An Ogg file holds Opus: the egress's sound is Opus (unless AAC was asked for).
            let asked_aac = matches!(encoding, Encoding::Advanced(a) if a.audio_codec == proto::AudioCodec::Aac as i32);
            match audio.as_mut() {
                None => return Err(invalid("an OGG file needs sound (not video_only)")),
                Some(_) if asked_aac => return Err(invalid("an OGG file holds Opus: audio_codec AAC cannot go in it")),
                Some(a) => a.codec = AudioCodec::Opus,
            }
        }
        if !streams.is_empty() && audio.as_ref().is_some_and(|a| a.codec == AudioCodec::Opus) && streams.iter().any(|u| !u.starts_with("srt:")) {
            return Err(invalid("RTMP carries AAC sound, not Opus"));
        }
        Ok(JobSpec {
            egress_id: egress_id.to_string(),
            url,
            await_start_signal: false,
            start_timeout_secs: cfg.timeouts.start_secs,
            hls: Some(hls_spec(seg.unwrap_or(&default_seg), video.as_ref(), cfg)?),
            serve_hls: seg.is_some(),
            streams,
            files,
            images,
            video,
            audio,
            browser: BrowserSpec::from_config(cfg),
            room: None,
        })
    }
}

impl JobSpec {
    /// The audio track's bitrate, 0 without audio.
    pub fn audio_kbps(&self) -> u32 {
        self.audio.as_ref().map(|a| a.bitrate_kbps).unwrap_or(0)
    }

    /// The timing grid of this egress's HLS output.
    pub fn timing(&self, hls: &HlsSpec) -> HlsTiming {
        HlsTiming::new(self.video.as_ref(), self.audio.as_ref(), hls)
    }
}

impl BrowserSpec {
    pub fn from_config(cfg: &Config) -> Self {
        Self {
            chromium_path: cfg.chromium.path.display().to_string(),
            headless_shell_path: cfg.capture.headless_shell_path.display().to_string(),
            x_server: cfg.capture.x_server,
            xorg_path: cfg.capture.xorg_path.display().to_string(),
            xvfb_path: cfg.capture.xvfb_path.display().to_string(),
            extra_flags: cfg.chromium.extra_flags.clone(),
            resolver_exclude: {
                // The SFU's host is a name every Chromium of ours may resolve (the same for
                // every egress, so a warm browser fits room and web egresses alike).
                let mut hosts = cfg.chromium.resolver_exclude.clone();
                if let Some(host) = url::Url::parse(&cfg.room.url).ok().and_then(|u| u.host_str().map(str::to_string)) {
                    if !hosts.contains(&host) {
                        hosts.push(host);
                    }
                }
                hosts
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::web_egress_request::Options;

    fn req(url: &str) -> proto::WebEgressRequest {
        proto::WebEgressRequest {
            url: url.into(),
            segment_outputs: vec![proto::SegmentedFileOutput::default()],
            ..Default::default()
        }
    }

    #[test]
    fn defaults_are_720p30_with_2s_keyframes() {
        let spec = JobSpec::from_web_request("EG_x", &req("http://127.0.0.1/a"), &Config::default()).unwrap();
        let v = spec.video.as_ref().unwrap();
        assert_eq!((v.width, v.height, v.framerate), (1280, 720, 30));
        assert_eq!(v.bitrate_kbps, 3000);
        assert_eq!(v.keyframe_interval, 2.0);
        let hls = spec.hls.unwrap();
        assert_eq!((hls.playlist_name.as_str(), hls.segment_duration), ("playlist.m3u8", 2));
    }

    #[test]
    fn preset_and_advanced_are_honoured() {
        let mut r = req("https://example.test/");
        r.options = Some(Options::Preset(proto::EncodingOptionsPreset::H2641080p30 as i32));
        let v = JobSpec::from_web_request("e", &r, &Config::default()).unwrap().video.unwrap();
        assert_eq!((v.width, v.height, v.bitrate_kbps), (1920, 1080, 4500));
        r.options = Some(Options::Advanced(proto::EncodingOptions {
            width: 640,
            height: 360,
            framerate: 25,
            video_bitrate: 800,
            key_frame_interval: 1.0,
            video_codec: proto::VideoCodec::H264High as i32,
            ..Default::default()
        }));
        let v = JobSpec::from_web_request("e", &r, &Config::default()).unwrap().video.unwrap();
        assert_eq!((v.width, v.height, v.framerate, v.bitrate_kbps, v.keyframe_interval), (640, 360, 25, 800, 1.0));
        assert_eq!(v.profile, "high");
    }

    #[test]
    fn bad_input_is_invalid_argument() {
        let cfg = Config::default();
        for url in ["file:///etc/passwd", "javascript:alert(1)", "not a url", ""] {
            assert!(matches!(JobSpec::from_web_request("e", &req(url), &cfg), Err(SpecError::Invalid(_))), "{url}");
        }
        let mut r = req("http://a/");
        r.options = Some(Options::Advanced(proto::EncodingOptions { width: 641, height: 360, ..Default::default() }));
        assert!(matches!(JobSpec::from_web_request("e", &r, &cfg), Err(SpecError::Invalid(_))));
        let mut r = req("http://a/");
        r.segment_outputs[0].playlist_name = "../../etc/x.m3u8".into();
        assert!(matches!(JobSpec::from_web_request("e", &r, &cfg), Err(SpecError::Invalid(_))));
        let mut r = req("http://a/");
        r.segment_outputs.clear();
        assert!(matches!(JobSpec::from_web_request("e", &r, &cfg), Err(SpecError::Invalid(_))));
    }

    #[test]
    fn timing_is_frame_exact() {
        let mut spec = JobSpec::from_web_request("e", &req("http://a/"), &Config::default()).unwrap();
        let t = spec.timing(spec.hls.as_ref().unwrap());
        assert_eq!((t.part_frames, t.segment_frames, t.part_ns(), t.target_duration()), (6, 60, 200_000_000, 2));
        assert_eq!(t.part_target(), 0.2);
        // 250 ms at 30 fps is 7.5 frames: rounded to 8 frames, PART-TARGET ceiled to the ms.
        spec.hls.as_mut().unwrap().part_duration_ms = 250;
        let t = spec.timing(spec.hls.as_ref().unwrap());
        assert_eq!((t.part_frames, t.part_target()), (8, 0.267));
        // A GOP longer than the segment stretches segments to whole GOPs.
        spec.hls.as_mut().unwrap().part_duration_ms = 200;
        spec.video.as_mut().unwrap().keyframe_interval = 3.0;
        let t = spec.timing(spec.hls.as_ref().unwrap());
        assert_eq!((t.segment_frames, t.target_duration()), (90, 3));
    }

    #[test]
    fn audio_only_has_no_picture_and_an_aac_frame_grid() {
        let mut r = req("http://a/");
        r.audio_only = true;
        let spec = JobSpec::from_web_request("e", &r, &Config::default()).unwrap();
        assert!(spec.video.is_none() && spec.audio.is_some());
        let t = spec.timing(spec.hls.as_ref().unwrap());
        // 200 ms is 9.4 AAC frames at 48 kHz: 9 frames (192 ms) a part, ten parts a segment.
        assert_eq!((t.part_frames, t.segment_frames, t.part_target(), t.target_duration()), (9, 90, 0.192, 2));
        assert_eq!(t.part_ns(), 192_000_000);
        // Opus frames are 20 ms: 200 ms parts exactly.
        r.options = Some(Options::Advanced(proto::EncodingOptions { audio_codec: proto::AudioCodec::Opus as i32, ..Default::default() }));
        let spec = JobSpec::from_web_request("e", &r, &Config::default()).unwrap();
        let t = spec.timing(spec.hls.as_ref().unwrap());
        assert_eq!((t.part_frames, t.segment_frames, t.part_ns(), t.part_target()), (10, 100, 200_000_000, 0.2));
        r.video_only = true;
        assert!(matches!(JobSpec::from_web_request("e", &r, &Config::default()), Err(SpecError::Invalid(_))));
    }

    #[test]
    fn multivariant_name_is_reserved() {
        let mut r = req("http://a/");
        r.segment_outputs[0].playlist_name = MULTIVARIANT_NAME.into();
        assert!(matches!(JobSpec::from_web_request("e", &r, &Config::default()), Err(SpecError::Invalid(_))));
    }

    fn room_req(room: &str) -> proto::RoomCompositeEgressRequest {
        proto::RoomCompositeEgressRequest {
            room_name: room.into(),
            layout: "speaker".into(),
            segment_outputs: vec![proto::SegmentedFileOutput::default()],
            ..Default::default()
        }
    }

    #[test]
    fn room_composite_opens_the_template_with_livekits_parameters() {
        let mut cfg = Config::default();
        cfg.room.url = "ws://10.1.2.3:7880".into();
        let spec = JobSpec::from_room_request("EG_r", &room_req("my room"), &cfg).unwrap();
        assert!(spec.await_start_signal);
        assert_eq!(spec.start_timeout_secs, cfg.room.start_timeout_secs);
        let u = url::Url::parse(&spec.url).unwrap();
        assert_eq!(u.path(), "/templates/room/index.html");
        let q: std::collections::HashMap<String, String> = u.query_pairs().into_owned().collect();
        assert_eq!((q["layout"].as_str(), q["url"].as_str()), ("speaker", "ws://10.1.2.3:7880"));
        assert!(!q.contains_key("sfu"));
        let claims = livekit_api::access_token::TokenVerifier::with_api_key(crate::config::DEV_API_KEY, crate::config::DEV_API_SECRET)
            .verify(&q["token"])
            .unwrap();
        assert_eq!((claims.sub.as_str(), claims.video.room.as_str()), ("EG_r", "my room"));
        assert!(spec.browser.resolver_exclude.contains(&"10.1.2.3".to_string()), "the SFU's host resolves");
        assert_eq!(spec.room.as_ref().map(|r| r.layout.as_str()), Some("speaker"));
        // A custom base keeps its own query; the parameters follow it.
        let mut r = room_req("x");
        r.custom_base_url = "http://127.0.0.1:9/tpl.html?v=2".into();
        let spec = JobSpec::from_room_request("EG_r", &r, &cfg).unwrap();
        assert!(spec.url.starts_with("http://127.0.0.1:9/tpl.html?v=2&layout=speaker&token="), "{}", spec.url);
        // The SFU's own keys sign the recorder's token when they are configured.
        (cfg.room.api_key, cfg.room.api_secret) = (Some("lk".into()), Some("lk-secret-lk-secret-lk-secret-00".into()));
        let spec = JobSpec::from_room_request("EG_r", &room_req("x"), &cfg).unwrap();
        let token = url::Url::parse(&spec.url).unwrap().query_pairs().find(|(k, _)| k == "token").unwrap().1.into_owned();
        assert!(livekit_api::access_token::TokenVerifier::with_api_key("lk", "lk-secret-lk-secret-lk-secret-00").verify(&token).is_ok());
    }

    #[test]
    fn room_composite_audio_and_video_only() {
        let cfg = Config::default();
        let mut r = room_req("x");
        r.audio_only = true;
        let spec = JobSpec::from_room_request("e", &r, &cfg).unwrap();
        assert!(spec.video.is_none() && spec.audio.is_some());
        r.audio_only = false;
        r.video_only = true;
        let spec = JobSpec::from_room_request("e", &r, &cfg).unwrap();
        assert!(spec.video.is_some() && spec.audio.is_none());
        r.audio_only = true;
        assert!(matches!(JobSpec::from_room_request("e", &r, &cfg), Err(SpecError::Invalid(_))));
        let mut r = room_req("x");
        r.options = Some(proto::room_composite_egress_request::Options::Preset(proto::EncodingOptionsPreset::H2641080p30 as i32));
        let v = JobSpec::from_room_request("e", &r, &cfg).unwrap().video.unwrap();
        assert_eq!((v.width, v.height), (1920, 1080));
    }

    #[test]
    fn bad_room_requests_are_invalid_argument() {
        let cfg = Config::default();
        for room in ["", "  ", "a\nb"] {
            assert!(matches!(JobSpec::from_room_request("e", &room_req(room), &cfg), Err(SpecError::Invalid(_))), "{room:?}");
        }
        let mut r = room_req("x");
        r.custom_base_url = "file:///etc/passwd".into();
        assert!(matches!(JobSpec::from_room_request("e", &r, &cfg), Err(SpecError::Invalid(_))));
        let mut r = room_req("x");
        r.segment_outputs.clear();
        assert!(matches!(JobSpec::from_room_request("e", &r, &cfg), Err(SpecError::Invalid(_))));
        let mut r = room_req("x");
        r.stream_outputs.push(Default::default());
        assert!(matches!(JobSpec::from_room_request("e", &r, &cfg), Err(SpecError::Invalid(_))), "a stream output without urls");
        r.stream_outputs[0].urls = vec!["rtmp://h/app/key".into()];
        r.stream_outputs[0].protocol = proto::StreamProtocol::Srt as i32;
        assert!(matches!(JobSpec::from_room_request("e", &r, &cfg), Err(SpecError::Invalid(_))), "scheme against protocol");
        r.stream_outputs[0].protocol = proto::StreamProtocol::Rtmp as i32;
        r.segment_outputs.clear();
        let spec = JobSpec::from_room_request("e", &r, &cfg).unwrap();
        assert_eq!((spec.streams.len(), spec.serve_hls), (1, false));
    }

    #[test]
    fn time_placeholder_is_filled() {
        let n = output_name("rec-{time}.m3u8", "x", "playlist_name", "2026-01-02T030405").unwrap();
        assert_eq!(n, "rec-2026-01-02T030405.m3u8");
    }
}

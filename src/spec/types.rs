//! The job spec's data: what one egress does, checked and normalised from an API request
//! (see [`super::request`]). The worker receives exactly this (as JSON), nothing else. Data
//! only: no validation, no timing, no I/O.

use serde::{Deserialize, Serialize};

use crate::config::{CaptureBackend, Rung, Sfu, VideoEncoder, XServerKind};

/// The picture of a request without encoding options (LiveKit's H264_720P_30).
pub const DEFAULT_WIDTH: u32 = 1280;
pub const DEFAULT_HEIGHT: u32 = 720;
pub const DEFAULT_FRAMERATE: u32 = 30;
pub const DEFAULT_VIDEO_KBPS: u32 = 3000;
/// Seconds between IDR frames unless the request says otherwise.
pub const DEFAULT_KEYFRAME_INTERVAL: f64 = 2.0;
/// The sound of a request without audio options: AAC-LC, 48 kHz stereo, 128 kbps.
pub const DEFAULT_SAMPLE_RATE: u32 = 48_000;
pub const DEFAULT_CHANNELS: u32 = 2;
pub const DEFAULT_AUDIO_KBPS: u32 = 128;

/// Name of the multivariant playlist every egress gets, beside its media playlists.
pub const MULTIVARIANT_NAME: &str = "master.m3u8";

/// Stream URLs one egress may push to at once.
pub const MAX_STREAM_URLS: usize = 10;

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
    /// What the page (through the worker's proxy) and the stream outputs may reach.
    #[serde(default)]
    pub network: crate::net::Policy,
    /// When a crashed or hung Chromium is relaunched.
    #[serde(default)]
    pub recovery: crate::config::RecoveryConfig,
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

//! The config file's sections below the top level, each with its defaults, and the choice
//! enums they hold (read from the file, env vars and request headers by their serde names).

use std::path::PathBuf;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// The Redis that livekit-server dispatches egress requests over (psrpc). Without an address
/// roomcast runs standalone: only its own Twirp API starts egresses. Names as livekit/egress's.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `host:port`.
    pub address: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: i64,
}

impl RedisConfig {
    /// The redis-rs connection URL (it carries the password: never log it).
    pub fn url(&self) -> Option<String> {
        let address = self.address.as_deref()?;
        let auth = match (&self.username, &self.password) {
            (Some(u), Some(p)) => format!("{u}:{p}@"),
            (None, Some(p)) => format!(":{p}@"),
            _ => String::new(),
        };
        Some(format!("redis://{auth}{address}/{}", self.db))
    }
}

/// Stream outputs' (RTMP/SRT) reconnection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamConfig {
    /// First wait before reconnecting, doubled after each failure up to `reconnect_max_ms`.
    pub reconnect_initial_ms: u64,
    pub reconnect_max_ms: u64,
    /// Give a URL up (FAILED) after failing this long; 0: keep trying while the egress runs.
    pub give_up_secs: u64,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self { reconnect_initial_ms: 500, reconnect_max_ms: 10_000, give_up_secs: 0 }
    }
}

/// How a stream output retries, from [`StreamConfig`].
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub initial: std::time::Duration,
    pub max: std::time::Duration,
    /// Give up (FAILED) after failing this long without a success; None: never.
    pub give_up: Option<std::time::Duration>,
}

impl StreamConfig {
    pub fn retry(&self) -> Retry {
        Retry {
            initial: std::time::Duration::from_millis(self.reconnect_initial_ms),
            max: std::time::Duration::from_millis(self.reconnect_max_ms.max(self.reconnect_initial_ms)),
            give_up: (self.give_up_secs > 0).then(|| std::time::Duration::from_secs(self.give_up_secs)),
        }
    }
}

/// Which SFU's web SDK the room templates join with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Sfu {
    /// LiveKit (livekit-client); UpdateLayout also sets the recorder's metadata via RoomService.
    #[default]
    Livekit,
    /// Janus VideoRoom (janus.js), rooms addressed by string id (`string_ids = true`).
    Janus,
}

impl Sfu {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Livekit => "livekit",
            Self::Janus => "janus",
        }
    }
}

/// One of a config enum's names (its serde name, as env vars and request headers give it),
/// or an error that lists them all.
fn parse_choice<T: Copy>(s: &str, what: &str, choices: &[(&str, T)]) -> Result<T> {
    if let Some((_, v)) = choices.iter().find(|(name, _)| *name == s) {
        return Ok(*v);
    }
    let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => bail!("{what} {s:?}: use {} or {last}", rest.join(", ")),
        _ => bail!("{what} {s:?}: use {}", names.join("")),
    }
}

impl std::str::FromStr for Sfu {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        parse_choice(s, "sfu", &[("livekit", Self::Livekit), ("janus", Self::Janus)])
    }
}

/// Room composite egresses: the SFU the templates join and how long they may take to start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomConfig {
    /// Env: ROOMCAST_SFU.
    pub sfu: Sfu,
    /// The SFU's WebSocket URL, given to templates as `url`. Env: LIVEKIT_URL / ROOMCAST_SFU_URL.
    pub url: String,
    /// LiveKit's HTTP API (RoomService) for layout metadata; unset: `url` with http(s).
    /// Env: ROOMCAST_SFU_API_URL.
    pub api_url: Option<String>,
    /// Where templates are loaded from unless a request has `custom_base_url`; unset:
    /// roomcast's own `/templates/room/index.html`. Env: ROOMCAST_TEMPLATE_BASE.
    pub template_base: Option<String>,
    /// From page load to the template's START_RECORDING (or its `div.error`), seconds.
    /// Env: ROOMCAST_ROOM_START_TIMEOUT.
    pub start_timeout_secs: u64,
    /// Validity of the recorder's access token, seconds (LiveKit Egress: 24 h).
    pub token_ttl_secs: u64,
    /// The SFU's key pair for recorder tokens and RoomService, when it is not the API's own
    /// (in a LiveKit deployment egress and server usually share one).
    /// Env: ROOMCAST_SFU_API_KEY, ROOMCAST_SFU_API_SECRET.
    pub api_key: Option<String>,
    pub api_secret: Option<String>,
}

impl Default for RoomConfig {
    fn default() -> Self {
        Self {
            sfu: Sfu::Livekit,
            url: "ws://127.0.0.1:7880".into(),
            api_url: None,
            template_base: None,
            start_timeout_secs: 30,
            token_ttl_secs: 24 * 3600,
            api_key: None,
            api_secret: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AudioConfig {
    /// The sound server each egress starts for its Chromium. Env: ROOMCAST_PULSEAUDIO_PATH.
    pub pulseaudio_path: PathBuf,
    /// Added to audio timestamps: the fixed latency of the capture path (Chromium's output
    /// buffer, the null sink, the capture buffer) against the picture's, measured by
    /// benches/av_sync.sh. Unset: the measured value for the capture backend
    /// ([`CaptureConfig::default_audio_offset_ms`]).
    pub offset_ms: Option<i32>,
}

impl Default for AudioConfig {
    fn default() -> Self {
        Self { pulseaudio_path: PathBuf::from("/usr/bin/pulseaudio"), offset_ms: None }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChromiumConfig {
    /// Chromium binary. Env: ROOMCAST_CHROMIUM_PATH.
    pub path: PathBuf,
    /// Extra command-line flags appended after roomcast's own (the tests' sandbox resolver
    /// rule goes here, never into the product).
    pub extra_flags: Vec<String>,
}

/// How the page's picture is taken from Chromium.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CaptureBackend {
    /// `chromium-headless-shell` renders a frame only when asked (HeadlessExperimental.beginFrame)
    /// and answers with its JPEG: 30 renders a second for 30 fps, on our own frame grid.
    BeginFrame,
    /// CDP `Page.startScreencast` on Chromium's new headless mode: the compositor paints at
    /// 60 Hz whatever we keep, and every kept frame is JPEG-encoded in the browser.
    Screencast,
    /// A private Xvfb per egress, Chromium as a kiosk window on it, the screen read by
    /// `ximagesrc` (LiveKit Egress's way): no JPEG anywhere, but the page renders at 60 Hz.
    /// The default: the fewest cores per room, and it keeps 30 new pictures a second where
    /// the others fall behind (docs/benchmarks.md, cost table).
    #[default]
    X11,
}

/// On Xvfb, ximagesrc stamps a frame when it reads the screen, at a phase against Chromium's
/// 60 Hz drawing that differs per egress. The sound relative to the picture, measured with no
/// offset (tests/av_sync.rs; seven egresses, each steady to a few ms): −33.2, −26.8, −16.5,
/// −14.1, −11.9, −3.8 and +7.9 ms. 12 centres them (−21 to +20 ms).
const XVFB_AUDIO_OFFSET_MS: i32 = 12;

/// On Xorg the screen is read half a tick after each of Chromium's ticks and the sound follows
/// the picture's measured depth (capture::presentation), so every egress has the same offset:
/// measured with 12, medians +7.2 … +16.5 ms over 16 egresses (each steady to ±2 ms once the
/// depth is known), centre +10.7. 1 centres them.
const XORG_AUDIO_OFFSET_MS: i32 = 1;

impl CaptureBackend {
    /// Audio timestamp shift that centres the A/V offset measured with this backend
    /// (tests/av_sync.rs, benches/av_sync.sh).
    pub fn default_audio_offset_ms(self) -> i32 {
        match self {
            // Frames are stamped with their slot's time, which is the page time they show;
            // measured with +20: +34.0, +35.3, +36.3 ms (audio late), steady to ±3 ms.
            Self::BeginFrame => -15,
            // Measured with 26: egress medians from −7.5 to +17.5 ms (the two phases of
            // Chromium's 60 Hz compositor taken at 30 fps, which can also flip mid-egress, and
            // PulseAudio's drift, followed in 5 ms steps). 20 centres that range.
            Self::Screencast => 20,
            Self::X11 => XORG_AUDIO_OFFSET_MS,
        }
    }
}

impl CaptureConfig {
    /// The backend's audio offset, for the X server it runs on.
    pub fn default_audio_offset_ms(&self) -> i32 {
        match (self.backend, self.x_server) {
            (CaptureBackend::X11, XServerKind::Xvfb) => XVFB_AUDIO_OFFSET_MS,
            (b, _) => b.default_audio_offset_ms(),
        }
    }
}

impl std::str::FromStr for CaptureBackend {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        parse_choice(s, "capture backend", &[("begin_frame", Self::BeginFrame), ("screencast", Self::Screencast), ("x11", Self::X11)])
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaptureConfig {
    /// Which capture path egresses use. Env: ROOMCAST_CAPTURE.
    pub backend: CaptureBackend,
    /// The Chromium build with begin-frame control (Debian: chromium-headless-shell; its
    /// /usr/bin wrapper is a shell that would sit between us and the browser).
    /// Env: ROOMCAST_HEADLESS_SHELL_PATH.
    pub headless_shell_path: PathBuf,
    /// Which X server the x11 backend starts per egress. Env: ROOMCAST_X_SERVER.
    pub x_server: XServerKind,
    /// Xorg, for `x_server: xorg` (Debian: xserver-xorg-core + xserver-xorg-video-dummy; the
    /// /usr/bin/Xorg wrapper checks for a console, which a service has not).
    /// Env: ROOMCAST_XORG_PATH.
    pub xorg_path: PathBuf,
    /// Xvfb, for `x_server: xvfb`. Env: ROOMCAST_XVFB_PATH.
    pub xvfb_path: PathBuf,
}

/// The X server behind the x11 backend. Chromium paces its drawing by the screen's refresh
/// rate, which only Xorg's dummy driver lets us set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum XServerKind {
    /// Xorg with the dummy video driver and one mode whose refresh is the output frame rate:
    /// Chromium draws 30 times a second for 30 fps (measured: its cores halve, docs/benchmarks.md).
    #[default]
    Xorg,
    /// Xvfb: its one mode reports 0 Hz, so Chromium draws at 60 Hz whatever we keep.
    Xvfb,
}

impl std::str::FromStr for XServerKind {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        parse_choice(s, "X server", &[("xorg", Self::Xorg), ("xvfb", Self::Xvfb)])
    }
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            backend: CaptureBackend::default(),
            headless_shell_path: PathBuf::from("/usr/lib/chromium/chromium-headless-shell"),
            x_server: XServerKind::default(),
            xorg_path: PathBuf::from("/usr/lib/xorg/Xorg"),
            xvfb_path: PathBuf::from("/usr/bin/Xvfb"),
        }
    }
}

/// Warm workers: each has launched its sound server and Chromium (the configured capture
/// backend, idle on about:blank) and waits for a job, so a start skips the launches. The pool
/// refills in the background; with none ready, egresses start cold.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Warm workers kept ready (0: none). Each costs an idle Chromium and sound server
    /// (measured: see docs/benchmarks.md). Env: ROOMCAST_POOL_SIZE.
    pub size: usize,
    /// How long after a warm worker is taken its replacement is launched, ms: not while the
    /// taken one's egress is starting on the same cores.
    pub refill_delay_ms: u64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self { size: 0, refill_delay_ms: 3000 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EncoderConfig {
    /// Which H.264 encoder: `auto` (a hardware one when present, else x264), `x264`,
    /// `vaapi` (vaapih264enc) or `nvenc` (nvh264enc). Env: ROOMCAST_VIDEO_ENCODER.
    pub video: VideoEncoder,
    /// x264 speed preset (ultrafast … veryslow). Env: ROOMCAST_X264_PRESET.
    pub x264_preset: String,
    /// x264 tune; `zerolatency` keeps encoder delay to one frame.
    pub x264_tune: String,
    /// JPEG quality of captured frames (1-100).
    pub jpeg_quality: u32,
}

/// An H.264 encoder choice (see [`EncoderConfig::video`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum VideoEncoder {
    #[default]
    Auto,
    X264,
    Vaapi,
    Nvenc,
}

impl std::str::FromStr for VideoEncoder {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        parse_choice(s, "video encoder", &[("auto", Self::Auto), ("x264", Self::X264), ("vaapi", Self::Vaapi), ("nvenc", Self::Nvenc)])
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HlsConfig {
    /// Segment length in seconds when the request gives none.
    pub segment_duration: u32,
    /// CMAF chunk (LL-HLS part) length in milliseconds.
    pub part_duration_ms: u32,
    /// Segments kept in the sliding live playlist.
    pub live_window: usize,
    /// Extra renditions encoded from the same capture (an x264 encoder each), listed in the
    /// multivariant playlist beside the main one. Empty by default: one rendition.
    pub ladder: Vec<Rung>,
}

/// One extra rendition of the ABR ladder. Not larger than the main picture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rung {
    /// Folder name of the rendition in the egress output (letters, digits, `_`, `-`).
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub bitrate_kbps: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    /// Chromium launch + page load + (if asked) the start signal, seconds.
    pub start_secs: u64,
    /// How long a stopping egress may take to drain before it is killed, seconds.
    pub stop_secs: u64,
    /// On SIGTERM, how long every egress together may take to stop (in parallel), seconds;
    /// keep it above `stop_secs` and, with `http.close_grace_secs`, below the orchestrator's
    /// kill deadline (Kubernetes: 30 s).
    pub drain_secs: u64,
}

/// What a worker does when its Chromium crashes or hangs: relaunch it on the same page while
/// the pipeline, and so every output, goes on (docs/operations.md, "Crash recovery").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecoveryConfig {
    /// A page that answers no CDP call and paints no new frame for this long is hung, seconds.
    pub hang_secs: u64,
    /// Relaunches allowed within `window_secs`; one more ends the egress FAILED. 0: none.
    pub max_restarts: u32,
    pub window_secs: u64,
}

pub const DEFAULT_HANG_SECS: u64 = 10;
pub const DEFAULT_MAX_RESTARTS: u32 = 3;
pub const DEFAULT_RESTART_WINDOW_SECS: u64 = 600;

impl Default for RecoveryConfig {
    fn default() -> Self {
        Self { hang_secs: DEFAULT_HANG_SECS, max_restarts: DEFAULT_MAX_RESTARTS, window_secs: DEFAULT_RESTART_WINDOW_SECS }
    }
}

/// What happens to egress folders in `output_dir` over time.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputConfig {
    /// Folders of egresses that ended longer ago than this are removed (checked at start and
    /// every 10 minutes); 0 keeps them.
    pub retention_hours: u64,
}

/// Access to the HLS origin.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OriginConfig {
    /// When set, `/hls/{egress_id}/…` needs `exp` and `sig` (HMAC-SHA256 of the egress's folder
    /// path and `exp` with this key); EgressInfo locations carry them. Env:
    /// ROOMCAST_ORIGIN_SIGNING_KEY. Never logged.
    pub signing_key: Option<String>,
    /// How long a location's signature is valid from the egress's start.
    pub url_ttl_secs: u64,
}

impl Default for OriginConfig {
    fn default() -> Self {
        Self { signing_key: None, url_ttl_secs: 86_400 }
    }
}

/// How serve's HTTP listener treats clients (src/listener.rs).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// A client must have sent a request's headers within this many seconds of starting it.
    pub header_read_timeout_secs: u64,
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// At shutdown, after the egresses have stopped: how long open connections may finish.
    pub close_grace_secs: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { header_read_timeout_secs: 10, max_connections: 1024, close_grace_secs: 5 }
    }
}

impl Default for ChromiumConfig {
    fn default() -> Self {
        Self { path: PathBuf::from("/usr/bin/chromium"), extra_flags: vec![] }
    }
}

impl Default for EncoderConfig {
    fn default() -> Self {
        Self { video: VideoEncoder::Auto, x264_preset: "veryfast".into(), x264_tune: "zerolatency".into(), jpeg_quality: 80 }
    }
}

impl Default for HlsConfig {
    fn default() -> Self {
        Self { segment_duration: 2, part_duration_ms: 200, live_window: 6, ladder: vec![] }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Self { start_secs: 30, stop_secs: 15, drain_secs: 20 }
    }
}

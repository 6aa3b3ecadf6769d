//! Service configuration: one YAML file plus environment overrides, with defaults that run a
//! development instance on loopback. Every option is documented in the README's config table.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The development key pair used when no keys are configured and the bind is loopback
/// (the same pair `livekit-server --dev` uses, so SDK examples work unchanged).
pub const DEV_API_KEY: &str = "devkey";
pub const DEV_API_SECRET: &str = "secret";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// API key callers sign their tokens with (`iss` claim). Env: LIVEKIT_API_KEY.
    pub api_key: Option<String>,
    /// API secret (HS256). Env: LIVEKIT_API_SECRET.
    pub api_secret: Option<String>,
    /// Address the API and the HLS origin listen on. Env: ROOMCAST_BIND.
    pub bind: SocketAddr,
    /// Base URL written into playlist locations and player links; defaults to `http://{bind}`.
    /// Env: ROOMCAST_PUBLIC_URL.
    pub public_url: Option<String>,
    /// Where egress outputs are written, one folder per egress. Env: ROOMCAST_OUTPUT_DIR.
    pub output_dir: PathBuf,
    /// Folder of HTML templates and demo pages served at `/templates/`. Env: ROOMCAST_TEMPLATES_DIR.
    pub templates_dir: PathBuf,
    /// Egresses that may run at once; more are refused with `unavailable`. Env: ROOMCAST_MAX_CONCURRENT.
    pub max_concurrent: usize,
    /// How many ended egresses ListEgress remembers.
    pub keep_ended: usize,
    pub chromium: ChromiumConfig,
    pub capture: CaptureConfig,
    pub pool: PoolConfig,
    pub encoder: EncoderConfig,
    pub hls: HlsConfig,
    pub audio: AudioConfig,
    pub timeouts: Timeouts,
    pub room: RoomConfig,
    pub stream: StreamConfig,
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

impl StreamConfig {
    pub fn retry(&self) -> crate::output::stream::Retry {
        crate::output::stream::Retry {
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
    /// Extra command-line flags appended after roomcast's own.
    pub extra_flags: Vec<String>,
    /// Hosts Chromium may resolve besides 127.0.0.1 (every other name resolves to nothing).
    pub resolver_exclude: Vec<String>,
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
    /// the others fall behind (README, cost table).
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
    /// Chromium draws 30 times a second for 30 fps (measured: its cores halve, README).
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
    /// (measured: see the README). Env: ROOMCAST_POOL_SIZE.
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
}

impl Default for Config {
    fn default() -> Self {
        Self {
            api_key: None,
            api_secret: None,
            bind: SocketAddr::from(([127, 0, 0, 1], 7890)),
            public_url: None,
            output_dir: PathBuf::from("out"),
            templates_dir: PathBuf::from("templates"),
            max_concurrent: 4,
            keep_ended: 1000,
            chromium: ChromiumConfig::default(),
            capture: CaptureConfig::default(),
            pool: PoolConfig::default(),
            encoder: EncoderConfig::default(),
            hls: HlsConfig::default(),
            audio: AudioConfig::default(),
            timeouts: Timeouts::default(),
            room: RoomConfig::default(),
            stream: StreamConfig::default(),
        }
    }
}

impl Default for ChromiumConfig {
    fn default() -> Self {
        Self { path: PathBuf::from("/usr/bin/chromium"), extra_flags: vec![], resolver_exclude: vec![] }
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
        Self { start_secs: 30, stop_secs: 15 }
    }
}

impl Config {
    /// Reads the YAML file (if any), then applies environment overrides and checks the result.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        let mut cfg = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                serde_yaml::from_str(&text)
                    .with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => Config::default(),
        };
        cfg.apply_env(|k| std::env::var(k).ok())?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<()> {
        if let Some(v) = get("LIVEKIT_API_KEY") {
            self.api_key = Some(v);
        }
        if let Some(v) = get("LIVEKIT_API_SECRET") {
            self.api_secret = Some(v);
        }
        if let Some(v) = get("ROOMCAST_BIND") {
            self.bind = v.parse().with_context(|| format!("ROOMCAST_BIND={v}"))?;
        }
        if let Some(v) = get("ROOMCAST_PUBLIC_URL") {
            self.public_url = Some(v);
        }
        if let Some(v) = get("ROOMCAST_OUTPUT_DIR") {
            self.output_dir = v.into();
        }
        if let Some(v) = get("ROOMCAST_TEMPLATES_DIR") {
            self.templates_dir = v.into();
        }
        if let Some(v) = get("ROOMCAST_CHROMIUM_PATH") {
            self.chromium.path = v.into();
        }
        if let Some(v) = get("ROOMCAST_CAPTURE") {
            self.capture.backend = v.parse().context("ROOMCAST_CAPTURE")?;
        }
        if let Some(v) = get("ROOMCAST_X_SERVER") {
            self.capture.x_server = v.parse().context("ROOMCAST_X_SERVER")?;
        }
        if let Some(v) = get("ROOMCAST_XORG_PATH") {
            self.capture.xorg_path = v.into();
        }
        if let Some(v) = get("ROOMCAST_XVFB_PATH") {
            self.capture.xvfb_path = v.into();
        }
        if let Some(v) = get("ROOMCAST_HEADLESS_SHELL_PATH") {
            self.capture.headless_shell_path = v.into();
        }
        if let Some(v) = get("ROOMCAST_POOL_SIZE") {
            self.pool.size = v.parse().with_context(|| format!("ROOMCAST_POOL_SIZE={v}"))?;
        }
        if let Some(v) = get("ROOMCAST_VIDEO_ENCODER") {
            self.encoder.video = v.parse().context("ROOMCAST_VIDEO_ENCODER")?;
        }
        if let Some(v) = get("ROOMCAST_X264_PRESET") {
            self.encoder.x264_preset = v;
        }
        if let Some(v) = get("ROOMCAST_PULSEAUDIO_PATH") {
            self.audio.pulseaudio_path = v.into();
        }
        if let Some(v) = get("ROOMCAST_MAX_CONCURRENT") {
            self.max_concurrent = v.parse().with_context(|| format!("ROOMCAST_MAX_CONCURRENT={v}"))?;
        }
        if let Some(v) = get("ROOMCAST_SFU") {
            self.room.sfu = v.parse().context("ROOMCAST_SFU")?;
        }
        if let Some(v) = get("ROOMCAST_SFU_URL").or_else(|| get("LIVEKIT_URL")) {
            self.room.url = v;
        }
        if let Some(v) = get("ROOMCAST_SFU_API_URL") {
            self.room.api_url = Some(v);
        }
        if let Some(v) = get("ROOMCAST_TEMPLATE_BASE") {
            self.room.template_base = Some(v);
        }
        if let Some(v) = get("ROOMCAST_SFU_API_KEY") {
            self.room.api_key = Some(v);
        }
        if let Some(v) = get("ROOMCAST_SFU_API_SECRET") {
            self.room.api_secret = Some(v);
        }
        if let Some(v) = get("ROOMCAST_ROOM_START_TIMEOUT") {
            self.room.start_timeout_secs = v.parse().with_context(|| format!("ROOMCAST_ROOM_START_TIMEOUT={v}"))?;
        }
        Ok(())
    }

    fn validate(&mut self) -> Result<()> {
        if self.api_key.is_some() != self.api_secret.is_some() {
            bail!("set both api_key and api_secret (LIVEKIT_API_KEY / LIVEKIT_API_SECRET), or neither");
        }
        if !(1..=20).contains(&self.hls.segment_duration) {
            bail!("hls.segment_duration must be 1..=20 seconds");
        }
        if !(100..=1000).contains(&self.hls.part_duration_ms) {
            bail!("hls.part_duration_ms must be 100..=1000");
        }
        if self.hls.live_window < 3 {
            bail!("hls.live_window must be at least 3 segments");
        }
        for r in &self.hls.ladder {
            let name_ok = !r.name.is_empty() && r.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !name_ok {
                bail!("hls.ladder name {:?}: use letters, digits, '_' and '-'", r.name);
            }
            if r.width < 16 || r.height < 16 || r.width % 2 != 0 || r.height % 2 != 0 {
                bail!("hls.ladder {}: width and height must be even and at least 16", r.name);
            }
            if !(100..=50_000).contains(&r.bitrate_kbps) {
                bail!("hls.ladder {}: bitrate_kbps must be 100..=50000", r.name);
            }
        }
        let mut names: Vec<&str> = self.hls.ladder.iter().map(|r| r.name.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            bail!("hls.ladder names must be unique");
        }
        const PRESETS: [&str; 10] =
            ["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo"];
        if !PRESETS.contains(&self.encoder.x264_preset.as_str()) {
            bail!("encoder.x264_preset {:?}: use one of {}", self.encoder.x264_preset, PRESETS.join(", "));
        }
        const TUNES: [&str; 7] = ["zerolatency", "film", "animation", "grain", "stillimage", "psnr", "ssim"];
        if !TUNES.contains(&self.encoder.x264_tune.as_str()) {
            bail!("encoder.x264_tune {:?}: use one of {}", self.encoder.x264_tune, TUNES.join(", "));
        }
        if !(1..=100).contains(&self.encoder.jpeg_quality) {
            bail!("encoder.jpeg_quality must be 1..=100");
        }
        match url::Url::parse(&self.room.url) {
            Ok(u) if matches!(u.scheme(), "ws" | "wss" | "http" | "https") => {}
            _ => bail!("room.url {:?}: use the SFU's ws:// or wss:// URL", self.room.url),
        }
        if let Some(b) = &self.room.template_base {
            match url::Url::parse(b) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => bail!("room.template_base {b:?}: use an http(s) URL"),
            }
        }
        if self.room.api_key.is_some() != self.room.api_secret.is_some() {
            bail!("set both room.api_key and room.api_secret, or neither (then the API's keys are used)");
        }
        if !(1..=600).contains(&self.room.start_timeout_secs) {
            bail!("room.start_timeout_secs must be 1..=600");
        }
        if self.pool.size > self.max_concurrent {
            bail!("pool.size ({}) must not exceed max_concurrent ({})", self.pool.size, self.max_concurrent);
        }
        if self.max_concurrent == 0 {
            bail!("max_concurrent must be at least 1");
        }
        Ok(())
    }

    /// The key pair to verify callers with. Without configured keys a development pair is used,
    /// but only on a loopback bind: an open port with a known secret would be an open door.
    pub fn keys(&self) -> Result<(String, String, bool)> {
        match (&self.api_key, &self.api_secret) {
            (Some(k), Some(s)) => Ok((k.clone(), s.clone(), false)),
            _ if self.bind.ip().is_loopback() => Ok((DEV_API_KEY.into(), DEV_API_SECRET.into(), true)),
            _ => bail!(
                "no API key/secret configured and bind {} is not loopback: set LIVEKIT_API_KEY and LIVEKIT_API_SECRET",
                self.bind
            ),
        }
    }

    /// Where this node's own pages are for a Chromium on the same host (the bind address, with
    /// an unspecified address read as loopback).
    pub fn local_url(&self) -> String {
        let mut addr = self.bind;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{addr}")
    }

    /// The room templates' base URL (without query).
    pub fn template_base(&self) -> String {
        self.room.template_base.clone().unwrap_or_else(|| format!("{}/templates/room/index.html", self.local_url()))
    }

    /// LiveKit's HTTP API base: `room.api_url`, or the SFU URL with http(s).
    pub fn sfu_api_url(&self) -> String {
        self.room.api_url.clone().unwrap_or_else(|| {
            let u = &self.room.url;
            if let Some(rest) = u.strip_prefix("wss://") {
                format!("https://{rest}")
            } else if let Some(rest) = u.strip_prefix("ws://") {
                format!("http://{rest}")
            } else {
                u.clone()
            }
        })
    }

    /// The SFU's key pair: `room.api_key`/`api_secret`, else the API's own.
    pub fn sfu_keys(&self) -> Result<(String, String)> {
        match (&self.room.api_key, &self.room.api_secret) {
            (Some(k), Some(s)) => Ok((k.clone(), s.clone())),
            _ => self.keys().map(|(k, s, _)| (k, s)),
        }
    }

    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.bind))
            .trim_end_matches('/')
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_file_values() {
        let mut cfg: Config = serde_yaml::from_str("bind: 127.0.0.1:1\nmax_concurrent: 2\n").unwrap();
        cfg.apply_env(|k| match k {
            "ROOMCAST_BIND" => Some("127.0.0.1:9999".into()),
            "LIVEKIT_API_KEY" => Some("k".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(cfg.bind.port(), 9999);
        assert_eq!(cfg.max_concurrent, 2);
        assert_eq!(cfg.api_key.as_deref(), Some("k"));
        assert!(cfg.validate().is_err(), "a key without a secret is refused");
    }

    #[test]
    fn config_enums_parse_their_serde_names_and_list_them_when_wrong() {
        assert_eq!("x11".parse::<CaptureBackend>().unwrap(), CaptureBackend::X11);
        assert_eq!("xvfb".parse::<XServerKind>().unwrap(), XServerKind::Xvfb);
        assert_eq!("nvenc".parse::<VideoEncoder>().unwrap(), VideoEncoder::Nvenc);
        assert_eq!("janus".parse::<Sfu>().unwrap(), Sfu::Janus);
        // The same names serde reads from a config file.
        let b: CaptureBackend = serde_yaml::from_str("begin_frame").unwrap();
        assert_eq!(b, "begin_frame".parse().unwrap());
        let err = |e: anyhow::Error| e.to_string();
        assert_eq!(err("gpu".parse::<CaptureBackend>().unwrap_err()), "capture backend \"gpu\": use begin_frame, screencast or x11");
        assert_eq!(err("xwayland".parse::<XServerKind>().unwrap_err()), "X server \"xwayland\": use xorg or xvfb");
        assert_eq!(err("qsv".parse::<VideoEncoder>().unwrap_err()), "video encoder \"qsv\": use auto, x264, vaapi or nvenc");
        assert_eq!(err("mediasoup".parse::<Sfu>().unwrap_err()), "sfu \"mediasoup\": use livekit or janus");
    }

    #[test]
    fn dev_keys_only_on_loopback() {
        let mut cfg = Config::default();
        assert!(cfg.keys().unwrap().2);
        cfg.bind = "0.0.0.0:7890".parse().unwrap();
        assert!(cfg.keys().is_err());
    }

    #[test]
    fn the_example_config_reads_and_validates() {
        let mut cfg: Config = serde_yaml::from_str(include_str!("../roomcast.example.yaml")).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.capture.backend, CaptureBackend::X11);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(serde_yaml::from_str::<Config>("bnid: 1").is_err());
    }
}

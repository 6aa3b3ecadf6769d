//! Service configuration: one YAML file plus environment overrides ([`env`]), with defaults
//! that run a development instance on loopback. Every option is documented in
//! docs/configuration.md.

mod env;
mod sections;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

pub use sections::*;

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
    /// Where `/metrics` is served, apart from the API and the origin (its labels name every
    /// live egress); none turns it off. Env: ROOMCAST_METRICS_BIND (`off` for none).
    pub metrics_bind: Option<SocketAddr>,
    pub http: HttpConfig,
    pub origin: OriginConfig,
    pub output: OutputConfig,
    /// Where egress outputs are written, one folder per egress. Env: ROOMCAST_OUTPUT_DIR.
    pub output_dir: PathBuf,
    /// Folder looked at first for `/templates/…` (file by file); the room template, the test
    /// publisher and the demo page are built into the binary, so this only overrides.
    /// Env: ROOMCAST_TEMPLATES_DIR.
    pub templates_dir: Option<PathBuf>,
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
    pub recovery: RecoveryConfig,
    pub room: RoomConfig,
    pub stream: StreamConfig,
    /// What pages and stream outputs may connect to (issue 17.1; docs/configuration.md).
    /// Env: ROOMCAST_NETWORK_ALLOW (comma-separated, added to `network.allow`).
    pub network: crate::net::Policy,
    /// Serve livekit-server as its egress worker over psrpc on this Redis (docs/psrpc.md).
    pub redis: RedisConfig,
    /// The psrpc topic this worker takes StartEgress requests on; empty (the default) is what
    /// open-source livekit-server sends to.
    pub cluster_id: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            api_key: None,
            api_secret: None,
            bind: SocketAddr::from(([127, 0, 0, 1], 7890)),
            public_url: None,
            metrics_bind: Some(SocketAddr::from(([127, 0, 0, 1], 7891))),
            http: HttpConfig::default(),
            origin: OriginConfig::default(),
            output: OutputConfig::default(),
            output_dir: PathBuf::from("out"),
            templates_dir: None,
            max_concurrent: 4,
            keep_ended: 1000,
            chromium: ChromiumConfig::default(),
            capture: CaptureConfig::default(),
            pool: PoolConfig::default(),
            encoder: EncoderConfig::default(),
            hls: HlsConfig::default(),
            audio: AudioConfig::default(),
            timeouts: Timeouts::default(),
            recovery: RecoveryConfig::default(),
            room: RoomConfig::default(),
            stream: StreamConfig::default(),
            network: crate::net::Policy::default(),
            redis: RedisConfig::default(),
            cluster_id: String::new(),
        }
    }
}

impl Config {
    /// Reads the YAML file (if any), then applies environment overrides and checks the result.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        let mut cfg = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
                serde_yaml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => Config::default(),
        };
        cfg.apply_env(|k| std::env::var(k).ok())?;
        cfg.validate()?;
        Ok(cfg)
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
        crate::net::resolve::check_nameservers(&self.network)?;
        if self.origin.signing_key.as_ref().is_some_and(|k| k.len() < 32) {
            bail!("origin.signing_key must be at least 32 characters");
        }
        if !(2..=600).contains(&self.recovery.hang_secs) {
            bail!("recovery.hang_secs must be 2..=600");
        }
        if self.recovery.window_secs == 0 {
            bail!("recovery.window_secs must be at least 1");
        }
        if self.origin.url_ttl_secs == 0 {
            bail!("origin.url_ttl_secs must be at least 1");
        }
        Ok(())
    }

    /// The key pair to verify callers with. Without configured keys a development pair is used,
    /// but only on a loopback bind: an open port with a known secret would be an open door.
    pub fn keys(&self) -> Result<(String, String, bool)> {
        match (&self.api_key, &self.api_secret) {
            (Some(k), Some(s)) => Ok((k.clone(), s.clone(), false)),
            _ if self.bind.ip().is_loopback() => Ok((DEV_API_KEY.into(), DEV_API_SECRET.into(), true)),
            _ => bail!("no API key/secret configured and bind {} is not loopback: set LIVEKIT_API_KEY and LIVEKIT_API_SECRET", self.bind),
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

    /// The policy a page and the stream outputs are held to: `network`, plus this node's own
    /// origin (the templates), the template base and the SFU, which the operator configured
    /// and the pages must reach whatever range they are in.
    pub fn egress_policy(&self) -> crate::net::Policy {
        let mut p = self.network.clone();
        let mut trust = |url: &str| {
            let Ok(u) = url::Url::parse(url) else { return };
            let (Some(host), Some(port)) = (u.host_str(), u.port_or_known_default()) else { return };
            // An IPv6 host comes bracketed, as the rule's `[v6]:port` form wants it.
            if let Ok(rule) = format!("{host}:{port}").parse::<crate::net::Rule>() {
                if !p.allow.contains(&rule) {
                    p.allow.push(rule);
                }
            }
        };
        trust(&self.local_url());
        trust(&self.template_base());
        trust(&self.room.url);
        p
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
        self.public_url.clone().unwrap_or_else(|| format!("http://{}", self.bind)).trim_end_matches('/').to_string()
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
        let mut cfg: Config = serde_yaml::from_str(include_str!("../../roomcast.example.yaml")).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.capture.backend, CaptureBackend::X11);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(serde_yaml::from_str::<Config>("bnid: 1").is_err());
    }
}

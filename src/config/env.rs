//! Environment overrides of the config file (each documented in docs/configuration.md).

use anyhow::{Context, Result};

use super::Config;

impl Config {
    pub(super) fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<()> {
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
        if let Some(v) = get("ROOMCAST_METRICS_BIND") {
            self.metrics_bind = match v.as_str() {
                "" | "off" => None,
                v => Some(v.parse().with_context(|| format!("ROOMCAST_METRICS_BIND={v}"))?),
            };
        }
        if let Some(v) = get("ROOMCAST_OUTPUT_DIR") {
            self.output_dir = v.into();
        }
        if let Some(v) = get("ROOMCAST_TEMPLATES_DIR") {
            self.templates_dir = Some(v.into());
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
        if let Some(v) = get("ROOMCAST_ORIGIN_SIGNING_KEY") {
            self.origin.signing_key = Some(v).filter(|k| !k.is_empty());
        }
        if let Some(v) = get("ROOMCAST_NETWORK_ALLOW") {
            for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let rule = item.parse().map_err(|e| anyhow::anyhow!("ROOMCAST_NETWORK_ALLOW: {e}"))?;
                self.network.allow.push(rule);
            }
        }
        if let Some(v) = get("ROOMCAST_ROOM_START_TIMEOUT") {
            self.room.start_timeout_secs = v.parse().with_context(|| format!("ROOMCAST_ROOM_START_TIMEOUT={v}"))?;
        }
        Ok(())
    }
}

//! A warm worker: launched before it has a job, it starts the sound server and Chromium (and
//! for the x11 backend its X server) that a job with the service's defaults needs, and waits
//! idle on about:blank; a job that fits takes them over.

use std::time::Duration;

use anyhow::{anyhow, Result};
use tokio::sync::mpsc;
use tracing::info;

use super::{rendering, rendering_for, start_servers, WorkerEvent};
use crate::browser::{Chromium, Rendering};
use crate::capture::{pulse::SoundServer, x11::XServer};
use crate::config::CaptureBackend;
use crate::spec::{BrowserSpec, JobSpec, DEFAULT_FRAMERATE};

/// What a warm worker launches before it has a job: the sound server and Chromium (and for the
/// x11 backend its X server) an egress with the service's defaults needs, idle on about:blank
/// (see [`Prepared`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WarmSpec {
    pub browser: BrowserSpec,
    pub capture: CaptureBackend,
    pub width: u32,
    pub height: u32,
    /// The x11 backend's screen refreshes at this rate, so only jobs of this rate fit.
    #[serde(default = "default_framerate")]
    pub framerate: u32,
    /// (pulseaudio binary, sample rate, channels) of the sound server to start.
    pub audio: (String, u32, u32),
    pub start_timeout_secs: u64,
}

fn default_framerate() -> u32 {
    DEFAULT_FRAMERATE
}

/// A warm worker's launched processes. The Chromium already plays into the sound server (and
/// shows on the X server).
pub struct Prepared {
    warm: WarmSpec,
    pub(super) sound: SoundServer,
    pub(super) chromium: Chromium,
    pub(super) screen: Option<XServer>,
}

impl Prepared {
    /// Launches what `warm` names; `events` gets the browser's PID at once.
    pub async fn launch(warm: WarmSpec, events: &mpsc::UnboundedSender<WorkerEvent>) -> Result<Self> {
        let timeout = Duration::from_secs(warm.start_timeout_secs);
        let (pulseaudio, rate, channels) = &warm.audio;
        let rendering = rendering_for(Some(warm.capture));
        let x11 = (rendering == Rendering::X11).then_some((&warm.browser, warm.width, warm.height, warm.framerate));
        let (sound, screen) = start_servers(Some((pulseaudio.as_str(), *rate, *channels)), x11, timeout).await?;
        let sound = sound.ok_or_else(|| anyhow!("a warm worker's sound server was not started"))?;
        let display = screen.as_ref().map(|x| x.display());
        let chromium =
            Chromium::launch(&warm.browser, rendering, warm.width, warm.height, Some(&sound.address()), display, timeout).await?;
        let _ = events.send(WorkerEvent::BrowserStarted { pid: chromium.pid() });
        info!(pid = chromium.pid(), "warm: chromium and sound server ready");
        Ok(Self { warm, sound, chromium, screen })
    }

    /// Resolves if the prepared Chromium dies while waiting for a job.
    pub async fn lost(&mut self) -> String {
        self.chromium.exited().await
    }

    pub(super) fn fits(&self, spec: &JobSpec) -> bool {
        self.warm.fits(spec)
    }
}

impl WarmSpec {
    /// Whether `spec` can run on what this launches: the same browser build and flags, and
    /// (if it has sound) the same sound format. A worker that does not fit a job ends its
    /// processes and starts cold.
    pub fn fits(&self, spec: &JobSpec) -> bool {
        let rendering_fits = rendering(spec) == rendering_for(Some(self.capture));
        let audio_fits = spec.audio.as_ref().is_none_or(|a| (a.pulseaudio_path.clone(), a.sample_rate, a.channels) == self.audio);
        // A kiosk window is its screen's size, and the screen refreshes at the frame rate: on
        // x11 only a picture of that size and rate fits (CDP viewports are set per page).
        let screen_fits = rendering(spec) != Rendering::X11
            || spec.video.as_ref().is_some_and(|v| (v.width, v.height, v.framerate) == (self.width, self.height, self.framerate));
        rendering_fits && audio_fits && screen_fits && spec.browser == self.browser
    }
}

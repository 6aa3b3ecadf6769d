//! One egress at work: Chromium + capture + pipeline, from page load to the last chunk.
//! [`run`] starts what the egress needs (the sound and X servers, Chromium beside the
//! pipeline) unless a [`warm`] worker brought it, then hands over to the capture loop. It is
//! used both inside a worker child process (`roomcast worker`, driven over [`ipc`]) and in the
//! foreground by `roomcast run`.

mod capture_loop;
pub mod ipc;
mod picture;
pub mod process;
mod recovery;
mod session;
pub mod warm;

use std::time::Duration;

use anyhow::{anyhow, Result};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::browser::Rendering;
use crate::capture::{pulse::SoundServer, x11::XServer};
use crate::config::CaptureBackend;
use crate::media::{FrameStats, MuxOutput};
use crate::pipeline::{AudioInput, PictureInput, Pipeline, Ticks};
use crate::spec::{BrowserSpec, JobSpec, DEFAULT_FRAMERATE, DEFAULT_HEIGHT, DEFAULT_WIDTH};
pub use warm::{Prepared, WarmSpec};

/// What a running egress reports, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerEvent {
    /// Chromium's PID, which is also its process group: the supervisor's last-resort kill target.
    BrowserStarted {
        pid: i32,
    },
    /// The first frame is in the pipeline.
    Active,
    /// Chromium crashed or hung and was relaunched on the same page (a new
    /// [`WorkerEvent::BrowserStarted`] follows); the outputs went on.
    BrowserRestarted {
        reason: String,
    },
    Media(MuxOutput),
    /// The picture's counts so far (every [`STATS_EVERY`]).
    Stats(FrameStats),
}

/// What the supervisor tells a running egress (one JSON line each on the worker's stdin).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum WorkerCommand {
    /// A room composite's new layout, passed to its page.
    Layout { layout: String },
}

/// The page size of an audio-only egress: nothing is captured, but layouts expect a viewport.
const AUDIO_ONLY_VIEWPORT: (u32, u32) = (DEFAULT_WIDTH, DEFAULT_HEIGHT);

/// Ticks behind assumed until the first measurement: the depth most egresses settle at.
const ASSUMED_TICKS_BEHIND: u32 = 1;

/// Starts the page's sound server (`sound`: pulseaudio's path, rate, channels) and the x11
/// backend's X server (`screen`: its size and refresh rate) side by side; either failing ends
/// the other.
async fn start_servers(
    sound: Option<(&str, u32, u32)>,
    screen: Option<(&BrowserSpec, u32, u32, u32)>,
    timeout: Duration,
) -> Result<(Option<SoundServer>, Option<XServer>)> {
    let sound = async {
        match sound {
            Some((pulseaudio, rate, channels)) => SoundServer::start(pulseaudio, rate, channels, timeout).await.map(Some),
            None => Ok(None),
        }
    };
    let screen = async {
        match screen {
            Some((browser, width, height, fps)) => XServer::start(browser, width, height, fps, timeout).await.map(Some),
            None => Ok(None),
        }
    };
    let (sound, screen) = tokio::join!(sound, screen);
    Ok((sound?, screen?))
}

/// Runs the egress until `stop` (or the page's END_RECORDING) and returns once every chunk has
/// been sent; an error says why the egress failed. Chromium is always ended before returning.
/// With `prepared` (a warm worker) that fits the job, its sound server and Chromium are used
/// instead of launching new ones.
pub async fn run(
    spec: &JobSpec,
    events: mpsc::UnboundedSender<WorkerEvent>,
    commands: mpsc::UnboundedReceiver<WorkerCommand>,
    stop: CancellationToken,
    prepared: Option<Prepared>,
) -> Result<()> {
    let (width, height) = spec.video.as_ref().map(|v| (v.width, v.height)).unwrap_or(AUDIO_ONLY_VIEWPORT);
    let start_timeout = Duration::from_secs(spec.start_timeout_secs);
    let (warm_sound, mut warm_chromium, warm_screen) = match prepared {
        Some(p) if p.fits(spec) => {
            info!("warm start: using the prepared Chromium");
            (Some(p.sound), Some(p.chromium), p.screen)
        }
        Some(p) => {
            info!("the prepared Chromium does not fit this job: starting cold");
            p.chromium.close().await;
            (None, None, None)
        }
        None => (None, None, None),
    };
    // A cold start is a chain of process starts; each step runs beside the ones it does not
    // need. The sound server and the X server first (Chromium's audio output opens on the
    // one, its window on the other, and the pipeline records both), those the warm worker
    // did not bring...
    let framerate = spec.video.as_ref().map_or(DEFAULT_FRAMERATE, |v| v.framerate);
    let need_sound = spec.audio.as_ref().filter(|_| warm_sound.is_none()).map(|a| (a.pulseaudio_path.as_str(), a.sample_rate, a.channels));
    let need_screen = (rendering(spec) == Rendering::X11 && warm_screen.is_none()).then_some((&spec.browser, width, height, framerate));
    let (sound, screen) = tokio::select! {
        s = start_servers(need_sound, need_screen, start_timeout) => s?,
        _ = stop.cancelled() => return Ok(()),
    };
    let sound = sound.or(warm_sound.filter(|_| spec.audio.is_some()));
    let screen = screen.or(warm_screen.filter(|_| rendering(spec) == Rendering::X11));
    // ...then Chromium's launch beside the pipeline's. The pipeline is playing before the page
    // loads: the sound server's source takes up to a second or so to deliver its first
    // samples, and the picture must not wait for it. Audio before the first frame is dropped,
    // so both start together. Chromium opens no sound stream before a page plays, so the
    // sink's restart below cannot cut one.
    let hls = spec.hls.as_ref().ok_or_else(|| anyhow!("no output"))?;
    let (mux_tx, mux_rx) = mpsc::unbounded_channel();
    let launcher = recovery::Launcher {
        browser: spec.browser.clone(),
        rendering: rendering(spec),
        width,
        height,
        sound_server: sound.as_ref().map(|s| s.address()),
        display: screen.as_ref().map(|x| x.display().to_string()),
        timeout: start_timeout,
    };
    let launch = async {
        match warm_chromium.take() {
            Some(c) => Ok(c),
            None => {
                let c = launcher.launch().await?;
                let _ = events.send(WorkerEvent::BrowserStarted { pid: c.pid() });
                Ok::<_, anyhow::Error>(c)
            }
        }
    };
    let prepare = async {
        let audio = spec.audio.as_ref().zip(sound.as_ref()).map(|(a, s)| (a, s.address(), s.monitor()));
        let audio_input = audio.as_ref().map(|(a, addr, mon)| AudioInput { spec: a, server: addr, device: mon });
        let picture = match &screen {
            Some(x) => PictureInput::Screen { display: x.display(), ticks: x.chromium_tick_us().map(|period_us| Ticks { period_us }) },
            None => PictureInput::Frames,
        };
        let mut pipe = Pipeline::build(spec.video.as_ref(), picture, audio_input, hls, mux_tx)?;
        if let Some(t) = pipe.ticks() {
            pipe.set_picture_delay(t.period() * ASSUMED_TICKS_BEHIND);
        }
        pipe.start().await?;
        if let Some(sound) = &sound {
            // The recorder is connected once the pipeline plays: let its latency take effect.
            tokio::time::sleep(Duration::from_millis(50)).await;
            sound.restart_sink().await?;
        }
        Ok::<_, anyhow::Error>(pipe)
    };
    // The launch is polled first, so Chromium's process is spawned before the pipeline's
    // (synchronous) build runs. Either failing drops the other, which ends its processes.
    let (mut chromium, pipe) = tokio::select! {
        (c, p) = async { tokio::join!(launch, prepare) } => (c?, p?),
        _ = stop.cancelled() => return Ok(()),
    };
    let result = capture_loop::capture(spec, &mut chromium, &launcher, pipe, mux_rx, &events, commands, &stop).await;
    chromium.close().await;
    drop(sound);
    drop(screen);
    result
}

/// How Chromium must run for a job's picture.
fn rendering(spec: &JobSpec) -> Rendering {
    rendering_for(spec.video.as_ref().map(|v| v.capture))
}

/// How Chromium must run for a capture backend; with no picture (audio only) it renders as
/// Chromium's new headless mode does.
fn rendering_for(capture: Option<CaptureBackend>) -> Rendering {
    match capture {
        Some(CaptureBackend::BeginFrame) => Rendering::BeginFrameControl,
        Some(CaptureBackend::X11) => Rendering::X11,
        Some(CaptureBackend::Screencast) | None => Rendering::Headless,
    }
}

//! One egress at work: Chromium + capture + pipeline, from page load to the last chunk.
//! [`run`] is used both inside a worker child process (`roomcast worker`, driven over
//! [`ipc`]) and in the foreground by `roomcast run`.

pub mod ipc;
pub mod process;

use std::time::Duration;

use anyhow::{anyhow, Result};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::browser::{self, Chromium, Rendering};
use crate::capture::{beginframe::BeginFrames, epoch_now, presentation, pulse::SoundServer, screencast, x11::XServer, Frame, Pacer};
use crate::config::CaptureBackend;
use crate::job::spec::{BrowserSpec, JobSpec};
use crate::media::{FrameStats, MuxOutput};
use crate::pipeline::{AudioInput, PictureInput, PipelineEvent, Pipeline, Ticks};

/// What a running egress reports, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerEvent {
    /// Chromium's PID, which is also its process group: the supervisor's last-resort kill target.
    BrowserStarted { pid: i32 },
    /// The first frame is in the pipeline.
    Active,
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

/// How often a running egress reports its [`FrameStats`].
const STATS_EVERY: Duration = Duration::from_secs(1);

/// Encoder output this far behind its input means it cannot keep up with the frame rate.
const ENCODER_LAG_WARN_MS: u64 = 1000;

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
    30
}

/// A warm worker's launched processes. The Chromium already plays into the sound server (and
/// shows on the X server).
pub struct Prepared {
    warm: WarmSpec,
    sound: SoundServer,
    chromium: Chromium,
    screen: Option<XServer>,
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
        let chromium = Chromium::launch(&warm.browser, rendering, warm.width, warm.height, Some(&sound.address()), display, timeout).await?;
        let _ = events.send(WorkerEvent::BrowserStarted { pid: chromium.pid() });
        info!(pid = chromium.pid(), "warm: chromium and sound server ready");
        Ok(Self { warm, sound, chromium, screen })
    }

    /// Resolves if the prepared Chromium dies while waiting for a job.
    pub async fn lost(&mut self) -> String {
        self.chromium.exited().await
    }

    fn fits(&self, spec: &JobSpec) -> bool {
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

/// How long a stopping pipeline may take to push out its last chunks.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The page size of an audio-only egress: nothing is captured, but layouts expect a viewport.
const AUDIO_ONLY_VIEWPORT: (u32, u32) = (1280, 720);

/// The page's picture as it comes: captured frames, and the pacer that repeats the last one
/// while the page paints nothing new.
struct Picture {
    frames: mpsc::Receiver<Frame>,
    pacer: Pacer,
    tick: tokio::time::Interval,
    /// The source sends nothing while the page is still (the screencast): the pacer repeats.
    /// A begin-frame source sends a frame for every slot itself.
    repeat_when_idle: bool,
    /// The first picture (a screenshot), held until the screencast's first frame shows the
    /// compositor's cadence (see [`next_frame`]).
    first: Option<Frame>,
    first_until: tokio::time::Instant,
}

/// How long the first picture waits for a screencast frame to take its cadence from.
const FIRST_FRAME_WAIT: Duration = Duration::from_millis(200);

enum Next {
    /// Frames to push: new ones from the page, or the last one again.
    Frames { frames: Vec<Frame>, fresh: bool },
    /// The pacer's tick found a fresh frame recent enough: nothing to push.
    Nothing,
    /// The screencast ended: the page or browser went away.
    Ended,
}

/// What the picture brings next; never anything without a picture.
///
/// The first frame fixes the output's frame grid (videorate counts from it), and each output
/// frame shows the capture nearest its slot: a grid out of phase with the compositor's
/// cadence shows every picture up to half a frame early or late, by an amount set at start
/// (measured: one egress in four had its A/V offset a whole frame, 32 ms, off the others).
/// So the screenshot that opens the stream is stamped one frame before the first screencast
/// frame, on its cadence; a page that paints nothing within [`FIRST_FRAME_WAIT`] keeps the
/// screenshot's own stamp.
async fn next_frame(picture: &mut Option<Picture>) -> Next {
    let Some(p) = picture else { return std::future::pending().await };
    if let Some(mut first) = p.first.take() {
        return tokio::select! {
            f = p.frames.recv() => match f {
                Some(f) => {
                    first.captured_at = first.captured_at.max(f.captured_at - p.pacer.interval());
                    let first = p.pacer.fresh(first, epoch_now());
                    Next::Frames { frames: vec![first, p.pacer.fresh(f, epoch_now())], fresh: true }
                }
                None => Next::Ended,
            },
            _ = tokio::time::sleep_until(p.first_until) => {
                Next::Frames { frames: vec![p.pacer.fresh(first, epoch_now())], fresh: true }
            }
        };
    }
    tokio::select! {
        f = p.frames.recv() => match f {
            Some(f) => Next::Frames { frames: vec![p.pacer.fresh(f, epoch_now())], fresh: true },
            None => Next::Ended,
        },
        _ = p.tick.tick(), if p.repeat_when_idle => match p.pacer.tick(epoch_now()) {
            Some(frame) => Next::Frames { frames: vec![frame], fresh: false },
            None => Next::Nothing,
        },
    }
}

/// The pipeline's counts with the capture's.
fn frame_stats(pipe: &Pipeline, picture: Option<&Picture>, driver: Option<&BeginFrames>) -> FrameStats {
    let mut s = pipe.frame_stats();
    if let Some(p) = picture {
        (s.captured, s.repeated) = (p.pacer.captured, p.pacer.repeated);
    }
    s.late = driver.map(|d| d.counts.late.load(std::sync::atomic::Ordering::Relaxed)).unwrap_or(0);
    s
}

/// Says in the log when the picture goes wrong, once per episode: an encoder that cannot
/// keep up, or a capture that misses frames.
#[derive(Default)]
struct Watch {
    last: FrameStats,
    encoder_behind: bool,
    missing: bool,
}

impl Watch {
    fn check(&mut self, s: &FrameStats) {
        let behind = s.encoder_lag_ms > ENCODER_LAG_WARN_MS;
        match (behind, self.encoder_behind) {
            (true, false) => warn!(lag_ms = s.encoder_lag_ms, "encoder falling behind: its output is late against the captured frames"),
            (false, true) => info!(lag_ms = s.encoder_lag_ms, "encoder caught up"),
            _ => {}
        }
        self.encoder_behind = behind;
        let late = s.late.saturating_sub(self.last.late);
        let duplicated = s.duplicated.saturating_sub(self.last.duplicated);
        let dropped = s.dropped.saturating_sub(self.last.dropped);
        // More than a tenth of the last second's frames were not the page's own.
        let missing = late + duplicated + dropped > s.encoded.saturating_sub(self.last.encoded) / 10 + 1;
        match (missing, self.missing) {
            (true, false) => warn!(late, duplicated, dropped, "capture missing frames: slots filled by repeating the last one"),
            (false, true) => info!("capture keeping up again"),
            _ => {}
        }
        self.missing = missing;
        self.last = *s;
    }
}

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

/// How often the worker reads the probe's median: often while the probe measures five times
/// a second (the sound should follow before the page's first sound is heard), then once a
/// second.
const DEPTH_READ_FAST: Duration = Duration::from_millis(250);
const DEPTH_READ_SLOW: Duration = Duration::from_secs(1);

/// Ticks behind assumed until the first measurement: the depth most egresses settle at.
const ASSUMED_TICKS_BEHIND: u32 = 1;

/// The picture's delay behind the page's animation frames, in Chromium's ticks, as last
/// measured and given to the pipeline.
struct Depth {
    tick: Duration,
    behind: u32,
}

impl Depth {
    /// Reads the probe; a new depth moves the sound with the picture.
    async fn check(&mut self, page: &chromiumoxide::Page, pipe: &Pipeline) {
        let delay = match presentation::median_delay_ms(page).await {
            Ok(Some(d)) => d,
            Ok(None) => return,
            Err(e) => return debug!("presentation probe: {e:#}"),
        };
        let behind = presentation::ticks_behind(delay, self.tick.as_secs_f64() * 1e3);
        if behind != self.behind {
            info!(delay_ms = delay, ticks = behind, was = self.behind, "the picture shows the page {behind} tick(s) after its animation frame: the sound follows");
            self.behind = behind;
            pipe.set_picture_delay(self.tick * behind);
        }
    }
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
    let framerate = spec.video.as_ref().map_or(30, |v| v.framerate);
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
    let address = sound.as_ref().map(|s| s.address());
    let launch = async {
        match warm_chromium.take() {
            Some(c) => Ok(c),
            None => {
                let c = Chromium::launch(&spec.browser, rendering(spec), width, height, address.as_deref(), screen.as_ref().map(|x| x.display()), start_timeout).await?;
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
    let result = capture(spec, &mut chromium, pipe, mux_rx, &events, commands, &stop).await;
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

async fn capture(
    spec: &JobSpec,
    chromium: &mut Chromium,
    mut pipe: Pipeline,
    mut mux_rx: mpsc::UnboundedReceiver<MuxOutput>,
    events: &mpsc::UnboundedSender<WorkerEvent>,
    mut commands: mpsc::UnboundedReceiver<WorkerCommand>,
    stop: &CancellationToken,
) -> Result<()> {
    let (width, height) = spec.video.as_ref().map(|v| (v.width, v.height)).unwrap_or(AUDIO_ONLY_VIEWPORT);
    let start_timeout = Duration::from_secs(spec.start_timeout_secs);
    let page = chromium.new_page(width, height).await?;
    // Under begin-frame control nothing renders unless told: frames are driven from here on,
    // so the page loads and animates as it would anywhere else.
    let mut driver = match (rendering(spec), &spec.video) {
        (Rendering::BeginFrameControl, Some(v)) => Some(BeginFrames::start(&page, v.framerate, v.jpeg_quality)),
        _ => None,
    };
    // Only subscribed when the page's signals matter: an unread console would buffer forever.
    let mut console = match spec.await_start_signal {
        true => Some(browser::console(&page).await?),
        false => None,
    };
    let mut pipe_events = pipe.take_events();
    let wall_offset = pipe.wall_offset_ns();

    let start = async {
        // One deadline from navigation to the start signal, so a stuck template fails in
        // `start_timeout` whatever stage it is stuck in.
        let deadline = tokio::time::Instant::now() + start_timeout;
        browser::load(&page, &spec.url, start_timeout).await?;
        if let Some(console) = console.as_mut() {
            browser::await_start(&page, console, deadline, start_timeout).await?;
        }
        Ok::<_, anyhow::Error>(())
    };
    tokio::select! {
        r = start => r?,
        _ = stop.cancelled() => return Ok(()),
        why = chromium.exited() => return Err(anyhow!(why)),
        ev = pipe_events.recv() => return Err(match ev {
            Some(PipelineEvent::Error(e)) => anyhow!("pipeline error: {e}"),
            _ => anyhow!("pipeline ended before the page loaded"),
        }),
    }
    info!(url = %spec.url, "page loaded");

    let media_events = events.clone();
    let forward = tokio::spawn(async move {
        while let Some(mut item) = mux_rx.recv().await {
            if let MuxOutput::Chunk(meta, _) = &mut item {
                meta.wallclock_ms = ((wall_offset + meta.pts_ns as i128) / 1_000_000).max(0) as u64;
            }
            if media_events.send(WorkerEvent::Media(item)).is_err() {
                break;
            }
        }
    });

    let on_screen = rendering(spec) == Rendering::X11;
    let probe = on_screen && spec.video.is_some();
    if probe {
        // The first frame recorded shows the page, not the window before it was drawn.
        let shown = async {
            presentation::install(&page).await?;
            presentation::await_next_presented(&page).await
        };
        let waited = std::time::Instant::now();
        match shown.await {
            Ok(true) => info!(waited_ms = waited.elapsed().as_millis() as u64, "the loaded page is on screen"),
            Ok(false) => warn!("no presented frame within 1 s of the page's start: recording anyway"),
            Err(e) => warn!("waiting for a presented frame: {e:#}"),
        }
    }
    if on_screen {
        pipe.open_screen()?;
    }
    // The sound follows the picture's delay where it moves in whole ticks (see
    // capture::presentation): only on a screen whose ticks are known, and only with sound.
    let mut depth = match (probe, pipe.ticks(), &spec.audio) {
        (true, Some(t), Some(_)) => match presentation::follow(&page).await {
            Ok(()) => Some(Depth { tick: t.period(), behind: ASSUMED_TICKS_BEHIND }),
            Err(e) => {
                warn!("no presentation probe, the sound keeps its default delay: {e:#}");
                None
            }
        },
        _ => None,
    };
    // Often at first: the sound should follow before the page's first sound is heard.
    let mut depth_tick = tokio::time::interval(DEPTH_READ_FAST);
    let fast_until = tokio::time::Instant::now() + presentation::FAST_PHASE + DEPTH_READ_SLOW;
    let mut picture = match &spec.video {
        Some(_) if on_screen => None,
        Some(v) => {
            let (first, frames) = match driver.as_mut() {
                Some(d) => (None, d.capture()),
                None => {
                    // Headless Chrome paints at 60 Hz; skip compositor frames we would drop anyway.
                    let every_nth = (60 / v.framerate.max(1)).max(1);
                    let (first, frames) = screencast::start(&page, v.width, v.height, v.jpeg_quality, every_nth).await?;
                    (Some(first), frames)
                }
            };
            let pacer = Pacer::new(v.framerate);
            let mut tick = tokio::time::interval(pacer.tick_every());
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let first_until = tokio::time::Instant::now() + FIRST_FRAME_WAIT;
            Some(Picture { frames, pacer, tick, repeat_when_idle: driver.is_none(), first, first_until })
        }
        None => None,
    };
    // Audio only and the screen: recording from the moment the page is up.
    let mut active = picture.is_none();
    if active {
        let _ = events.send(WorkerEvent::Active);
    }
    let mut stats_tick = tokio::time::interval(STATS_EVERY);
    let mut watch = Watch::default();
    let outcome: Result<()> = loop {
        tokio::select! {
            now = depth_tick.tick(), if depth.is_some() => {
                if let Some(d) = depth.as_mut() {
                    d.check(&page, &pipe).await;
                }
                // Past the probe's fast phase a new measurement comes only every 3 s.
                if now >= fast_until && depth_tick.period() < DEPTH_READ_SLOW {
                    depth_tick = tokio::time::interval_at(now + DEPTH_READ_SLOW, DEPTH_READ_SLOW);
                }
            }
            _ = stats_tick.tick(), if spec.video.is_some() => {
                let stats = frame_stats(&pipe, picture.as_ref(), driver.as_ref());
                watch.check(&stats);
                let _ = events.send(WorkerEvent::Stats(stats));
            }
            next = next_frame(&mut picture) => match next {
                Next::Frames { frames, fresh } => {
                    if let Err(e) = frames.into_iter().try_for_each(|f| pipe.push_jpeg(f.jpeg, f.captured_at)) { break Err(e) }
                    if fresh && !active {
                        active = true;
                        let _ = events.send(WorkerEvent::Active);
                    }
                }
                Next::Nothing => {}
                Next::Ended => {
                    // The page or browser went away; prefer the browser's own exit reason.
                    let why = tokio::time::timeout(Duration::from_secs(2), chromium.exited()).await
                        .unwrap_or_else(|_| "screencast ended: the page was closed".into());
                    break Err(anyhow!(why));
                }
            },
            ev = pipe_events.recv() => break Err(match ev {
                Some(PipelineEvent::Error(e)) => anyhow!("pipeline error: {e}"),
                _ => anyhow!("pipeline ended unexpectedly"),
            }),
            why = chromium.exited() => break Err(anyhow!(why)),
            _ = async { match console.as_mut() {
                Some(c) => browser::wait_console(c, "END_RECORDING").await,
                None => std::future::pending().await,
            } } => {
                info!("page signalled END_RECORDING");
                break Ok(());
            }
            Some(cmd) = commands.recv() => match cmd {
                // Bounded like every call into the page: a dead browser answers nothing, and
                // this loop must go on to notice its exit.
                WorkerCommand::Layout { layout } => match tokio::time::timeout(presentation::ANSWER_WITHIN, page.evaluate(crate::room::layout_script(&layout))).await {
                    Ok(Ok(_)) => info!(%layout, "layout sent to the page"),
                    Ok(Err(e)) => warn!(%layout, "telling the page of its layout: {e}"),
                    Err(_) => warn!(%layout, limit = ?presentation::ANSWER_WITHIN, "telling the page of its layout: no answer in time"),
                },
            },
            _ = stop.cancelled() => break Ok(()),
        }
    };
    if spec.video.is_some() {
        let s = frame_stats(&pipe, picture.as_ref(), driver.as_ref());
        let _ = events.send(WorkerEvent::Stats(s));
        info!(
            captured = s.captured,
            repeated = s.repeated,
            late = s.late,
            duplicated = s.duplicated,
            dropped = s.dropped,
            encoded = s.encoded,
            "capture ended"
        );
        if picture.is_some() && driver.is_none() {
            let _ = tokio::time::timeout(Duration::from_secs(1), screencast::stop(&page)).await;
        }
    }
    drop(driver);
    // Drain even after a failure: what was captured is flushed, not lost.
    pipe.put_events(pipe_events);
    let drained = pipe.finish(DRAIN_TIMEOUT).await;
    let _ = forward.await;
    if let Err(e) = &drained {
        warn!("drain: {e:#}");
    }
    outcome.and(drained)
}

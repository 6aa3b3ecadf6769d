//! The capture loop of one egress, from page load to the last chunk: loads the page (and for
//! room composites waits for its START_RECORDING), opens the picture, keeps the sound on the
//! picture's measured depth, forwards media and stats, takes layout commands, and drains the
//! pipeline however it ends.

use std::time::Duration;

use anyhow::{anyhow, Result};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::picture::{frame_stats, next_frame, Next, Picture, Watch, FIRST_FRAME_WAIT};
use super::{rendering, WorkerCommand, WorkerEvent, ASSUMED_TICKS_BEHIND, AUDIO_ONLY_VIEWPORT};
use crate::browser::{self, Chromium, Rendering};
use crate::capture::{beginframe::BeginFrames, presentation, screencast, Pacer};
use crate::media::MuxOutput;
use crate::pipeline::{Pipeline, PipelineEvent};
use crate::spec::JobSpec;

/// How often a running egress reports its [`crate::media::FrameStats`].
const STATS_EVERY: Duration = Duration::from_secs(1);

/// How long a stopping pipeline may take to push out its last chunks.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the worker reads the probe's median: often while the probe measures five times
/// a second (the sound should follow before the page's first sound is heard), then once a
/// second.
const DEPTH_READ_FAST: Duration = Duration::from_millis(250);
const DEPTH_READ_SLOW: Duration = Duration::from_secs(1);

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
            info!(
                delay_ms = delay,
                ticks = behind,
                was = self.behind,
                "the picture shows the page {behind} tick(s) after its animation frame: the sound follows"
            );
            self.behind = behind;
            pipe.set_picture_delay(self.tick * behind);
        }
    }
}

pub(super) async fn capture(
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
    let started = tokio::select! {
        r = start => r,
        _ = stop.cancelled() => return Ok(()),
        why = chromium.exited() => return Err(anyhow!(why)),
        ev = pipe_events.recv() => return Err(match ev {
            Some(PipelineEvent::Error(e)) => anyhow!("pipeline error: {e}"),
            _ => anyhow!("pipeline ended before the page loaded"),
        }),
    };
    if let Err(e) = started {
        // A page that could not load fails with what the proxy saw (the refused address, the
        // refused connection), not only with Chromium's ERR_TUNNEL_CONNECTION_FAILED or the
        // proxy's HTTP 403/502.
        return Err(match chromium.request_failures(&spec.url).first() {
            Some(why) => anyhow!("{e:#}: {why}"),
            None => e,
        });
    }
    info!(url = %crate::browser::mask_jwts(&spec.url), "page loaded");

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
                WorkerCommand::Layout { layout } => match tokio::time::timeout(presentation::ANSWER_WITHIN, page.evaluate(browser::layout_script(&layout))).await {
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

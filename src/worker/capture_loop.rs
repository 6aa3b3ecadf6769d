//! The capture loop of one egress, from page load to the last chunk: loads the page (and for
//! room composites waits for its START_RECORDING), opens the picture, keeps the sound on the
//! picture's measured depth, forwards media and stats, takes layout commands, relaunches a
//! crashed or hung Chromium while the pipeline goes on, and drains the pipeline however it ends.

use std::time::Duration;

use anyhow::{anyhow, Result};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::picture::{frame_stats, next_frame, Next, Picture, Watch, FIRST_FRAME_WAIT};
use super::recovery::{Launcher, Restarts};
use super::session::{crashed, explain, relaunch, Session};
use super::{rendering, WorkerCommand, WorkerEvent, ASSUMED_TICKS_BEHIND};
use crate::browser::{self, Chromium, Rendering};
use crate::capture::{presentation, screencast, Pacer};
use crate::clock::epoch_now;
use crate::media::MuxOutput;
use crate::pipeline::{Pipeline, PipelineEvent};
use crate::spec::JobSpec;

/// How often a running egress reports its [`crate::media::FrameStats`].
const STATS_EVERY: Duration = Duration::from_secs(1);

/// How often the worker looks whether its page hangs.
const HANG_CHECK_EVERY: Duration = Duration::from_secs(1);

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

/// Runs `work` (a relaunch) while the CDP picture goes on with its last frame, so every
/// output's timeline runs on unbroken; None if the egress is stopped meanwhile.
async fn holding<T>(
    work: impl std::future::Future<Output = Result<T>>,
    picture: &mut Option<Picture>,
    pipe: &mut Pipeline,
    stop: &CancellationToken,
) -> Option<Result<T>> {
    tokio::pin!(work);
    let every = picture.as_ref().map_or(Duration::from_secs(1), |p| p.pacer.tick_every());
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            r = &mut work => return Some(r),
            _ = tick.tick() => {
                if let Some(f) = picture.as_mut().and_then(|p| p.pacer.tick(epoch_now())) {
                    if let Err(e) = pipe.push_jpeg(f.jpeg, f.captured_at) {
                        return Some(Err(e));
                    }
                }
            }
            _ = stop.cancelled() => return None,
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn capture(
    spec: &JobSpec,
    chromium: &mut Chromium,
    launcher: &Launcher,
    mut pipe: Pipeline,
    mut mux_rx: mpsc::UnboundedReceiver<MuxOutput>,
    events: &mpsc::UnboundedSender<WorkerEvent>,
    mut commands: mpsc::UnboundedReceiver<WorkerCommand>,
    stop: &CancellationToken,
) -> Result<()> {
    let mut session = Session::open(spec, chromium).await?;
    let mut pipe_events = pipe.take_events();
    let wall_offset = pipe.wall_offset_ns();

    let started = tokio::select! {
        r = session.start(spec) => r,
        _ = stop.cancelled() => return Ok(()),
        why = chromium.exited() => return Err(anyhow!(why)),
        ev = pipe_events.recv() => return Err(match ev {
            Some(PipelineEvent::Error(e)) => anyhow!("pipeline error: {e}"),
            _ => anyhow!("pipeline ended before the page loaded"),
        }),
    };
    started.map_err(|e| explain(chromium, &spec.url, e))?;
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
            presentation::install(&session.page).await?;
            presentation::await_next_presented(&session.page).await
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
        (true, Some(t), Some(_)) => match presentation::follow(&session.page).await {
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
    let mut picture = match (session.picture(spec).await?, &spec.video) {
        (Some((first, frames)), Some(v)) => {
            let pacer = Pacer::new(v.framerate);
            let mut tick = tokio::time::interval(pacer.tick_every());
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let first_until = tokio::time::Instant::now() + FIRST_FRAME_WAIT;
            Some(Picture { frames, pacer, tick, repeat_when_idle: session.driver.is_none(), first, first_until })
        }
        _ => None,
    };
    // Audio only and the screen: recording from the moment the page is up.
    let mut active = picture.is_none();
    if active {
        let _ = events.send(WorkerEvent::Active);
    }
    let mut stats_tick = tokio::time::interval(STATS_EVERY);
    let mut watch = Watch::default();
    let hang = Duration::from_secs(spec.browser.recovery.hang_secs);
    let mut hang_tick = tokio::time::interval(HANG_CHECK_EVERY);
    let mut restarts = Restarts::new(spec.browser.recovery);
    // Since when the page has been up (a relaunch starts it again), and its last new frame.
    let mut up_since = std::time::Instant::now();
    let mut last_fresh = up_since;
    // What UpdateLayout last said: a relaunched page loads the request's own layout.
    let mut layout: Option<String> = None;
    let outcome: Result<()> = loop {
        let crash: String = tokio::select! {
            now = depth_tick.tick(), if depth.is_some() => {
                // A dead browser answers no call into the page (each bounded, a few in a row):
                // its exit must not wait for them.
                let died = match depth.as_mut() {
                    Some(d) => tokio::select! {
                        _ = d.check(&session.page, &pipe) => None,
                        why = chromium.exited() => Some(why),
                    },
                    None => None,
                };
                // Past the probe's fast phase a new measurement comes only every 3 s.
                if now >= fast_until && depth_tick.period() < DEPTH_READ_SLOW {
                    depth_tick = tokio::time::interval_at(now + DEPTH_READ_SLOW, DEPTH_READ_SLOW);
                }
                match died {
                    Some(why) => why,
                    None => continue,
                }
            }
            _ = stats_tick.tick(), if spec.video.is_some() => {
                let stats = frame_stats(&pipe, picture.as_ref(), session.driver.as_ref());
                watch.check(&stats);
                let _ = events.send(WorkerEvent::Stats(stats));
                continue;
            }
            _ = hang_tick.tick() => {
                let now = std::time::Instant::now();
                // A still page paints nothing new but answers; a busy one paints.
                let frozen = picture.is_none() || now.duration_since(last_fresh) > hang;
                if now.duration_since(up_since) > hang && session.liveness.silent_for(now) > hang && frozen {
                    let frames = if picture.is_some() { " and painted no new frame" } else { "" };
                    format!("the page hung: it answered no CDP call{frames} for {} s", hang.as_secs())
                } else {
                    continue;
                }
            }
            next = next_frame(&mut picture) => match next {
                Next::Frames { frames, fresh } => {
                    if let Err(e) = frames.into_iter().try_for_each(|f| pipe.push_jpeg(f.jpeg, f.captured_at)) { break Err(e) }
                    if fresh {
                        last_fresh = std::time::Instant::now();
                        if !active {
                            active = true;
                            let _ = events.send(WorkerEvent::Active);
                        }
                    }
                    continue;
                }
                Next::Nothing => continue,
                // The page or browser went away; prefer the browser's own exit reason.
                Next::Ended => tokio::time::timeout(Duration::from_secs(2), chromium.exited()).await
                    .unwrap_or_else(|_| "the page's screencast ended (its renderer is gone)".into()),
            },
            ev = pipe_events.recv() => break Err(match ev {
                Some(PipelineEvent::Error(e)) => anyhow!("pipeline error: {e}"),
                _ => anyhow!("pipeline ended unexpectedly"),
            }),
            why = chromium.exited() => why,
            _ = crashed(&mut session.crashed) => "the page's renderer crashed (Inspector.targetCrashed)".to_string(),
            _ = async { match session.console.as_mut() {
                Some(c) => browser::wait_console(c, "END_RECORDING").await,
                None => std::future::pending().await,
            } } => {
                info!("page signalled END_RECORDING");
                break Ok(());
            }
            Some(cmd) = commands.recv() => match cmd {
                WorkerCommand::Layout { layout: l } => {
                    let died = tokio::select! {
                        _ = send_layout(&session.page, &l) => None,
                        why = chromium.exited() => Some(why),
                    };
                    layout = Some(l);
                    match died {
                        Some(why) => why,
                        None => continue,
                    }
                }
            },
            _ = stop.cancelled() => break Ok(()),
        };
        warn!(reason = %crash, "chromium crashed or hung: relaunching it on the same page, the outputs go on");
        let mut why = crash;
        let relaunched = loop {
            if let Err(e) = restarts.spend(&why, std::time::Instant::now()) {
                break Err(e);
            }
            let _ = events.send(WorkerEvent::BrowserRestarted { reason: why.clone() });
            match holding(relaunch(spec, launcher, chromium, events), &mut picture, &mut pipe, stop).await {
                None => break Ok(None),
                Some(Ok(s)) => break Ok(Some(s)),
                Some(Err(e)) => {
                    warn!("relaunching chromium: {e:#}");
                    why = format!("chromium relaunch failed: {e:#}");
                }
            }
        };
        session = match relaunched {
            Ok(Some(s)) => s,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        if let Some(l) = &layout {
            send_layout(&session.page, l).await;
        }
        match (session.picture(spec).await, picture.as_mut()) {
            (Ok(Some((first, frames))), Some(p)) => {
                (p.frames, p.first, p.first_until) = (frames, first, tokio::time::Instant::now() + FIRST_FRAME_WAIT);
            }
            (Err(e), _) => break Err(e.context("restarting the picture after a relaunch")),
            _ => {}
        }
        up_since = std::time::Instant::now();
        last_fresh = up_since;
    };
    if spec.video.is_some() {
        let s = frame_stats(&pipe, picture.as_ref(), session.driver.as_ref());
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
        if picture.is_some() && session.driver.is_none() {
            let _ = tokio::time::timeout(Duration::from_secs(1), screencast::stop(&session.page)).await;
        }
    }
    drop(session);
    // Drain even after a failure: what was captured is flushed, not lost.
    pipe.put_events(pipe_events);
    let drained = pipe.finish(DRAIN_TIMEOUT).await;
    let _ = forward.await;
    if let Err(e) = &drained {
        warn!("drain: {e:#}");
    }
    outcome.and(drained)
}

/// Tells a room composite's page its layout, bounded like every call into the page.
async fn send_layout(page: &chromiumoxide::Page, layout: &str) {
    match tokio::time::timeout(presentation::ANSWER_WITHIN, page.evaluate(browser::layout_script(layout))).await {
        Ok(Ok(_)) => info!(%layout, "layout sent to the page"),
        Ok(Err(e)) => warn!(%layout, "telling the page of its layout: {e}"),
        Err(_) => warn!(%layout, limit = ?presentation::ANSWER_WITHIN, "telling the page of its layout: no answer in time"),
    }
}

//! Begin-frame capture (`HeadlessExperimental.beginFrame` on `chromium-headless-shell` started
//! with `--enable-begin-frame-control`): the page renders only when we ask, once per output
//! frame, and each answer carries that frame's JPEG. Chromium then does the work of 30 frames
//! a second, not 60 (the screencast's compositor never slows down), and the frames arrive on
//! our own grid, so there is nothing to re-time. A still page costs nearly what a moving one
//! does (see [`drive`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use chromiumoxide::cdp::browser_protocol::headless_experimental::{BeginFrameParams, ScreenshotParams, ScreenshotParamsFormat};
use chromiumoxide::Page;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tracing::{debug, warn};

use super::Frame;
use crate::clock::epoch_now;

/// Frame counts of a begin-frame source, read while it runs.
#[derive(Debug, Default)]
pub struct Counts {
    /// Slots that passed with no frame, because the one before took longer than they did
    /// (videorate fills each with a duplicate).
    pub late: std::sync::atomic::AtomicU64,
}

/// CLOCK_MONOTONIC in seconds: Chromium's TimeTicks and tokio's Instant both count it.
fn monotonic_now() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// A running begin-frame loop: it drives the page's rendering from the moment it is created
/// (pages that wait for animation frames must get them while they load) and yields frames
/// once [`BeginFrames::capture`] is called.
pub struct BeginFrames {
    capturing: Arc<AtomicBool>,
    frames: Option<mpsc::Receiver<Frame>>,
    pub counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

impl BeginFrames {
    /// Starts rendering `page` at `fps`; screenshots are JPEG at `quality`.
    pub fn start(page: &Page, fps: u32, quality: u32) -> Self {
        let (tx, rx) = mpsc::channel(8);
        let capturing = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let task = tokio::spawn(drive(page.clone(), fps.max(1), quality, Arc::clone(&capturing), Arc::clone(&counts), tx));
        Self { capturing, frames: Some(rx), counts, task }
    }

    /// From now on every frame comes with its picture, on the returned channel. It ends when
    /// the page goes away.
    pub fn capture(&mut self) -> mpsc::Receiver<Frame> {
        self.capturing.store(true, Ordering::Release);
        self.frames.take().unwrap_or_else(|| mpsc::channel(1).1)
    }
}

impl Drop for BeginFrames {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One BeginFrame at `ticks` (ms of CLOCK_MONOTONIC), with a JPEG screenshot if `quality`.
async fn begin_frame(page: &Page, ticks: f64, interval: Duration, quality: Option<u32>) -> chromiumoxide::Result<Option<Bytes>> {
    let mut params = BeginFrameParams::builder().frame_time_ticks(ticks).interval(interval.as_secs_f64() * 1000.0);
    if let Some(q) = quality {
        params = params.screenshot(
            ScreenshotParams::builder().format(ScreenshotParamsFormat::Jpeg).quality(q as i64).optimize_for_speed(true).build(),
        );
    }
    let res = page.execute(params.build()).await?.result;
    let jpeg = res.screenshot_data.and_then(|d| match base64::engine::general_purpose::STANDARD.decode(AsRef::<str>::as_ref(&d)) {
        Ok(b) => Some(Bytes::from(b)),
        Err(e) => {
            warn!("bad beginFrame screenshot: {e}");
            None
        }
    });
    Ok(jpeg)
}

/// The frame loop: one BeginFrame per slot, with a screenshot once capturing. A screenshot
/// costs a draw, a readback and a JPEG encode even when nothing changed, and Chromium reports
/// damage for every BeginFrame under `--run-all-compositor-stages-before-draw` (measured on a
/// page that never changes, with and without screenshots), so a still page cannot be told
/// apart without taking its picture: it costs nearly what a moving one does. A picture equal
/// to the last one is counted as repeated.
async fn drive(page: Page, fps: u32, quality: u32, capturing: Arc<AtomicBool>, counts: Arc<Counts>, tx: mpsc::Sender<Frame>) {
    let interval = Duration::from_secs_f64(1.0 / fps as f64);
    let mut tick = tokio::time::interval(interval);
    // A slow frame costs its slot, not a burst of catch-up frames after it.
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut last: Option<Bytes> = None;
    let mut failures = 0u32;
    let mut previous: Option<tokio::time::Instant> = None;
    loop {
        let slot = tick.tick().await;
        if let Some(p) = previous {
            // Slots skipped because the last frame took longer than they did.
            let gap = (slot - p).as_secs_f64() / interval.as_secs_f64();
            counts.late.fetch_add((gap.round() as u64).saturating_sub(1), Ordering::Relaxed);
        }
        previous = Some(slot);
        let shoot = capturing.load(Ordering::Acquire);
        // The frame shows the page at its slot's time, however late it is sent: Chromium's
        // frame time is CLOCK_MONOTONIC (as tokio's Instant), so animations and timestamps
        // stay on the grid.
        let behind = slot.elapsed().as_secs_f64();
        let ticks = (monotonic_now() - behind) * 1000.0;
        let captured_at = epoch_now() - behind;
        let result = begin_frame(&page, ticks, interval, shoot.then_some(quality)).await;
        let jpeg = match result {
            Ok(j) => {
                failures = 0;
                j
            }
            Err(e) => {
                // During navigation a BeginFrame can fail; a page that is gone fails forever.
                failures += 1;
                debug!("beginFrame failed: {e}");
                if failures >= fps * 5 {
                    warn!("beginFrame failing for 5 s: {e}; capture ended");
                    return;
                }
                continue;
            }
        };
        if !shoot {
            continue;
        }
        // No picture (a screenshot can fail while the renderer starts): the last one again.
        let Some(jpeg) = jpeg.or_else(|| last.clone()) else { continue };
        let repeat = last.as_ref() == Some(&jpeg);
        last = Some(jpeg.clone());
        if tx.send(Frame { jpeg, captured_at, repeat }).await.is_err() {
            return;
        }
    }
}

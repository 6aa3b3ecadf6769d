//! Begin-frame capture (`HeadlessExperimental.beginFrame` on `chromium-headless-shell` started
//! with `--enable-begin-frame-control`): the page renders only when we ask, exactly once per
//! output frame, and each answer carries that frame's JPEG. Chromium then does the work of
//! 30 frames a second, not 60 (the screencast's compositor never slows down), and the frames
//! arrive on our own grid, so there is nothing to re-time.

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

use super::{epoch_now, Frame};

/// Frame counts of a begin-frame source, read while it runs.
#[derive(Debug, Default)]
pub struct Counts {
    /// Frames whose BeginFrame took longer than the frame interval, so the next slot passed
    /// unrendered (videorate fills it with a duplicate).
    pub late: std::sync::atomic::AtomicU64,
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

async fn drive(page: Page, fps: u32, quality: u32, capturing: Arc<AtomicBool>, counts: Arc<Counts>, tx: mpsc::Sender<Frame>) {
    let interval = Duration::from_secs_f64(1.0 / fps as f64);
    let mut tick = tokio::time::interval(interval);
    // A slow frame costs its slot, not a burst of catch-up frames after it.
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut last: Option<Bytes> = None;
    let mut failures = 0u32;
    loop {
        let slot = tick.tick().await;
        let shoot = capturing.load(Ordering::Acquire);
        let mut params = BeginFrameParams::builder().interval(interval.as_secs_f64() * 1000.0);
        if shoot {
            params = params.screenshot(
                ScreenshotParams::builder().format(ScreenshotParamsFormat::Jpeg).quality(quality as i64).optimize_for_speed(true).build(),
            );
        }
        // The picture shows the page as of this BeginFrame's time: now.
        let captured_at = epoch_now();
        let res = match page.execute(params.build()).await {
            Ok(r) => {
                failures = 0;
                r.result
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
        if slot.elapsed() > interval {
            counts.late.fetch_add(1, Ordering::Relaxed);
        }
        if !shoot {
            continue;
        }
        let (jpeg, repeat) = match res.screenshot_data {
            Some(data) => match base64::engine::general_purpose::STANDARD.decode(AsRef::<str>::as_ref(&data)) {
                Ok(b) => (Bytes::from(b), !res.has_damage),
                Err(e) => {
                    warn!("bad beginFrame screenshot: {e}");
                    continue;
                }
            },
            // No damage: the page looks as it did; its last picture again, on this slot.
            None => match &last {
                Some(b) => (b.clone(), true),
                None => continue,
            },
        };
        last = Some(jpeg.clone());
        if tx.send(Frame { jpeg, captured_at, repeat }).await.is_err() {
            return;
        }
    }
}

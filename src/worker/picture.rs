//! The page's picture as the CDP capture backends bring it, paced: captured JPEG frames, the
//! last one repeated while the page paints nothing new, the first one placed on the
//! compositor's cadence; and the watch that says in the log when the picture goes wrong.

use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::capture::{beginframe::BeginFrames, Frame, Pacer};
use crate::clock::epoch_now;
use crate::media::FrameStats;
use crate::pipeline::Pipeline;

/// Encoder output this far behind its input means it cannot keep up with the frame rate.
const ENCODER_LAG_WARN_MS: u64 = 1000;

/// The page's picture as it comes: captured frames, and the pacer that repeats the last one
/// while the page paints nothing new.
pub(super) struct Picture {
    pub frames: mpsc::Receiver<Frame>,
    pub pacer: Pacer,
    pub tick: tokio::time::Interval,
    /// The source sends nothing while the page is still (the screencast): the pacer repeats.
    /// A begin-frame source sends a frame for every slot itself.
    pub repeat_when_idle: bool,
    /// The first picture (a screenshot), held until the screencast's first frame shows the
    /// compositor's cadence (see [`next_frame`]).
    pub first: Option<Frame>,
    pub first_until: tokio::time::Instant,
}

/// How long the first picture waits for a screencast frame to take its cadence from.
pub(super) const FIRST_FRAME_WAIT: Duration = Duration::from_millis(200);

pub(super) enum Next {
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
pub(super) async fn next_frame(picture: &mut Option<Picture>) -> Next {
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
pub(super) fn frame_stats(pipe: &Pipeline, picture: Option<&Picture>, driver: Option<&BeginFrames>) -> FrameStats {
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
pub(super) struct Watch {
    last: FrameStats,
    encoder_behind: bool,
    missing: bool,
}

impl Watch {
    pub fn check(&mut self, s: &FrameStats) {
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

//! Stamps the captured sound on the pipeline clock by when it arrives.
//!
//! pulsesrc runs with `slave-method=none`: its timestamps count samples, so they are
//! continuous and never resync. Its own slaving ("skew", the default) maps the first buffer
//! onto the clock at whole 10 ms segments and with whatever the ring buffer held at that
//! moment, which put the sound of one egress up to 60 ms later than another's (measured: the
//! A/V offset of each egress followed its sound's arrival lag one for one, 14 → +19 ms,
//! 53 → +76 ms), and it resyncs under load.
//!
//! Here the sample-count timeline is shifted onto the clock by arrival: the shift is the
//! arrival lag (arrival minus the end of a buffer's samples) that only a tenth of the buffers
//! beat, measured over the first second and then over every 10 s window. The promptest arrivals
//! are the ones with no queueing in them, so the shift is the same for every egress; a low
//! percentile rather than the least lag, which keeps finding new outliers. The windows follow
//! the drift of PulseAudio's sample clock against the system clock (measured: 40–80 ppm, the
//! sound walking 2.5–5 ms a minute), and the startup load in the first second's figure.
//! `audiorate` downstream applies the moves once they add up to more than its tolerance (5 ms),
//! as a few dropped samples or samples of silence rather than an overlap or a hole.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use gst::prelude::*;
use tracing::{debug, info, warn};

/// Buffers (10 ms each) skipped at the start: pulse delivers its first ones in a burst.
const SKIP: usize = 20;
/// Buffers in the first window (the first second), and in every later one.
const FIRST_WINDOW: usize = 100;
const WINDOW: usize = 1000;
/// A move this large between windows is worth a warning: more than drift.
const JUMP_NS: i64 = 15_000_000;

struct Clock {
    /// Added to the sample-count timestamps; until the first window ends, the least lag so far.
    shift: Option<i64>,
    windows: usize,
    lags: Vec<i64>,
    seen: usize,
}

/// The lag that a tenth of `lags` beat.
fn low_percentile(lags: &mut [i64]) -> i64 {
    let k = lags.len() / 10;
    *lags.select_nth_unstable(k).1
}

impl Clock {
    fn new() -> Self {
        Self { shift: None, windows: 0, lags: Vec::with_capacity(WINDOW), seen: 0 }
    }

    /// Takes one buffer's lag; returns the shift to apply to it.
    fn observe(&mut self, lag: i64) -> i64 {
        self.seen += 1;
        if self.windows == 0 {
            // Provisional until the first window ends (the picture rarely starts this early).
            self.shift = Some(self.shift.map_or(lag, |s| s.min(lag)));
        }
        if self.seen > SKIP {
            self.lags.push(lag);
        }
        let size = if self.windows == 0 { FIRST_WINDOW } else { WINDOW };
        if self.lags.len() == size {
            let p = low_percentile(&mut self.lags);
            self.lags.clear();
            match (self.windows, self.shift) {
                (0, _) => info!(shift_ms = p as f64 / 1e6, "audio stamped by arrival"),
                (_, Some(old)) if (p - old).abs() > JUMP_NS => {
                    warn!(shift_ms = p as f64 / 1e6, by_ms = (p - old) as f64 / 1e6, "captured sound jumped against the clock")
                }
                (_, old) => debug!(shift_ms = p as f64 / 1e6, by_ms = old.map(|o| (p - o) as f64 / 1e6), "audio shift follows the clock"),
            }
            self.windows += 1;
            self.shift = Some(p);
        }
        self.shift.unwrap_or(lag)
    }
}

/// Installs the probe on pulsesrc's src pad. `picture_delay_ns()` is added to every stamp: the
/// picture's own delay, which the sound must share (see [`crate::capture::presentation`]); a
/// change is applied by audiorate like any other move.
pub fn stamp_by_arrival(pad: &gst::Pad, picture_delay_ns: impl Fn() -> i64 + Send + Sync + 'static) {
    let state = Mutex::new(Clock::new());
    let expected = AtomicU64::new(u64::MAX);
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(now) = running_time(pad) else { return gst::PadProbeReturn::Ok };
        let Some(buf) = info.buffer_mut() else { return gst::PadProbeReturn::Ok };
        let (Some(pts), Some(dur)) = (buf.pts(), buf.duration()) else { return gst::PadProbeReturn::Ok };
        let (pts, dur) = (pts.nseconds(), dur.nseconds());
        // pulsesrc marks dropped samples (the pipeline fell behind) with a jump in the count;
        // say so, it is a hole in the sound.
        let e = expected.swap(pts + dur, Ordering::Relaxed);
        if e != u64::MAX && pts != e {
            warn!(jump_ms = (pts as i64 - e as i64) as f64 / 1e6, "captured sound has a gap: samples were dropped");
        }
        let lag = now - (pts + dur) as i64;
        let shift = state.lock().unwrap_or_else(|p| p.into_inner()).observe(lag) + picture_delay_ns();
        buf.make_mut().set_pts(gst::ClockTime::from_nseconds((pts as i64 + shift).max(0) as u64));
        gst::PadProbeReturn::Ok
    });
}

/// The pipeline's running time now, as the element owning `pad` sees it.
fn running_time(pad: &gst::Pad) -> Option<i64> {
    let el = pad.parent_element()?;
    let (clock, base) = (el.clock()?, el.base_time()?);
    Some(clock.time().saturating_sub(base).nseconds() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_a_low_percentile_window_by_window() {
        let mut c = Clock::new();
        // A startup burst, then lags of 60..69 ms with one 40 ms outlier.
        for i in 0..SKIP {
            c.observe(200_000_000 - i as i64);
        }
        for i in 0..FIRST_WINDOW {
            c.observe(if i == 50 { 40_000_000 } else { 60_000_000 + (i as i64 % 10) * 1_000_000 });
        }
        assert_eq!(c.shift, Some(61_000_000));
        // An even sooner outlier changes nothing until its window ends, and then not much.
        assert_eq!(c.observe(10_000_000), 61_000_000);
        // Drift: a window 3 ms later moves the shift 3 ms.
        for _ in 1..WINDOW {
            c.observe(64_000_000);
        }
        assert_eq!(c.shift, Some(64_000_000));
    }
}

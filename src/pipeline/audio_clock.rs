//! Stamps the captured sound on the pipeline clock by when it arrives.
//!
//! pulsesrc runs with `slave-method=none`: its timestamps count samples, so they are
//! continuous and never resync. Its own slaving ("skew", the default) maps the first buffer
//! onto the clock at whole 10 ms segments and with whatever the ring buffer held at that
//! moment, which put the sound of one egress up to 60 ms later than another's (measured: the
//! A/V offset of each egress followed its sound's arrival lag one for one, 14 → +19 ms,
//! 53 → +76 ms), and it resyncs under load.
//!
//! Here the sample-count timeline gets one shift, measured at the start: the arrival lag
//! (arrival minus the end of a buffer's samples) that only a tenth of the first second's
//! buffers beat. The promptest arrivals are the ones with no queueing in them, so the shift is
//! the same for every egress; a low percentile rather than the least lag, because the least
//! keeps finding new outliers and walked the sound 5 ms earlier every minute or so in a 5-minute
//! run. The shift then holds: the count does not drift from the clock (both are the system's
//! monotonic clock: beeps a second apart in the page stay 1000.0 ms apart in the recording).
//! A whole 10 s window whose same percentile is more than [`REBASE_NS`] off (samples lost
//! where nobody counted them) moves it, and `audiorate` downstream turns that move into
//! silence or dropped samples rather than a hole or an overlap.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use gst::prelude::*;
use tracing::{info, warn};

/// Buffers (10 ms each) skipped at the start: pulse delivers its first ones in a burst.
const SKIP: usize = 20;
/// Buffers measured for the shift.
const CALIBRATE: usize = 100;
/// Buffers per window of the drift check.
const WINDOW: usize = 1000;
/// How far a window's percentile may stray from the shift before the shift moves.
const REBASE_NS: i64 = 15_000_000;

struct Clock {
    /// Added to the sample-count timestamps; until calibrated, the least lag so far.
    shift: Option<i64>,
    calibrated: bool,
    lags: Vec<i64>,
    seen: usize,
}

/// The lag that a tenth of `lags` beat.
fn low_percentile(lags: &mut [i64]) -> i64 {
    let k = lags.len() / 10;
    *lags.select_nth_unstable(k).1
}

impl Clock {
    /// Takes one buffer's lag; returns the shift to apply to it.
    fn observe(&mut self, lag: i64) -> i64 {
        self.seen += 1;
        if !self.calibrated {
            // Provisional until calibrated (the picture rarely starts this early).
            self.shift = Some(self.shift.map_or(lag, |s| s.min(lag)));
            if self.seen > SKIP {
                self.lags.push(lag);
            }
            if self.lags.len() == CALIBRATE {
                let shift = low_percentile(&mut self.lags);
                info!(shift_ms = shift as f64 / 1e6, "audio stamped by arrival");
                self.shift = Some(shift);
                self.calibrated = true;
                self.lags.clear();
            }
            return self.shift.unwrap_or(lag);
        }
        let shift = self.shift.unwrap_or(lag);
        self.lags.push(lag);
        if self.lags.len() == WINDOW {
            let now = low_percentile(&mut self.lags);
            self.lags.clear();
            if (now - shift).abs() > REBASE_NS {
                warn!(shift_ms = now as f64 / 1e6, by_ms = (now - shift) as f64 / 1e6, "captured sound moved against the clock: rebased");
                self.shift = Some(now);
            }
        }
        self.shift.unwrap_or(lag)
    }
}

/// Installs the probe on pulsesrc's src pad.
pub fn stamp_by_arrival(pad: &gst::Pad) {
    let state = Mutex::new(Clock { shift: None, calibrated: false, lags: Vec::with_capacity(WINDOW), seen: 0 });
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
        let shift = state.lock().unwrap_or_else(|p| p.into_inner()).observe(lag);
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

    fn clock() -> Clock {
        Clock { shift: None, calibrated: false, lags: vec![], seen: 0 }
    }

    #[test]
    fn calibrates_on_a_low_percentile_then_holds() {
        let mut c = clock();
        // A startup burst, then lags of 60..70 ms with one 40 ms outlier.
        for i in 0..SKIP {
            c.observe(200_000_000 - i as i64);
        }
        for i in 0..CALIBRATE {
            c.observe(if i == 50 { 40_000_000 } else { 60_000_000 + (i as i64 % 10) * 1_000_000 });
        }
        assert_eq!(c.shift, Some(61_000_000));
        // An even sooner outlier later on changes nothing.
        assert_eq!(c.observe(10_000_000), 61_000_000);
        // A whole window 20 ms later rebases.
        for _ in 1..WINDOW {
            c.observe(81_000_000);
        }
        assert_eq!(c.shift, Some(81_000_000));
    }
}

//! Stamps the captured sound on the pipeline clock by when it arrives.
//!
//! pulsesrc runs with `slave-method=none`: its timestamps count samples, so they are
//! continuous and never resync. Its own slaving ("skew", the default) maps the first buffer
//! onto the clock at whole 10 ms segments and with whatever the ring buffer held at that
//! moment, which put the sound of one egress up to 60 ms later than another's (measured: the
//! A/V offset of each egress followed its sound's arrival lag one for one, 14 → +19 ms,
//! 53 → +76 ms), and it resyncs under load. Here the sample-count timeline is shifted so that the buffer that arrived soonest
//! after its last sample ends at its arrival time: the earliest arrival is the one with no
//! queueing in it, so the shift is the same for every egress. A buffer arriving sooner than
//! any before refines the shift (it moves the timeline a little earlier, mostly in the first
//! second); a whole 10 s window in which no buffer came that soon moves it later (the sample
//! count running slow against the clock). The `audiorate` downstream turns a move into a few
//! dropped samples or samples of silence rather than an overlap or a hole.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use gst::prelude::*;
use tracing::{debug, info, warn};

/// Arrival minus end of the sample-count timestamps, nothing measured yet.
const NONE: i64 = i64::MIN;

/// Buffers (10 ms each) per window in which at least one is expected to arrive promptly.
const WINDOW: u64 = 1000;

/// How far a whole window's soonest arrival may trail the shift before the shift follows.
const FOLLOW_NS: i64 = 2_000_000;

struct Clock {
    /// Added to the sample-count timestamps: the least arrival lag seen.
    shift: i64,
    /// The least arrival lag in the current window.
    window_min: i64,
}

/// Installs the probe on pulsesrc's src pad.
pub fn stamp_by_arrival(pad: &gst::Pad) {
    let state = Mutex::new(Clock { shift: NONE, window_min: i64::MAX });
    let expected = AtomicU64::new(u64::MAX);
    let count = AtomicU64::new(0);
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
        let n = count.fetch_add(1, Ordering::Relaxed);
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        st.window_min = st.window_min.min(lag);
        if st.shift == NONE || lag < st.shift {
            if st.shift != NONE {
                debug!(n, shift_ms = lag as f64 / 1e6, by_ms = (st.shift - lag) as f64 / 1e6, "audio timeline refined");
            }
            st.shift = lag;
        }
        if n == 100 {
            info!(shift_ms = st.shift as f64 / 1e6, lag_ms = lag as f64 / 1e6, "audio stamped by arrival");
        }
        // Every window, follow a sample count that runs slower than the clock (or lost
        // samples nobody counted): if no buffer in it came as soon as the shift says they
        // can, the shift is too small by at least the difference.
        if n > 0 && n % WINDOW == 0 {
            if st.window_min > st.shift + FOLLOW_NS {
                debug!(shift_ms = st.window_min as f64 / 1e6, by_ms = (st.window_min - st.shift) as f64 / 1e6, "audio timeline follows the clock");
                st.shift = st.window_min;
            }
            st.window_min = i64::MAX;
        }
        let shifted = pts as i64 + st.shift;
        drop(st);
        buf.make_mut().set_pts(gst::ClockTime::from_nseconds(shifted.max(0) as u64));
        gst::PadProbeReturn::Ok
    });
}

/// The pipeline's running time now, as the element owning `pad` sees it.
fn running_time(pad: &gst::Pad) -> Option<i64> {
    let el = pad.parent_element()?;
    let (clock, base) = (el.clock()?, el.base_time()?);
    Some(clock.time().saturating_sub(base).nseconds() as i64)
}

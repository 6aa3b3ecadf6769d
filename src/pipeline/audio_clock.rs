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
//! tenth of a second, before the picture starts); the `audiorate` downstream turns that into a
//! few dropped samples rather than an overlap, and dropped samples into silence, not a hole.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use gst::prelude::*;
use tracing::{debug, info, warn};

/// Arrival minus end of the sample-count timestamps, nothing measured yet.
const NONE: i64 = i64::MIN;

/// Installs the probe on pulsesrc's src pad.
pub fn stamp_by_arrival(pad: &gst::Pad) {
    let shift = AtomicI64::new(NONE);
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
        let old = shift.load(Ordering::Relaxed);
        let n = count.fetch_add(1, Ordering::Relaxed);
        if old == NONE || lag < old {
            shift.store(lag, Ordering::Relaxed);
            if old != NONE {
                debug!(n, shift_ms = lag as f64 / 1e6, by_ms = (old - lag) as f64 / 1e6, "audio timeline refined");
            }
        }
        if n == 100 {
            info!(shift_ms = shift.load(Ordering::Relaxed) as f64 / 1e6, lag_ms = lag as f64 / 1e6, "audio stamped by arrival");
        }
        let shifted = pts as i64 + shift.load(Ordering::Relaxed);
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

//! Capture sources: where the page's picture comes from (over CDP, [`beginframe`] and
//! [`screencast`] yield JPEG [`Frame`]s; with [`x11`] the pipeline reads a private X server's
//! screen itself), and (in [`pulse`]) the sound server the page plays into. The [`Pacer`]
//! turns a page that only paints when something changes into a steady input for the
//! pipeline's constant-rate stage.

pub mod beginframe;
pub mod presentation;
pub mod pulse;
pub mod screencast;
pub mod x11;
pub mod xauth;

use std::time::Duration;

use bytes::Bytes;

/// One captured picture: compressed bytes and when the browser produced it.
#[derive(Debug, Clone)]
pub struct Frame {
    pub jpeg: Bytes,
    /// Capture time, seconds since the Unix epoch (from the frame's own metadata).
    pub captured_at: f64,
    /// The source sent its last picture again (the page had not changed).
    pub repeat: bool,
}

/// Decides when the last frame must be sent again: Chrome sends screencast frames only on
/// repaint, so a static page would otherwise starve the encoder.
#[derive(Debug)]
pub struct Pacer {
    interval: f64,
    last: Option<Frame>,
    last_sent_at: f64,
    pub repeated: u64,
    pub captured: u64,
}

impl Pacer {
    pub fn new(fps: u32) -> Self {
        Self { interval: 1.0 / fps.max(1) as f64, last: None, last_sent_at: 0.0, repeated: 0, captured: 0 }
    }

    /// One frame interval, seconds.
    pub fn interval(&self) -> f64 {
        self.interval
    }

    /// How often to call [`Pacer::tick`].
    pub fn tick_every(&self) -> Duration {
        Duration::from_secs_f64(self.interval)
    }

    /// A fresh frame from the source: pass it on.
    pub fn fresh(&mut self, f: Frame, now: f64) -> Frame {
        match f.repeat {
            true => self.repeated += 1,
            false => self.captured += 1,
        }
        self.last_sent_at = now;
        self.last = Some(f.clone());
        f
    }

    /// Timer tick: returns the last frame, re-stamped `now`, if nothing was sent for 1.5 frame
    /// intervals.
    pub fn tick(&mut self, now: f64) -> Option<Frame> {
        let last = self.last.as_ref()?;
        if now - self.last_sent_at < 1.5 * self.interval {
            return None;
        }
        self.repeated += 1;
        self.last_sent_at = now;
        Some(Frame { jpeg: last.jpeg.clone(), captured_at: now, repeat: true })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_only_when_idle() {
        let mut p = Pacer::new(30);
        assert!(p.tick(0.0).is_none(), "nothing to repeat before the first frame");
        p.fresh(Frame { jpeg: Bytes::from_static(b"a"), captured_at: 1.0, repeat: false }, 1.0);
        assert!(p.tick(1.02).is_none());
        let r = p.tick(1.06).expect("repeat after 1.5 intervals");
        assert_eq!((r.jpeg.as_ref(), r.captured_at), (b"a".as_ref(), 1.06));
        assert!(p.tick(1.07).is_none());
        assert_eq!((p.captured, p.repeated), (1, 1));
    }
}

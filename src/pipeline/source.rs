//! The picture's source end: appsrc → jpegdec for the JPEG frames the CDP backends push, or
//! ximagesrc on a private X screen, read on Chromium's drawing ticks.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use gst::prelude::*;

use super::make;
use super::shared::Shared;
use crate::spec::VideoSpec;

/// Where the picture comes from.
#[derive(Debug, Clone, Copy)]
pub enum PictureInput<'a> {
    /// JPEG frames pushed with [`Pipeline::push_jpeg`] (the CDP capture backends).
    Frames,
    /// The screen of this X display, read by ximagesrc once [`Pipeline::open_screen`] is called.
    /// With `ticks` (Chromium's drawing ticks on this screen), the screen is read once a tick,
    /// half a tick after each; without, at the output frame rate at whatever phase.
    Screen { display: &'a str, ticks: Option<Ticks> },
}

/// When Chromium draws on an X screen whose refresh rate it knows: at every multiple of
/// `period_us` of CLOCK_MONOTONIC (its vsync source gives it no timebase, so its ticks are
/// counted from the clock's zero). Reading the screen on the same ticks, half one later, takes
/// every picture once, a fixed time after it was drawn, so the picture's age (and with it the
/// A/V offset) is the same in every egress instead of anything up to a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticks {
    pub period_us: u64,
}

impl Ticks {
    pub fn period(self) -> Duration {
        Duration::from_micros(self.period_us)
    }

    /// The latest time at or before `now` (monotonic ns) that lies half a tick after a tick.
    pub(super) fn read_phase_at_or_before(self, now: u64) -> u64 {
        let period = self.period_us * 1000;
        let half = period / 2;
        now - (now + period - half) % period
    }
}

/// A screen source and the valve that holds its frames back until the page is up.
pub(super) type Screen = (gst::Element, gst::Element);

/// The source end of the picture: appsrc → jpegdec for pushed JPEG frames, or ximagesrc →
/// caps(F fps) → valve → queue for a screen (the valve drops frames until [`Pipeline::open_screen`];
/// the first one through is the first frame). Returns the elements in order, the appsrc, the
/// screen's (source, valve) and the captured-frame counter for a screen. Both are bounded
/// and leaky, so a backlog drops old frames rather than holding back the capture.
pub(super) type Source = (Vec<gst::Element>, Option<gst_app::AppSrc>, Option<Screen>);

pub(super) fn picture_source(video: &VideoSpec, input: PictureInput, shared: &Arc<Shared>) -> Result<Source> {
    match input {
        PictureInput::Frames => {
            let appsrc = gst_app::AppSrc::builder()
                .name("capture")
                .is_live(true)
                .format(gst::Format::Time)
                .caps(&gst::Caps::builder("image/jpeg").build())
                // Bounded: if the encoder falls behind, old frames go rather than memory.
                .max_time(Some(gst::ClockTime::from_seconds(1)))
                .leaky_type(gst_app::AppLeakyType::Downstream)
                .build();
            Ok((vec![appsrc.clone().upcast(), make("jpegdec")?], Some(appsrc), None))
        }
        PictureInput::Screen { display, ticks } => {
            let src = gst::ElementFactory::make("ximagesrc")
                .name("capture")
                .property("display-name", display)
                // Damage tracking saves nothing on a page that moves, and costs a round trip.
                .property("use-damage", false)
                .property("show-pointer", false)
                .build()
                .context("creating ximagesrc (apt install gstreamer1.0-plugins-good)")?;
            // On Chromium's ticks, or at the output rate; videorate makes it the output rate
            // either way (a tick period in whole µs is a frame a little short: 33 333 µs for
            // 30 fps, so one picture in 100 000 is left out, about one an hour).
            let rate = match ticks {
                Some(t) => gst::Fraction::new(1_000_000, t.period_us as i32),
                None => gst::Fraction::new(video.framerate as i32, 1),
            };
            let caps = gst::ElementFactory::make("capsfilter")
                .property("caps", gst::Caps::builder("video/x-raw").field("framerate", rate).build())
                .build()?;
            let valve = gst::ElementFactory::make("valve").property("drop", true).build().context("creating valve")?;
            let shared = Arc::clone(shared);
            valve.static_pad("src").context("valve has no src pad")?.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if let Some(pts) = info.buffer().and_then(|b| b.pts()) {
                    if shared.captured.fetch_add(1, Ordering::Relaxed) == 0 {
                        shared.first_frame(pts.nseconds());
                    }
                }
                gst::PadProbeReturn::Ok
            });
            // Like the appsrc's bound: if the encoder falls behind, the oldest frames go here
            // (videorate repeats the one before) and the screen is still read on time. A
            // source blocked by a full encoder queue would read nothing until it drains, so a
            // stop during a backlog would end the picture that much before the sound.
            let backlog = gst::ElementFactory::make("queue")
                .property("max-size-buffers", 0u32)
                .property("max-size-bytes", 0u32)
                // Raw frames (3.7 MB at 720p): half a second, not the appsrc's second.
                .property("max-size-time", gst::ClockTime::from_mseconds(500))
                .build()?;
            backlog.set_property_from_str("leaky", "downstream");
            Ok((vec![src.clone(), caps, valve.clone(), backlog], None, Some((src, valve))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Ticks;

    #[test]
    fn running_time_zero_is_half_a_tick_after_a_tick() {
        let t = Ticks { period_us: 33_333 };
        let period = 33_333_000u64;
        for now in [41_000_123_456_789u64, 33_333_000 * 7 + 16_666_500, 33_333_000 * 7 + 16_666_499, 33_333_000 * 9] {
            let base = t.read_phase_at_or_before(now);
            assert!(base <= now && now - base < period, "{now} → {base}");
            assert_eq!(base % period, period / 2, "{now} → {base}");
        }
    }
}

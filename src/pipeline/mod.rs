//! The GStreamer pipeline of one egress: captured JPEG frames in (appsrc) and the page's sound
//! (pulsesrc), constant-rate H.264 and AAC/Opus in fMP4 chunks out (appsink), handed to the
//! outputs as [`MuxOutput`]s.
//!
//! appsrc → jpegdec → videoscale → videoconvert → caps(W×H) → videorate → caps(F fps) → tee
//!   (or, for a screen: ximagesrc → caps → valve → leaky queue → videoscale → …)
//!   tee → queue → x264enc → h264parse → cmafmux(fragment = segment, chunk = part) → appsink
//!   tee → queue → videoscale → caps(w×h) → x264enc → … → appsink   (one per ladder rung)
//!
//! pulsesrc(the egress's sound server; stamped by arrival) → audioconvert → audioresample
//!   → caps(rate, ch) → queue(gate) → audiorate → avenc_aac | opusenc → [aacparse] → tee
//!   → queue → each rendition's muxer
//!
//! Every branch has the same frame timestamps, GOP and fragment/chunk grid, so the
//! renditions' segments and parts line up. With audio the muxer is `isofmp4mux` (CMAF allows
//! one track per file; LL-HLS players take muxed A/V parts, and muxing keeps each part's
//! audio with its video), without it `cmafmux`. Audio and video are stamped on one clock: the
//! pipeline's, onto which capture times are mapped.

pub mod audio;
pub mod audio_clock;
pub mod encoder;
mod mux;
mod shared;
pub mod source;
mod video;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Once};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use futures::StreamExt;
use gst::prelude::*;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::media::{FrameStats, MuxOutput};
use crate::spec::{HlsSpec, HlsTiming, VideoSpec};
pub use audio::AudioInput;
use shared::{Shared, UNSET};
use source::Screen;
pub use source::{PictureInput, Ticks};

/// Registers GStreamer and the statically linked `cmafmux` once per process.
pub fn init() -> Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = gst::init()
            .map_err(|e| anyhow!("gstreamer init: {e}"))
            .and_then(|_| gstfmp4::plugin_register_static().map_err(|e| anyhow!("registering cmafmux: {e}")));
    });
    result
}

/// What the pipeline reports while it runs.
#[derive(Debug)]
pub enum PipelineEvent {
    Error(String),
    Eos,
}

pub struct Pipeline {
    pipeline: gst::Pipeline,
    /// None for audio only.
    appsrc: Option<gst_app::AppSrc>,
    audio_src: Option<gst::Element>,
    shared: Arc<Shared>,
    /// The screen source and the valve that holds its frames back until the page is up.
    screen: Option<Screen>,
    /// The screen's drawing ticks, which running time zero is aligned to.
    ticks: Option<Ticks>,
    /// Wall-clock (epoch ns) minus running time: maps capture times onto the pipeline clock.
    wall_offset_ns: Option<i128>,
    last_pts: Option<u64>,
    events: Option<mpsc::UnboundedReceiver<PipelineEvent>>,
    /// The picture's constant-rate stage (its duplicate/drop counts; None for audio only).
    rate: Option<gst::Element>,
    /// The screen counts its own captured frames (see [`Shared::captured`]).
    counts_captured: bool,
}

pub(crate) fn make(factory: &str) -> Result<gst::Element> {
    gst::ElementFactory::make(factory)
        .build()
        .with_context(|| format!("creating GStreamer element {factory} (is its plugin package installed?)"))
}

impl Pipeline {
    /// Builds the pipeline; chunks go to `out` from GStreamer's streaming thread. Without
    /// `video` (audio only) the sound is muxed alone, on its own frames' grid.
    pub fn build(
        video: Option<&VideoSpec>,
        picture: PictureInput,
        audio: Option<AudioInput>,
        hls: &HlsSpec,
        out: mpsc::UnboundedSender<MuxOutput>,
    ) -> Result<Self> {
        init()?;
        let pipeline = gst::Pipeline::with_name("egress");
        let ticks = match picture {
            PictureInput::Screen { ticks, .. } => ticks,
            PictureInput::Frames => None,
        };
        let timing = HlsTiming::new(video, audio.as_ref().map(|a| a.spec), hls);
        // Audio only: nothing to wait for, no sound to drop.
        let shared = Arc::new(Shared::new(video.is_some()));
        let audio_tee = match &audio {
            Some(a) => Some(audio::audio_branch(&pipeline, a, &shared, video.is_some())?),
            None => None,
        };
        let counts_captured = matches!(picture, PictureInput::Screen { .. });
        let (appsrc, screen, rate) = match video {
            Some(video) => {
                let (src, screen, rate) = {
                    let muxing = video::Muxing { timing: &timing, audio_tee: audio_tee.as_ref().map(|a| &a.0), out: &out };
                    video::video_branches(&pipeline, video, picture, &shared, hls, muxing)?
                };
                (src, screen, Some(rate))
            }
            None => {
                let (tee, ..) = audio_tee.as_ref().ok_or_else(|| anyhow!("an egress needs a picture or a sound"))?;
                let (mux, sink) = mux::mux_to_appsink("cmafmux", &timing, 0, out)?;
                let q = queue()?;
                pipeline.add_many([&q, &mux, &sink])?;
                gst::Element::link_many([tee, &q, &mux, &sink]).context("linking the sound into its muxer")?;
                mux::split_after_first_part(&q.static_pad("src").context("queue has no src pad")?, &mux, timing.part_ns(), false);
                (None, None, None)
            }
        };
        Ok(Self {
            pipeline,
            appsrc,
            audio_src: audio_tee.map(|(_, src)| src),
            shared,
            screen,
            ticks,
            wall_offset_ns: None,
            last_pts: None,
            events: None,
            rate,
            counts_captured,
        })
    }

    /// Sets the pipeline playing and starts watching its bus.
    pub async fn start(&mut self) -> Result<()> {
        let bus = self.pipeline.bus().ok_or_else(|| anyhow!("pipeline has no bus"))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let mut messages = bus.stream();
        tokio::spawn(async move {
            while let Some(msg) = messages.next().await {
                use gst::MessageView;
                let ev = match msg.view() {
                    MessageView::Error(e) => PipelineEvent::Error(format!(
                        "{} ({})",
                        e.error(),
                        msg.src().map(|s| s.path_string().to_string()).unwrap_or_default()
                    )),
                    MessageView::Eos(_) => PipelineEvent::Eos,
                    MessageView::Warning(w) => {
                        warn!("gstreamer: {}", w.error());
                        continue;
                    }
                    _ => continue,
                };
                if tx.send(ev).is_err() {
                    break;
                }
            }
        });
        self.events = Some(rx);
        // We pick the clock and base time ourselves, so that capture times (wall clock) map
        // onto running time exactly, before the first buffer arrives to complete PLAYING.
        let clock = gst::SystemClock::obtain();
        self.pipeline.use_clock(Some(&clock));
        self.pipeline.set_start_time(gst::ClockTime::NONE);
        let now = clock.time();
        // ximagesrc reads the screen at multiples of its frame duration in running time: put
        // those on Chromium's ticks (the system clock is CLOCK_MONOTONIC, as Chromium's is).
        let base = match self.ticks {
            Some(t) => gst::ClockTime::from_nseconds(t.read_phase_at_or_before(now.nseconds())),
            None => now,
        };
        self.pipeline.set_base_time(base);
        let since_base = (now - base).nseconds() as f64 / 1e9;
        self.wall_offset_ns = Some(((crate::clock::epoch_now() - since_base) * 1e9) as i128);
        self.pipeline.set_state(gst::State::Playing).context("starting the pipeline")?;
        info!("pipeline playing");
        Ok(())
    }

    /// Pipeline errors and end-of-stream, as they happen; hand them back with
    /// [`Pipeline::put_events`] before [`Pipeline::finish`].
    pub fn take_events(&mut self) -> mpsc::UnboundedReceiver<PipelineEvent> {
        self.events.take().unwrap_or_else(|| mpsc::unbounded_channel().1)
    }

    pub fn put_events(&mut self, events: mpsc::UnboundedReceiver<PipelineEvent>) {
        self.events = Some(events);
    }

    /// Chromium's drawing ticks on the screen this pipeline reads, if known.
    pub fn ticks(&self) -> Option<Ticks> {
        self.ticks
    }

    /// The picture shows the page this much later than its stamps say: the sound is moved by
    /// as much (from its next buffer on; audiorate fills or trims the step).
    pub fn set_picture_delay(&self, delay: Duration) {
        self.shared.picture_delay_ns.store(delay.as_nanos() as i64, Ordering::Relaxed);
    }

    /// Epoch ns of running time zero (for wall-clock stamps on chunks).
    pub fn wall_offset_ns(&self) -> i128 {
        self.wall_offset_ns.unwrap_or(0)
    }

    /// The constant-rate stage's and main encoder's counts; the capture's own are the
    /// caller's to fill in.
    pub fn frame_stats(&self) -> FrameStats {
        let Some(rate) = &self.rate else { return FrameStats::default() };
        let s = &self.shared;
        let encoded = s.encoded.load(Ordering::Relaxed);
        let (into, out) = (s.into_encoder.load(Ordering::Relaxed), s.out_of_encoder.load(Ordering::Relaxed));
        FrameStats {
            duplicated: rate.property::<u64>("duplicate"),
            dropped: rate.property::<u64>("drop"),
            encoded,
            captured: if self.counts_captured { s.captured.load(Ordering::Relaxed) } else { 0 },
            encoder_lag_ms: match (into, encoded) {
                (UNSET, _) => 0,
                // Nothing out yet: the lag is everything given so far.
                (i, 0) => i.saturating_sub(s.first_video_pts.load(Ordering::Relaxed)) / 1_000_000,
                (i, _) => i.saturating_sub(out) / 1_000_000,
            },
            ..Default::default()
        }
    }

    /// Lets the screen's frames through from now on (the page is up).
    pub fn open_screen(&self) -> Result<()> {
        let (_, valve) = self.screen.as_ref().ok_or_else(|| anyhow!("this pipeline has no screen source"))?;
        valve.set_property("drop", false);
        Ok(())
    }

    /// Pushes one JPEG frame, stamped with its capture time mapped onto the pipeline clock.
    pub fn push_jpeg(&mut self, jpeg: Bytes, captured_at: f64) -> Result<()> {
        let offset = self.wall_offset_ns.ok_or_else(|| anyhow!("pipeline not started"))?;
        let mut pts = ((captured_at * 1e9) as i128 - offset).max(0) as u64;
        if let Some(last) = self.last_pts {
            // Timestamps must never go back; a frame stamped in the past is moved just after.
            if pts <= last {
                pts = last + 1;
            }
        }
        self.last_pts = Some(pts);
        self.shared.first_frame(pts);
        let mut buf = gst::Buffer::from_slice(jpeg);
        buf.get_mut().expect("new buffer is writable").set_pts(gst::ClockTime::from_nseconds(pts));
        let appsrc = self.appsrc.as_ref().ok_or_else(|| anyhow!("an audio-only pipeline takes no frames"))?;
        appsrc.push_buffer(buf).map_err(|e| anyhow!("pushing a frame: {e:?}"))?;
        Ok(())
    }

    /// Ends the stream and waits (bounded) until every chunk is out, then stops.
    pub async fn finish(mut self, timeout: Duration) -> Result<()> {
        if let Some(appsrc) = &self.appsrc {
            let _ = appsrc.end_of_stream();
        }
        // Live sources end only when told to.
        for src in self.audio_src.iter().chain(self.screen.as_ref().map(|(src, _)| src)) {
            src.send_event(gst::event::Eos::new());
        }
        let drained = match self.events.as_mut() {
            Some(events) => tokio::time::timeout(timeout, async {
                match events.recv().await {
                    Some(PipelineEvent::Eos) => Ok(()),
                    Some(PipelineEvent::Error(e)) => Err(anyhow!("while draining: {e}")),
                    None => Err(anyhow!("bus closed while draining")),
                }
            })
            .await
            .unwrap_or_else(|_| Err(anyhow!("pipeline did not drain within {timeout:?}"))),
            None => Ok(()),
        };
        self.stop();
        drained
    }

    fn stop(&self) {
        if let Err(e) = self.pipeline.set_state(gst::State::Null) {
            debug!("pipeline to NULL: {e}");
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.stop();
    }
}

fn queue() -> Result<gst::Element> {
    Ok(gst::ElementFactory::make("queue")
        .property("max-size-buffers", 0u32)
        .property("max-size-bytes", 0u32)
        .property("max-size-time", gst::ClockTime::from_seconds(1))
        .build()?)
}

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

pub mod audio_clock;
pub mod encoder;

use std::sync::Once;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use futures::StreamExt;
use gst::prelude::*;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use crate::job::spec::{AudioCodec, AudioSpec, HlsSpec, HlsTiming, VideoSpec};
use crate::media::{ChunkMeta, FrameStats, MuxOutput};

/// Registers GStreamer and the statically linked `cmafmux` once per process.
pub fn init() -> Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = gst::init().map_err(|e| anyhow!("gstreamer init: {e}")).and_then(|_| {
            gstfmp4::plugin_register_static().map_err(|e| anyhow!("registering cmafmux: {e}"))
        });
    });
    result
}

/// What the pipeline reports while it runs.
#[derive(Debug)]
pub enum PipelineEvent {
    Error(String),
    Eos,
}

/// The page's sound: its sound server, the source to record there, and how to encode it.
pub struct AudioInput<'a> {
    pub spec: &'a AudioSpec,
    pub server: &'a str,
    pub device: &'a str,
}

/// No video timestamp yet.
const UNSET: u64 = u64::MAX;

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
    fn read_phase_at_or_before(self, now: u64) -> u64 {
        let period = self.period_us * 1000;
        let half = period / 2;
        now - (now + period - half) % period
    }
}

/// A screen source and the valve that holds its frames back until the page is up.
type Screen = (gst::Element, gst::Element);

/// The audio gate: holds the sound back until the first frame is in (see [`Pipeline`]).
type Gate = Arc<std::sync::Mutex<Option<(gst::Pad, gst::PadProbeId)>>>;

/// The first frame is in: record its time and let the sound through.
fn first_frame(first_video_pts: &AtomicU64, gate: &Gate, pts: u64) {
    let _ = first_video_pts.compare_exchange(UNSET, pts, Ordering::AcqRel, Ordering::Acquire);
    if let Some((pad, probe)) = gate.lock().unwrap_or_else(|p| p.into_inner()).take() {
        pad.remove_probe(probe);
    }
}

pub struct Pipeline {
    pipeline: gst::Pipeline,
    /// None for audio only.
    appsrc: Option<gst_app::AppSrc>,
    audio_src: Option<gst::Element>,
    /// PTS of the first video frame: audio before it is dropped, so every stream (and the
    /// first fragment) starts with the picture.
    first_video_pts: Arc<AtomicU64>,
    /// Holds the captured audio (up to its queue's second) until the first frame is in, so
    /// that the audio from that frame on is at the muxer as soon as the frame is: the muxer
    /// places the first fragment (and asks for its keyframe) only once every stream has data.
    audio_gate: Gate,
    /// The screen source and the valve that holds its frames back until the page is up.
    screen: Option<Screen>,
    /// The screen's drawing ticks, which running time zero is aligned to.
    ticks: Option<Ticks>,
    /// Added to the sound's stamps: how much later than its capture stamp a picture shows
    /// the page ([`Pipeline::set_picture_delay`]).
    picture_delay_ns: Arc<AtomicI64>,
    /// Wall-clock (epoch ns) minus running time: maps capture times onto the pipeline clock.
    wall_offset_ns: Option<i128>,
    last_pts: Option<u64>,
    events: Option<mpsc::UnboundedReceiver<PipelineEvent>>,
    /// What the picture's constant-rate stage and main encoder did (None for audio only).
    video_probes: Option<VideoProbes>,
}

/// Counters read from the picture's path while it runs (see [`Pipeline::frame_stats`]).
struct VideoProbes {
    rate: gst::Element,
    /// PTS of the last frame given to the encoders, and the latest out of the main one
    /// (running time; 0 until the first).
    into_encoder: Arc<AtomicU64>,
    out_of_encoder: Arc<AtomicU64>,
    encoded: Arc<AtomicU64>,
    /// Frames out of the screen source's valve (None: the caller counts captured frames).
    captured: Option<Arc<AtomicU64>>,
}

fn make(factory: &str) -> Result<gst::Element> {
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
        let first_video_pts = Arc::new(AtomicU64::new(if video.is_some() { UNSET } else { 0 }));
        let picture_delay_ns = Arc::new(AtomicI64::new(0));
        let audio_tee = match &audio {
            Some(a) => Some(audio_branch(&pipeline, a, Arc::clone(&first_video_pts), Arc::clone(&picture_delay_ns), video.is_some())?),
            None => None,
        };
        let audio_gate: Gate = Arc::new(std::sync::Mutex::new(None));
        let (appsrc, screen, video_probes) = match video {
            Some(video) => {
                let head = PictureHead { input: picture, first_video_pts: Arc::clone(&first_video_pts), gate: Arc::clone(&audio_gate) };
                let (src, screen, probes) = video_branches(&pipeline, video, head, hls, &timing, audio_tee.as_ref().map(|a| &a.0), &out)?;
                (src, screen, Some(probes))
            }
            None => {
                let (tee, ..) = audio_tee.as_ref().ok_or_else(|| anyhow!("an egress needs a picture or a sound"))?;
                let (mux, sink) = mux_to_appsink("cmafmux", &timing, 0, out)?;
                let q = queue()?;
                pipeline.add_many([&q, &mux, &sink])?;
                gst::Element::link_many([tee, &q, &mux, &sink]).context("linking the sound into its muxer")?;
                split_after_first_part(&q.static_pad("src").context("queue has no src pad")?, &mux, timing.part_ns(), false);
                (None, None, None)
            }
        };
        let audio_src = match audio_tee {
            Some((_, src, gate)) => {
                *audio_gate.lock().unwrap_or_else(|p| p.into_inner()) = gate;
                Some(src)
            }
            None => None,
        };
        Ok(Self {
            pipeline,
            appsrc,
            audio_src,
            first_video_pts,
            audio_gate,
            screen,
            ticks,
            picture_delay_ns,
            wall_offset_ns: None,
            last_pts: None,
            events: None,
            video_probes,
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
        self.wall_offset_ns = Some(((crate::capture::epoch_now() - since_base) * 1e9) as i128);
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
        self.picture_delay_ns.store(delay.as_nanos() as i64, Ordering::Relaxed);
    }

    /// Epoch ns of running time zero (for wall-clock stamps on chunks).
    pub fn wall_offset_ns(&self) -> i128 {
        self.wall_offset_ns.unwrap_or(0)
    }

    /// The constant-rate stage's and main encoder's counts; the capture's own are the
    /// caller's to fill in.
    pub fn frame_stats(&self) -> FrameStats {
        let Some(p) = &self.video_probes else { return FrameStats::default() };
        let encoded = p.encoded.load(Ordering::Relaxed);
        let (into, out) = (p.into_encoder.load(Ordering::Relaxed), p.out_of_encoder.load(Ordering::Relaxed));
        FrameStats {
            duplicated: p.rate.property::<u64>("duplicate"),
            dropped: p.rate.property::<u64>("drop"),
            encoded,
            captured: p.captured.as_ref().map(|c| c.load(Ordering::Relaxed)).unwrap_or(0),
            encoder_lag_ms: match (into, encoded) {
                (UNSET, _) => 0,
                // Nothing out yet: the lag is everything given so far.
                (i, 0) => i.saturating_sub(self.first_video_pts.load(Ordering::Relaxed)) / 1_000_000,
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
        first_frame(&self.first_video_pts, &self.audio_gate, pts);
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

/// How the picture enters the pipeline, and what its first frame must set.
struct PictureHead<'a> {
    input: PictureInput<'a>,
    first_video_pts: Arc<AtomicU64>,
    gate: Gate,
}

/// The source end of the picture: appsrc → jpegdec for pushed JPEG frames, or ximagesrc →
/// caps(F fps) → valve → queue for a screen (the valve drops frames until [`Pipeline::open_screen`];
/// the first one through is the first frame). Returns the elements in order, the appsrc, the
/// screen's (source, valve) and the captured-frame counter for a screen. Both are bounded
/// and leaky, so a backlog drops old frames rather than holding back the capture.
type Source = (Vec<gst::Element>, Option<gst_app::AppSrc>, Option<Screen>, Option<Arc<AtomicU64>>);

fn picture_source(video: &VideoSpec, head: PictureHead) -> Result<Source> {
    match head.input {
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
            Ok((vec![appsrc.clone().upcast(), make("jpegdec")?], Some(appsrc), None, None))
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
            let caps = gst::ElementFactory::make("capsfilter").property("caps", gst::Caps::builder("video/x-raw").field("framerate", rate).build()).build()?;
            let valve = gst::ElementFactory::make("valve").property("drop", true).build().context("creating valve")?;
            let captured = Arc::new(AtomicU64::new(0));
            let (count, first, gate) = (Arc::clone(&captured), head.first_video_pts, head.gate);
            valve.static_pad("src").context("valve has no src pad")?.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if let Some(pts) = info.buffer().and_then(|b| b.pts()) {
                    if count.fetch_add(1, Ordering::Relaxed) == 0 {
                        first_frame(&first, &gate, pts.nseconds());
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
            Ok((vec![src.clone(), caps, valve.clone(), backlog], None, Some((src, valve)), Some(captured)))
        }
    }
}

/// The picture: source → … → tee, then an encoder branch per rendition, each muxer also fed
/// from the sound's tee if there is one.
fn video_branches(
    pipeline: &gst::Pipeline,
    video: &VideoSpec,
    head: PictureHead,
    hls: &HlsSpec,
    timing: &HlsTiming,
    audio_tee: Option<&gst::Element>,
    out: &mpsc::UnboundedSender<MuxOutput>,
) -> Result<(Option<gst_app::AppSrc>, Option<Screen>, VideoProbes)> {
    let (source, appsrc, screen, captured) = picture_source(video, head)?;
    let scale = make("videoscale")?;
    let convert = make("videoconvert")?;
    let size_caps = gst::ElementFactory::make("capsfilter")
        .property(
            "caps",
            gst::Caps::builder("video/x-raw")
                .field("format", "I420")
                .field("width", video.width as i32)
                .field("height", video.height as i32)
                .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
                .build(),
        )
        .build()?;
    let rate = gst::ElementFactory::make("videorate").property("skip-to-first", true).build()?;
    let rate_caps = gst::ElementFactory::make("capsfilter")
        .property("caps", gst::Caps::builder("video/x-raw").field("framerate", gst::Fraction::new(video.framerate as i32, 1)).build())
        .build()?;
    let tee = make("tee")?;
    let probes = VideoProbes {
        rate: rate.clone(),
        into_encoder: Arc::new(AtomicU64::new(UNSET)),
        out_of_encoder: Arc::new(AtomicU64::new(0)),
        encoded: Arc::new(AtomicU64::new(0)),
        captured,
    };
    let into = Arc::clone(&probes.into_encoder);
    tee.static_pad("sink").context("tee has no sink pad")?.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(pts) = info.buffer().and_then(|b| b.pts()) {
            into.store(pts.nseconds(), Ordering::Relaxed);
        }
        gst::PadProbeReturn::Ok
    });
    let mut head: Vec<&gst::Element> = source.iter().collect();
    head.extend([&scale, &convert, &size_caps, &rate, &rate_caps, &tee]);
    pipeline.add_many(&head)?;
    gst::Element::link_many(&head).context("linking the capture half of the pipeline")?;
    let main = (video.width, video.height, video.bitrate_kbps);
    let rungs = std::iter::once(main).chain(hls.ladder.iter().map(|r| (r.width, r.height, r.bitrate_kbps)));
    for (rendition, (width, height, bitrate_kbps)) in rungs.enumerate() {
        let v = VideoSpec { width, height, bitrate_kbps, ..video.clone() };
        let (branch, encoder) = encode_branch(&v, rendition > 0, audio_tee.is_some(), timing, rendition, out.clone())?;
        if rendition == 0 {
            count_encoded(&encoder, &probes)?;
        }
        let refs: Vec<&gst::Element> = branch.iter().collect();
        pipeline.add_many(&refs)?;
        gst::Element::link_many(&refs).context("linking an encoder branch")?;
        tee.link(&branch[0]).context("linking the tee")?;
        if let Some(audio_tee) = audio_tee {
            let queue = queue()?;
            let mux = &branch[branch.len() - 2];
            pipeline.add(&queue)?;
            gst::Element::link_many([audio_tee, &queue, mux]).context("linking the audio into a muxer")?;
        }
    }
    Ok((appsrc, screen, probes))
}

/// Counts the encoder's output and remembers its last input time. x264enc shifts its
/// timestamps (by 1000 h, so DTS never goes negative): compare in running time.
fn count_encoded(encoder: &gst::Element, probes: &VideoProbes) -> Result<()> {
    let (out, encoded) = (Arc::clone(&probes.out_of_encoder), Arc::clone(&probes.encoded));
    encoder.static_pad("src").context("encoder has no src pad")?.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(pts) = info.buffer().and_then(|b| b.pts()) else { return gst::PadProbeReturn::Ok };
        let segment = pad.sticky_event::<gst::event::Segment>(0);
        let running = segment.as_ref().and_then(|s| s.segment().downcast_ref::<gst::ClockTime>().and_then(|s| s.to_running_time(pts)));
        encoded.fetch_add(1, Ordering::Relaxed);
        // Frames come out in decode order: keep the latest presentation time seen.
        out.fetch_max(running.unwrap_or(pts).nseconds(), Ordering::Relaxed);
        gst::PadProbeReturn::Ok
    });
    Ok(())
}

fn queue() -> Result<gst::Element> {
    Ok(gst::ElementFactory::make("queue")
        .property("max-size-buffers", 0u32)
        .property("max-size-bytes", 0u32)
        .property("max-size-time", gst::ClockTime::from_seconds(1))
        .build()?)
}

/// The sound of the page, encoded once: pulsesrc → … → encoder → tee. Returns the tee (one
/// branch per muxer is linked to it), the source (which must be told EOS) and the gate that
/// holds the audio until the first frame.
type AudioBranch = (gst::Element, gst::Element, Option<(gst::Pad, gst::PadProbeId)>);

fn audio_branch(pipeline: &gst::Pipeline, a: &AudioInput, first_video_pts: Arc<AtomicU64>, picture_delay_ns: Arc<AtomicI64>, gated: bool) -> Result<AudioBranch> {
    let spec = a.spec;
    let src = gst::ElementFactory::make("pulsesrc")
        .property("server", a.server)
        .property("device", a.device)
        // The pipeline runs on the system clock, onto which video capture times are mapped.
        .property("provide-clock", false)
        // 10 ms reads, 50 ms of buffer: little latency, no underruns on a busy machine.
        .property("latency-time", 10_000i64)
        .property("buffer-time", 50_000i64)
        .build()
        .context("creating pulsesrc (apt install gstreamer1.0-pulseaudio)")?;
    // A pure sample count (no resyncs), put onto the clock by audio_clock.
    src.set_property_from_str("slave-method", "none");
    audio_clock::stamp_by_arrival(&src.static_pad("src").context("pulsesrc has no src pad")?, picture_delay_ns);
    let caps = gst::ElementFactory::make("capsfilter")
        .property(
            "caps",
            gst::Caps::builder("audio/x-raw").field("rate", spec.sample_rate as i32).field("channels", spec.channels as i32).build(),
        )
        .build()?;
    // Leaky: while the gate holds the sound back for the first frame, the oldest goes rather
    // than pulsesrc blocking (which would make it drop samples and leave a hole).
    let q = queue()?;
    q.set_property_from_str("leaky", "downstream");
    let (enc, parse) = match spec.codec {
        AudioCodec::Aac => (
            // FFmpeg's native AAC-LC encoder (Debian's GStreamer has no fdkaacenc; voaacenc is
            // the other choice and sounds worse at the same rate).
            gst::ElementFactory::make("avenc_aac")
                .property("bitrate", (spec.bitrate_kbps * 1000) as i32)
                .build()
                .context("creating avenc_aac (apt install gstreamer1.0-libav)")?,
            Some(make("aacparse")?),
        ),
        AudioCodec::Opus => (
            gst::ElementFactory::make("opusenc").property("bitrate", (spec.bitrate_kbps * 1000) as i32).build().context("creating opusenc")?,
            None,
        ),
    };
    let tee = make("tee")?;
    // Continuous sound whatever happened upstream (samples pulsesrc or the leaky queue
    // dropped): gaps become silence, overlaps are cut, so a player's buffer never has a hole
    // in it. Below 5 ms the timeline is trusted as it is.
    let rate = gst::ElementFactory::make("audiorate")
        .property("skip-to-first", true)
        .property("tolerance", 5_000_000u64)
        .build()
        .context("creating audiorate")?;
    let mut chain = vec![src.clone(), make("audioconvert")?, make("audioresample")?, caps, q.clone(), rate, enc.clone()];
    chain.extend(parse);
    chain.push(tee.clone());
    pipeline.add_many(&chain)?;
    gst::Element::link_many(&chain).context("linking the audio branch")?;
    let gate_pad = q.static_pad("src").context("queue has no src pad")?;
    let gate = match gated {
        true => gate_pad.add_probe(gst::PadProbeType::BLOCK_DOWNSTREAM, |_, _| gst::PadProbeReturn::Ok).map(|id| (gate_pad, id)),
        false => None,
    };
    // Shift by the capture path's fixed latency, and start with the picture.
    let offset_ns = spec.offset_ms as i64 * 1_000_000;
    let pad = enc.static_pad("sink").context("the audio encoder has no sink pad")?;
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let first = first_video_pts.load(Ordering::Acquire);
        let Some(buf) = info.buffer_mut() else { return gst::PadProbeReturn::Ok };
        let Some(pts) = buf.pts() else { return gst::PadProbeReturn::Drop };
        let shifted = (pts.nseconds() as i64 + offset_ns).max(0) as u64;
        let end = shifted + buf.duration().map(|d| d.nseconds()).unwrap_or(0);
        if first == UNSET || end <= first {
            debug!(pts = shifted, first_video = first, "audio before the first video frame: dropped");
            return gst::PadProbeReturn::Drop;
        }
        if offset_ns != 0 {
            buf.make_mut().set_pts(gst::ClockTime::from_nseconds(shifted));
        }
        gst::PadProbeReturn::Ok
    });
    Ok((tee, src, gate))
}

/// queue → [scale to the rung's size] → x264 → h264parse → muxer → appsink, for one rendition.
fn encode_branch(
    v: &VideoSpec,
    scaled: bool,
    with_audio: bool,
    timing: &HlsTiming,
    rendition: usize,
    out: mpsc::UnboundedSender<MuxOutput>,
) -> Result<(Vec<gst::Element>, gst::Element)> {
    let mut chain = vec![queue()?];
    if scaled {
        chain.push(make("videoscale")?);
        chain.push(
            gst::ElementFactory::make("capsfilter")
                .property(
                    "caps",
                    gst::Caps::builder("video/x-raw")
                        .field("width", v.width as i32)
                        .field("height", v.height as i32)
                        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
                        .build(),
                )
                .build()?,
        );
    }
    let (enc, enc_caps) = encoder::h264(v)?;
    let (mux, sink) = mux_to_appsink(if with_audio { "isofmp4mux" } else { "cmafmux" }, timing, rendition, out)?;
    let parse = make("h264parse")?;
    split_after_first_part(&enc.static_pad("src").context("encoder has no src pad")?, &mux, timing.part_ns(), true);
    chain.extend([enc.clone(), enc_caps, parse, mux, sink]);
    Ok((chain, enc))
}

/// A muxer cutting fragments (segments) and chunks (parts) on the grid, and the appsink that
/// hands its output to `out` as the chunks of `rendition`.
fn mux_to_appsink(
    muxer: &str,
    timing: &HlsTiming,
    rendition: usize,
    out: mpsc::UnboundedSender<MuxOutput>,
) -> Result<(gst::Element, gst::Element)> {
    let mux = gst::ElementFactory::make(muxer)
        .property("fragment-duration", gst::ClockTime::from_nseconds(timing.fragment_ns()))
        .property("chunk-duration", gst::ClockTime::from_nseconds(timing.part_ns()))
        .property("latency", gst::ClockTime::from_nseconds(timing.mux_latency_ns()))
        .build()
        .with_context(|| format!("creating {muxer}"))?;
    let sink = gst_app::AppSink::builder().sync(false).buffer_list(true).build();
    let all_sync = timing.audio_grid;
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                for item in split_sample(&sample, rendition, all_sync) {
                    if out.send(item).is_err() {
                        return Err(gst::FlowError::Flushing);
                    }
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    Ok((mux, sink.upcast()))
}

/// A buffer's running time on `pad` (its PTS where the pad has no time segment).
fn running_time(pad: &gst::Pad, buf: &gst::BufferRef) -> Option<gst::ClockTime> {
    let segment = pad.sticky_event::<gst::event::Segment>(0);
    match (buf.pts(), segment.as_ref().and_then(|s| s.segment().downcast_ref::<gst::ClockTime>().cloned())) {
        (Some(pts), Some(seg)) => seg.to_running_time(pts),
        (pts, _) => pts,
    }
}

/// Makes the first fragment (hence the first segment) a single part: on the first buffer
/// into the muxer, asks it to split one part later, and every later fragment follows a whole
/// segment after that, on the encoder's GOP cadence. See [`HlsTiming`] for why.
///
/// With `from_encoder` (`pad` is the video encoder's output) the encoder is also asked for
/// the keyframe there. The muxer asks for it too, but only once every stream has data; with
/// sound that can be after that frame went in, which left the first segment a frame or two
/// long. Not before the encoder's first frame is out: GStreamer 1.22's encoder base class then
/// compares the request with that frame's shifted time (x264enc's 1000 h), makes it a
/// keyframe, and drops the muxer's request as already served.
fn split_after_first_part(pad: &gst::Pad, mux: &gst::Element, part_ns: u64, from_encoder: bool) {
    let mux = mux.downgrade();
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(buf) = info.buffer() else { return gst::PadProbeReturn::Ok };
        let Some(rt) = running_time(pad, buf) else { return gst::PadProbeReturn::Remove };
        let at = rt + gst::ClockTime::from_nseconds(part_ns);
        if let Some(mux) = mux.upgrade() {
            mux.emit_by_name::<()>("split-at-running-time", &[&at]);
            debug!(first_running_time = %rt, "first segment: one part");
        }
        if from_encoder && !pad.send_event(gst_video::UpstreamForceKeyUnitEvent::builder().running_time(at).all_headers(true).build()) {
            warn!("the encoder refused a keyframe request for the first segment's end");
        }
        gst::PadProbeReturn::Remove
    });
}

/// Splits one cmafmux output (a buffer list) into the init segment and the chunk.
/// cmafmux marks the init segment DISCONT|HEADER, each fragment/chunk header HEADER
/// (plus DELTA_UNIT when it is a chunk inside a fragment), and media buffers DELTA_UNIT.
/// `all_sync`: every frame is a sync sample (sound alone), so every chunk is independent.
fn split_sample(sample: &gst::Sample, rendition: usize, all_sync: bool) -> Vec<MuxOutput> {
    let mut out = Vec::new();
    let buffers: Vec<gst::Buffer> = match (sample.buffer_list(), sample.buffer()) {
        (Some(list), _) => list.iter_owned().collect(),
        (None, Some(b)) => vec![b.to_owned()],
        _ => return out,
    };
    // Encoders may shift timestamps (x264enc starts at 1000 h so DTS never goes negative):
    // report running time, which is what the capture clock mapping is in.
    let segment = sample.segment().and_then(|s| s.downcast_ref::<gst::ClockTime>().cloned());
    let running = |t: Option<gst::ClockTime>| -> u64 {
        match (&segment, t) {
            (Some(seg), Some(t)) => seg.to_running_time(t).unwrap_or(t).nseconds(),
            (None, Some(t)) => t.nseconds(),
            _ => 0,
        }
    };
    let mut chunk: Option<(ChunkMeta, Vec<u8>)> = None;
    for buf in buffers {
        let flags = buf.flags();
        let Ok(map) = buf.map_readable() else { continue };
        if flags.contains(gst::BufferFlags::HEADER) && flags.contains(gst::BufferFlags::DISCONT) {
            out.push(MuxOutput::Init(rendition, Bytes::copy_from_slice(&map)));
        } else if flags.contains(gst::BufferFlags::HEADER) {
            if let Some((meta, data)) = chunk.take() {
                out.push(MuxOutput::Chunk(meta, data.into()));
            }
            let meta = ChunkMeta {
                pts_ns: running(buf.pts()),
                duration_ns: buf.duration().map(|t| t.nseconds()).unwrap_or(0),
                fragment_start: !flags.contains(gst::BufferFlags::DELTA_UNIT),
                independent: all_sync || !flags.contains(gst::BufferFlags::DELTA_UNIT),
                wallclock_ms: 0,
                rendition,
            };
            chunk = Some((meta, map.to_vec()));
        } else if let Some((_, data)) = chunk.as_mut() {
            data.extend_from_slice(&map);
        }
    }
    if let Some((meta, data)) = chunk {
        out.push(MuxOutput::Chunk(meta, data.into()));
    }
    out
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

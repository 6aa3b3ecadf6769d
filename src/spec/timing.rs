//! The HLS/GOP timing grid: parts of whole frames, segments of whole GOPs, so every part and
//! segment duration is known before it is made. Shared by the pipeline (the muxer's cuts,
//! the encoder's keyframes) and the outputs (PART-TARGET, TARGETDURATION).

use super::types::{AudioCodec, AudioSpec, HlsSpec, VideoSpec, DEFAULT_FRAMERATE};

/// Frames from one IDR to the next.
pub fn gop_frames(video: &VideoSpec) -> u32 {
    ((video.framerate as f64) * video.keyframe_interval).round().max(1.0) as u32
}

/// The frame-exact timing grid of an HLS output: parts are a whole number of frames, segments
/// a whole number of GOPs, so every part and segment duration is known before it is made and
/// PART-TARGET / TARGETDURATION never change during a stream. Without a picture the frames are
/// the audio codec's (AAC: 1024 samples, Opus: 20 ms) and segments a whole number of parts.
///
/// The first segment is a single part (the muxer is told to split there and requests a
/// keyframe for it): players that need a whole segment before they start, as hls.js does, can
/// then start one part after the first frame instead of one segment after it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HlsTiming {
    /// Frames per second as `rate_num / rate_den` (an AAC frame rate is not whole).
    pub rate_num: u64,
    pub rate_den: u64,
    pub part_frames: u32,
    pub segment_frames: u32,
    /// The sound alone: every frame is a sync sample, and the muxer needs time to see where
    /// the last frame of a part ends (see [`HlsTiming::mux_latency_ns`]).
    pub audio_grid: bool,
}

impl HlsTiming {
    /// The grid of an egress's tracks: the picture's frames if it has one, else the sound's.
    pub fn new(video: Option<&VideoSpec>, audio: Option<&AudioSpec>, hls: &HlsSpec) -> Self {
        match (video, audio) {
            (Some(v), _) => Self::video(v, hls),
            (None, Some(a)) => Self::audio(a, hls),
            // No tracks is refused when the request is read; any grid will do.
            (None, None) => Self { rate_num: DEFAULT_FRAMERATE as u64, rate_den: 1, part_frames: 6, segment_frames: 60, audio_grid: false },
        }
    }

    fn video(video: &VideoSpec, hls: &HlsSpec) -> Self {
        let fps = video.framerate.max(1);
        let part_frames = ((hls.part_duration_ms as f64 * fps as f64 / 1000.0).round() as u32).max(1);
        let gop = gop_frames(video);
        // cmafmux cuts a fragment at the first keyframe at or after the fragment duration.
        let segment_frames = (hls.segment_duration * fps).div_ceil(gop).max(1) * gop;
        Self { rate_num: fps as u64, rate_den: 1, part_frames, segment_frames, audio_grid: false }
    }

    fn audio(audio: &AudioSpec, hls: &HlsSpec) -> Self {
        let samples = match audio.codec {
            AudioCodec::Aac => 1024,
            AudioCodec::Opus => audio.sample_rate as u64 / 50,
        };
        let (num, den) = (audio.sample_rate.max(1) as u64, samples);
        let frame_ms = den as f64 * 1000.0 / num as f64;
        let part_frames = ((hls.part_duration_ms as f64 / frame_ms).round() as u32).max(1);
        let parts = ((hls.segment_duration as f64 * 1000.0) / (part_frames as f64 * frame_ms)).round().max(1.0) as u32;
        Self { rate_num: num, rate_den: den, part_frames, segment_frames: part_frames * parts, audio_grid: true }
    }

    pub fn frame_secs(&self) -> f64 {
        self.rate_den as f64 / self.rate_num as f64
    }

    /// `frames` frames in ns, rounded down: a muxer cutting there never counts the frame that
    /// starts the next part (whose timestamp is also rounded down) into this one.
    fn frames_ns(&self, frames: u32) -> u64 {
        frames as u64 * self.rate_den * 1_000_000_000 / self.rate_num
    }

    /// Chunk duration for the muxer.
    pub fn part_ns(&self) -> u64 {
        self.frames_ns(self.part_frames)
    }

    pub fn fragment_ns(&self) -> u64 {
        self.frames_ns(self.segment_frames)
    }

    /// How long the muxer waits for a late stream before cutting without it. Video: never
    /// needed (the picture drives the cut). Sound alone: fmp4mux closes a chunk once a frame
    /// starting after its end is in, and the frame after that tells it the last one is
    /// complete: about two frames after the part's end. Cut sooner (at the deadline of a live
    /// aggregator with no latency of its own) and the part loses its last frame (measured: 8
    /// of 9 AAC frames in every part).
    pub fn mux_latency_ns(&self) -> u64 {
        if self.audio_grid {
            100_000_000
        } else {
            0
        }
    }

    pub fn segment_secs(&self) -> f64 {
        self.segment_frames as f64 * self.frame_secs()
    }

    /// PART-TARGET in seconds, rounded up to the millisecond.
    pub fn part_target(&self) -> f64 {
        (self.part_frames as f64 * self.frame_secs() * 1000.0 - 1e-9).ceil() / 1000.0
    }

    /// EXT-X-TARGETDURATION: whole seconds, at least every segment's rounded duration.
    pub fn target_duration(&self) -> u32 {
        (self.segment_secs() - 1e-9).ceil().max(1.0) as u32
    }
}

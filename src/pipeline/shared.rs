//! What the pipeline's streaming threads and its owner share, in one place: the first
//! frame's time and the audio gate it opens, the picture's delay the sound follows, and the
//! counters read for [`crate::media::FrameStats`].

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use gst::prelude::*;

/// No video timestamp yet.
pub(super) const UNSET: u64 = u64::MAX;

pub(super) struct Shared {
    /// PTS of the first video frame: audio before it is dropped, so every stream (and the
    /// first fragment) starts with the picture.
    pub first_video_pts: AtomicU64,
    /// Holds the captured audio (up to its queue's second) until the first frame is in, so
    /// that the audio from that frame on is at the muxer as soon as the frame is: the muxer
    /// places the first fragment (and asks for its keyframe) only once every stream has data.
    pub audio_gate: Mutex<Option<(gst::Pad, gst::PadProbeId)>>,
    /// Added to the sound's stamps: how much later than its capture stamp a picture shows
    /// the page ([`super::Pipeline::set_picture_delay`]).
    pub picture_delay_ns: AtomicI64,
    /// PTS of the last frame given to the encoders, and the latest out of the main one
    /// (running time; 0 until the first).
    pub into_encoder: AtomicU64,
    pub out_of_encoder: AtomicU64,
    pub encoded: AtomicU64,
    /// Frames out of the screen source's valve (for CDP frames the caller counts them).
    pub captured: AtomicU64,
}

impl Shared {
    /// `video`: whether there is a picture to wait for (audio alone drops no sound).
    pub fn new(video: bool) -> Self {
        Self {
            first_video_pts: AtomicU64::new(if video { UNSET } else { 0 }),
            audio_gate: Mutex::new(None),
            picture_delay_ns: AtomicI64::new(0),
            into_encoder: AtomicU64::new(UNSET),
            out_of_encoder: AtomicU64::new(0),
            encoded: AtomicU64::new(0),
            captured: AtomicU64::new(0),
        }
    }

    /// The first frame is in: record its time and let the sound through.
    pub fn first_frame(&self, pts: u64) {
        let _ = self.first_video_pts.compare_exchange(UNSET, pts, Ordering::AcqRel, Ordering::Acquire);
        if let Some((pad, probe)) = self.audio_gate.lock().unwrap_or_else(|p| p.into_inner()).take() {
            pad.remove_probe(probe);
        }
    }
}

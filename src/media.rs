//! Media units that flow from the pipeline to the outputs: the CMAF init segment and CMAF
//! chunks (one LL-HLS part each; the first chunk of a fragment starts a segment with an IDR).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Timing of one CMAF chunk; travels beside the bytes (also over the worker pipe).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChunkMeta {
    /// Presentation time of the first sample, pipeline running time in ns.
    pub pts_ns: u64,
    pub duration_ns: u64,
    /// First chunk of a CMAF fragment: starts with an IDR and opens a new HLS segment.
    pub fragment_start: bool,
    /// Decodable on its own: a fragment start, or any chunk of sound alone (every audio
    /// frame is a sync sample).
    #[serde(default)]
    pub independent: bool,
    /// Wall-clock capture time of the first sample, ms since the Unix epoch.
    pub wallclock_ms: u64,
    /// Which rendition of the ABR ladder: 0 is the main picture.
    #[serde(default)]
    pub rendition: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MuxOutput {
    /// ftyp+moov of one rendition; sent once, before its first chunk.
    Init(usize, Bytes),
    /// moof+mdat.
    Chunk(ChunkMeta, Bytes),
}

/// How an egress's picture is doing, counted since it started; the worker sends it every
/// second and at the end (shown in `/metrics` and the logs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameStats {
    /// New pictures from the page.
    pub captured: u64,
    /// The page's last picture sent again, because the page had not changed.
    pub repeated: u64,
    /// Begin-frame capture: slots that passed with no frame, because the one before took
    /// longer than a frame interval.
    pub late: u64,
    /// Output frames that repeat the previous one to keep the rate (videorate).
    pub duplicated: u64,
    /// Captured frames never shown (videorate).
    pub dropped: u64,
    /// Frames out of the main rendition's encoder.
    pub encoded: u64,
    /// How far the main encoder's output is behind the frames given to it, ms.
    pub encoder_lag_ms: u64,
}

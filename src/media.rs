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

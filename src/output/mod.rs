//! Outputs: where the encoded media goes. Each output consumes [`crate::media::MuxOutput`]s.

pub mod hls;

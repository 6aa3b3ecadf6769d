//! Outputs: where the encoded media goes. Each output consumes [`crate::media::MuxOutput`]s.

pub mod file;
pub mod hls;
pub mod push;
pub mod stream;

//! The job spec, at the ground floor of the code: what one egress does ([`types`]), made from a
//! LiveKit request ([`request`], [`encoding`]), its HLS/GOP grid ([`timing`]), URL checks
//! ([`url`]) and the room template contract ([`room`]). Every other module takes the spec from
//! here; this module imports only `config`, `clock` (time formatting) and external crates.

pub mod encoding;
pub mod names;
pub mod request;
pub mod request_v2;
pub mod room;
pub mod timing;
pub mod types;
pub mod url;

#[cfg(test)]
mod tests;

use thiserror::Error;

pub use timing::{gop_frames, HlsTiming};
pub use types::*;

/// A request field that cannot be honoured; becomes Twirp `invalid_argument` or `unimplemented`.
#[derive(Debug, Error, PartialEq)]
pub enum SpecError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unsupported(String),
}

impl SpecError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::Invalid(msg.into())
    }
}

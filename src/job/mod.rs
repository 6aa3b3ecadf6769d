//! Jobs: the egress state machine, request validation and the registry that starts, lists
//! and stops egresses (each in its own worker process).

pub mod manager;
pub mod spec;
pub mod state;

use thiserror::Error;

/// Why a job operation was refused; the API maps each to its Twirp code.
#[derive(Debug, Error)]
pub enum JobError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<spec::SpecError> for JobError {
    fn from(e: spec::SpecError) -> Self {
        match e {
            spec::SpecError::Invalid(m) => JobError::InvalidArgument(m),
            spec::SpecError::Unsupported(m) => JobError::Unimplemented(m),
        }
    }
}

//! Jobs: the egresses of this node. [`manager`] is what the API calls; [`registry`] holds
//! each egress's [`state`]; a [`supervisor`] per egress runs its worker process (warm from the
//! [`pool`] or cold) and feeds its outputs; [`room_service`] is LiveKit's RoomService for
//! UpdateLayout.

pub mod journal;
pub mod manager;
pub mod pool;
pub mod registry;
pub mod room_service;
pub mod state;
pub mod supervisor;

use thiserror::Error;

use crate::spec::SpecError;

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
    /// An egress id this node already has (a retried StartEgress from livekit-server).
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    Internal(String),
}

impl JobError {
    /// The Twirp/psrpc code (both use the same lowercase names).
    pub fn code(&self) -> &'static str {
        match self {
            JobError::InvalidArgument(_) => "invalid_argument",
            JobError::Unimplemented(_) => "unimplemented",
            JobError::NotFound(_) => "not_found",
            JobError::FailedPrecondition(_) => "failed_precondition",
            JobError::Unavailable(_) => "unavailable",
            JobError::AlreadyExists(_) => "already_exists",
            JobError::Internal(_) => "internal",
        }
    }
}

impl From<SpecError> for JobError {
    fn from(e: SpecError) -> Self {
        match e {
            SpecError::Invalid(m) => JobError::InvalidArgument(m),
            SpecError::Unsupported(m) => JobError::Unimplemented(m),
        }
    }
}

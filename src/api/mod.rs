//! The LiveKit Egress Twirp API (`POST /twirp/livekit.Egress/<Method>`), so LiveKit's server
//! SDKs work against roomcast unchanged. Message types come from `livekit-protocol`.

pub mod auth;
pub mod egress_worker;
pub mod twirp;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use livekit_protocol as proto;

use crate::config::CaptureBackend;
use crate::job::manager::JobManager;
use crate::job::JobError;
use auth::Auth;
use twirp::{Codec, TwirpError};

#[derive(Clone)]
pub struct ApiState {
    pub auth: Arc<Auth>,
    pub jobs: Arc<JobManager>,
}

pub fn router(state: ApiState) -> Router {
    Router::new().route("/twirp/livekit.Egress/{method}", post(handle)).with_state(state)
}

impl From<JobError> for TwirpError {
    fn from(e: JobError) -> Self {
        TwirpError::new(e.code(), e.to_string())
    }
}

/// Methods of the Egress service that roomcast does not serve yet.
const NOT_YET: &[&str] = &["StartEgress", "StartParticipantEgress", "StartTrackCompositeEgress", "StartTrackEgress"];

async fn handle(State(st): State<ApiState>, Path(method): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    match dispatch(&st, &method, &headers, &body) {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(method, code = e.code, msg = %e.msg, "api error");
            e.into_response()
        }
    }
}

/// The request header that picks a capture backend for one egress (LiveKit's request has no
/// field for it, so the official SDKs always get the configured one).
pub const CAPTURE_HEADER: &str = "roomcast-capture";

fn capture_override(headers: &HeaderMap) -> Result<Option<CaptureBackend>, TwirpError> {
    let Some(v) = headers.get(CAPTURE_HEADER) else { return Ok(None) };
    let v = v.to_str().map_err(|_| TwirpError::new("invalid_argument", format!("{CAPTURE_HEADER}: not text")))?;
    v.parse().map(Some).map_err(|e: anyhow::Error| TwirpError::new("invalid_argument", format!("{CAPTURE_HEADER}: {e}")))
}

fn dispatch(st: &ApiState, method: &str, headers: &HeaderMap, body: &[u8]) -> Result<Response, TwirpError> {
    let known =
        matches!(method, "StartWebEgress" | "StartRoomCompositeEgress" | "UpdateLayout" | "UpdateStream" | "ListEgress" | "StopEgress")
            || NOT_YET.contains(&method);
    if !known {
        return Err(TwirpError::new("bad_route", format!("no such method: livekit.Egress/{method}")));
    }
    st.auth.require_record(headers)?;
    let codec = Codec::from_headers(headers)?;
    match method {
        "StartWebEgress" => {
            let req: proto::WebEgressRequest = codec.decode(body)?;
            Ok(codec.encode(&st.jobs.start_web(req, capture_override(headers)?)?))
        }
        "StartRoomCompositeEgress" => {
            let req: proto::RoomCompositeEgressRequest = codec.decode(body)?;
            Ok(codec.encode(&st.jobs.start_room(req, capture_override(headers)?)?))
        }
        "UpdateLayout" => {
            let req: proto::UpdateLayoutRequest = codec.decode(body)?;
            if req.egress_id.is_empty() {
                return Err(TwirpError::new("invalid_argument", "egress_id is required"));
            }
            Ok(codec.encode(&st.jobs.update_layout(&req.egress_id, &req.layout)?))
        }
        "UpdateStream" => {
            let req: proto::UpdateStreamRequest = codec.decode(body)?;
            if req.egress_id.is_empty() {
                return Err(TwirpError::new("invalid_argument", "egress_id is required"));
            }
            Ok(codec.encode(&st.jobs.update_stream(&req)?))
        }
        "ListEgress" => {
            let req: proto::ListEgressRequest = codec.decode(body)?;
            let items = st.jobs.list(&req);
            Ok(codec.encode(&proto::ListEgressResponse { items, next_page_token: None }))
        }
        "StopEgress" => {
            let req: proto::StopEgressRequest = codec.decode(body)?;
            if req.egress_id.is_empty() {
                return Err(TwirpError::new("invalid_argument", "egress_id is required"));
            }
            Ok(codec.encode(&st.jobs.stop(&req.egress_id)?))
        }
        other => Err(TwirpError::new("unimplemented", format!("{other} is not implemented by roomcast yet"))),
    }
}

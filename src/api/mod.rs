//! The LiveKit Egress Twirp API (`POST /twirp/livekit.Egress/<Method>`), so LiveKit's server
//! SDKs work against roomcast unchanged. Message types come from `livekit-protocol`.

pub mod auth;
pub mod egress_lease;
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

/// How many egresses one ListEgress answer holds at most; `next_page_token` leads on.
pub const LIST_PAGE_SIZE: usize = 100;

/// One page of a listing, in egress-id order: the egresses after `after` (the page token, the
/// last id of the page before; opaque to callers), and the token of the next page if any.
pub fn page(mut items: Vec<proto::EgressInfo>, after: Option<&str>, size: usize) -> Result<proto::ListEgressResponse, TwirpError> {
    if let Some(t) = after {
        if t.len() > 64 || !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(TwirpError::new("invalid_argument", "page_token: not a token of this service"));
        }
        items.retain(|i| i.egress_id.as_str() > t);
    }
    items.sort_by(|a, b| a.egress_id.cmp(&b.egress_id));
    let next_page_token = if items.len() > size {
        items.truncate(size);
        items.last().map(|i| proto::TokenPagination { token: i.egress_id.clone() })
    } else {
        None
    };
    Ok(proto::ListEgressResponse { items, next_page_token })
}

/// Methods of the Egress service that roomcast does not serve yet.
const NOT_YET: &[&str] = &["StartParticipantEgress", "StartTrackCompositeEgress", "StartTrackEgress"];

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
    let known = matches!(
        method,
        "StartEgress" | "StartWebEgress" | "StartRoomCompositeEgress" | "UpdateLayout" | "UpdateStream" | "ListEgress" | "StopEgress"
    ) || NOT_YET.contains(&method);
    if !known {
        return Err(TwirpError::new("bad_route", format!("no such method: livekit.Egress/{method}")));
    }
    st.auth.require_record(headers)?;
    let codec = Codec::from_headers(headers)?;
    match method {
        "StartEgress" => {
            let req: proto::StartEgressRequest = codec.decode(body)?;
            Ok(codec.encode(&st.jobs.start_egress(req, capture_override(headers)?)?))
        }
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
            let after = req.page_token.as_ref().map(|t| t.token.as_str()).filter(|t| !t.is_empty());
            Ok(codec.encode(&page(st.jobs.list(&req), after, LIST_PAGE_SIZE)?))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn infos(ids: &[&str]) -> Vec<proto::EgressInfo> {
        ids.iter().map(|id| proto::EgressInfo { egress_id: id.to_string(), ..Default::default() }).collect()
    }

    fn ids(r: &proto::ListEgressResponse) -> Vec<&str> {
        r.items.iter().map(|i| i.egress_id.as_str()).collect()
    }

    #[test]
    fn pages_follow_egress_ids() {
        let all = infos(&["EG_c", "EG_a", "EG_d", "EG_b", "EG_e"]);
        let first = page(all.clone(), None, 2).unwrap();
        assert_eq!(ids(&first), ["EG_a", "EG_b"]);
        let token = first.next_page_token.clone().unwrap().token;
        let second = page(all.clone(), Some(&token), 2).unwrap();
        assert_eq!(ids(&second), ["EG_c", "EG_d"]);
        let last = page(all.clone(), Some(&second.next_page_token.unwrap().token), 2).unwrap();
        assert_eq!(ids(&last), ["EG_e"]);
        assert!(last.next_page_token.is_none());
        assert!(page(all.clone(), None, 5).unwrap().next_page_token.is_none());
        assert_eq!(page(all, Some("EG_\"x"), 2).unwrap_err().code, "invalid_argument");
    }
}

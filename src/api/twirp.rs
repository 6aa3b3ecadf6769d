//! Twirp wire details: error codes with their HTTP statuses and JSON body, and the two
//! codecs (protojson and binary protobuf) a client may speak.

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A Twirp error: `{"code": …, "msg": …}` with the status Twirp assigns to the code.
#[derive(Debug, Clone, PartialEq)]
pub struct TwirpError {
    pub code: &'static str,
    pub msg: String,
}

impl TwirpError {
    pub fn new(code: &'static str, msg: impl Into<String>) -> Self {
        Self { code, msg: msg.into() }
    }

    pub fn status(&self) -> StatusCode {
        match self.code {
            "invalid_argument" | "malformed" | "out_of_range" => StatusCode::BAD_REQUEST,
            "unauthenticated" => StatusCode::UNAUTHORIZED,
            "permission_denied" | "resource_exhausted" => StatusCode::FORBIDDEN,
            "not_found" | "bad_route" => StatusCode::NOT_FOUND,
            "already_exists" | "aborted" => StatusCode::CONFLICT,
            "failed_precondition" => StatusCode::PRECONDITION_FAILED,
            "unimplemented" => StatusCode::NOT_IMPLEMENTED,
            "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            "deadline_exceeded" => StatusCode::GATEWAY_TIMEOUT,
            "canceled" => StatusCode::REQUEST_TIMEOUT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for TwirpError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "code": self.code, "msg": self.msg });
        (self.status(), [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Codec {
    Json,
    Protobuf,
}

impl Codec {
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, TwirpError> {
        let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match mime.as_str() {
            "application/json" => Ok(Codec::Json),
            "application/protobuf" | "application/x-protobuf" => Ok(Codec::Protobuf),
            _ => Err(TwirpError::new("bad_route", format!("unexpected Content-Type {ct:?}: use application/json or application/protobuf"))),
        }
    }

    pub fn decode<T: prost::Message + Default + DeserializeOwned>(self, body: &[u8]) -> Result<T, TwirpError> {
        match self {
            // An empty JSON body is an empty message, as protojson clients send for no fields.
            Codec::Json if body.iter().all(u8::is_ascii_whitespace) => Ok(T::default()),
            Codec::Json => serde_json::from_slice(body)
                .map_err(|e| TwirpError::new("malformed", format!("the json request could not be decoded: {e}"))),
            Codec::Protobuf => {
                T::decode(body).map_err(|e| TwirpError::new("malformed", format!("the protobuf request could not be decoded: {e}")))
            }
        }
    }

    pub fn encode<T: prost::Message + Serialize>(self, msg: &T) -> Response {
        match self {
            Codec::Json => match serde_json::to_vec(msg) {
                Ok(b) => ([(header::CONTENT_TYPE, "application/json")], b).into_response(),
                Err(e) => TwirpError::new("internal", format!("encoding the response: {e}")).into_response(),
            },
            Codec::Protobuf => ([(header::CONTENT_TYPE, "application/protobuf")], msg.encode_to_vec()).into_response(),
        }
    }
}

//! psrpc's wire format on Redis, as the Go library (github.com/livekit/psrpc v0.7) writes it:
//! every PUBLISH payload is a `Msg` {type_url, value} (byte-identical to a protobuf `Any`)
//! around one of four envelopes, and channel names are `|`-joined, sanitised parts. Read from
//! psrpc's internal/internal.proto, internal/bus/serialization.go and pkg/info/channels.go
//! (docs/psrpc.md). No crate speaks psrpc, so the envelopes are declared here by hand.

use prost::Message;

const TYPE_PREFIX: &str = "type.googleapis.com/internal.";

#[derive(Clone, PartialEq, Message)]
pub struct Msg {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
    #[prost(string, tag = "3")]
    pub channel: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Request {
    #[prost(string, tag = "1")]
    pub request_id: String,
    #[prost(string, tag = "2")]
    pub client_id: String,
    /// Unix nanoseconds.
    #[prost(int64, tag = "3")]
    pub sent_at: i64,
    /// Absolute deadline, unix nanoseconds.
    #[prost(int64, tag = "4")]
    pub expiry: i64,
    #[prost(bool, tag = "5")]
    pub multi: bool,
    #[prost(map = "string, string", tag = "7")]
    pub metadata: std::collections::HashMap<String, String>,
    #[prost(bytes = "vec", tag = "8")]
    pub raw_request: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Response {
    #[prost(string, tag = "1")]
    pub request_id: String,
    #[prost(string, tag = "2")]
    pub server_id: String,
    #[prost(int64, tag = "3")]
    pub sent_at: i64,
    #[prost(string, tag = "5")]
    pub error: String,
    #[prost(string, tag = "6")]
    pub code: String,
    #[prost(bytes = "vec", tag = "7")]
    pub raw_response: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ClaimRequest {
    #[prost(string, tag = "1")]
    pub request_id: String,
    #[prost(string, tag = "2")]
    pub server_id: String,
    #[prost(float, tag = "3")]
    pub affinity: f32,
}

#[derive(Clone, PartialEq, Message)]
pub struct ClaimResponse {
    #[prost(string, tag = "1")]
    pub request_id: String,
    #[prost(string, tag = "2")]
    pub server_id: String,
}

/// An envelope and its name in `Msg.type_url`.
pub trait Envelope: Message + Default {
    const NAME: &'static str;
}
impl Envelope for Request {
    const NAME: &'static str = "Request";
}
impl Envelope for Response {
    const NAME: &'static str = "Response";
}
impl Envelope for ClaimRequest {
    const NAME: &'static str = "ClaimRequest";
}
impl Envelope for ClaimResponse {
    const NAME: &'static str = "ClaimResponse";
}

pub fn encode<E: Envelope>(e: &E) -> Vec<u8> {
    Msg { type_url: format!("{TYPE_PREFIX}{}", E::NAME), value: e.encode_to_vec(), channel: String::new() }.encode_to_vec()
}

/// The envelope in a payload, if it is one of type `E`. A Go subscriber asserts the type it
/// expects, so each channel carries one type; anything else is dropped, never passed on.
pub fn decode<E: Envelope>(payload: &[u8]) -> Option<E> {
    let msg = Msg::decode(payload).ok()?;
    if msg.type_url.strip_prefix(TYPE_PREFIX)? != E::NAME {
        return None;
    }
    E::decode(msg.value.as_slice()).ok()
}

/// One channel-name part: `[0-9A-Za-z_]` as is, any other character as `u+XXXX` (`U+XXXXXXXX`
/// above the BMP), as psrpc's appendSanitizedChannelPart does.
fn sanitize(part: &str, out: &mut String) {
    for c in part.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
        } else if (c as u32) <= 0xffff {
            out.push_str(&format!("u+{:04x}", c as u32));
        } else {
            out.push_str(&format!("U+{:08x}", c as u32));
        }
    }
}

/// Parts joined with `|`; an empty part is dropped with its delimiter (so topic "" adds nothing).
pub fn channel(parts: &[&str]) -> String {
    let mut out = String::new();
    for part in parts.iter().filter(|p| !p.is_empty()) {
        if !out.is_empty() {
            out.push('|');
        }
        sanitize(part, &mut out);
    }
    out
}

/// Where requests for `service.method` on `topic` are published.
pub fn request_channel(service: &str, method: &str, topic: &str) -> String {
    channel(&[service, method, topic, "REQ"])
}

/// Where the client names the server it chose.
pub fn claim_response_channel(service: &str, method: &str, topic: &str) -> String {
    channel(&[service, method, topic, "RCLAIM"])
}

/// Where servers offer themselves to one client.
pub fn claim_request_channel(service: &str, client_id: &str) -> String {
    channel(&[service, client_id, "CLAIM"])
}

/// Where servers answer one client.
pub fn response_channel(service: &str, client_id: &str) -> String {
    channel(&[service, client_id, "RES"])
}

/// A psrpc id: prefix + 12 random alphanumerics (psrpc's pkg/rand).
pub fn new_id(prefix: &str) -> String {
    use rand::distr::{Alphanumeric, SampleString};
    format!("{prefix}{}", Alphanumeric.sample_string(&mut rand::rng(), 12))
}

/// The key of a queue message's lock: standard base64 of SHA-256 over the whole payload.
pub fn lock_key(payload: &[u8]) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(payload))
}

pub fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_as_psrpc_builds_them() {
        assert_eq!(request_channel("EgressInternal", "StartEgress", ""), "EgressInternal|StartEgress|REQ");
        assert_eq!(claim_response_channel("EgressHandler", "StopEgress", "EG_abc"), "EgressHandler|StopEgress|EG_abc|RCLAIM");
        assert_eq!(response_channel("IOInfo", "CLI_x"), "IOInfo|CLI_x|RES");
        assert_eq!(request_channel("EgressInternal", "StartEgress", "a-b"), "EgressInternal|StartEgress|au+002db|REQ");
        assert_eq!(channel(&["a", "\u{1F600}"]), "a|U+0001f600");
    }

    #[test]
    fn envelopes_round_trip_and_types_are_checked() {
        let claim = ClaimRequest { request_id: "REQ_1".into(), server_id: "SRV_1".into(), affinity: 0.5 };
        let bytes = encode(&claim);
        assert_eq!(decode::<ClaimRequest>(&bytes), Some(claim));
        assert_eq!(decode::<Response>(&bytes), None, "a ClaimRequest is not a Response");
        assert_eq!(decode::<Request>(b"\xff\xff"), None);
        // The Msg is an Any: field 1 is the type URL.
        let any = Msg::decode(bytes.as_slice()).unwrap();
        assert_eq!(any.type_url, "type.googleapis.com/internal.ClaimRequest");
    }
}

//! The messages of livekit/protocol's protobufs/rpc/egress.proto that travel between
//! livekit-server and an egress worker (field numbers as there; the `livekit.*` messages they
//! carry come from the `livekit-protocol` crate). IOInfo's Create/UpdateEgress take a plain
//! `livekit.EgressInfo` and answer `google.protobuf.Empty` (zero bytes).

use livekit_protocol as proto;
use prost::{Message, Oneof};

pub const EGRESS_INTERNAL: &str = "EgressInternal";
pub const EGRESS_HANDLER: &str = "EgressHandler";
pub const IO_INFO: &str = "IOInfo";

#[derive(Clone, PartialEq, Message)]
pub struct StartEgressRequest {
    #[prost(string, tag = "1")]
    pub egress_id: String,
    #[prost(oneof = "Source", tags = "16, 5, 11, 13, 6, 7")]
    pub request: Option<Source>,
    #[prost(string, tag = "3")]
    pub room_id: String,
    #[prost(string, tag = "18")]
    pub room_name: String,
    /// A recorder token from the caller, when it sends one (open-source livekit-server does not).
    #[prost(string, tag = "8")]
    pub token: String,
    #[prost(string, tag = "9")]
    pub ws_url: String,
    #[prost(bool, tag = "10")]
    pub cloud_backup_enabled: bool,
    #[prost(double, tag = "14")]
    pub estimated_cpu: f64,
    #[prost(int32, tag = "15")]
    pub retry_count: i32,
}

#[derive(Clone, PartialEq, Oneof)]
pub enum Source {
    #[prost(message, tag = "16")]
    Egress(proto::StartEgressRequest),
    #[prost(message, tag = "5")]
    RoomComposite(proto::RoomCompositeEgressRequest),
    #[prost(message, tag = "11")]
    Web(proto::WebEgressRequest),
    #[prost(message, tag = "13")]
    Participant(proto::ParticipantEgressRequest),
    #[prost(message, tag = "6")]
    TrackComposite(proto::TrackCompositeEgressRequest),
    #[prost(message, tag = "7")]
    Track(proto::TrackEgressRequest),
}

#[derive(Clone, PartialEq, Message)]
pub struct ListActiveEgressRequest {}

#[derive(Clone, PartialEq, Message)]
pub struct ListActiveEgressResponse {
    #[prost(string, repeated, tag = "1")]
    pub egress_ids: Vec<String>,
}

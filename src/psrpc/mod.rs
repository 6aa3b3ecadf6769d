//! psrpc, LiveKit's RPC over Redis pub/sub, as far as an egress worker needs it: unary calls
//! with claims (server side, [`server`]; client side, [`client`]), multi calls answered
//! without a claim, and the wire format ([`wire`]) of github.com/livekit/psrpc v0.7.
//! Written by hand because no Rust crate implements it; docs/psrpc.md is the protocol as
//! implemented, with the Go source files it was read from. [`rpc`] has the messages of
//! livekit/protocol's rpc/egress.proto and rpc/io.proto that the `livekit-protocol` crate
//! does not generate.

pub mod bus;
pub mod client;
pub mod rpc;
pub mod server;
pub mod wire;

/// A psrpc error: one of psrpc's lowercase codes (`not_found`, `unavailable`, …) and a message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RpcError {
    pub code: String,
    pub message: String,
}

impl RpcError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self { code: code.to_string(), message: message.into() }
    }
}

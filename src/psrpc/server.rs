//! The server side of psrpc unary calls (psrpc pkg/server/rpc.go): a request on the method's
//! REQ channel is claimed with an affinity on the client's CLAIM channel, handled only if the
//! client's answer on RCLAIM names this server, and answered on the client's RES channel.
//! Queue methods first take the message's lock, so one server of many even tries. Multi
//! methods answer every request without a claim.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use futures::future::BoxFuture;
use tokio::sync::oneshot;
use tracing::{debug, warn};

use super::bus::Bus;
use super::wire::{self, ClaimRequest, ClaimResponse, Request, Response};
use super::RpcError;

/// The handler of one method: raw request bytes in, raw response bytes out.
pub type Handler = Arc<dyn Fn(Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, RpcError>> + Send + Sync>;
/// The affinity of this server for a request (raw bytes); negative: do not claim it.
pub type Affinity = Arc<dyn Fn(&[u8]) -> f32 + Send + Sync>;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// Claimed with the affinity (e.g. StartEgress).
    Affinity,
    /// Locked, then claimed with affinity 1 (StopEgress, UpdateStream).
    Queue,
    /// Every server answers (ListActiveEgress).
    Multi,
}

pub struct Method {
    pub service: &'static str,
    pub method: &'static str,
    pub topic: String,
    pub routing: Routing,
    pub affinity: Option<Affinity>,
    pub handler: Handler,
}

/// A registered method; dropping it does not unsubscribe: call [`Registration::stop`].
pub struct Registration {
    bus: Arc<Bus>,
    channels: Vec<String>,
    task: tokio::task::JoinHandle<()>,
}

impl Registration {
    pub async fn stop(self) {
        self.task.abort();
        for c in &self.channels {
            self.bus.unsubscribe(c).await;
        }
    }
}

type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<String>>>>;

/// Subscribes the method's channels (confirmed before this returns) and serves it.
pub async fn register(bus: &Arc<Bus>, server_id: &str, m: Method) -> Result<Registration> {
    let req_ch = wire::request_channel(m.service, m.method, &m.topic);
    let claim_ch = wire::claim_response_channel(m.service, m.method, &m.topic);
    let mut requests = bus.subscribe(&req_ch).await?;
    let mut channels = vec![req_ch];
    let mut claims = match m.routing {
        Routing::Multi => None,
        _ => {
            let rx = bus.subscribe(&claim_ch).await?;
            channels.push(claim_ch);
            Some(rx)
        }
    };
    let waiters: Waiters = Arc::default();
    let m = Arc::new(m);
    let (bus2, server_id) = (Arc::clone(bus), server_id.to_string());
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                payload = requests.recv() => {
                    let Some(payload) = payload else { break };
                    tokio::spawn(handle(Arc::clone(&bus2), server_id.clone(), Arc::clone(&m), Arc::clone(&waiters), payload));
                }
                Some(payload) = async { match claims.as_mut() { Some(c) => c.recv().await, None => std::future::pending().await } } => {
                    if let Some(c) = wire::decode::<ClaimResponse>(&payload) {
                        let waiter = waiters.lock().ok().and_then(|mut w| w.remove(&c.request_id));
                        if let Some(tx) = waiter {
                            let _ = tx.send(c.server_id);
                        }
                    }
                }
            }
        }
    });
    Ok(Registration { bus: Arc::clone(bus), channels, task })
}

/// From now to a request's absolute `expiry` (unix ns); zero once it has passed.
fn time_left(expiry: i64) -> Duration {
    Duration::from_nanos((expiry - wire::now_ns()).max(0) as u64)
}

async fn handle(bus: Arc<Bus>, server_id: String, m: Arc<Method>, waiters: Waiters, payload: Vec<u8>) {
    let Some(req) = wire::decode::<Request>(&payload) else {
        debug!(method = m.method, "psrpc: not a Request, dropped");
        return;
    };
    let left = time_left(req.expiry);
    if left.is_zero() {
        debug!(method = m.method, request_id = req.request_id, "psrpc: request expired, ignored");
        return;
    }
    if m.routing != Routing::Multi {
        if m.routing == Routing::Queue {
            match bus.lock(&wire::lock_key(&payload)).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    warn!(method = m.method, "psrpc: queue lock: {e:#}");
                    return;
                }
            }
        }
        let affinity = match (&m.affinity, m.routing) {
            (Some(f), Routing::Affinity) => f(&req.raw_request),
            _ => 1.0,
        };
        if affinity < 0.0 {
            return;
        }
        let (tx, rx) = oneshot::channel();
        if let Ok(mut w) = waiters.lock() {
            w.insert(req.request_id.clone(), tx);
        }
        let claim = ClaimRequest { request_id: req.request_id.clone(), server_id: server_id.clone(), affinity };
        if let Err(e) = bus.publish(&wire::claim_request_channel(m.service, &req.client_id), wire::encode(&claim)).await {
            warn!(method = m.method, "psrpc: claim: {e:#}");
        }
        let chosen = tokio::time::timeout(left, rx).await;
        if let Ok(mut w) = waiters.lock() {
            w.remove(&req.request_id);
        }
        match chosen {
            Ok(Ok(id)) if id == server_id => {}
            _ => return,
        }
    }
    let left = time_left(req.expiry);
    let result = match tokio::time::timeout(left, (m.handler)(req.raw_request.clone())).await {
        Ok(r) => r,
        Err(_) => Err(RpcError::new("deadline_exceeded", "request timed out")),
    };
    let mut res = Response { request_id: req.request_id.clone(), server_id, sent_at: wire::now_ns(), ..Default::default() };
    match result {
        Ok(raw) => res.raw_response = raw,
        Err(e) => {
            res.error = e.message;
            res.code = e.code;
        }
    }
    if let Err(e) = bus.publish(&wire::response_channel(m.service, &req.client_id), wire::encode(&res)).await {
        warn!(method = m.method, "psrpc: response: {e:#}");
    }
}

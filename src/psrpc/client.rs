//! The client side of psrpc unary calls (psrpc pkg/client/rpc.go), for the methods this worker
//! calls on livekit-server (IOInfo): publish the Request, take the first server that claims
//! it, name it on RCLAIM, and wait for its Response.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use tokio::sync::{mpsc, oneshot};

use super::bus::Bus;
use super::wire::{self, ClaimRequest, ClaimResponse, Request, Response};
use super::RpcError;

pub struct Client {
    bus: Arc<Bus>,
    service: &'static str,
    id: String,
    claims: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<ClaimRequest>>>>,
    responses: Arc<Mutex<HashMap<String, oneshot::Sender<Response>>>>,
}

impl Client {
    /// Subscribes this client's CLAIM and RES channels before any call.
    pub async fn new(bus: &Arc<Bus>, service: &'static str) -> Result<Arc<Client>> {
        let id = wire::new_id("CLI_");
        let mut claim_rx = bus.subscribe(&wire::claim_request_channel(service, &id)).await?;
        let mut res_rx = bus.subscribe(&wire::response_channel(service, &id)).await?;
        let client = Arc::new(Client { bus: Arc::clone(bus), service, id, claims: Arc::default(), responses: Arc::default() });
        let claims = Arc::clone(&client.claims);
        tokio::spawn(async move {
            while let Some(p) = claim_rx.recv().await {
                if let Some(c) = wire::decode::<ClaimRequest>(&p) {
                    let tx = claims.lock().ok().and_then(|m| m.get(&c.request_id).cloned());
                    if let Some(tx) = tx {
                        let _ = tx.send(c);
                    }
                }
            }
        });
        let responses = Arc::clone(&client.responses);
        tokio::spawn(async move {
            while let Some(p) = res_rx.recv().await {
                if let Some(r) = wire::decode::<Response>(&p) {
                    if let Some(tx) = responses.lock().ok().and_then(|mut m| m.remove(&r.request_id)) {
                        let _ = tx.send(r);
                    }
                }
            }
        });
        Ok(client)
    }

    /// One call of `method` (no topic), bounded by `timeout`.
    pub async fn call(&self, method: &str, raw_request: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, RpcError> {
        let request_id = wire::new_id("REQ_");
        let now = wire::now_ns();
        let req = Request {
            request_id: request_id.clone(),
            client_id: self.id.clone(),
            sent_at: now,
            expiry: now + timeout.as_nanos() as i64,
            raw_request,
            ..Default::default()
        };
        let (claim_tx, mut claim_rx) = mpsc::unbounded_channel();
        let (res_tx, res_rx) = oneshot::channel();
        if let (Ok(mut c), Ok(mut r)) = (self.claims.lock(), self.responses.lock()) {
            c.insert(request_id.clone(), claim_tx);
            r.insert(request_id.clone(), res_tx);
        }
        let result = self.exchange(method, &req, &mut claim_rx, res_rx, timeout).await;
        if let (Ok(mut c), Ok(mut r)) = (self.claims.lock(), self.responses.lock()) {
            c.remove(&request_id);
            r.remove(&request_id);
        }
        result
    }

    async fn exchange(
        &self,
        method: &str,
        req: &Request,
        claims: &mut mpsc::UnboundedReceiver<ClaimRequest>,
        response: oneshot::Receiver<Response>,
        timeout: Duration,
    ) -> Result<Vec<u8>, RpcError> {
        let unavailable = |m: String| RpcError::new("unavailable", m);
        self.bus
            .publish(&wire::request_channel(self.service, method, ""), wire::encode(req))
            .await
            .map_err(|e| unavailable(format!("{e:#}")))?;
        let deadline = tokio::time::Instant::now() + timeout;
        // Every IOInfo method accepts the first server that claims it.
        let claim = tokio::time::timeout_at(deadline, claims.recv())
            .await
            .ok()
            .flatten()
            .ok_or_else(|| unavailable("no response from servers".into()))?;
        let chosen = ClaimResponse { request_id: req.request_id.clone(), server_id: claim.server_id };
        self.bus
            .publish(&wire::claim_response_channel(self.service, method, ""), wire::encode(&chosen))
            .await
            .map_err(|e| unavailable(format!("{e:#}")))?;
        let res = tokio::time::timeout_at(deadline, response)
            .await
            .map_err(|_| RpcError::new("deadline_exceeded", "request timed out"))?
            .map_err(|_| unavailable("client closed".into()))?;
        if !res.error.is_empty() {
            let code = if res.code.is_empty() { "unknown".to_string() } else { res.code };
            return Err(RpcError { code, message: res.error });
        }
        Ok(res.raw_response)
    }
}

//! roomcast as an egress worker behind livekit-server: with `redis.address` set, it serves
//! psrpc as livekit/egress does. EgressInternal.StartEgress (claimed with this node's free
//! capacity as affinity) and ListActiveEgress; EgressHandler.StopEgress/UpdateStream on the
//! egress's id as topic, subscribed before StartEgress is answered and dropped when the egress
//! ends; and every EgressInfo change reported to livekit-server's IOInfo (CreateEgress before
//! the answer, then UpdateEgress), which stores it, answers ListEgress and sends webhooks.
//! Each running egress holds a lease in Redis ([`super::egress_lease`]), so that another
//! worker reports it FAILED if this one dies. docs/psrpc.md has the protocol.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use futures::FutureExt;
use livekit_protocol as proto;
use prost::Message;
use tracing::{info, warn};

use super::egress_lease::{Leases, RENEW_EVERY};
use crate::job::manager::{JobManager, StartContext};
use crate::job::JobError;
use crate::load::CpuLoad;
use crate::psrpc::bus::Bus;
use crate::psrpc::client::Client;
use crate::psrpc::rpc::{self, Source, EGRESS_HANDLER, EGRESS_INTERNAL, IO_INFO};
use crate::psrpc::server::{self, Affinity, Handler, Method, Registration, Routing};
use crate::psrpc::{wire, RpcError};

/// livekit/egress's IOInfo timeouts: CreateEgress 15 s, UpdateEgress 30 s.
const CREATE_TIMEOUT: Duration = Duration::from_secs(15);
const UPDATE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often an egress's EgressInfo is compared with what livekit-server last got.
const REPORT_EVERY: Duration = Duration::from_millis(250);

pub struct EgressWorker {
    jobs: Arc<JobManager>,
    bus: Arc<Bus>,
    io: Arc<Client>,
    server_id: String,
    registrations: tokio::sync::Mutex<Vec<Registration>>,
    /// Each running egress's EgressHandler registrations.
    handlers: Mutex<HashMap<String, Vec<Registration>>>,
    leases: Arc<Leases>,
    sweeper: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// An idle node with at least this share of its CPU idle claims with affinity 1, which
/// livekit-server takes at once (its MaximumAffinity); any other claim waits for its 500 ms
/// short-circuit window to see who else bids.
const IDLE_ENOUGH: f32 = 0.5;

/// This node's bid for a StartEgress: none when every slot is taken; 1 when idle; otherwise
/// the free share of slots weighed by the measured idle CPU share, so the less loaded worker wins.
fn affinity(live: usize, max: usize, idle_cpu: f32) -> f32 {
    if live >= max {
        -1.0
    } else if live == 0 && idle_cpu >= IDLE_ENOUGH {
        1.0
    } else {
        ((max - live) as f32 / max as f32 * idle_cpu).clamp(0.01, 0.99)
    }
}

impl From<JobError> for RpcError {
    fn from(e: JobError) -> Self {
        RpcError::new(e.code(), e.to_string())
    }
}

fn malformed(e: prost::DecodeError) -> RpcError {
    RpcError::new("malformed_request", e.to_string())
}

impl EgressWorker {
    /// Connects to Redis and registers the worker's methods; `redis_url` may hold a password.
    pub async fn start(redis_url: &str, cluster_id: &str, jobs: Arc<JobManager>) -> Result<Arc<Self>> {
        let bus = Bus::connect(redis_url).await?;
        let io = Client::new(&bus, IO_INFO).await?;
        let server_id = wire::new_id("SRV_");
        let leases = Leases::new(bus.connection(), cluster_id, &server_id);
        let sweeper = tokio::spawn(Arc::clone(&leases).sweep_forever(Arc::clone(&io)));
        let worker = Arc::new(EgressWorker {
            jobs,
            bus,
            io,
            server_id,
            registrations: Default::default(),
            handlers: Mutex::default(),
            leases,
            sweeper: Mutex::new(Some(sweeper)),
        });
        let w = Arc::clone(&worker);
        let start: Handler = Arc::new(move |raw| {
            let w = Arc::clone(&w);
            async move { w.start_egress(raw).await }.boxed()
        });
        let jobs = Arc::clone(&worker.jobs);
        let cpu = CpuLoad::start();
        let affinity: Affinity = Arc::new(move |_raw| {
            let (live, max) = jobs.load();
            affinity(live, max, cpu.idle_share())
        });
        let jobs = Arc::clone(&worker.jobs);
        let list: Handler = Arc::new(move |_raw| {
            let ids =
                jobs.list(&proto::ListEgressRequest { active: true, ..Default::default() }).into_iter().map(|i| i.egress_id).collect();
            async move { Ok(rpc::ListActiveEgressResponse { egress_ids: ids }.encode_to_vec()) }.boxed()
        });
        let regs = vec![
            server::register(
                &worker.bus,
                &worker.server_id,
                Method {
                    service: EGRESS_INTERNAL,
                    method: "StartEgress",
                    topic: cluster_id.to_string(),
                    routing: Routing::Affinity,
                    affinity: Some(affinity),
                    handler: start,
                },
            )
            .await?,
            server::register(
                &worker.bus,
                &worker.server_id,
                Method {
                    service: EGRESS_INTERNAL,
                    method: "ListActiveEgress",
                    topic: String::new(),
                    routing: Routing::Multi,
                    affinity: None,
                    handler: list,
                },
            )
            .await?,
        ];
        *worker.registrations.lock().await = regs;
        info!(server_id = %worker.server_id, cluster_id, "egress worker: serving livekit-server over psrpc");
        Ok(worker)
    }

    /// Takes no new egresses (running ones keep their handlers until they end).
    pub async fn stop_accepting(&self) {
        if let Some(s) = self.sweeper.lock().ok().and_then(|mut s| s.take()) {
            s.abort();
        }
        for r in self.registrations.lock().await.drain(..) {
            r.stop().await;
        }
    }

    /// Waits, at most `within`, until livekit-server has every egress's final EgressInfo (each
    /// egress's reporter drops its handlers once it has sent it).
    pub async fn drain(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while !self.handlers.lock().map(|h| h.is_empty()).unwrap_or(true) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn start_egress(self: Arc<Self>, raw: Vec<u8>) -> Result<Vec<u8>, RpcError> {
        let req = rpc::StartEgressRequest::decode(raw.as_slice()).map_err(malformed)?;
        let id = req.egress_id.clone();
        if id.is_empty() {
            return Err(RpcError::new("invalid_argument", "StartEgress without an egress_id"));
        }
        // A retry of a request already taken arrives with a new request id: same egress id.
        if self.jobs.info(&id).is_some() {
            return Err(JobError::AlreadyExists(format!("egress {id} already exists")).into());
        }
        let ctx = StartContext { capture: None, room_id: Some(req.room_id.clone()) };
        let start = match req.request {
            Some(Source::RoomComposite(r)) => self.jobs.start_room_as(&id, r, ctx),
            Some(Source::Web(r)) => self.jobs.start_web_as(&id, r, ctx),
            Some(Source::Egress(r)) => self.jobs.start_egress_as(&id, r, ctx),
            Some(Source::Participant(_)) | Some(Source::TrackComposite(_)) | Some(Source::Track(_)) => {
                Err(JobError::Unimplemented("participant and track egress are not served by roomcast".into()))
            }
            None => Err(JobError::InvalidArgument("StartEgress without a request".into())),
        };
        let mut info = start?;
        info.room_id = req.room_id.clone();
        // StopEgress and UpdateStream may follow the answer at once: subscribed before it.
        match self.register_handlers(&id).await {
            Ok(regs) => {
                if let Ok(mut h) = self.handlers.lock() {
                    h.insert(id.clone(), regs);
                }
            }
            Err(e) => {
                let _ = self.jobs.stop(&id);
                return Err(RpcError::new("internal", format!("registering the egress's handlers: {e:#}")));
            }
        }
        if let Err(e) = self.io.call("CreateEgress", info.encode_to_vec(), CREATE_TIMEOUT).await {
            warn!(egress_id = %id, "IOInfo.CreateEgress failed, stopping the egress: {e}");
            let _ = self.jobs.stop(&id);
            self.drop_handlers(&id).await;
            return Err(e);
        }
        if let Err(e) = self.leases.hold(&info).await {
            warn!(egress_id = %id, "taking the egress's lease (no other worker can report it if this one dies): {e:#}");
        }
        tokio::spawn(Arc::clone(&self).report(id.clone(), req.room_id, info.clone()));
        info!(egress_id = %id, "egress started for livekit-server");
        Ok(info.encode_to_vec())
    }

    async fn register_handlers(self: &Arc<Self>, id: &str) -> Result<Vec<Registration>> {
        let jobs = Arc::clone(&self.jobs);
        let stop: Handler = Arc::new(move |raw| {
            let jobs = Arc::clone(&jobs);
            async move {
                let req = proto::StopEgressRequest::decode(raw.as_slice()).map_err(malformed)?;
                Ok(jobs.stop(&req.egress_id)?.encode_to_vec())
            }
            .boxed()
        });
        let jobs = Arc::clone(&self.jobs);
        let update: Handler = Arc::new(move |raw| {
            let jobs = Arc::clone(&jobs);
            async move {
                let req = proto::UpdateStreamRequest::decode(raw.as_slice()).map_err(malformed)?;
                Ok(jobs.update_stream(&req)?.encode_to_vec())
            }
            .boxed()
        });
        let mut regs = Vec::new();
        for (method, handler) in [("StopEgress", stop), ("UpdateStream", update)] {
            let m = Method { service: EGRESS_HANDLER, method, topic: id.to_string(), routing: Routing::Queue, affinity: None, handler };
            regs.push(server::register(&self.bus, &self.server_id, m).await?);
        }
        Ok(regs)
    }

    async fn drop_handlers(&self, id: &str) {
        let regs = self.handlers.lock().ok().and_then(|mut h| h.remove(id)).unwrap_or_default();
        for r in regs {
            r.stop().await;
        }
    }

    /// Sends livekit-server every change of the egress's EgressInfo (the newest only, if
    /// several happen during one call) until it has the final one.
    async fn report(self: Arc<Self>, id: String, room_id: String, mut sent: proto::EgressInfo) {
        let mut renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(REPORT_EVERY).await;
            if renewed.elapsed() >= RENEW_EVERY {
                renewed = tokio::time::Instant::now();
                match self.leases.renew(&sent).await {
                    Ok(true) => {}
                    Ok(false) => {
                        // Another worker has told livekit-server this egress FAILED.
                        warn!(egress_id = %id, "the egress's lease was lost and it was reported FAILED: stopping it");
                        let _ = self.jobs.stop(&id);
                        break;
                    }
                    Err(e) => warn!(egress_id = %id, "renewing the egress's lease: {e:#}"),
                }
            }
            let Some(mut info) = self.jobs.info(&id) else { break };
            info.room_id = room_id.clone();
            if info == sent {
                continue;
            }
            match self.io.call("UpdateEgress", info.encode_to_vec(), UPDATE_TIMEOUT).await {
                Ok(_) => {
                    if info.ended_at == 0 {
                        if let Err(e) = self.leases.hold(&info).await {
                            warn!(egress_id = %id, "storing the egress's record: {e:#}");
                        }
                    }
                    sent = info
                }
                Err(e) => {
                    warn!(egress_id = %id, "IOInfo.UpdateEgress failed (retrying): {e}");
                    continue;
                }
            }
            if sent.ended_at != 0 {
                break;
            }
        }
        self.leases.release(&id).await;
        self.drop_handlers(&id).await;
    }
}

#[cfg(test)]
mod tests {
    use super::affinity;

    #[test]
    fn affinity_follows_slots_and_measured_cpu() {
        assert_eq!(affinity(2, 2, 1.0), -1.0, "a full node makes no claim");
        assert_eq!(affinity(0, 4, 0.9), 1.0, "an idle node is taken at once");
        let busy_cpu = affinity(0, 4, 0.2);
        assert!(busy_cpu > 0.0 && busy_cpu < 1.0, "an empty node whose CPU is busy still bids, lower: {busy_cpu}");
        assert!(affinity(1, 4, 0.8) > affinity(1, 4, 0.3), "the less loaded CPU wins");
        assert!(affinity(1, 4, 0.6) > affinity(3, 4, 0.6), "more free slots win");
        assert!(affinity(3, 4, 0.0) > 0.0, "a node with a free slot always bids");
    }
}

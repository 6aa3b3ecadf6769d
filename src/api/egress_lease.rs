//! How livekit-server learns that a worker died mid-egress. livekit-server (v1.13.5) never asks:
//! it keeps an egress ACTIVE until a worker sends IOInfo.UpdateEgress, so a worker that is
//! SIGKILLed leaves its egresses ACTIVE for good. So each worker keeps, in the same Redis, a
//! record of every egress it runs (the EgressInfo livekit-server last got) and a lease on it
//! that it renews every [`RENEW_EVERY`]. Every worker sweeps every [`SWEEP_EVERY`]: the one that
//! removes the record of an egress whose lease has run out tells livekit-server that egress
//! FAILED. A single worker does the same for its previous life when it is restarted.
//! Written by hand: this is roomcast's own convention on Redis, not part of psrpc.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use livekit_protocol as proto;
use prost::Message;
use redis::aio::ConnectionManager;
use tracing::{info, warn};

use crate::clock::unix_ns;
use crate::psrpc::client::Client;

/// A lease lives this long unless renewed: five renewals may be missed.
pub const LEASE_TTL: Duration = Duration::from_secs(10);
pub const RENEW_EVERY: Duration = Duration::from_secs(2);
pub const SWEEP_EVERY: Duration = Duration::from_secs(3);
const UPDATE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a sweeper's verdict is kept, for a worker that comes back from a long pause.
const LOST_TTL: Duration = Duration::from_secs(3600);

/// The error livekit-server reports for an egress whose worker vanished.
pub const LOST_ERROR: &str = "egress worker lost: its lease in Redis ran out (the worker was killed, or lost Redis)";

pub struct Leases {
    conn: ConnectionManager,
    /// HASH egress id → the EgressInfo (protobuf) livekit-server last got.
    records: String,
    /// `roomcast:{cluster_id}:`, before each egress's `lease:{id}` (the running worker's server
    /// id) and `lost:{id}` (a sweeper's verdict).
    prefix: String,
    server_id: String,
}

impl Leases {
    pub fn new(conn: ConnectionManager, cluster_id: &str, server_id: &str) -> Arc<Self> {
        Arc::new(Self {
            conn,
            records: format!("roomcast:{cluster_id}:egresses"),
            prefix: format!("roomcast:{cluster_id}:"),
            server_id: server_id.to_string(),
        })
    }

    fn lease_key(&self, id: &str) -> String {
        format!("{}lease:{id}", self.prefix)
    }

    /// The sweeper's verdict on an egress it reported FAILED (kept [`LOST_TTL`]).
    fn lost_key(&self, id: &str) -> String {
        format!("{}lost:{id}", self.prefix)
    }

    /// Takes (or renews) the lease, then stores the record: a sweeper never sees a record
    /// without its lease.
    pub async fn hold(&self, info: &proto::EgressInfo) -> Result<()> {
        let mut c = self.conn.clone();
        let ttl_ms = LEASE_TTL.as_millis() as u64;
        redis::cmd("SET")
            .arg(self.lease_key(&info.egress_id))
            .arg(&self.server_id)
            .arg("PX")
            .arg(ttl_ms)
            .query_async::<()>(&mut c)
            .await
            .context("SET lease")?;
        redis::cmd("HSET")
            .arg(&self.records)
            .arg(&info.egress_id)
            .arg(info.encode_to_vec())
            .query_async::<()>(&mut c)
            .await
            .context("HSET")?;
        Ok(())
    }

    /// Renews the lease (`info`: what livekit-server last got); false if a sweeper declared the
    /// egress lost. A record gone without that verdict (Redis restarted empty) is stored again.
    pub async fn renew(&self, info: &proto::EgressInfo) -> Result<bool> {
        let mut c = self.conn.clone();
        let id = &info.egress_id;
        let kept: bool = redis::cmd("HEXISTS").arg(&self.records).arg(id).query_async(&mut c).await.context("HEXISTS")?;
        if !kept {
            let lost: bool = redis::cmd("EXISTS").arg(self.lost_key(id)).query_async(&mut c).await.context("EXISTS")?;
            if lost {
                return Ok(false);
            }
        }
        self.hold(info).await?;
        Ok(true)
    }

    /// The egress is over and livekit-server has its final EgressInfo.
    pub async fn release(&self, id: &str) {
        let mut c = self.conn.clone();
        let r = redis::pipe().cmd("HDEL").arg(&self.records).arg(id).cmd("DEL").arg(self.lease_key(id)).query_async::<()>(&mut c).await;
        if let Err(e) = r {
            warn!(egress_id = id, "releasing the egress's lease: {e}");
        }
    }

    /// Runs until the task is aborted: every [`SWEEP_EVERY`], reports each egress whose lease
    /// ran out as FAILED to livekit-server (exactly one sweeper wins each: HDEL answers 1 once).
    pub async fn sweep_forever(self: Arc<Self>, io: Arc<Client>) {
        loop {
            tokio::time::sleep(SWEEP_EVERY).await;
            if let Err(e) = self.sweep(&io).await {
                warn!("sweeping lost egresses: {e:#}");
            }
        }
    }

    async fn sweep(&self, io: &Client) -> Result<()> {
        let mut c = self.conn.clone();
        let ids: Vec<String> = redis::cmd("HKEYS").arg(&self.records).query_async(&mut c).await.context("HKEYS")?;
        for id in ids {
            let leased: bool = redis::cmd("EXISTS").arg(self.lease_key(&id)).query_async(&mut c).await.context("EXISTS")?;
            if leased {
                continue;
            }
            let raw: Option<Vec<u8>> = redis::cmd("HGET").arg(&self.records).arg(&id).query_async(&mut c).await.context("HGET")?;
            let won: i64 = redis::cmd("HDEL").arg(&self.records).arg(&id).query_async(&mut c).await.context("HDEL")?;
            let (Some(raw), 1) = (raw, won) else { continue };
            redis::cmd("SET")
                .arg(self.lost_key(&id))
                .arg(&self.server_id)
                .arg("PX")
                .arg(LOST_TTL.as_millis() as u64)
                .query_async::<()>(&mut c)
                .await
                .context("SET lost")?;
            let mut lost = match proto::EgressInfo::decode(raw.as_slice()) {
                Ok(i) => i,
                Err(e) => {
                    warn!(egress_id = %id, "an egress record that does not decode, dropped: {e}");
                    continue;
                }
            };
            lost_info(&mut lost);
            match io.call("UpdateEgress", lost.encode_to_vec(), UPDATE_TIMEOUT).await {
                Ok(_) => info!(egress_id = %id, "egress of a lost worker reported FAILED to livekit-server"),
                Err(e) => {
                    // Put it back: the next sweep (here or elsewhere) tries again.
                    warn!(egress_id = %id, "reporting a lost egress failed (will retry): {e}");
                    let _ = redis::cmd("HSET").arg(&self.records).arg(&id).arg(raw).query_async::<()>(&mut c).await;
                }
            }
        }
        Ok(())
    }
}

/// The last EgressInfo of a lost egress turned into its end.
fn lost_info(info: &mut proto::EgressInfo) {
    let now = unix_ns();
    info.status = proto::EgressStatus::EgressFailed as i32;
    info.error = LOST_ERROR.to_string();
    info.error_code = 503;
    info.ended_at = now;
    info.updated_at = now;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_egress_ends_failed_with_its_outputs() {
        let mut i = proto::EgressInfo {
            egress_id: "EG_x".into(),
            status: proto::EgressStatus::EgressActive as i32,
            started_at: 5,
            segment_results: vec![proto::SegmentsInfo { segment_count: 3, ..Default::default() }],
            ..Default::default()
        };
        lost_info(&mut i);
        assert_eq!(i.status, proto::EgressStatus::EgressFailed as i32);
        assert!(i.ended_at > i.started_at && i.updated_at == i.ended_at);
        assert_eq!(i.segment_results[0].segment_count, 3, "what the worker last reported is kept");
        assert_eq!(i.error, LOST_ERROR);
    }
}

//! psrpc's message bus on Redis: PUBLISH for everything sent, one SUBSCRIBE connection for
//! everything received (channels added and dropped as handlers come and go), and `SET NX`
//! for the lock a queue message's handler takes (psrpc internal/bus/bus_redis.go).
//!
//! Redis may go away (a restart, a failover): commands go through redis-rs's
//! `ConnectionManager`, which reconnects by itself, and the subscriber reconnects with backoff
//! and subscribes again to every channel that still has a reader. What was published while it
//! was away is lost, as with psrpc's own Redis bus; psrpc callers time out and retry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use futures::StreamExt;
use redis::aio::{ConnectionManager, PubSubSink, PubSubStream};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// How long a queue message's lock lives (psrpc's lockExpiration).
const LOCK_TTL_SECS: u64 = 5;
/// The subscriber's reconnection backoff: from the first to the last, doubling.
const RECONNECT_FIRST: Duration = Duration::from_millis(250);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

pub type Inbox = mpsc::UnboundedReceiver<Vec<u8>>;
type Routes = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Vec<u8>>>>>;

pub struct Bus {
    conn: ConnectionManager,
    /// The subscriber connection's command half; None while it reconnects.
    sink: Arc<tokio::sync::Mutex<Option<PubSubSink>>>,
    routes: Routes,
}

impl Bus {
    /// Connects both connections; `url` is a redis-rs URL (it may hold a password: not logged).
    pub async fn connect(url: &str) -> Result<Arc<Bus>> {
        let client = redis::Client::open(url).context("Redis address")?;
        let conn = ConnectionManager::new(client.clone()).await.context("connecting to Redis")?;
        let pubsub = client.get_async_pubsub().await.context("connecting to Redis (subscriber)")?;
        let (sink, stream) = pubsub.split();
        let bus = Arc::new(Bus { conn, sink: Arc::new(tokio::sync::Mutex::new(Some(sink))), routes: Arc::default() });
        tokio::spawn(receive(client, stream, Arc::clone(&bus.sink), Arc::clone(&bus.routes)));
        Ok(bus)
    }

    /// Subscribes to `channel`; returns once Redis has confirmed, so nothing published after
    /// this returns is missed.
    pub async fn subscribe(&self, channel: &str) -> Result<Inbox> {
        let (tx, rx) = mpsc::unbounded_channel();
        // Under the sink's lock, so a reconnection cannot slip between route and SUBSCRIBE.
        let mut sink = self.sink.lock().await;
        if let Ok(mut routes) = self.routes.lock() {
            routes.insert(channel.to_string(), tx);
        }
        let Some(sink) = sink.as_mut() else {
            // Subscribed again by the reconnection, but not confirmed now: the caller must know.
            self.drop_route(channel);
            return Err(anyhow!("SUBSCRIBE {channel}: Redis is reconnecting"));
        };
        if let Err(e) = sink.subscribe(channel).await {
            self.drop_route(channel);
            return Err(e).with_context(|| format!("SUBSCRIBE {channel}"));
        }
        Ok(rx)
    }

    fn drop_route(&self, channel: &str) {
        if let Ok(mut routes) = self.routes.lock() {
            routes.remove(channel);
        }
    }

    pub async fn unsubscribe(&self, channel: &str) {
        let mut sink = self.sink.lock().await;
        self.drop_route(channel);
        if let Some(sink) = sink.as_mut() {
            if let Err(e) = sink.unsubscribe(channel).await {
                warn!(channel, "psrpc: UNSUBSCRIBE failed: {e}");
            }
        }
    }

    pub async fn publish(&self, channel: &str, payload: Vec<u8>) -> Result<()> {
        let mut conn = self.conn.clone();
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async::<i64>(&mut conn)
            .await
            .with_context(|| format!("PUBLISH {channel}"))?;
        Ok(())
    }

    /// A connection for commands of the caller's own (it reconnects by itself).
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Takes the lock of a queue message: true for the one server that gets it.
    pub async fn lock(&self, key: &str) -> Result<bool> {
        let mut conn = self.conn.clone();
        let token: u64 = rand::random();
        let set: Option<String> =
            redis::cmd("SET").arg(key).arg(token).arg("NX").arg("EX").arg(LOCK_TTL_SECS).query_async(&mut conn).await.context("SET NX")?;
        Ok(set.is_some())
    }
}

/// Hands every message to its channel's reader; when the subscription ends (Redis went
/// away), reconnects with backoff and subscribes again to every channel with a reader.
async fn receive(client: redis::Client, mut stream: PubSubStream, sink: Arc<tokio::sync::Mutex<Option<PubSubSink>>>, routes: Routes) {
    loop {
        while let Some(msg) = stream.next().await {
            let channel = msg.get_channel_name().to_string();
            let route = routes.lock().map(|r| r.get(&channel).cloned()).unwrap_or(None);
            match route {
                Some(tx) => {
                    let _ = tx.send(msg.get_payload_bytes().to_vec());
                }
                None => debug!(channel, "psrpc: message for a channel nobody reads"),
            }
        }
        warn!("psrpc: the Redis subscription ended; reconnecting");
        *sink.lock().await = None;
        let mut wait = RECONNECT_FIRST;
        stream = loop {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(RECONNECT_MAX);
            let pubsub = match client.get_async_pubsub().await {
                Ok(p) => p,
                Err(e) => {
                    debug!("psrpc: Redis still away: {e}");
                    continue;
                }
            };
            let (mut new_sink, new_stream) = pubsub.split();
            // Locked while subscribing again, so no channel is added or dropped meanwhile.
            let mut held = sink.lock().await;
            let channels: Vec<String> = routes.lock().map(|r| r.keys().cloned().collect()).unwrap_or_default();
            let mut ok = true;
            for c in &channels {
                if let Err(e) = new_sink.subscribe(c).await {
                    debug!(channel = %c, "psrpc: SUBSCRIBE after reconnecting failed: {e}");
                    ok = false;
                    break;
                }
            }
            if ok {
                info!(channels = channels.len(), "psrpc: Redis subscription back");
                *held = Some(new_sink);
                break new_stream;
            }
        };
    }
}

//! psrpc's message bus on Redis: PUBLISH for everything sent, one SUBSCRIBE connection for
//! everything received (channels added and dropped as handlers come and go), and `SET NX`
//! for the lock a queue message's handler takes (psrpc internal/bus/bus_redis.go).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use futures::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// How long a queue message's lock lives (psrpc's lockExpiration).
const LOCK_TTL_SECS: u64 = 5;

pub type Inbox = mpsc::UnboundedReceiver<Vec<u8>>;

pub struct Bus {
    conn: MultiplexedConnection,
    sink: tokio::sync::Mutex<PubSubSink>,
    routes: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Vec<u8>>>>>,
}

impl Bus {
    /// Connects both connections; `url` is a redis-rs URL (it may hold a password: not logged).
    pub async fn connect(url: &str) -> Result<Arc<Bus>> {
        let client = redis::Client::open(url).context("Redis address")?;
        let conn = client.get_multiplexed_async_connection().await.context("connecting to Redis")?;
        let pubsub = client.get_async_pubsub().await.context("connecting to Redis (subscriber)")?;
        let (sink, mut stream) = pubsub.split();
        let routes: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Vec<u8>>>>> = Arc::default();
        let inbound = Arc::clone(&routes);
        tokio::spawn(async move {
            while let Some(msg) = stream.next().await {
                let channel = msg.get_channel_name().to_string();
                let route = inbound.lock().map(|r| r.get(&channel).cloned()).unwrap_or(None);
                match route {
                    Some(tx) => {
                        let _ = tx.send(msg.get_payload_bytes().to_vec());
                    }
                    None => debug!(channel, "psrpc: message for a channel nobody reads"),
                }
            }
            warn!("psrpc: the Redis subscription ended");
        });
        Ok(Arc::new(Bus { conn, sink: tokio::sync::Mutex::new(sink), routes }))
    }

    /// Subscribes to `channel`; returns once Redis has confirmed, so nothing published after
    /// this returns is missed.
    pub async fn subscribe(&self, channel: &str) -> Result<Inbox> {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut routes) = self.routes.lock() {
            routes.insert(channel.to_string(), tx);
        }
        self.sink.lock().await.subscribe(channel).await.with_context(|| format!("SUBSCRIBE {channel}"))?;
        Ok(rx)
    }

    pub async fn unsubscribe(&self, channel: &str) {
        if let Ok(mut routes) = self.routes.lock() {
            routes.remove(channel);
        }
        if let Err(e) = self.sink.lock().await.unsubscribe(channel).await {
            warn!(channel, "psrpc: UNSUBSCRIBE failed: {e}");
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

    /// A connection for commands of the caller's own (they share the bus's connection).
    pub fn connection(&self) -> MultiplexedConnection {
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

//! Stream outputs (RTMP, RTMPS, SRT): one [`super::push`] process per URL, fed the main
//! rendition's CMAF chunks by [`super::Outputs`]. Each URL is isolated: its own process and a
//! bounded queue, and when that queue is full (a slow endpoint) its chunks are dropped up to
//! the next fragment start, so nothing upstream ever waits for it. A process that ends (the
//! server went away, refused, timed out) is restarted with capped exponential backoff,
//! resuming at the next fragment (a keyframe), for as long as the egress runs unless
//! `stream.give_up_secs` says otherwise. Its state is a LiveKit `StreamInfo`, with the URL's
//! secrets redacted as LiveKit does. Before each connection the host is resolved and judged
//! by the network policy (issue 17.1); a refused address fails that URL for good.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use livekit_protocol as proto;
use proto::stream_info::Status;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::feeder::{Fed, Feeder, Taken};
use super::push::{Dest, PushSpec};
use crate::clock::unix_ns as now_ns;
use crate::config::Retry;
use crate::media::ChunkMeta;
use crate::net::{Blocked, Checker, Verdict};
use crate::spec::url::redact;

/// Chunks queued per URL before it counts as slow (at 200 ms parts, about 10 s).
const QUEUE_CHUNKS: usize = 50;

struct Output {
    url: String,
    info: Arc<Mutex<proto::StreamInfo>>,
    tx: mpsc::Sender<Fed>,
    feeder: Feeder,
    task: JoinHandle<()>,
}

/// An egress's stream outputs.
pub struct StreamOutputs {
    outputs: Vec<Output>,
    tracks: (bool, bool),
    retry: Retry,
    network: Checker,
}

impl StreamOutputs {
    /// `tracks`: (video, audio) in the stream.
    pub fn new(urls: &[String], tracks: (bool, bool), retry: Retry, network: Checker) -> Self {
        let mut s = Self { outputs: vec![], tracks, retry, network };
        for u in urls {
            s.add(u);
        }
        s
    }

    pub fn is_empty(&self) -> bool {
        self.outputs.is_empty()
    }

    /// Starts pushing to `url` (from the next fragment); false if it is there already.
    pub fn add(&mut self, url: &str) -> bool {
        if self.outputs.iter().any(|o| o.url == url) {
            return false;
        }
        let info = Arc::new(Mutex::new(proto::StreamInfo { url: redact(url), status: Status::Active as i32, ..Default::default() }));
        let (tx, rx) = mpsc::channel(QUEUE_CHUNKS);
        let spec = PushSpec { dest: Dest::Stream { url: url.to_string() }, video: self.tracks.0, audio: self.tracks.1, opus: false };
        let task = tokio::spawn(run(url.to_string(), spec, Arc::clone(&info), rx, self.retry, self.network.clone()));
        self.outputs.push(Output { url: url.to_string(), info, tx, feeder: Feeder::default(), task });
        true
    }

    /// Ends the stream to `url` cleanly; false if there is none.
    pub fn remove(&mut self, url: &str) -> bool {
        let Some(i) = self.outputs.iter().position(|o| o.url == url) else { return false };
        // Closing the queue is the end: the task sends EOS and finishes on its own (the
        // caller records the URL as FINISHED).
        drop(self.outputs.remove(i).tx);
        true
    }

    /// Feeds a chunk of the main rendition to every URL, never waiting for one.
    pub fn offer(&mut self, init: Option<&Bytes>, meta: &ChunkMeta, bytes: &Bytes) {
        for o in &mut self.outputs {
            let slow = o.feeder.offer(init, meta, bytes, |fed| match o.tx.try_send(fed) {
                Ok(()) => Taken::Yes,
                Err(mpsc::error::TrySendError::Full(_)) => Taken::Full,
                Err(mpsc::error::TrySendError::Closed(_)) => Taken::Gone,
            });
            if slow {
                warn!(url = %redact(&o.url), "stream output is not keeping up: dropping to the next keyframe");
            }
        }
    }

    /// Every URL's state, with its raw URL (redacted ones can be alike).
    pub fn infos(&self) -> Vec<(String, proto::StreamInfo)> {
        self.outputs.iter().map(|o| (o.url.clone(), o.info.lock().unwrap_or_else(|p| p.into_inner()).clone())).collect()
    }

    /// Ends every stream (EOS), waits for them (bounded) and returns their final states.
    pub async fn finish(self, within: Duration) -> Vec<(String, proto::StreamInfo)> {
        let mut infos = vec![];
        for o in self.outputs {
            drop(o.tx);
            let abort = o.task.abort_handle();
            if tokio::time::timeout(within, o.task).await.is_err() {
                abort.abort();
            }
            let mut i = o.info.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if i.status == Status::Active as i32 {
                finished(&mut i);
            }
            infos.push((o.url, i));
        }
        infos
    }
}

/// A stream's state at its clean end: FINISHED now, with its duration if it ever started.
pub fn finished(i: &mut proto::StreamInfo) {
    i.status = Status::Finished as i32;
    i.ended_at = now_ns();
    if i.started_at > 0 {
        i.duration = i.ended_at - i.started_at;
    }
}

/// A stream's state when it has failed for good.
fn failed(i: &mut proto::StreamInfo, why: &str) {
    i.status = Status::Failed as i32;
    i.error = why.to_string();
    i.ended_at = now_ns();
}

/// Why a push process ended.
enum End {
    /// The egress is over (or the URL removed): done.
    Closed,
    Failed(String),
}

/// One URL, from the first fragment to the egress's end: push processes, restarted as needed.
async fn run(
    url: String,
    spec: PushSpec,
    info: Arc<Mutex<proto::StreamInfo>>,
    mut rx: mpsc::Receiver<Fed>,
    retry: Retry,
    network: Checker,
) {
    let shown = redact(&url);
    let mut init: Option<Bytes> = None;
    let mut backoff = retry.initial;
    let mut failing_since: Option<Instant> = None;
    let set = |f: &dyn Fn(&mut proto::StreamInfo)| f(&mut info.lock().unwrap_or_else(|p| p.into_inner()));
    loop {
        let started = Instant::now();
        let end = match pinned(&url, &network).await {
            Ok(target) => {
                let spec = PushSpec { dest: Dest::Stream { url: target.clone() }, ..spec.clone() };
                push_once(&spec, &target, &shown, &mut init, &mut rx, &info).await
            }
            Err(Blocked::Refused(r)) => {
                let why = format!("refused by the network policy: {r}");
                warn!(url = %shown, "stream output failed: {why}");
                set(&|i| failed(i, &why));
                return;
            }
            Err(Blocked::Unreachable(why)) => End::Failed(why),
        };
        match end {
            End::Closed => {
                set(&|i| finished(i));
                info!(url = %shown, "stream output ended");
                return;
            }
            End::Failed(why) => {
                let why = why.replace(&url, &shown);
                if started.elapsed() > Duration::from_secs(30) {
                    // It had been working: start the backoff over.
                    backoff = retry.initial;
                    failing_since = None;
                }
                let since = *failing_since.get_or_insert(started);
                if retry.give_up.is_some_and(|g| since.elapsed() >= g) {
                    set(&|i| failed(i, &why));
                    warn!(url = %shown, "stream output failed for good: {why}");
                    return;
                }
                warn!(url = %shown, retry_in_ms = backoff.as_millis() as u64, "stream output: {why}");
                set(&|i| {
                    i.error = why.clone();
                    i.retries += 1;
                    i.last_retry_at = now_ns();
                });
                // Wait, keeping the newest init and noticing the end.
                let deadline = tokio::time::Instant::now() + backoff;
                loop {
                    tokio::select! {
                        item = rx.recv() => match item {
                            Some(Fed::Init(b)) => init = Some(b),
                            Some(_) => {}
                            None => {
                                set(&|i| finished(i));
                                return;
                            }
                        },
                        _ = tokio::time::sleep_until(deadline) => break,
                    }
                }
                backoff = (backoff * 2).min(retry.max);
            }
        }
    }
}

/// The URL a push process is given: its host resolved and judged here, and for RTMP and SRT
/// replaced by the judged address, so the process cannot be sent anywhere else (DNS
/// rebinding). RTMPS keeps the name, which TLS checks the certificate against, and so does a
/// name `network.allow` lists (an ingest that routes by the name in RTMP's tcUrl); either was
/// judged an instant before.
async fn pinned(url: &str, network: &Checker) -> Result<String, Blocked> {
    let mut u = url::Url::parse(url).map_err(|e| Blocked::Unreachable(format!("stream url: {e}")))?;
    let host = u.host_str().unwrap_or_default().to_string();
    let port = crate::net::policy::url_port(&u);
    let addrs = network.resolve(&host, port).await?;
    let trusted = network.policy.judge_host(&host, port) == Verdict::Allowed;
    if u.scheme() != "rtmps" && !trusted {
        if let Some(addr) = addrs.first() {
            let _ = u.set_ip_host(addr.ip());
        }
    }
    Ok(u.to_string())
}

/// One push process: spawned, fed from the next fragment start, until it or the queue ends.
async fn push_once(
    spec: &PushSpec,
    url: &str,
    shown: &str,
    init: &mut Option<Bytes>,
    rx: &mut mpsc::Receiver<Fed>,
    info: &Arc<Mutex<proto::StreamInfo>>,
) -> End {
    let (mut child, mut stdin) = match super::push::spawn(spec).await {
        Ok(c) => c,
        Err(e) => return End::Failed(format!("{e:#}")),
    };
    // Its last words, for the error (the URL is redacted before they are shown).
    let (url, shown) = (url.to_string(), shown.to_string());
    let last = crate::proc::log_stderr_as(&mut child, "push", move |line| line.replace(&url, &shown));
    // Started (and, after a failure, no longer in error) when the server has taken bytes.
    if let Some(stdout) = child.stdout.take() {
        let info = Arc::clone(info);
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.trim() == "connected" {
                    let mut s = info.lock().unwrap_or_else(|p| p.into_inner());
                    if s.started_at == 0 {
                        s.started_at = now_ns();
                    }
                    s.error.clear();
                }
            }
        });
    }
    let mut synced = false;
    let mut failed: Option<String> = None;
    while failed.is_none() {
        tokio::select! {
            item = rx.recv() => match item {
                None => {
                    // EOF: the push process sends EOS and exits.
                    drop(stdin);
                    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
                    let _ = child.start_kill();
                    return End::Closed;
                }
                Some(Fed::Init(b)) => *init = Some(b),
                Some(Fed::Chunk { bytes, fragment_start }) => {
                    if !synced {
                        // A new process starts at a keyframe, after the init segment.
                        let Some(i) = init.clone().filter(|_| fragment_start) else { continue };
                        if let Err(e) = stdin.write_all(&i).await {
                            failed = Some(e.to_string());
                            break;
                        }
                        synced = true;
                    }
                    if let Err(e) = stdin.write_all(&bytes).await {
                        failed = Some(e.to_string());
                    }
                }
            },
            status = child.wait() => {
                failed = Some(match status {
                    Ok(s) => format!("push process exited ({s})"),
                    Err(e) => format!("push process lost: {e}"),
                });
            }
        }
    }
    let _ = child.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
    // Let the stderr reader take the process's last line.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let last = last.lock().unwrap_or_else(|p| p.into_inner()).clone();
    End::Failed(if last.is_empty() { failed.unwrap_or_default() } else { last })
}

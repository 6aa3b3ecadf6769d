//! Stream outputs (RTMP, RTMPS, SRT): one [`super::push`] process per URL, fed the main
//! rendition's CMAF chunks by the supervisor. Each URL is isolated: its own process and a
//! bounded queue, and when that queue is full (a slow endpoint) its chunks are dropped up to
//! the next fragment start, so nothing upstream ever waits for it. A process that ends (the
//! server went away, refused, timed out) is restarted with capped exponential backoff,
//! resuming at the next fragment (a keyframe), for as long as the egress runs unless
//! `stream.give_up_secs` says otherwise. Its state is a LiveKit `StreamInfo`, with the URL's
//! secrets redacted as LiveKit does.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use livekit_protocol as proto;
use proto::stream_info::Status;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::push::{Dest, PushSpec};
use crate::clock::unix_ns as now_ns;
use crate::media::MuxOutput;

/// Chunks queued per URL before it counts as slow (at 200 ms parts, about 10 s).
const QUEUE_CHUNKS: usize = 50;

/// How a stream output retries.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub initial: Duration,
    pub max: Duration,
    /// Give up (FAILED) after failing this long without a success; None: never.
    pub give_up: Option<Duration>,
}

/// A stream URL checked: its scheme is one we push, and it has a host (and, for RTMP, an
/// app and a stream key).
pub fn check_url(url: &str) -> Result<String, String> {
    let u = url::Url::parse(url.trim()).map_err(|e| format!("stream url {:?}: {e}", redact(url)))?;
    if u.host_str().is_none_or(str::is_empty) {
        return Err(format!("stream url {:?} has no host", redact(url)));
    }
    match u.scheme() {
        "rtmp" | "rtmps" => {
            let segments = u.path_segments().map(|s| s.filter(|p| !p.is_empty()).count()).unwrap_or(0);
            if segments < 2 {
                return Err(format!("stream url {:?}: use rtmp(s)://host/app/stream_key", redact(url)));
            }
        }
        "srt" => {
            if u.port().is_none() {
                return Err(format!("stream url {:?}: srt:// needs a port", redact(url)));
            }
        }
        s => return Err(format!("stream url scheme {s:?} is not supported: use rtmp, rtmps or srt")),
    }
    Ok(u.to_string())
}

/// The URL as it may be shown: an RTMP stream key (the last path segment) and SRT's
/// `streamid`/`passphrase` replaced by `{redacted}`, as LiveKit shows them.
pub fn redact(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url.trim()) else {
        // Not a URL: show none of it.
        return "{redacted}".into();
    };
    match u.scheme() {
        "srt" => {
            // A fragment can only be a mistyped part of the query ('#' in a streamid).
            u.set_fragment(None);
            let pairs: Vec<(String, String)> = u
                .query_pairs()
                .map(|(k, v)| {
                    let secret = matches!(k.as_ref(), "streamid" | "passphrase");
                    (k.into_owned(), if secret { "{redacted}".to_string() } else { v.into_owned() })
                })
                .collect();
            if !pairs.is_empty() {
                u.query_pairs_mut().clear().extend_pairs(pairs);
            }
            // Braces stay readable.
            u.to_string().replace("%7Bredacted%7D", "{redacted}")
        }
        _ => {
            let mut segments: Vec<String> = u.path_segments().map(|s| s.map(str::to_string).collect()).unwrap_or_default();
            if let Some(last) = segments.iter_mut().rev().find(|s| !s.is_empty()) {
                *last = "{redacted}".into();
            }
            u.set_query(None);
            format!("{}://{}{}/{}", u.scheme(), u.host_str().unwrap_or(""), u.port().map(|p| format!(":{p}")).unwrap_or_default(), segments.join("/"))
        }
    }
}

enum Item {
    Init(Bytes),
    Chunk { bytes: Bytes, fragment_start: bool },
}

struct Output {
    url: String,
    info: Arc<Mutex<proto::StreamInfo>>,
    tx: mpsc::Sender<Item>,
    /// The queue overflowed: drop chunks until the next fragment start.
    skipping: bool,
    task: JoinHandle<()>,
}

/// An egress's stream outputs.
pub struct StreamOutputs {
    outputs: Vec<Output>,
    init: Option<Bytes>,
    tracks: (bool, bool),
    retry: Retry,
}

impl StreamOutputs {
    /// `tracks`: (video, audio) in the stream.
    pub fn new(urls: &[String], tracks: (bool, bool), retry: Retry) -> Self {
        let mut s = Self { outputs: vec![], init: None, tracks, retry };
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
        if let Some(init) = &self.init {
            let _ = tx.try_send(Item::Init(init.clone()));
        }
        let spec = PushSpec { dest: Dest::Stream { url: url.to_string() }, video: self.tracks.0, audio: self.tracks.1, opus: false };
        let task = tokio::spawn(run(url.to_string(), spec, Arc::clone(&info), rx, self.retry));
        self.outputs.push(Output { url: url.to_string(), info, tx, skipping: false, task });
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

    /// Feeds the main rendition to every URL, never waiting for one.
    pub fn push(&mut self, m: &MuxOutput) {
        match m {
            MuxOutput::Init(0, b) => {
                self.init = Some(b.clone());
                for o in &mut self.outputs {
                    let _ = o.tx.try_send(Item::Init(b.clone()));
                }
            }
            MuxOutput::Chunk(meta, b) if meta.rendition == 0 => {
                for o in &mut self.outputs {
                    if o.skipping && !meta.fragment_start {
                        continue;
                    }
                    let item = Item::Chunk { bytes: b.clone(), fragment_start: meta.fragment_start };
                    o.skipping = match o.tx.try_send(item) {
                        Ok(()) => false,
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            if !o.skipping {
                                warn!(url = %redact(&o.url), "stream output is not keeping up: dropping to the next keyframe");
                            }
                            true
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => false,
                    };
                }
            }
            _ => {}
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

/// Why a push process ended.
enum End {
    /// The egress is over (or the URL removed): done.
    Closed,
    Failed(String),
}

/// One URL, from the first fragment to the egress's end: push processes, restarted as needed.
async fn run(url: String, spec: PushSpec, info: Arc<Mutex<proto::StreamInfo>>, mut rx: mpsc::Receiver<Item>, retry: Retry) {
    let shown = redact(&url);
    let mut init: Option<Bytes> = None;
    let mut backoff = retry.initial;
    let mut failing_since: Option<Instant> = None;
    let set = |f: &dyn Fn(&mut proto::StreamInfo)| f(&mut info.lock().unwrap_or_else(|p| p.into_inner()));
    loop {
        let started = Instant::now();
        match push_once(&spec, &url, &shown, &mut init, &mut rx, &info).await {
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
                    set(&|i| {
                        i.status = Status::Failed as i32;
                        i.error = why.clone();
                        i.ended_at = now_ns();
                    });
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
                            Some(Item::Init(b)) => init = Some(b),
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

/// One push process: spawned, fed from the next fragment start, until it or the queue ends.
async fn push_once(
    spec: &PushSpec,
    url: &str,
    shown: &str,
    init: &mut Option<Bytes>,
    rx: &mut mpsc::Receiver<Item>,
    info: &Arc<Mutex<proto::StreamInfo>>,
) -> End {
    let (mut child, mut stdin) = match super::push::spawn(spec).await {
        Ok(c) => c,
        Err(e) => return End::Failed(format!("{e:#}")),
    };
    // Its last words, for the error (the URL is redacted before they are shown).
    let last = Arc::new(Mutex::new(String::new()));
    if let Some(stderr) = child.stderr.take() {
        let last = Arc::clone(&last);
        let (url, shown) = (url.to_string(), shown.to_string());
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let line = line.replace(&url, &shown);
                tracing::debug!(process = "push", url = %shown, "{line}");
                if !line.trim().is_empty() {
                    *last.lock().unwrap_or_else(|p| p.into_inner()) = line;
                }
            }
        });
    }
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
                Some(Item::Init(b)) => *init = Some(b),
                Some(Item::Chunk { bytes, fragment_start }) => {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_redacted() {
        assert_eq!(redact("rtmp://a.rtmp.youtube.com/live2/abcd-efgh-1234"), "rtmp://a.rtmp.youtube.com/live2/{redacted}");
        assert_eq!(redact("rtmps://user:pw@live.example:443/app/key?x=1"), "rtmps://live.example:443/app/{redacted}");
        let srt = redact("srt://ingest.example:9000?streamid=%23!::r=live/key,m=publish&passphrase=hunter2hunter2&latency=200");
        assert!(!srt.contains("hunter2") && !srt.contains("live/key") && srt.contains("latency=200"), "{srt}");
        let srt = redact("srt://ingest.example:9000?streamid=#!::r=live/key");
        assert!(!srt.contains("live/key"), "{srt}");
        assert_eq!(redact("not a url with key"), "{redacted}");
    }

    #[test]
    fn urls_are_checked() {
        assert!(check_url("rtmp://127.0.0.1:1935/live/key").is_ok());
        assert!(check_url("srt://127.0.0.1:9000").is_ok());
        for bad in ["rtmp://host/secret", "srt://host?passphrase=secret", "http://host/a/secret", "rtmp:///live/secret", "secret"] {
            let e = check_url(bad).unwrap_err();
            // The key never shows in the error.
            assert!(!e.contains("secret"), "{bad}: {e}");
        }
    }
}

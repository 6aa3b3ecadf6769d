//! The worker pipe protocol. Child → parent on the child's stdout: frames of
//! `[u32 BE header length][JSON header][u32 BE body length][body]`, the body carrying media
//! bytes. Parent → child on stdin: the job spec as the first JSON line, then command lines
//! (`stop`). EOF on stdin also means stop, so a dead supervisor never leaves a worker behind.

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::{WarmSpec, WorkerCommand, WorkerEvent};
use crate::media::{ChunkMeta, FrameStats, MuxOutput};
use crate::spec::JobSpec;

/// Largest frame part we accept; a 20 s 4K segment is far below this.
const MAX_FRAME: u32 = 64 << 20;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Header {
    BrowserStarted {
        pid: i32,
    },
    Active,
    BrowserRestarted {
        reason: String,
    },
    Init {
        #[serde(default)]
        rendition: usize,
    },
    Chunk {
        meta: ChunkMeta,
    },
    Stats {
        stats: FrameStats,
    },
    Ended {
        error: Option<String>,
    },
}

/// The first line a worker reads: its job, or (a warm worker) what to launch while it waits
/// for one.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FirstLine {
    Warm { warm: Box<WarmSpec> },
    Job(Box<JobSpec>),
}

/// A message from the worker as the supervisor sees it.
#[derive(Debug, PartialEq)]
pub enum FromWorker {
    Event(WorkerEvent),
    /// The worker's last word: `None` when the egress completed, else why it failed.
    Ended(Option<String>),
}

pub async fn write_msg<W: AsyncWrite + Unpin>(w: &mut W, msg: &FromWorker) -> Result<()> {
    let (header, body) = match msg {
        FromWorker::Event(WorkerEvent::BrowserStarted { pid }) => (Header::BrowserStarted { pid: *pid }, None),
        FromWorker::Event(WorkerEvent::Active) => (Header::Active, None),
        FromWorker::Event(WorkerEvent::BrowserRestarted { reason }) => (Header::BrowserRestarted { reason: reason.clone() }, None),
        FromWorker::Event(WorkerEvent::Media(MuxOutput::Init(r, b))) => (Header::Init { rendition: *r }, Some(b)),
        FromWorker::Event(WorkerEvent::Media(MuxOutput::Chunk(meta, b))) => (Header::Chunk { meta: *meta }, Some(b)),
        FromWorker::Event(WorkerEvent::Stats(stats)) => (Header::Stats { stats: *stats }, None),
        FromWorker::Ended(error) => (Header::Ended { error: error.clone() }, None),
    };
    let header = serde_json::to_vec(&header)?;
    let empty = Bytes::new();
    let body = body.unwrap_or(&empty);
    w.write_u32(header.len() as u32).await?;
    w.write_all(&header).await?;
    w.write_u32(body.len() as u32).await?;
    w.write_all(body).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one message; `Ok(None)` at a clean end of stream.
pub async fn read_msg<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<FromWorker>> {
    let hlen = match r.read_u32().await {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if hlen > MAX_FRAME {
        bail!("worker frame header too large ({hlen} bytes)");
    }
    let mut header = vec![0; hlen as usize];
    r.read_exact(&mut header).await?;
    let blen = r.read_u32().await?;
    if blen > MAX_FRAME {
        bail!("worker frame body too large ({blen} bytes)");
    }
    let mut body = vec![0; blen as usize];
    r.read_exact(&mut body).await?;
    let header: Header = serde_json::from_slice(&header).context("bad worker frame header")?;
    Ok(Some(match header {
        Header::BrowserStarted { pid } => FromWorker::Event(WorkerEvent::BrowserStarted { pid }),
        Header::Active => FromWorker::Event(WorkerEvent::Active),
        Header::BrowserRestarted { reason } => FromWorker::Event(WorkerEvent::BrowserRestarted { reason }),
        Header::Init { rendition } => FromWorker::Event(WorkerEvent::Media(MuxOutput::Init(rendition, body.into()))),
        Header::Chunk { meta } => FromWorker::Event(WorkerEvent::Media(MuxOutput::Chunk(meta, body.into()))),
        Header::Stats { stats } => FromWorker::Event(WorkerEvent::Stats(stats)),
        Header::Ended { error } => FromWorker::Ended(error),
    }))
}

/// Entry point of `roomcast worker`: runs one egress for the supervisor on the other end of
/// stdin/stdout. Logs go to stderr.
pub async fn child_main() -> Result<()> {
    let mut stdin = BufReader::new(tokio::io::stdin());
    let (tx, mut rx) = mpsc::unbounded_channel::<WorkerEvent>();
    let writer = tokio::spawn(async move {
        let mut out = tokio::io::stdout();
        while let Some(ev) = rx.recv().await {
            if let Err(e) = write_msg(&mut out, &FromWorker::Event(ev)).await {
                error!("supervisor pipe closed: {e}");
                return out;
            }
        }
        out
    });
    let mut line = String::new();
    stdin.read_line(&mut line).await.context("reading the job spec")?;
    // A warm worker is told what to launch first, and gets its job later.
    let mut prepared = None;
    if let Ok(FirstLine::Warm { warm }) = serde_json::from_str::<FirstLine>(&line) {
        info!(pid = std::process::id(), "warm worker started");
        let mut p = super::Prepared::launch(*warm, &tx).await?;
        line.clear();
        tokio::select! {
            r = stdin.read_line(&mut line) => {
                if r.context("reading the job spec")? == 0 {
                    // The supervisor let the pool go: nothing to do.
                    return Ok(());
                }
            }
            why = p.lost() => bail!("warm worker: {why}"),
        }
        prepared = Some(p);
    }
    let spec: JobSpec = serde_json::from_str(&line).context("parsing the job spec")?;
    let span = tracing::info_span!("egress", egress_id = %spec.egress_id);
    let _enter = span.enter();
    info!(pid = std::process::id(), warm = prepared.is_some(), "worker started");

    let stop = CancellationToken::new();
    let stop_on_input = stop.clone();
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut line = String::new();
        loop {
            line.clear();
            match stdin.read_line(&mut line).await {
                Ok(0) | Err(_) => break,
                Ok(_) if line.trim() == "stop" => break,
                Ok(_) => match serde_json::from_str::<WorkerCommand>(&line) {
                    Ok(cmd) => {
                        let _ = cmd_tx.send(cmd);
                    }
                    Err(e) => error!("unknown worker command {:?}: {e}", line.trim()),
                },
            }
        }
        stop_on_input.cancel();
    });
    let stop_on_signal = stop.clone();
    tokio::spawn(async move {
        if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            term.recv().await;
            stop_on_signal.cancel();
        }
    });

    let result = super::run(&spec, tx, cmd_rx, stop, prepared).await;
    let mut out = writer.await.context("worker writer")?;
    let error = result.err().map(|e| format!("{e:#}"));
    match &error {
        None => info!("egress complete"),
        Some(e) => error!("egress failed: {e}"),
    }
    write_msg(&mut out, &FromWorker::Ended(error)).await.ok();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip() {
        let msgs = vec![
            FromWorker::Event(WorkerEvent::BrowserStarted { pid: 42 }),
            FromWorker::Event(WorkerEvent::Active),
            FromWorker::Event(WorkerEvent::BrowserRestarted { reason: "chromium exited".into() }),
            FromWorker::Event(WorkerEvent::Stats(FrameStats { captured: 3, late: 1, encoder_lag_ms: 40, ..Default::default() })),
            FromWorker::Event(WorkerEvent::Media(MuxOutput::Init(1, Bytes::from_static(b"init")))),
            FromWorker::Event(WorkerEvent::Media(MuxOutput::Chunk(
                ChunkMeta { pts_ns: 1, duration_ns: 2, fragment_start: true, independent: true, wallclock_ms: 3, rendition: 2 },
                Bytes::from_static(b"chunk"),
            ))),
            FromWorker::Ended(Some("boom".into())),
        ];
        let mut buf = Vec::new();
        for m in &msgs {
            write_msg(&mut buf, m).await.unwrap();
        }
        let mut r = buf.as_slice();
        for m in &msgs {
            assert_eq!(read_msg(&mut r).await.unwrap().as_ref(), Some(m));
        }
        assert!(read_msg(&mut r).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn truncated_or_oversized_frames_are_errors() {
        let mut buf = Vec::new();
        write_msg(&mut buf, &FromWorker::Event(WorkerEvent::Active)).await.unwrap();
        assert!(read_msg(&mut &buf[..buf.len() - 2]).await.is_err());
        assert!(read_msg(&mut &[0xff, 0xff, 0xff, 0xff][..]).await.is_err());
    }
}

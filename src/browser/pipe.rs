//! CDP over a pipe (`--remote-debugging-pipe`): Chromium reads commands from its fd 3 and
//! writes answers and events to its fd 4, each a JSON message ended by a NUL byte, and opens no
//! DevTools TCP port a local user could connect to. chromiumoxide speaks CDP only over a
//! WebSocket, so a bridge carries its messages to the pipe: a loopback listener at a random
//! unguessable path that accepts exactly one connection (ours) and then closes, so the only way
//! to Chromium is the connection roomcast already holds.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use anyhow::{Context, Result};
use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use async_tungstenite::tungstenite::http::StatusCode;
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use async_tungstenite::tungstenite::Message;
use futures::StreamExt;
use rand::distr::{Alphanumeric, SampleString};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::pipe;
use tokio::process::Command;
use tokio::task::JoinHandle;
use tracing::debug;

/// The child's fds Chromium's `--remote-debugging-pipe` reads from and writes to.
const CHILD_IN: i32 = 3;
const CHILD_OUT: i32 = 4;

/// Two pipes: commands to Chromium, messages from it.
pub struct Pipes {
    child_in: OwnedFd,
    to_child: OwnedFd,
    from_child: OwnedFd,
    child_out: OwnedFd,
}

fn pipe_pair() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 fills two new descriptors, owned from here on.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("creating a CDP pipe");
    }
    // SAFETY: both are fresh descriptors nobody else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl Pipes {
    pub fn new() -> Result<Self> {
        let (child_in, to_child) = pipe_pair()?;
        let (from_child, child_out) = pipe_pair()?;
        Ok(Self { child_in, to_child, from_child, child_out })
    }

    /// Makes `cmd`'s process find the pipes at fds 3 and 4 (and nothing else of ours: every
    /// other end is close-on-exec).
    pub fn install(&self, cmd: &mut Command) {
        let (rd, wr) = (self.child_in.as_raw_fd(), self.child_out.as_raw_fd());
        // SAFETY: fcntl and dup2 are async-signal-safe. The ends are first copied above the
        // targets, so moving one onto 3 or 4 never overwrites the other.
        unsafe {
            cmd.pre_exec(move || {
                let rd2 = libc::fcntl(rd, libc::F_DUPFD_CLOEXEC, 10);
                let wr2 = libc::fcntl(wr, libc::F_DUPFD_CLOEXEC, 10);
                if rd2 < 0 || wr2 < 0 || libc::dup2(rd2, CHILD_IN) < 0 || libc::dup2(wr2, CHILD_OUT) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    /// Once Chromium is spawned: closes its ends here and starts the bridge.
    pub async fn bridge(self) -> Result<Bridge> {
        let Pipes { child_in, to_child, from_child, child_out } = self;
        drop((child_in, child_out));
        let to_child = pipe::Sender::from_owned_fd(to_child).context("CDP pipe to chromium")?;
        let from_child = pipe::Receiver::from_owned_fd(from_child).context("CDP pipe from chromium")?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the CDP bridge")?;
        let path = format!("/devtools/browser/{}", Alphanumeric.sample_string(&mut rand::rng(), 32));
        let url = format!("ws://{}{path}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let ws = loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let expected = path.clone();
                // The callback's shape is tungstenite's (its error is an HTTP response).
                #[allow(clippy::result_large_err)]
                let check = move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
                    if req.uri().path() == expected {
                        return Ok(resp);
                    }
                    let mut e = ErrorResponse::new(None);
                    *e.status_mut() = StatusCode::NOT_FOUND;
                    Err(e)
                };
                let config = WebSocketConfig::default().max_message_size(None).max_frame_size(None);
                match async_tungstenite::tokio::accept_hdr_async_with_config(stream, check, Some(config)).await {
                    Ok(ws) => break ws,
                    Err(e) => debug!("CDP bridge: refused a connection: {e}"),
                }
            };
            // One connection only: nobody else reaches this Chromium.
            drop(listener);
            carry(ws, to_child, from_child).await;
        });
        Ok(Bridge { url, task })
    }
}

/// Messages both ways until either side closes.
async fn carry<S>(ws: async_tungstenite::WebSocketStream<S>, mut to_child: pipe::Sender, from_child: pipe::Receiver)
where
    S: futures::AsyncRead + futures::AsyncWrite + Unpin,
{
    let (mut ws_tx, mut ws_rx) = ws.split();
    let down = async {
        while let Some(Ok(msg)) = ws_rx.next().await {
            let bytes = match msg {
                Message::Text(t) => t.as_bytes().to_vec(),
                Message::Binary(b) => b.to_vec(),
                Message::Close(_) => break,
                _ => continue,
            };
            if to_child.write_all(&bytes).await.is_err() || to_child.write_all(b"\0").await.is_err() {
                break;
            }
        }
    };
    let up = async {
        let mut reader = BufReader::new(from_child);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(0, &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if buf.last() == Some(&0) {
                buf.pop();
            }
            let Ok(text) = String::from_utf8(std::mem::take(&mut buf)) else { continue };
            if ws_tx.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
        let _ = ws_tx.close(None).await;
    };
    tokio::select! {
        _ = down => {}
        _ = up => {}
    }
}

/// The running bridge; ended when dropped.
pub struct Bridge {
    pub url: String,
    task: JoinHandle<()>,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.task.abort();
    }
}

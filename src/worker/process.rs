//! The supervisor's side of a worker child process: spawn `roomcast worker` in its own process
//! group, feed it the job, read its events, stop it, and — when it will not stop or has died —
//! kill its process group and its Chromium's.
//!
//! Why a process per egress: Chromium and GStreamer are large native code bases; a crash, a
//! hang in a state change or runaway memory in one egress must not take the service or other
//! egresses with it, and a process (group) is the unit the kernel can kill, account and
//! limit. The cost — one fork/exec and a pipe per egress — is small next to a browser.

use std::process::Stdio;

use anyhow::{anyhow, Context, Result};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;
use tracing::warn;

use super::ipc::{read_msg, FirstLine, FromWorker};
use super::WarmSpec;
use crate::proc::{kill_group, subcommand};
use crate::spec::JobSpec;

pub struct WorkerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    pgid: i32,
    /// Cleared once the worker is reaped, so a reused PID is never signalled.
    alive: bool,
    chromium_pgid: Option<i32>,
}

impl WorkerProcess {
    /// Starts a worker for `spec`; its messages arrive on the returned channel, which closes
    /// when the worker's stdout does.
    pub async fn spawn(spec: &JobSpec) -> Result<(Self, mpsc::UnboundedReceiver<FromWorker>)> {
        let (mut worker, rx) = Self::start()?;
        worker.assign(spec).await?;
        Ok((worker, rx))
    }

    /// Starts a warm worker: it launches what `warm` names at once and waits for
    /// [`WorkerProcess::assign`].
    pub async fn spawn_warm(warm: &WarmSpec) -> Result<(Self, mpsc::UnboundedReceiver<FromWorker>)> {
        let (mut worker, rx) = Self::start()?;
        worker.send_line(&FirstLine::Warm { warm: Box::new(warm.clone()) }).await.context("preparing the warm worker")?;
        Ok((worker, rx))
    }

    /// Gives the worker its job.
    pub async fn assign(&mut self, spec: &JobSpec) -> Result<()> {
        self.send_line(spec).await.context("sending the job to the worker")
    }

    /// Takes in what an unassigned worker has said so far (a warm worker's Chromium PID), so
    /// that [`WorkerProcess::kill`] reaches its Chromium too.
    pub fn absorb(&mut self, rx: &mut mpsc::UnboundedReceiver<FromWorker>) {
        while let Ok(msg) = rx.try_recv() {
            if let FromWorker::Event(super::WorkerEvent::BrowserStarted { pid }) = msg {
                self.set_chromium(pid);
            }
        }
    }

    /// Whether the process still runs (a warm worker whose Chromium died has exited).
    pub fn is_running(&mut self) -> bool {
        self.alive && matches!(self.child.try_wait(), Ok(None))
    }

    async fn send_line<T: serde::Serialize>(&mut self, msg: &T) -> Result<()> {
        let stdin = self.stdin.as_mut().ok_or_else(|| anyhow!("worker stdin closed"))?;
        let mut line = serde_json::to_vec(msg)?;
        line.push(b'\n');
        stdin.write_all(&line).await?;
        Ok(())
    }

    fn start() -> Result<(Self, mpsc::UnboundedReceiver<FromWorker>)> {
        // No parent-death signal: a worker whose supervisor died sees its stdin close and
        // stops as asked, finalising what it recorded.
        // Where the worker writes its X server's cookie (if it runs one): libX11 in the
        // worker reads XAUTHORITY from the environment it starts with.
        let xauth = std::env::temp_dir().join(format!("roomcast-xauth-{}", crate::clock::unix_ns()));
        let mut child = subcommand("worker")?
            .env(crate::capture::xauth::ENV, &xauth)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the worker process")?;
        let pgid = child.id().ok_or_else(|| anyhow!("worker exited at once"))? as i32;
        let stdin = child.stdin.take().ok_or_else(|| anyhow!("no worker stdin"))?;
        let mut stdout = child.stdout.take().ok_or_else(|| anyhow!("no worker stdout"))?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match read_msg(&mut stdout).await {
                    Ok(Some(msg)) => {
                        if tx.send(msg).is_err() {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        warn!("worker pipe: {e:#}");
                        break;
                    }
                }
            }
        });
        Ok((Self { child, stdin: Some(stdin), pgid, alive: true, chromium_pgid: None }, rx))
    }

    pub fn pid(&self) -> i32 {
        self.pgid
    }

    pub fn set_chromium(&mut self, pgid: i32) {
        self.chromium_pgid = Some(pgid);
    }

    /// Sends a command to a running worker; one that is stopping no longer takes any.
    pub async fn command(&mut self, cmd: &super::WorkerCommand) {
        if self.stdin.is_some() {
            if let Err(e) = self.send_line(cmd).await {
                warn!("worker command: {e:#}");
            }
        }
    }

    /// Asks the worker to finish: it stops capturing, drains the pipeline and exits.
    pub async fn request_stop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"stop\n").await;
            // Dropping stdin closes it: EOF is a stop too, should the line not arrive.
        }
    }

    /// Kills the worker's and its Chromium's process groups.
    pub fn kill(&mut self) {
        if self.alive {
            kill_group(self.pgid);
        }
        if let Some(c) = self.chromium_pgid.take() {
            kill_group(c);
        }
    }

    /// Waits for the worker to exit and describes how it did.
    pub async fn wait(&mut self) -> String {
        let status = match self.child.wait().await {
            Ok(s) => s.to_string(),
            Err(e) => e.to_string(),
        };
        // Whatever the worker left behind goes too (Chromium also dies with it by PDEATHSIG).
        self.alive = false;
        self.kill();
        status
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

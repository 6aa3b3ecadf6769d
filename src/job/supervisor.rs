//! One egress's supervisor: starts its worker process (warm or cold), routes the worker's
//! media into the egress's [`Outputs`] and the API's control messages (stop, layout, stream
//! URLs) to the worker and the outputs, and records how the egress ended. Whatever happens,
//! the playlists are finalised and the worker's processes are gone when it returns.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn};

use super::pool::WarmPool;
use super::registry::{Control, Registry};
use crate::config::Config;
use crate::media::FrameStats;
use crate::metrics::Metrics;
use crate::origin::live::{LiveHls, LiveRegistry};
use crate::output::Outputs;
use crate::spec::JobSpec;
use crate::worker::ipc::FromWorker;
use crate::worker::process::WorkerProcess;
use crate::worker::{WorkerCommand, WorkerEvent};

/// How long an ended stream stays in memory, so players holding its last playlist can still
/// fetch the parts it listed; afterwards its files on disk are served.
const STREAM_LINGER: Duration = Duration::from_secs(60);

/// How long a worker that said its last word may take to exit before it is killed.
const EXIT_WITHIN: Duration = Duration::from_secs(5);

/// What a supervisor works with: the node's shared parts.
#[derive(Clone)]
pub(super) struct Supervisor {
    pub cfg: Arc<Config>,
    pub registry: Arc<Registry>,
    pub pool: Arc<WarmPool>,
    pub metrics: Arc<Metrics>,
    pub live: Arc<LiveRegistry>,
}

/// Asks the worker to finish, and arms the deadline after which it is killed.
async fn ask_stop(worker: &mut WorkerProcess, deadline: &mut Option<Instant>, grace: Duration) {
    worker.request_stop().await;
    deadline.get_or_insert(Instant::now() + grace);
}

impl Supervisor {
    /// Runs the egress of `spec` to its end (`live`: its HLS store, already registered).
    pub async fn run(self, spec: JobSpec, live: Option<Arc<LiveHls>>, control: mpsc::UnboundedReceiver<Control>) {
        let id = spec.egress_id.clone();
        let store = live.clone();
        let started = match Outputs::new(&spec, &self.cfg.output_dir.join(&id), live, self.cfg.stream.retry()) {
            Ok(outputs) => self.run_worker(spec, outputs, control).await,
            Err(e) => {
                self.registry.finish(&id, |s| s.fail(&format!("output: {e:#}")));
                false
            }
        };
        // Whatever ended the egress, its live store is final (its watchdog returns); one that
        // never got a worker has nothing a player could want, so it goes at once.
        if let Some(store) = store {
            store.update(|st| st.finished = true);
        }
        if !started {
            self.live.remove(&id);
            return;
        }
        let streams = Arc::clone(&self.live);
        tokio::spawn(async move {
            tokio::time::sleep(STREAM_LINGER).await;
            streams.remove(&id);
        });
    }

    /// A warm worker that takes the job, else a new one.
    async fn worker_for(&self, spec: &JobSpec) -> anyhow::Result<(WorkerProcess, mpsc::UnboundedReceiver<FromWorker>, bool)> {
        if let Some((mut w, rx)) = self.pool.take(spec) {
            match w.assign(spec).await {
                Ok(()) => return Ok((w, rx, true)),
                Err(e) => warn!("warm worker refused the job ({e:#}); starting cold"),
            }
        }
        let (w, rx) = WorkerProcess::spawn(spec).await?;
        Ok((w, rx, false))
    }

    /// Runs the worker to its end; false when no worker could be started.
    async fn run_worker(&self, spec: JobSpec, mut outputs: Outputs, mut control: mpsc::UnboundedReceiver<Control>) -> bool {
        let id = spec.egress_id.clone();
        let (mut worker, mut from_worker, warm) = match self.worker_for(&spec).await {
            Ok(w) => w,
            Err(e) => {
                let _ = outputs.finish().await;
                self.registry.finish(&id, |s| s.fail(&format!("{e:#}")));
                return false;
            }
        };
        info!(worker_pid = worker.pid(), warm, "worker started");
        let stop_grace = Duration::from_secs(self.cfg.timeouts.stop_secs);
        let mut deadline: Option<Instant> = None;
        let mut last_word: Option<Option<String>> = None;
        let mut control_open = true;
        let mut stop_requested = false;
        let mut frames = FrameStats::default();
        loop {
            tokio::select! {
                msg = from_worker.recv() => match msg {
                    Some(FromWorker::Event(WorkerEvent::BrowserStarted { pid })) => worker.set_chromium(pid),
                    Some(FromWorker::Event(WorkerEvent::Active)) => self.registry.update(&id, |s| s.activate()),
                    Some(FromWorker::Event(WorkerEvent::BrowserRestarted { reason })) => {
                        self.metrics.browser_restarted();
                        self.registry.update(&id, |s| s.browser_restarted(&reason));
                    }
                    Some(FromWorker::Event(WorkerEvent::Stats(now))) => {
                        self.metrics.frames(&id, &frames, &now);
                        frames = now;
                        let infos = outputs.infos();
                        self.registry.update(&id, |s| s.set_outputs(infos));
                    }
                    Some(FromWorker::Event(WorkerEvent::Media(m))) => match outputs.push(m) {
                        Some(_) => ask_stop(&mut worker, &mut deadline, stop_grace).await,
                        None => {
                            if let Some(stats) = outputs.segments() {
                                self.registry.update(&id, |s| s.set_segments(stats));
                            }
                        }
                    },
                    Some(FromWorker::Ended(word)) => {
                        last_word = Some(word);
                        break;
                    }
                    None => break,
                },
                c = control.recv(), if control_open => match c {
                    Some(Control::Stop) => {
                        stop_requested = true;
                        ask_stop(&mut worker, &mut deadline, stop_grace).await;
                    }
                    Some(Control::Layout(layout)) => worker.command(&WorkerCommand::Layout { layout }).await,
                    Some(Control::Streams { add, remove }) => {
                        outputs.update_streams(&add, &remove);
                        let infos = outputs.infos();
                        self.registry.update(&id, |s| {
                            s.end_streams(&remove);
                            s.set_outputs(infos);
                        });
                        if outputs.is_empty() {
                            stop_requested = true;
                            ask_stop(&mut worker, &mut deadline, stop_grace).await;
                        }
                    }
                    None => control_open = false,
                },
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    warn!("worker did not finish within {stop_grace:?} of stop; killing it");
                    worker.kill();
                    deadline = None;
                }
            }
        }
        let exit = match tokio::time::timeout(EXIT_WITHIN, worker.wait()).await {
            Ok(s) => s,
            Err(_) => {
                worker.kill();
                worker.wait().await
            }
        };
        self.metrics.remove(&id);
        let (infos, output_error) = outputs.finish().await;
        self.registry.finish(&id, |s| {
            s.set_outputs(infos);
            match (last_word, output_error) {
                (Some(Some(e)), _) => s.fail(&e),
                (_, Some(e)) => s.fail(&e),
                (Some(None), None) if !s.was_active() => s.abort("Stop called before pipeline could start"),
                (Some(None), None) => s.complete(if stop_requested { "StopEgress API" } else { "Source closed" }),
                (None, None) => s.fail(&format!("worker process ended unexpectedly ({exit})")),
            }
        });
        info!(%exit, "egress ended");
        true
    }
}

//! The registry of egresses on this node: admits, starts (one supervised worker process
//! each), lists and stops them, and feeds each worker's media to its outputs.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use livekit_protocol as proto;
use rand::distr::{Alphanumeric, SampleString};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{error, info, warn, Instrument};

use super::spec::JobSpec;
use super::state::JobState;
use super::JobError;
use crate::config::Config;
use crate::media::FrameStats;
use crate::metrics::Metrics;
use crate::output::hls::stream::{Registry, Stream};
use crate::output::hls::HlsWriter;
use crate::worker::ipc::FromWorker;
use crate::worker::process::WorkerProcess;
use crate::worker::WorkerEvent;

enum Control {
    Stop,
}

struct Entry {
    state: JobState,
    control: mpsc::UnboundedSender<Control>,
    task: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Jobs {
    map: HashMap<String, Entry>,
    /// Ended jobs, oldest first, so the registry stays bounded.
    ended: VecDeque<String>,
}

pub struct JobManager {
    cfg: Arc<Config>,
    jobs: Mutex<Jobs>,
    streams: Arc<Registry>,
    metrics: Arc<Metrics>,
}

/// How long an ended stream stays in memory, so players holding its last playlist can still
/// fetch the parts it listed; afterwards its files on disk are served.
const STREAM_LINGER: Duration = Duration::from_secs(60);

fn new_egress_id() -> String {
    format!("EG_{}", Alphanumeric.sample_string(&mut rand::rng(), 12))
}

impl JobManager {
    pub fn new(cfg: Arc<Config>, streams: Arc<Registry>, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self { cfg, jobs: Mutex::new(Jobs::default()), streams, metrics })
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, Jobs> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut JobState)) {
        if let Some(e) = self.jobs().map.get_mut(id) {
            f(&mut e.state);
        }
    }

    pub fn start_web(self: &Arc<Self>, req: proto::WebEgressRequest) -> Result<proto::EgressInfo, JobError> {
        let id = new_egress_id();
        let spec = JobSpec::from_web_request(&id, &req, &self.cfg)?;
        let segments = spec.hls.as_ref().map(|h| {
            let base = format!("{}/hls/{id}", self.cfg.public_url());
            proto::SegmentsInfo {
                playlist_name: h.playlist_name.clone(),
                live_playlist_name: h.live_playlist_name.clone(),
                playlist_location: format!("{base}/{}", h.playlist_name),
                live_playlist_location: format!("{base}/{}", h.live_playlist_name),
                ..Default::default()
            }
        });
        let state = JobState::new(&id, proto::egress_info::Request::Web(req), segments);
        let info = state.info().clone();
        let (tx, rx) = mpsc::unbounded_channel();
        let mut jobs = self.jobs();
        let live = jobs.map.values().filter(|e| e.state.is_live()).count();
        if live >= self.cfg.max_concurrent {
            return Err(JobError::Unavailable(format!("at capacity: {live} egresses running on this node")));
        }
        // Registered before the API answers, so players may ask for the playlist at once.
        let stream = spec.hls.as_ref().map(|h| {
            let stream = Stream::new(&id, self.cfg.output_dir.join(&id), &spec.timing(h), spec.video.as_ref(), spec.audio_kbps(), h);
            self.streams.insert(Arc::clone(&stream));
            tokio::spawn(Arc::clone(&stream).watchdog());
            stream
        });
        let span = tracing::info_span!("egress", egress_id = %id);
        let task = tokio::spawn(Arc::clone(self).supervise(spec, stream, rx).instrument(span));
        jobs.map.insert(id.clone(), Entry { state, control: tx, task: Some(task) });
        info!(egress_id = %id, "egress starting");
        Ok(info)
    }

    pub fn list(&self, req: &proto::ListEgressRequest) -> Vec<proto::EgressInfo> {
        let jobs = self.jobs();
        let mut items: Vec<_> = jobs
            .map
            .values()
            .map(|e| &e.state)
            .filter(|s| req.egress_id.is_empty() || s.info().egress_id == req.egress_id)
            .filter(|s| req.room_name.is_empty() || s.info().room_name == req.room_name)
            .filter(|s| !req.active || s.is_live())
            .map(|s| s.info().clone())
            .collect();
        items.sort_by_key(|i| i.updated_at);
        items
    }

    pub fn stop(&self, egress_id: &str) -> Result<proto::EgressInfo, JobError> {
        let mut jobs = self.jobs();
        let entry = jobs.map.get_mut(egress_id).ok_or_else(|| JobError::NotFound(format!("egress {egress_id} not found")))?;
        if !entry.state.ending() {
            return Err(JobError::FailedPrecondition(format!(
                "egress with status {} cannot be stopped",
                entry.state.status().as_str_name()
            )));
        }
        let _ = entry.control.send(Control::Stop);
        Ok(entry.state.info().clone())
    }

    /// Stops every live egress and waits (bounded) for them to finish.
    pub async fn shutdown(&self) {
        let tasks: Vec<JoinHandle<()>> = {
            let mut jobs = self.jobs();
            jobs.map
                .values_mut()
                .filter_map(|e| {
                    if e.state.ending() {
                        let _ = e.control.send(Control::Stop);
                    }
                    e.task.take()
                })
                .collect()
        };
        info!(count = tasks.len(), "stopping egresses");
        let grace = Duration::from_secs(self.cfg.timeouts.stop_secs + 10);
        for t in tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(grace, t).await.is_err() {
                abort.abort();
            }
        }
    }

    fn finish(&self, id: &str, f: impl FnOnce(&mut JobState)) {
        let mut jobs = self.jobs();
        if let Some(e) = jobs.map.get_mut(id) {
            f(&mut e.state);
            e.task = None;
        }
        jobs.ended.push_back(id.to_string());
        while jobs.ended.len() > self.cfg.keep_ended {
            if let Some(old) = jobs.ended.pop_front() {
                jobs.map.remove(&old);
            }
        }
    }

    /// Runs one egress's worker to its end and records how it ended. Whatever happens, the
    /// playlists are finalised and the worker's processes are gone when this returns.
    async fn supervise(
        self: Arc<Self>,
        spec: JobSpec,
        stream: Option<Arc<Stream>>,
        control: mpsc::UnboundedReceiver<Control>,
    ) {
        let id = spec.egress_id.clone();
        let Some(stream) = stream else {
            self.finish(&id, |s| s.fail("no output"));
            return;
        };
        match HlsWriter::new(Arc::clone(&stream)) {
            Ok(hls) => self.run_worker(spec, hls, control).await,
            Err(e) => self.finish(&id, |s| s.fail(&format!("output: {e:#}"))),
        }
        let streams = Arc::clone(&self.streams);
        tokio::spawn(async move {
            tokio::time::sleep(STREAM_LINGER).await;
            streams.remove(&id);
        });
    }

    async fn run_worker(&self, spec: JobSpec, mut hls: HlsWriter, mut control: mpsc::UnboundedReceiver<Control>) {
        let id = spec.egress_id.clone();
        let (mut worker, mut from_worker) = match WorkerProcess::spawn(&spec).await {
            Ok(w) => w,
            Err(e) => return self.finish(&id, |s| s.fail(&format!("{e:#}"))),
        };
        info!(worker_pid = worker.pid(), "worker started");
        let stop_grace = Duration::from_secs(self.cfg.timeouts.stop_secs);
        let mut deadline: Option<tokio::time::Instant> = None;
        let mut last_word: Option<Option<String>> = None;
        let mut output_error: Option<String> = None;
        let mut control_open = true;
        let mut stop_requested = false;
        let mut frames = FrameStats::default();
        loop {
            tokio::select! {
                msg = from_worker.recv() => match msg {
                    Some(FromWorker::Event(WorkerEvent::BrowserStarted { pid })) => worker.set_chromium(pid),
                    Some(FromWorker::Event(WorkerEvent::Active)) => self.update(&id, |s| s.activate()),
                    Some(FromWorker::Event(WorkerEvent::Stats(now))) => {
                        self.metrics.frames(&id, &frames, &now);
                        frames = now;
                    }
                    Some(FromWorker::Event(WorkerEvent::Media(m))) => {
                        match hls.push(m) {
                            Ok(()) => self.update(&id, |s| s.set_segments(hls.stats())),
                            Err(e) if output_error.is_none() => {
                                error!("hls output: {e:#}");
                                output_error = Some(format!("hls output: {e:#}"));
                                worker.request_stop().await;
                                deadline.get_or_insert(tokio::time::Instant::now() + stop_grace);
                            }
                            Err(_) => {}
                        }
                    }
                    Some(FromWorker::Ended(word)) => {
                        last_word = Some(word);
                        break;
                    }
                    None => break,
                },
                c = control.recv(), if control_open => match c {
                    Some(Control::Stop) => {
                        stop_requested = true;
                        worker.request_stop().await;
                        deadline.get_or_insert(tokio::time::Instant::now() + stop_grace);
                    }
                    None => control_open = false,
                },
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => {
                    warn!("worker did not finish within {stop_grace:?} of stop; killing it");
                    worker.kill();
                    deadline = None;
                }
            }
        }
        let exit = match tokio::time::timeout(Duration::from_secs(5), worker.wait()).await {
            Ok(s) => s,
            Err(_) => {
                worker.kill();
                worker.wait().await
            }
        };
        self.metrics.remove(&id);
        let finalised = hls.finish().map_err(|e| format!("hls output: {e:#}"));
        let stats = hls.stats();
        self.finish(&id, |s| {
            s.set_segments(stats);
            match (last_word, output_error.or(finalised.err())) {
                (Some(Some(e)), _) => s.fail(&e),
                (_, Some(e)) => s.fail(&e),
                (Some(None), None) if !s.was_active() => s.abort("Stop called before pipeline could start"),
                (Some(None), None) => s.complete(if stop_requested { "StopEgress API" } else { "Source closed" }),
                (None, None) => s.fail(&format!("worker process ended unexpectedly ({exit})")),
            }
        });
        info!(%exit, "egress ended");
    }
}

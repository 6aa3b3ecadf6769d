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

use super::spec::{BrowserSpec, JobSpec};
use super::state::JobState;
use super::JobError;
use crate::config::{CaptureBackend, Config};
use crate::media::FrameStats;
use crate::metrics::Metrics;
use crate::output::hls::stream::{Registry, Stream};
use crate::output::hls::HlsWriter;
use crate::output::file::FileOutputs;
use crate::output::stream::StreamOutputs;
use crate::worker::ipc::FromWorker;
use crate::worker::process::WorkerProcess;
use crate::worker::{WarmSpec, WorkerCommand, WorkerEvent};

enum Control {
    Stop,
    /// A room composite's new layout, for its page.
    Layout(String),
    /// UpdateStream: stream URLs to add and to remove (checked).
    Streams { add: Vec<String>, remove: Vec<String> },
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
    /// Warm workers waiting for a job (config `pool.size`).
    pool: Mutex<Vec<Warm>>,
    /// Warm workers being launched, so two refills never overshoot.
    launching: std::sync::atomic::AtomicUsize,
    shutting_down: std::sync::atomic::AtomicBool,
}

type Warm = (WorkerProcess, mpsc::UnboundedReceiver<FromWorker>);

/// How long an ended stream stays in memory, so players holding its last playlist can still
/// fetch the parts it listed; afterwards its files on disk are served.
const STREAM_LINGER: Duration = Duration::from_secs(60);

/// An update (layout, stream URLs) is for an egress that is starting or running.
fn updatable(state: &JobState) -> Result<(), JobError> {
    match state.status() {
        proto::EgressStatus::EgressStarting | proto::EgressStatus::EgressActive => Ok(()),
        s => Err(JobError::FailedPrecondition(format!("egress with status {} cannot be updated", s.as_str_name()))),
    }
}

/// Asks the worker to finish, and arms the deadline after which it is killed.
async fn ask_stop(worker: &mut WorkerProcess, deadline: &mut Option<tokio::time::Instant>, grace: Duration) {
    worker.request_stop().await;
    deadline.get_or_insert(tokio::time::Instant::now() + grace);
}

fn new_egress_id() -> String {
    format!("EG_{}", Alphanumeric.sample_string(&mut rand::rng(), 12))
}

impl JobManager {
    pub fn new(cfg: Arc<Config>, streams: Arc<Registry>, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            cfg,
            jobs: Mutex::new(Jobs::default()),
            streams,
            metrics,
            pool: Mutex::new(Vec::new()),
            launching: Default::default(),
            shutting_down: Default::default(),
        })
    }

    /// Fills the warm pool (in the background).
    pub fn start_pool(self: &Arc<Self>) {
        self.refill(Duration::ZERO);
    }

    fn warm_spec(&self) -> WarmSpec {
        WarmSpec {
            browser: BrowserSpec::from_config(&self.cfg),
            capture: self.cfg.capture.backend,
            // The defaults of a request without options (LiveKit's H264_720P_30, 48 kHz stereo).
            width: 1280,
            height: 720,
            framerate: 30,
            audio: (self.cfg.audio.pulseaudio_path.display().to_string(), 48_000, 2),
            start_timeout_secs: self.cfg.timeouts.start_secs,
        }
    }

    /// Launches warm workers until the pool is full, after `delay`.
    fn refill(self: &Arc<Self>, delay: Duration) {
        use std::sync::atomic::Ordering::SeqCst;
        let want = self.cfg.pool.size;
        let this = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            loop {
                if this.shutting_down.load(SeqCst) {
                    return;
                }
                let have = this.pool.lock().unwrap_or_else(|p| p.into_inner()).len() + this.launching.load(SeqCst);
                if have >= want {
                    return;
                }
                this.launching.fetch_add(1, SeqCst);
                let warm = WorkerProcess::spawn_warm(&this.warm_spec()).await;
                this.launching.fetch_sub(1, SeqCst);
                match warm {
                    Ok((w, rx)) if !this.shutting_down.load(SeqCst) => {
                        info!(worker_pid = w.pid(), "warm worker launched");
                        this.pool.lock().unwrap_or_else(|p| p.into_inner()).push((w, rx));
                    }
                    Ok(_) => return,
                    Err(e) => {
                        warn!("launching a warm worker: {e:#}");
                        return;
                    }
                }
            }
        });
    }

    /// A warm worker that is still alive and fits `spec`, if the pool has one; a replacement
    /// follows.
    fn take_warm(self: &Arc<Self>, spec: &JobSpec) -> Option<Warm> {
        if self.cfg.pool.size == 0 || !self.warm_spec().fits(spec) {
            return None;
        }
        let taken = {
            let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
            // Dead ones (their Chromium died while idle) are dropped on the way.
            pool.retain_mut(|(w, _)| w.is_running());
            pool.pop()
        };
        self.refill(Duration::from_millis(self.cfg.pool.refill_delay_ms));
        taken
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

    /// The config as one request sees it: `capture` overrides the configured capture backend,
    /// and what follows from it.
    fn config_for(&self, capture: Option<CaptureBackend>) -> std::borrow::Cow<'_, Config> {
        match capture {
            Some(backend) => {
                let mut cfg = (*self.cfg).clone();
                cfg.capture.backend = backend;
                std::borrow::Cow::Owned(cfg)
            }
            None => std::borrow::Cow::Borrowed(&self.cfg),
        }
    }

    /// Starts a web egress; `capture` overrides the configured capture backend for this one.
    pub fn start_web(self: &Arc<Self>, req: proto::WebEgressRequest, capture: Option<CaptureBackend>) -> Result<proto::EgressInfo, JobError> {
        let id = new_egress_id();
        let spec = JobSpec::from_web_request(&id, &req, &self.config_for(capture))?;
        self.start(spec, proto::egress_info::Request::Web(req))
    }

    /// Starts a room composite egress (see [`JobSpec::from_room_request`]).
    pub fn start_room(
        self: &Arc<Self>,
        req: proto::RoomCompositeEgressRequest,
        capture: Option<CaptureBackend>,
    ) -> Result<proto::EgressInfo, JobError> {
        let id = new_egress_id();
        let spec = JobSpec::from_room_request(&id, &req, &self.config_for(capture))?;
        self.start(spec, proto::egress_info::Request::RoomComposite(req))
    }

    fn start(self: &Arc<Self>, spec: JobSpec, request: proto::egress_info::Request) -> Result<proto::EgressInfo, JobError> {
        let id = spec.egress_id.clone();
        let segments = spec.hls.as_ref().filter(|_| spec.serve_hls).map(|h| {
            let base = format!("{}/hls/{id}", self.cfg.public_url());
            proto::SegmentsInfo {
                playlist_name: h.playlist_name.clone(),
                live_playlist_name: h.live_playlist_name.clone(),
                playlist_location: format!("{base}/{}", h.playlist_name),
                live_playlist_location: format!("{base}/{}", h.live_playlist_name),
                ..Default::default()
            }
        });
        let mut state = JobState::new(&id, request, segments);
        state.add_streams(&spec.streams);
        let info = state.info().clone();
        let (tx, rx) = mpsc::unbounded_channel();
        let mut jobs = self.jobs();
        let live = jobs.map.values().filter(|e| e.state.is_live()).count();
        if live >= self.cfg.max_concurrent {
            return Err(JobError::Unavailable(format!("at capacity: {live} egresses running on this node")));
        }
        // Registered before the API answers, so players may ask for the playlist at once.
        let stream = spec.hls.as_ref().filter(|_| spec.serve_hls).map(|h| {
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

    /// UpdateStream: adds and removes stream URLs of a live egress.
    pub fn update_stream(&self, req: &proto::UpdateStreamRequest) -> Result<proto::EgressInfo, JobError> {
        let check = |u: &String| super::spec::stream_url(u, 0).map_err(JobError::from);
        let add = req.add_output_urls.iter().map(check).collect::<Result<Vec<_>, _>>()?;
        let remove = req.remove_output_urls.iter().map(check).collect::<Result<Vec<_>, _>>()?;
        let mut jobs = self.jobs();
        let entry = jobs.map.get_mut(&req.egress_id).ok_or_else(|| JobError::NotFound(format!("egress {} not found", req.egress_id)))?;
        updatable(&entry.state)?;
        let live = entry.state.live_stream_urls();
        for u in &remove {
            if !live.contains(u) {
                return Err(JobError::InvalidArgument(format!("egress is not streaming to {}", crate::output::stream::redact(u))));
            }
        }
        if live.len() + add.len() > super::spec::MAX_STREAM_URLS + remove.len() {
            return Err(JobError::InvalidArgument(format!("at most {} stream urls per egress", super::spec::MAX_STREAM_URLS)));
        }
        entry.state.end_streams(&remove);
        entry.state.add_streams(&add);
        let _ = entry.control.send(Control::Streams { add, remove });
        Ok(entry.state.info().clone())
    }

    /// Switches a live room composite to `layout`: its page is told at once, and for LiveKit
    /// rooms the recorder's metadata is set too (how `@livekit/egress-sdk` templates hear it).
    pub fn update_layout(&self, egress_id: &str, layout: &str) -> Result<proto::EgressInfo, JobError> {
        if layout.len() > 128 || layout.chars().any(char::is_control) {
            return Err(JobError::InvalidArgument("layout must be at most 128 characters, without control characters".into()));
        }
        let mut jobs = self.jobs();
        let entry = jobs.map.get_mut(egress_id).ok_or_else(|| JobError::NotFound(format!("egress {egress_id} not found")))?;
        let room_name = entry.state.info().room_name.clone();
        if !matches!(entry.state.info().request, Some(proto::egress_info::Request::RoomComposite(_))) {
            return Err(JobError::InvalidArgument(format!("egress {egress_id} is not a room composite: only those have a layout")));
        }
        updatable(&entry.state)?;
        entry.state.set_layout(layout);
        let _ = entry.control.send(Control::Layout(layout.to_string()));
        let info = entry.state.info().clone();
        drop(jobs);
        if self.cfg.room.sfu == crate::config::Sfu::Livekit {
            let (api, id, layout) = (self.cfg.sfu_api_url(), egress_id.to_string(), layout.to_string());
            match self.cfg.sfu_keys() {
                Ok((key, secret)) => {
                    tokio::spawn(async move {
                        match crate::room::livekit::set_recorder_layout(&api, &key, &secret, &room_name, &id, &layout).await {
                            Ok(()) => info!(egress_id = %id, %layout, "recorder metadata set"),
                            Err(e) => warn!(egress_id = %id, "setting the recorder's layout metadata: {e:#}"),
                        }
                    });
                }
                Err(e) => warn!("no keys for LiveKit's RoomService: {e:#}"),
            }
        }
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
        self.shutting_down.store(true, std::sync::atomic::Ordering::SeqCst);
        // Warm workers are killed with their Chromium's whole process group.
        for (mut w, mut rx) in std::mem::take(&mut *self.pool.lock().unwrap_or_else(|p| p.into_inner())) {
            w.absorb(&mut rx);
            w.kill();
        }
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
        let hls = match stream.map(|s| HlsWriter::new(Arc::clone(&s))).transpose() {
            Ok(hls) => hls,
            Err(e) => return self.finish(&id, |s| s.fail(&format!("output: {e:#}"))),
        };
        let tracks = (spec.video.is_some(), spec.audio.is_some());
        let outputs = StreamOutputs::new(&spec.streams, tracks, self.cfg.stream.retry());
        let opus = spec.audio.as_ref().is_some_and(|a| a.codec == crate::job::spec::AudioCodec::Opus);
        let files = FileOutputs::new(&self.cfg.output_dir.join(&id), &spec.files, &spec.images, tracks, opus);
        self.run_worker(spec, hls, outputs, files, control).await;
        let streams = Arc::clone(&self.streams);
        tokio::spawn(async move {
            tokio::time::sleep(STREAM_LINGER).await;
            streams.remove(&id);
        });
    }

    async fn run_worker(
        self: &Arc<Self>,
        spec: JobSpec,
        mut hls: Option<HlsWriter>,
        mut outputs: StreamOutputs,
        mut files: FileOutputs,
        mut control: mpsc::UnboundedReceiver<Control>,
    ) {
        let id = spec.egress_id.clone();
        let warm = match self.take_warm(&spec) {
            Some((mut w, rx)) => match w.assign(&spec).await {
                Ok(()) => Some((w, rx)),
                Err(e) => {
                    warn!("warm worker refused the job ({e:#}); starting cold");
                    None
                }
            },
            None => None,
        };
        let is_warm = warm.is_some();
        let (mut worker, mut from_worker) = match warm {
            Some(w) => w,
            None => match WorkerProcess::spawn(&spec).await {
                Ok(w) => w,
                Err(e) => return self.finish(&id, |s| s.fail(&format!("{e:#}"))),
            },
        };
        info!(worker_pid = worker.pid(), warm = is_warm, "worker started");
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
                        let infos = outputs.infos();
                        let (file_infos, image_infos) = files.infos();
                        self.update(&id, |s| {
                            s.update_streams(infos);
                            s.set_files(file_infos, image_infos);
                        });
                    }
                    Some(FromWorker::Event(WorkerEvent::Media(m))) => {
                        // Stream and file outputs first: they only queue or append, never wait.
                        outputs.push(&m);
                        files.push(&m);
                        let Some(hls) = hls.as_mut() else { continue };
                        match hls.push(m) {
                            Ok(()) => self.update(&id, |s| s.set_segments(hls.stats())),
                            Err(e) if output_error.is_none() => {
                                error!("hls output: {e:#}");
                                output_error = Some(format!("hls output: {e:#}"));
                                ask_stop(&mut worker, &mut deadline, stop_grace).await;
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
                        ask_stop(&mut worker, &mut deadline, stop_grace).await;
                    }
                    Some(Control::Layout(layout)) => worker.command(&WorkerCommand::Layout { layout }).await,
                    Some(Control::Streams { add, remove }) => {
                        for u in &remove {
                            outputs.remove(u);
                        }
                        for u in &add {
                            outputs.add(u);
                        }
                        let infos = outputs.infos();
                        self.update(&id, |s| {
                            s.end_streams(&remove);
                            s.update_streams(infos);
                        });
                        // Nothing left to send to: the egress is done (LiveKit: "All streams stopped").
                        if hls.is_none() && outputs.is_empty() && files.is_empty() {
                            stop_requested = true;
                            ask_stop(&mut worker, &mut deadline, stop_grace).await;
                        }
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
        let finalised = hls.as_mut().map(|h| h.finish().map_err(|e| format!("hls output: {e:#}"))).unwrap_or(Ok(()));
        let stats = hls.as_ref().map(|h| h.stats());
        let streams = outputs.finish(Duration::from_secs(10)).await;
        let (file_infos, image_infos, file_error) = files.finish().await;
        let output_error = output_error.or(file_error);
        self.finish(&id, |s| {
            if let Some(stats) = stats {
                s.set_segments(stats);
            }
            s.update_streams(streams);
            s.set_files(file_infos, image_infos);
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

//! The egresses of this node, as the API sees them: admits and starts them (one supervised
//! worker process each, see [`super::supervisor`]), lists, updates and stops them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use livekit_protocol as proto;
use rand::distr::{Alphanumeric, SampleString};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn, Instrument};

use super::pool::WarmPool;
use super::registry::{Control, Entry, Registry};
use super::state::JobState;
use super::supervisor::Supervisor;
use super::JobError;
use crate::config::{CaptureBackend, Config, Sfu};
use crate::metrics::Metrics;
use crate::origin::live::{LiveHls, LiveRegistry};
use crate::origin::signing::Signer;
use crate::spec::room::check_layout;
use crate::spec::url::{check_reachable, redact, stream_url};
use crate::spec::{JobSpec, MAX_STREAM_URLS};

/// What comes with a request besides its fields: the tests' capture override, and the room's
/// id when livekit-server sends one (it fills `{room_id}` in output names).
#[derive(Debug, Clone, Default)]
pub struct StartContext {
    pub capture: Option<CaptureBackend>,
    pub room_id: Option<String>,
}

pub struct JobManager {
    cfg: Arc<Config>,
    registry: Arc<Registry>,
    pool: Arc<WarmPool>,
    live: Arc<LiveRegistry>,
    metrics: Arc<Metrics>,
    /// Cleared at shutdown: from then on every start is refused.
    accepting: AtomicBool,
}

/// An update (layout, stream URLs) is for an egress that is starting or running.
fn updatable(state: &JobState) -> Result<(), JobError> {
    match state.status() {
        proto::EgressStatus::EgressStarting | proto::EgressStatus::EgressActive => Ok(()),
        s => Err(JobError::FailedPrecondition(format!("egress with status {} cannot be updated", s.as_str_name()))),
    }
}

fn new_egress_id() -> String {
    format!("EG_{}", Alphanumeric.sample_string(&mut rand::rng(), 12))
}

impl JobManager {
    pub fn new(cfg: Arc<Config>, live: Arc<LiveRegistry>, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            registry: Arc::new(Registry::new(cfg.keep_ended, Some(cfg.output_dir.clone()))),
            pool: WarmPool::new(Arc::clone(&cfg)),
            cfg,
            live,
            metrics,
            accepting: AtomicBool::new(true),
        })
    }

    /// Fills the warm pool (in the background).
    pub fn start_pool(&self) {
        self.pool.start();
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
    pub fn start_web(&self, req: proto::WebEgressRequest, capture: Option<CaptureBackend>) -> Result<proto::EgressInfo, JobError> {
        self.start_web_as(&new_egress_id(), req, StartContext { capture, ..Default::default() })
    }

    /// A web egress under an id given by the caller (livekit-server assigns them).
    pub fn start_web_as(&self, id: &str, req: proto::WebEgressRequest, ctx: StartContext) -> Result<proto::EgressInfo, JobError> {
        let spec = JobSpec::from_web_request(id, &req, &self.config_for(ctx.capture))?;
        self.start(spec, proto::egress_info::Request::Web(req))
    }

    /// Starts a room composite egress (see [`JobSpec::from_room_request`]).
    pub fn start_room(
        &self,
        req: proto::RoomCompositeEgressRequest,
        capture: Option<CaptureBackend>,
    ) -> Result<proto::EgressInfo, JobError> {
        self.start_room_as(&new_egress_id(), req, StartContext { capture, ..Default::default() })
    }

    /// A room composite under an id given by the caller (livekit-server assigns them).
    pub fn start_room_as(
        &self,
        id: &str,
        req: proto::RoomCompositeEgressRequest,
        ctx: StartContext,
    ) -> Result<proto::EgressInfo, JobError> {
        let spec = JobSpec::from_room_request_in(id, &req, &self.config_for(ctx.capture), ctx.room_id.as_deref())?;
        self.start(spec, proto::egress_info::Request::RoomComposite(req))
    }

    /// A v2 StartEgress (template or web source) under the given id.
    pub fn start_egress_as(&self, id: &str, req: proto::StartEgressRequest, ctx: StartContext) -> Result<proto::EgressInfo, JobError> {
        let spec = JobSpec::from_start_request_in(id, &req, &self.config_for(ctx.capture), ctx.room_id.as_deref())?;
        self.start(spec, proto::egress_info::Request::Egress(req))
    }

    /// A v2 StartEgress under a new id.
    pub fn start_egress(&self, req: proto::StartEgressRequest, capture: Option<CaptureBackend>) -> Result<proto::EgressInfo, JobError> {
        self.start_egress_as(&new_egress_id(), req, StartContext { capture, ..Default::default() })
    }

    fn start(&self, spec: JobSpec, request: proto::egress_info::Request) -> Result<proto::EgressInfo, JobError> {
        let id = spec.egress_id.clone();
        let segments = spec.hls.as_ref().filter(|_| spec.serve_hls).map(|h| {
            let base = format!("{}/hls/{id}", self.cfg.public_url());
            // With signed URLs the locations carry their signature.
            let signed = Signer::from_config(&self.cfg.origin).map(|s| format!("?{}", s.query(&id))).unwrap_or_default();
            proto::SegmentsInfo {
                playlist_name: h.playlist_name.clone(),
                live_playlist_name: h.live_playlist_name.clone(),
                playlist_location: format!("{base}/{}{signed}", h.playlist_name),
                live_playlist_location: format!("{base}/{}{signed}", h.live_playlist_name),
                ..Default::default()
            }
        });
        let mut state = JobState::new(&id, request, segments);
        state.add_streams(&spec.streams);
        let info = state.info().clone();
        let (tx, rx) = mpsc::unbounded_channel();
        let mut jobs = self.registry.lock();
        // Checked under the registry's lock, which shutdown takes after clearing the flag:
        // no start slips in between.
        if !self.accepting.load(Ordering::SeqCst) {
            return Err(JobError::Unavailable("this node is shutting down".into()));
        }
        if jobs.map.contains_key(&id) {
            return Err(JobError::AlreadyExists(format!("egress {id} already exists")));
        }
        let live = jobs.live();
        if live >= self.cfg.max_concurrent {
            return Err(JobError::Unavailable(format!("at capacity: {live} egresses running on this node")));
        }
        // Registered before the API answers, so players may ask for the playlist at once.
        let store = LiveHls::for_spec(&spec, self.cfg.output_dir.join(&id));
        if let Some(store) = &store {
            self.live.insert(Arc::clone(store));
            tokio::spawn(Arc::clone(store).watchdog());
        }
        let supervisor = Supervisor {
            cfg: Arc::clone(&self.cfg),
            registry: Arc::clone(&self.registry),
            pool: Arc::clone(&self.pool),
            metrics: Arc::clone(&self.metrics),
            live: Arc::clone(&self.live),
        };
        let span = tracing::info_span!("egress", egress_id = %id);
        let task = tokio::spawn(supervisor.run(spec, store, rx).instrument(span));
        self.registry.record(&state);
        jobs.map.insert(id.clone(), Entry { state, control: tx, task: Some(task) });
        info!(egress_id = %id, "egress starting");
        Ok(info)
    }

    /// UpdateStream: adds and removes stream URLs of a live egress.
    pub fn update_stream(&self, req: &proto::UpdateStreamRequest) -> Result<proto::EgressInfo, JobError> {
        let policy = self.cfg.egress_policy();
        let check = |u: &String| {
            let u = stream_url(u, 0)?;
            check_reachable(&u, &policy, &format!("stream url {:?}", redact(&u)))?;
            Ok::<_, JobError>(u)
        };
        let add = req.add_output_urls.iter().map(check).collect::<Result<Vec<_>, _>>()?;
        let remove = req.remove_output_urls.iter().map(check).collect::<Result<Vec<_>, _>>()?;
        let mut jobs = self.registry.lock();
        let entry = jobs.get_mut(&req.egress_id)?;
        updatable(&entry.state)?;
        let live = entry.state.live_stream_urls();
        for u in &remove {
            if !live.contains(u) {
                return Err(JobError::InvalidArgument(format!("egress is not streaming to {}", redact(u))));
            }
        }
        if live.len() + add.len() > MAX_STREAM_URLS + remove.len() {
            return Err(JobError::InvalidArgument(format!("at most {MAX_STREAM_URLS} stream urls per egress")));
        }
        entry.state.end_streams(&remove);
        entry.state.add_streams(&add);
        let _ = entry.control.send(Control::Streams { add, remove });
        Ok(entry.state.info().clone())
    }

    /// Switches a live room composite to `layout`: its page is told at once, and for LiveKit
    /// rooms the recorder's metadata is set too (how `@livekit/egress-sdk` templates hear it).
    pub fn update_layout(&self, egress_id: &str, layout: &str) -> Result<proto::EgressInfo, JobError> {
        check_layout(layout)?;
        let mut jobs = self.registry.lock();
        let entry = jobs.get_mut(egress_id)?;
        let room_name = entry.state.info().room_name.clone();
        if !entry.state.has_layout() {
            return Err(JobError::InvalidArgument(format!("egress {egress_id} is not a room composite: only those have a layout")));
        }
        updatable(&entry.state)?;
        entry.state.set_layout(layout);
        let _ = entry.control.send(Control::Layout(layout.to_string()));
        let info = entry.state.info().clone();
        drop(jobs);
        if self.cfg.room.sfu == Sfu::Livekit {
            let (api, id, layout) = (self.cfg.sfu_api_url(), egress_id.to_string(), layout.to_string());
            match self.cfg.sfu_keys() {
                Ok((key, secret)) => {
                    tokio::spawn(async move {
                        match super::room_service::set_recorder_layout(&api, &key, &secret, &room_name, &id, &layout).await {
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
        self.registry.list(req)
    }

    /// One egress's current EgressInfo.
    pub fn info(&self, egress_id: &str) -> Option<proto::EgressInfo> {
        self.registry.lock().map.get(egress_id).map(|e| e.state.info().clone())
    }

    /// Egresses starting, active or ending, and how many may run at once.
    pub fn load(&self) -> (usize, usize) {
        (self.registry.lock().live(), self.cfg.max_concurrent)
    }

    pub fn stop(&self, egress_id: &str) -> Result<proto::EgressInfo, JobError> {
        let mut jobs = self.registry.lock();
        let entry = jobs.get_mut(egress_id)?;
        if !entry.state.ending() {
            return Err(JobError::FailedPrecondition(format!(
                "egress with status {} cannot be stopped",
                entry.state.status().as_str_name()
            )));
        }
        let _ = entry.control.send(Control::Stop);
        Ok(entry.state.info().clone())
    }

    /// Takes back the egresses of an earlier run from their journals in the output folder
    /// (before the API serves): ended ones as they ended, interrupted ones FAILED with their
    /// playlists closed; their MP4s are rewritten index first in the background.
    pub fn recover(&self) {
        let found = super::journal::recover(&self.cfg.output_dir);
        let interrupted = found.iter().filter(|r| r.info.error == super::journal::RESTARTED && !r.mp4s.is_empty()).count();
        info!(egresses = found.len(), interrupted, "restart journal read");
        for r in found {
            for (path, video, audio, opus) in r.mp4s {
                tokio::spawn(async move {
                    if let Err(e) = crate::output::file::finalize_mp4(&path, (video, audio), opus).await {
                        warn!(path = %path.display(), "an interrupted MP4 stays fragmented: {e:#}");
                    }
                });
            }
            self.registry.restore(r.info);
        }
    }

    /// With `output.retention_hours`, removes old egress folders now and every 10 minutes.
    pub fn start_retention(self: &Arc<Self>) {
        let hours = self.cfg.output.retention_hours;
        if hours == 0 {
            return;
        }
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let max_age = Duration::from_secs(hours.saturating_mul(3600));
            while let Some(m) = me.upgrade() {
                let dir = m.cfg.output_dir.clone();
                let removed = tokio::task::spawn_blocking(move || super::journal::sweep(&dir, max_age)).await.unwrap_or_default();
                for id in &removed {
                    m.registry.forget(id);
                }
                if !removed.is_empty() {
                    info!(count = removed.len(), "retention: old egress folders removed");
                }
                drop(m);
                tokio::time::sleep(Duration::from_secs(600)).await;
            }
        });
    }

    /// Refuses every start from now on (the first step of a shutdown).
    pub fn refuse_new(&self) {
        self.accepting.store(false, Ordering::SeqCst);
    }

    /// Stops every live egress at once and waits for them all, together, for at most `drain`:
    /// each finalises its outputs (playlists closed, MP4 rewritten, streams closed) while the
    /// origin still serves. One still running after that is aborted, which kills its worker.
    pub async fn shutdown(&self, drain: Duration) {
        self.refuse_new();
        let tasks: Vec<JoinHandle<()>> = {
            let mut jobs = self.registry.lock();
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
        self.pool.shutdown();
        info!(count = tasks.len(), ?drain, "stopping egresses");
        let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
        if tokio::time::timeout(drain, futures::future::join_all(tasks)).await.is_err() {
            warn!("egresses still stopping after {drain:?}: aborted");
            aborts.iter().for_each(|a| a.abort());
        }
    }
}

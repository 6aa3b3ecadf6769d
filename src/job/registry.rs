//! The egresses this node knows, by id: each one's state (the `EgressInfo` the API reports),
//! the channel to its supervisor and the supervisor's task; ended ones are kept up to
//! `keep_ended`, oldest forgotten first, so the registry stays bounded.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use livekit_protocol as proto;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::warn;

use super::state::JobState;
use super::JobError;

/// What the API asks of a running egress.
pub(super) enum Control {
    Stop,
    /// A room composite's new layout, for its page.
    Layout(String),
    /// UpdateStream: stream URLs to add and to remove (checked).
    Streams {
        add: Vec<String>,
        remove: Vec<String>,
    },
}

pub(super) struct Entry {
    pub state: JobState,
    pub control: mpsc::UnboundedSender<Control>,
    pub task: Option<JoinHandle<()>>,
}

#[derive(Default)]
pub(super) struct Jobs {
    pub map: HashMap<String, Entry>,
    /// Ended jobs, oldest first.
    ended: VecDeque<String>,
}

impl Jobs {
    /// Starting, active or ending: the egresses that count against capacity.
    pub fn live(&self) -> usize {
        self.map.values().filter(|e| e.state.is_live()).count()
    }

    pub fn get_mut(&mut self, egress_id: &str) -> Result<&mut Entry, JobError> {
        self.map.get_mut(egress_id).ok_or_else(|| JobError::NotFound(format!("egress {egress_id} not found")))
    }
}

pub struct Registry {
    jobs: Mutex<Jobs>,
    keep_ended: usize,
    /// The output folder, where each egress's journal is kept ([`super::journal`]).
    journal_root: Option<PathBuf>,
}

/// What makes a journal line worth writing: the status and which outputs there are.
fn journal_key(s: &JobState) -> (i32, usize, usize, usize, usize) {
    let i = s.info();
    (i.status, i.file_results.len(), i.segment_results.len(), i.stream_results.len(), i.image_results.len())
}

impl Registry {
    pub fn new(keep_ended: usize, journal_root: Option<PathBuf>) -> Self {
        Self { jobs: Mutex::new(Jobs::default()), keep_ended, journal_root }
    }

    /// Appends this state to the egress's journal (synced to disk when it has ended).
    pub fn record(&self, state: &JobState) {
        if let Some(root) = &self.journal_root {
            if let Err(e) = super::journal::append(root, state.info(), !state.is_live()) {
                warn!(egress_id = %state.info().egress_id, "restart journal: {e:#}");
            }
        }
    }

    /// An egress of an earlier run, read from its journal: listed as it ended.
    pub fn restore(&self, info: proto::EgressInfo) {
        let mut jobs = self.lock();
        let id = info.egress_id.clone();
        if jobs.map.contains_key(&id) {
            return;
        }
        let (control, _) = mpsc::unbounded_channel();
        jobs.map.insert(id.clone(), Entry { state: JobState::restored(info), control, task: None });
        jobs.ended.push_back(id);
        while jobs.ended.len() > self.keep_ended {
            if let Some(old) = jobs.ended.pop_front() {
                jobs.map.remove(&old);
            }
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Jobs> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets an ended egress whose folder retention removed.
    pub fn forget(&self, id: &str) {
        let mut jobs = self.lock();
        if jobs.map.get(id).is_some_and(|e| !e.state.is_live()) {
            jobs.map.remove(id);
            jobs.ended.retain(|e| e != id);
        }
    }

    /// Changes a job's state, if it is still known.
    pub fn update(&self, id: &str, f: impl FnOnce(&mut JobState)) {
        if let Some(e) = self.lock().map.get_mut(id) {
            let before = journal_key(&e.state);
            f(&mut e.state);
            if journal_key(&e.state) != before {
                self.record(&e.state);
            }
        }
    }

    /// Records how a job ended; its supervisor is done.
    pub fn finish(&self, id: &str, f: impl FnOnce(&mut JobState)) {
        let mut jobs = self.lock();
        if let Some(e) = jobs.map.get_mut(id) {
            f(&mut e.state);
            e.task = None;
            self.record(&e.state);
        }
        jobs.ended.push_back(id.to_string());
        while jobs.ended.len() > self.keep_ended {
            if let Some(old) = jobs.ended.pop_front() {
                jobs.map.remove(&old);
            }
        }
    }

    /// ListEgress: by id, room and liveness, oldest change first.
    pub fn list(&self, req: &proto::ListEgressRequest) -> Vec<proto::EgressInfo> {
        let jobs = self.lock();
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
}

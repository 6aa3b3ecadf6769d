//! Warm workers (config `pool.size`): worker processes that have launched their sound server
//! and Chromium (and, for x11, their X server) for a job with the service's defaults and wait
//! for one, so a start skips those launches. The pool refills in the background, a while
//! after a worker is taken; a job that fits no warm worker starts cold.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::config::Config;
use crate::spec::{BrowserSpec, JobSpec, DEFAULT_CHANNELS, DEFAULT_FRAMERATE, DEFAULT_HEIGHT, DEFAULT_SAMPLE_RATE, DEFAULT_WIDTH};
use crate::worker::ipc::FromWorker;
use crate::worker::process::WorkerProcess;
use crate::worker::WarmSpec;

/// A warm worker and what it has said so far.
pub type Warm = (WorkerProcess, mpsc::UnboundedReceiver<FromWorker>);

pub struct WarmPool {
    cfg: Arc<Config>,
    ready: Mutex<Vec<Warm>>,
    /// Warm workers being launched, so two refills never overshoot.
    launching: AtomicUsize,
    shutting_down: AtomicBool,
}

impl WarmPool {
    pub fn new(cfg: Arc<Config>) -> Arc<Self> {
        Arc::new(Self { cfg, ready: Mutex::new(Vec::new()), launching: Default::default(), shutting_down: Default::default() })
    }

    /// What a warm worker launches: a job without options (LiveKit's H264_720P_30, 48 kHz
    /// stereo) with the configured capture backend.
    fn warm_spec(&self) -> WarmSpec {
        WarmSpec {
            browser: BrowserSpec::from_config(&self.cfg),
            capture: self.cfg.capture.backend,
            width: DEFAULT_WIDTH,
            height: DEFAULT_HEIGHT,
            framerate: DEFAULT_FRAMERATE,
            audio: (self.cfg.audio.pulseaudio_path.display().to_string(), DEFAULT_SAMPLE_RATE, DEFAULT_CHANNELS),
            start_timeout_secs: self.cfg.timeouts.start_secs,
        }
    }

    fn ready(&self) -> std::sync::MutexGuard<'_, Vec<Warm>> {
        self.ready.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fills the pool (in the background).
    pub fn start(self: &Arc<Self>) {
        self.refill(Duration::ZERO);
    }

    /// Launches warm workers until the pool is full, after `delay`.
    fn refill(self: &Arc<Self>, delay: Duration) {
        let want = self.cfg.pool.size;
        let this = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            loop {
                if this.shutting_down.load(SeqCst) {
                    return;
                }
                if this.ready().len() + this.launching.load(SeqCst) >= want {
                    return;
                }
                this.launching.fetch_add(1, SeqCst);
                let warm = WorkerProcess::spawn_warm(&this.warm_spec()).await;
                this.launching.fetch_sub(1, SeqCst);
                match warm {
                    Ok((w, rx)) if !this.shutting_down.load(SeqCst) => {
                        info!(worker_pid = w.pid(), "warm worker launched");
                        this.ready().push((w, rx));
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
    pub fn take(self: &Arc<Self>, spec: &JobSpec) -> Option<Warm> {
        if self.cfg.pool.size == 0 || !self.warm_spec().fits(spec) {
            return None;
        }
        let taken = {
            let mut ready = self.ready();
            // Dead ones (their Chromium died while idle) are dropped on the way.
            ready.retain_mut(|(w, _)| w.is_running());
            ready.pop()
        };
        self.refill(Duration::from_millis(self.cfg.pool.refill_delay_ms));
        taken
    }

    /// Ends every waiting worker, with its Chromium's whole process group; no more refills.
    pub fn shutdown(&self) {
        self.shutting_down.store(true, SeqCst);
        for (mut w, mut rx) in std::mem::take(&mut *self.ready()) {
            w.absorb(&mut rx);
            w.kill();
        }
    }
}

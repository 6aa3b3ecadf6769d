//! What a worker needs to outlive its Chromium: how to launch it again ([`Launcher`]), how
//! many relaunches the egress may spend ([`Restarts`]), and how a hung page is told from a
//! busy one ([`Liveness`]: the page answers no CDP call and paints nothing new).
//!
//! The pipeline is not part of this: it runs on through a relaunch (the X server's screen, or
//! the CDP picture's last frame repeated, and the sound server's silence), so the outputs'
//! timeline never breaks and no player sees a discontinuity.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use chromiumoxide::Page;

use crate::browser::{Chromium, Rendering};
use crate::config::RecoveryConfig;
use crate::spec::BrowserSpec;

/// How often the page is asked whether it still answers.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Everything Chromium's launch takes, kept to launch it again.
#[derive(Clone)]
pub(super) struct Launcher {
    pub browser: BrowserSpec,
    pub rendering: Rendering,
    pub width: u32,
    pub height: u32,
    pub sound_server: Option<String>,
    pub display: Option<String>,
    pub timeout: Duration,
}

impl Launcher {
    pub async fn launch(&self) -> Result<Chromium> {
        Chromium::launch(
            &self.browser,
            self.rendering,
            self.width,
            self.height,
            self.sound_server.as_deref(),
            self.display.as_deref(),
            self.timeout,
        )
        .await
    }
}

/// The relaunches an egress has spent within the sliding window.
pub(super) struct Restarts {
    cfg: RecoveryConfig,
    at: VecDeque<Instant>,
}

impl Restarts {
    pub fn new(cfg: RecoveryConfig) -> Self {
        Self { cfg, at: VecDeque::new() }
    }

    /// Spends one relaunch for `why`, or says why the egress must fail instead.
    pub fn spend(&mut self, why: &str, now: Instant) -> Result<()> {
        let window = Duration::from_secs(self.cfg.window_secs);
        while self.at.front().is_some_and(|t| now.duration_since(*t) > window) {
            self.at.pop_front();
        }
        if self.at.len() >= self.cfg.max_restarts as usize {
            return Err(anyhow!(
                "{why}; chromium was already restarted {} time(s) within {} s (recovery.max_restarts {}): giving up",
                self.at.len(),
                self.cfg.window_secs,
                self.cfg.max_restarts
            ));
        }
        self.at.push_back(now);
        Ok(())
    }
}

/// Asks the page every second to evaluate `1`, and remembers when it last answered.
pub(super) struct Liveness {
    /// Milliseconds from `origin` to the last answer.
    answered_ms: Arc<AtomicU64>,
    origin: Instant,
    task: tokio::task::JoinHandle<()>,
}

impl Liveness {
    pub fn start(page: &Page) -> Self {
        let origin = Instant::now();
        let answered_ms = Arc::new(AtomicU64::new(0));
        let (page, answered) = (page.clone(), Arc::clone(&answered_ms));
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                if let Ok(Ok(_)) = tokio::time::timeout(PROBE_EVERY, page.evaluate("1")).await {
                    answered.store(origin.elapsed().as_millis() as u64, Ordering::Relaxed);
                }
            }
        });
        Self { answered_ms, origin, task }
    }

    /// How long the page has not answered.
    pub fn silent_for(&self, now: Instant) -> Duration {
        let answered = self.origin + Duration::from_millis(self.answered_ms.load(Ordering::Relaxed));
        now.saturating_duration_since(answered)
    }
}

impl Drop for Liveness {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_are_counted_in_a_sliding_window() {
        let mut r = Restarts::new(RecoveryConfig { hang_secs: 10, max_restarts: 2, window_secs: 60 });
        let t0 = Instant::now();
        assert!(r.spend("a", t0).is_ok());
        assert!(r.spend("b", t0 + Duration::from_secs(10)).is_ok());
        let e = r.spend("chromium exited", t0 + Duration::from_secs(20)).unwrap_err().to_string();
        assert!(e.contains("chromium exited") && e.contains("max_restarts 2"), "{e}");
        // The first one has left the window.
        assert!(r.spend("c", t0 + Duration::from_secs(61)).is_ok());
    }

    #[test]
    fn no_restarts_allowed_fails_at_once() {
        let mut r = Restarts::new(RecoveryConfig { hang_secs: 10, max_restarts: 0, window_secs: 60 });
        assert!(r.spend("x", Instant::now()).is_err());
    }
}

//! Prometheus metrics of this node, served at `GET /metrics` (text format): per egress, how
//! its picture is doing (captured, repeated, late, duplicated, dropped and encoded frames,
//! encoder lag), and the node's Chromium relaunches. A per-egress series goes when its
//! egress ends.

use std::sync::Arc;

use prometheus::{Encoder, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::media::FrameStats;

pub struct Metrics {
    registry: Registry,
    frames: IntCounterVec,
    encoder_lag: IntGaugeVec,
    browser_restarts: IntCounter,
}

/// The kinds of [`FrameStats`] counts, as the `kind` label of `roomcast_video_frames_total`.
const KINDS: [&str; 6] = ["captured", "repeated", "late", "duplicated", "dropped", "encoded"];

fn counts(s: &FrameStats) -> [u64; 6] {
    [s.captured, s.repeated, s.late, s.duplicated, s.dropped, s.encoded]
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let registry = Registry::new();
        let frames = IntCounterVec::new(
            Opts::new(
                "roomcast_video_frames_total",
                "Video frames of an egress by kind: captured (new from the page), repeated (the page had not changed), \
                 late (capture missed its slot), duplicated / dropped (to hold the output rate), encoded",
            ),
            &["egress_id", "kind"],
        )
        .expect("valid metric");
        let encoder_lag = IntGaugeVec::new(
            Opts::new("roomcast_encoder_lag_milliseconds", "How far the main encoder's output is behind its input"),
            &["egress_id"],
        )
        .expect("valid metric");
        let browser_restarts = IntCounter::new(
            "roomcast_browser_restarts_total",
            "Chromiums relaunched on their page after a crash or hang (the egress went on)",
        )
        .expect("valid metric");
        registry.register(Box::new(browser_restarts.clone())).expect("metric registered once");
        registry.register(Box::new(frames.clone())).expect("metric registered once");
        registry.register(Box::new(encoder_lag.clone())).expect("metric registered once");
        Arc::new(Self { registry, frames, encoder_lag, browser_restarts })
    }

    /// New cumulative counts from an egress; `before` is what it reported last time.
    pub fn frames(&self, egress_id: &str, before: &FrameStats, now: &FrameStats) {
        for ((kind, b), n) in KINDS.iter().zip(counts(before)).zip(counts(now)) {
            self.frames.with_label_values(&[egress_id, kind]).inc_by(n.saturating_sub(b));
        }
        self.encoder_lag.with_label_values(&[egress_id]).set(now.encoder_lag_ms as i64);
    }

    /// One Chromium relaunched after a crash or hang.
    pub fn browser_restarted(&self) {
        self.browser_restarts.inc();
    }

    /// Drops an ended egress's series.
    pub fn remove(&self, egress_id: &str) {
        for kind in KINDS {
            let _ = self.frames.remove_label_values(&[egress_id, kind]);
        }
        let _ = self.encoder_lag.remove_label_values(&[egress_id]);
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_accumulate_and_go_with_the_egress() {
        let m = Metrics::new();
        let a = FrameStats { captured: 10, duplicated: 1, encoder_lag_ms: 33, ..Default::default() };
        let b = FrameStats { captured: 25, duplicated: 1, encoded: 20, ..a };
        m.frames("EG_1", &FrameStats::default(), &a);
        m.frames("EG_1", &a, &b);
        let text = m.render();
        assert!(text.contains(r#"roomcast_video_frames_total{egress_id="EG_1",kind="captured"} 25"#), "{text}");
        assert!(text.contains(r#"roomcast_video_frames_total{egress_id="EG_1",kind="duplicated"} 1"#), "{text}");
        assert!(text.contains(r#"roomcast_encoder_lag_milliseconds{egress_id="EG_1"} 33"#), "{text}");
        m.remove("EG_1");
        assert!(!m.render().contains("EG_1"));
    }
}

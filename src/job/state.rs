//! The one egress state machine: STARTING → ACTIVE → ENDING → COMPLETE, or FAILED (with the
//! reason) from any live state. It owns the job's `EgressInfo` as the API reports it.

use livekit_protocol as proto;
use proto::EgressStatus as S;

use crate::clock::unix_ns as now_ns;
use crate::output::hls::HlsStats;
use crate::output::OutputInfos;
use crate::spec::url::redact;

/// The request as EgressInfo shows it: stream keys redacted.
#[allow(deprecated)]
fn redacted(mut request: proto::egress_info::Request) -> proto::egress_info::Request {
    let fix = |outs: &mut Vec<proto::StreamOutput>| outs.iter_mut().for_each(|o| o.urls.iter_mut().for_each(|u| *u = redact(u)));
    match &mut request {
        proto::egress_info::Request::Web(r) => {
            fix(&mut r.stream_outputs);
            if let Some(proto::web_egress_request::Output::Stream(o)) = &mut r.output {
                o.urls.iter_mut().for_each(|u| *u = redact(u));
            }
        }
        proto::egress_info::Request::RoomComposite(r) => {
            fix(&mut r.stream_outputs);
            if let Some(proto::room_composite_egress_request::Output::Stream(o)) = &mut r.output {
                o.urls.iter_mut().for_each(|u| *u = redact(u));
            }
        }
        proto::egress_info::Request::Egress(r) => r.outputs.iter_mut().for_each(|o| {
            if let Some(proto::output::Config::Stream(s)) = &mut o.config {
                s.urls.iter_mut().for_each(|u| *u = redact(u));
            }
        }),
        _ => {}
    }
    request
}

#[derive(Debug, Clone)]
pub struct JobState {
    info: proto::EgressInfo,
    /// The raw URL of each `stream_results` entry (same index): redacted URLs of one host and
    /// app are all alike, so entries are found by these.
    stream_urls: StreamUrls,
    /// Chromium relaunches so far, and why the last one was needed.
    restarts: (u32, String),
}

/// Stream URLs with their keys; never printed.
#[derive(Clone, Default)]
struct StreamUrls(Vec<String>);

impl std::fmt::Debug for StreamUrls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{} stream urls]", self.0.len())
    }
}

impl JobState {
    pub fn new(egress_id: &str, request: proto::egress_info::Request, segments: Option<proto::SegmentsInfo>) -> Self {
        let room_name = match &request {
            proto::egress_info::Request::RoomComposite(r) => r.room_name.clone(),
            proto::egress_info::Request::Egress(r) => r.room_name.clone(),
            _ => String::new(),
        };
        let request = redacted(request);
        let info = proto::EgressInfo {
            egress_id: egress_id.to_string(),
            room_name,
            source_type: proto::EgressSourceType::Web as i32,
            status: S::EgressStarting as i32,
            updated_at: now_ns(),
            request: Some(request),
            segment_results: segments.into_iter().collect(),
            ..Default::default()
        };
        Self { info, stream_urls: StreamUrls::default(), restarts: (0, String::new()) }
    }

    /// An egress known from the journal of an earlier run.
    pub fn restored(info: proto::EgressInfo) -> Self {
        Self { info, stream_urls: StreamUrls::default(), restarts: (0, String::new()) }
    }

    pub fn info(&self) -> &proto::EgressInfo {
        &self.info
    }

    pub fn status(&self) -> S {
        S::try_from(self.info.status).unwrap_or(S::EgressFailed)
    }

    /// Starting, active or ending: it holds a worker and counts against capacity.
    pub fn is_live(&self) -> bool {
        matches!(self.status(), S::EgressStarting | S::EgressActive | S::EgressEnding)
    }

    fn set(&mut self, s: S) {
        self.info.status = s as i32;
        self.info.updated_at = now_ns();
    }

    /// First frame captured. Ignored once the job is ending or ended.
    pub fn activate(&mut self) {
        if self.status() == S::EgressStarting {
            let now = now_ns();
            self.info.started_at = now;
            for s in &mut self.info.segment_results {
                s.started_at = now;
            }
            self.set(S::EgressActive);
        }
    }

    /// Stop requested: returns false if the job is not live (nothing to stop).
    pub fn ending(&mut self) -> bool {
        if matches!(self.status(), S::EgressStarting | S::EgressActive) {
            self.set(S::EgressEnding);
            true
        } else {
            false
        }
    }

    fn end(&mut self, s: S) {
        if self.is_live() {
            let now = now_ns();
            self.info.ended_at = now;
            for seg in &mut self.info.segment_results {
                seg.ended_at = now;
            }
            self.set(s);
        }
    }

    pub fn complete(&mut self, details: &str) {
        self.info.details = match self.restarts.0 {
            0 => details.to_string(),
            _ => format!("{details}; {}", self.restart_note()),
        };
        self.end(S::EgressComplete);
    }

    /// Chromium crashed or hung and was relaunched; `details` says so while the egress runs
    /// and after it ends.
    pub fn browser_restarted(&mut self, reason: &str) {
        self.restarts = (self.restarts.0 + 1, reason.to_string());
        self.info.details = self.restart_note();
        self.info.updated_at = now_ns();
    }

    fn restart_note(&self) -> String {
        format!("chromium restarted {} time(s), last because {}", self.restarts.0, self.restarts.1)
    }

    /// Stopped before the first frame: nothing was recorded (LiveKit's EGRESS_ABORTED).
    pub fn abort(&mut self, reason: &str) {
        if self.is_live() {
            self.info.error = reason.to_string();
            self.info.error_code = 412;
            self.end(S::EgressAborted);
        }
    }

    pub fn was_active(&self) -> bool {
        self.info.started_at > 0
    }

    pub fn fail(&mut self, error: &str) {
        if self.is_live() {
            self.info.error = error.to_string();
            self.info.error_code = 500;
            self.end(S::EgressFailed);
        }
    }

    /// The layout a room composite shows, where its request holds it (v1 or a v2 template).
    fn layout_mut(&mut self) -> Option<&mut String> {
        use proto::start_egress_request::Source;
        match &mut self.info.request {
            Some(proto::egress_info::Request::RoomComposite(r)) => Some(&mut r.layout),
            Some(proto::egress_info::Request::Egress(proto::StartEgressRequest { source: Some(Source::Template(t)), .. })) => {
                Some(&mut t.layout)
            }
            _ => None,
        }
    }

    /// Whether this egress is a room composite (one with a layout).
    pub fn has_layout(&mut self) -> bool {
        self.layout_mut().is_some()
    }

    /// The layout a room composite now shows (UpdateLayout); false if this is no room composite.
    pub fn set_layout(&mut self, layout: &str) -> bool {
        let Some(l) = self.layout_mut() else { return false };
        *l = layout.to_string();
        self.info.updated_at = now_ns();
        true
    }

    /// Stream URLs the egress now pushes to (raw), each shown redacted, not started, until its
    /// first report.
    pub fn add_streams(&mut self, urls: &[String]) {
        for u in urls {
            self.info.stream_results.push(proto::StreamInfo { url: redact(u), ..Default::default() });
            self.stream_urls.0.push(u.clone());
        }
    }

    /// The entry of a live stream URL.
    fn live_stream(&mut self, url: &str) -> Option<&mut proto::StreamInfo> {
        let at = self.stream_urls.0.iter().zip(&self.info.stream_results).position(|(u, s)| u == url && s.ended_at == 0)?;
        self.info.stream_results.get_mut(at)
    }

    /// Raw URLs still streaming.
    pub fn live_stream_urls(&self) -> Vec<String> {
        self.stream_urls.0.iter().zip(&self.info.stream_results).filter(|(_, s)| s.ended_at == 0).map(|(u, _)| u.clone()).collect()
    }

    /// Removed URLs (raw): FINISHED now (their push ends in the background).
    pub fn end_streams(&mut self, urls: &[String]) {
        for u in urls {
            if let Some(s) = self.live_stream(u) {
                crate::output::stream::finished(s);
            }
        }
    }

    /// The live outputs' reports, by raw URL, replace their entries; ended entries stay.
    fn update_streams(&mut self, infos: Vec<(String, proto::StreamInfo)>) {
        for (url, info) in infos {
            if let Some(s) = self.live_stream(&url) {
                *s = info;
            }
        }
        self.info.updated_at = now_ns();
    }

    /// File and image outputs' states.
    fn set_files(&mut self, files: Vec<proto::FileInfo>, images: Vec<proto::ImagesInfo>) {
        self.info.file_results = files;
        self.info.image_results = images;
    }

    /// Every output's state (the segments' too, if there is a segment output).
    pub fn set_outputs(&mut self, o: OutputInfos) {
        if let Some(stats) = o.segments {
            self.set_segments(stats);
        }
        self.update_streams(o.streams);
        self.set_files(o.files, o.images);
    }

    pub fn set_segments(&mut self, stats: HlsStats) {
        for s in &mut self.info.segment_results {
            s.segment_count = stats.segment_count as i64;
            s.size = stats.bytes as i64;
            s.duration = stats.duration_ns as i64;
        }
        self.info.updated_at = now_ns();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> JobState {
        JobState::new("EG_1", proto::egress_info::Request::Web(Default::default()), Some(Default::default()))
    }

    #[test]
    fn happy_path() {
        let mut j = job();
        assert_eq!(j.status(), S::EgressStarting);
        j.activate();
        assert_eq!(j.status(), S::EgressActive);
        assert!(j.info().started_at > 0);
        assert!(j.ending());
        j.activate();
        assert_eq!(j.status(), S::EgressEnding, "no way back to active");
        j.complete("StopEgress API");
        assert_eq!(j.status(), S::EgressComplete);
        assert!(j.info().ended_at >= j.info().started_at);
        assert!(!j.ending(), "an ended job cannot be stopped");
        j.fail("late");
        assert_eq!(j.status(), S::EgressComplete, "ended is final");
    }

    #[test]
    fn stop_before_start_aborts() {
        let mut j = job();
        assert!(j.ending());
        assert!(!j.was_active());
        j.abort("Stop called before pipeline could start");
        assert_eq!(j.status(), S::EgressAborted);
        assert_eq!(j.info().error_code, 412);
    }

    #[test]
    fn room_composites_name_their_room_and_layout() {
        let req = proto::RoomCompositeEgressRequest { room_name: "r1".into(), layout: "grid".into(), ..Default::default() };
        let mut j = JobState::new("EG_2", proto::egress_info::Request::RoomComposite(req), None);
        assert_eq!(j.info().room_name, "r1");
        assert!(j.set_layout("speaker"));
        assert!(matches!(&j.info().request, Some(proto::egress_info::Request::RoomComposite(r)) if r.layout == "speaker"));
        assert!(!job().set_layout("speaker"), "a web egress has no layout");
    }

    #[test]
    fn stream_urls_alike_when_redacted_stay_apart() {
        let mut j = job();
        let (a, b) = ("rtmp://yt.example/live2/key-a".to_string(), "rtmp://yt.example/live2/key-b".to_string());
        j.add_streams(&[a.clone(), b.clone()]);
        assert_eq!(j.info().stream_results[0].url, j.info().stream_results[1].url, "both redacted alike");
        let started = proto::StreamInfo { url: "x".into(), started_at: 7, ..Default::default() };
        j.update_streams(vec![(b.clone(), started)]);
        assert_eq!((j.info().stream_results[0].started_at, j.info().stream_results[1].started_at), (0, 7));
        j.end_streams(std::slice::from_ref(&a));
        assert!(j.info().stream_results[0].ended_at > 0 && j.info().stream_results[1].ended_at == 0);
        assert_eq!(j.live_stream_urls(), vec![b]);
        assert!(!format!("{j:?}").contains("key-"), "raw URLs are never printed");
    }

    #[test]
    fn failure_keeps_the_reason() {
        let mut j = job();
        j.fail("page load error: net::ERR_CONNECTION_REFUSED");
        assert_eq!(j.status(), S::EgressFailed);
        assert_eq!(j.info().error, "page load error: net::ERR_CONNECTION_REFUSED");
        assert!(!j.is_live());
    }
}

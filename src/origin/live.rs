//! The live state of one egress's HLS output, shared by its writer (one per egress) and the
//! origin (any number of viewers): every rendition's segments and, near the live edge, its
//! parts with their bytes. One `watch` channel per stream wakes every waiting request once
//! per new part; a single watchdog per stream wakes them when the stream stalls, so blocked
//! requests can give up (503) without a timer of their own.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

use crate::config::Rung;
use crate::spec::{HlsSpec, HlsTiming, JobSpec, VideoSpec};

/// First media sequence number: hls.js stalls on 0.
pub const FIRST_MSN: u64 = 1;

/// Constants of a stream, fixed before the first part: players treat a change of the part
/// target, hold-backs or target duration during a stream as an error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    pub target_duration: u32,
    pub part_target: f64,
    pub segment_secs: f64,
    pub frame_secs: f64,
    pub live_window: usize,
}

impl Params {
    pub fn new(t: &HlsTiming, live_window: usize) -> Self {
        Self {
            target_duration: t.target_duration(),
            part_target: t.part_target(),
            segment_secs: t.segment_secs(),
            frame_secs: t.frame_secs(),
            live_window,
        }
    }
    pub fn td(&self) -> f64 {
        self.target_duration as f64
    }
    /// Apple's authoring spec makes ≥ 3 × PART-TARGET a must; one part more gives a player
    /// joining or catching up a part of slack against late parts (on a loaded 2-core host, 3
    /// parts left hls.js stalling ~250 ms now and then), for 0.2 s of latency at 200 ms parts.
    pub fn part_hold_back(&self) -> f64 {
        4.0 * self.part_target
    }
    pub fn hold_back(&self) -> f64 {
        3.0 * self.td()
    }
    /// The Skip Boundary: the smallest the spec allows (6 × TD).
    pub fn skip_until(&self) -> f64 {
        6.0 * self.td()
    }
    /// How far ahead of the last part a blocking request may ask (rfc8216bis 6.2.5.2).
    pub fn advance_part_limit(&self) -> u64 {
        if self.part_target < 1.0 {
            (3.0 / self.part_target).ceil() as u64
        } else {
            3
        }
    }
    /// A blocked request that has waited this long gets 503.
    pub fn block_limit(&self) -> Duration {
        Duration::from_secs_f64(3.0 * self.td())
    }
    /// Parts are listed for segments this close to the live edge, and kept fetchable for as
    /// long again after they leave the playlist.
    pub fn part_window(&self) -> f64 {
        3.0 * self.td()
    }
}

#[derive(Debug, Clone)]
pub struct Part {
    pub duration: f64,
    pub independent: bool,
    pub data: Bytes,
    /// When the part became available (for the origin's diagnostics header).
    pub published_us: u64,
}

#[derive(Debug, Clone)]
pub struct Segment {
    pub msn: u64,
    /// Sum of the parts so far; final once `complete`.
    pub duration: f64,
    pub pdt_ms: u64,
    pub complete: bool,
    pub bytes: u64,
    /// Emptied once the segment is far from the live edge (its file on disk remains).
    pub parts: Vec<Part>,
}

/// One rendition: the main picture or a rung of the ABR ladder.
#[derive(Debug, Clone)]
pub struct Rendition {
    /// Folder inside the egress output ("" for the main rendition).
    pub folder: String,
    pub playlist_name: String,
    pub live_playlist_name: String,
    pub prefix: String,
    pub width: u32,
    pub height: u32,
    /// Video plus audio: what BANDWIDTH announces.
    pub bitrate_kbps: u32,
    pub init: Option<Bytes>,
    /// RFC 6381 codec string from the init segment, e.g. `avc1.4d401f`.
    pub codec: Option<String>,
    pub segments: Vec<Segment>,
}

impl Rendition {
    fn path(&self, name: &str) -> String {
        match self.folder.as_str() {
            "" => name.to_string(),
            f => format!("{f}/{name}"),
        }
    }
    /// Paths relative to the egress folder.
    pub fn playlist_path(&self, live: bool) -> String {
        self.path(if live { &self.live_playlist_name } else { &self.playlist_name })
    }
    pub fn init_path(&self) -> String {
        self.path("init.mp4")
    }
    pub fn segment_path(&self, msn: u64) -> String {
        self.path(&format!("{}_{msn:05}.m4s", self.prefix))
    }
    pub fn part_path(&self, msn: u64, part: usize) -> String {
        self.path(&format!("{}_{msn:05}.{part}.m4s", self.prefix))
    }
    /// (msn, part) of a part path of this rendition.
    pub fn parse_part_path(&self, path: &str) -> Option<(u64, usize)> {
        let rest = match self.folder.as_str() {
            "" => path,
            f => path.strip_prefix(f)?.strip_prefix('/')?,
        };
        let rest = rest.strip_prefix(&self.prefix)?.strip_prefix('_')?.strip_suffix(".m4s")?;
        let (msn, part) = rest.split_once('.')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        (digits(msn) && digits(part)).then(|| Some((msn.parse().ok()?, part.parse().ok()?)))?
    }
    /// The segment receiving parts (the last one, if not complete).
    pub fn open(&self) -> Option<&Segment> {
        self.segments.last().filter(|s| !s.complete)
    }
    /// MSN and index of the newest part, if any.
    pub fn last_part(&self) -> Option<(u64, usize)> {
        let s = self.segments.last()?;
        match s.complete {
            false => Some((s.msn, s.parts.len().saturating_sub(1))),
            true => Some((s.msn, s.parts.len().max(1) - 1)),
        }
    }
    pub fn segment(&self, msn: u64) -> Option<&Segment> {
        let first = self.segments.first()?.msn;
        self.segments.get(msn.checked_sub(first)? as usize)
    }
    pub fn part(&self, msn: u64, part: usize) -> Option<&Part> {
        self.segment(msn)?.parts.get(part)
    }
}

#[derive(Debug)]
pub struct State {
    pub renditions: Vec<Rendition>,
    pub finished: bool,
    /// Bumped on every change of content; render caches key on it.
    pub version: u64,
    last_change: Instant,
}

impl State {
    /// The part a player should request next, per rendition: the next part of the open
    /// segment, or part 0 of the next segment once the open one has its full length.
    pub fn next_part(&self, params: &Params, r: usize) -> Option<(u64, usize)> {
        if self.finished {
            return None;
        }
        let rend = self.renditions.get(r)?;
        match rend.segments.last() {
            None => Some((FIRST_MSN, 0)),
            Some(s) if s.complete => Some((s.msn + 1, 0)),
            // The first segment's end is not known in advance (see the writer): hint its next part.
            Some(s) if s.msn != FIRST_MSN && s.duration + params.frame_secs / 2.0 >= params.segment_secs => Some((s.msn + 1, 0)),
            Some(s) => Some((s.msn, s.parts.len())),
        }
    }

    /// Whether part `part` of segment `msn` (or, without a part, the whole segment) exists.
    /// A part index beyond a finished segment's last part means part 0 of the next one
    /// (rfc8216bis 6.2.5.2), which exists once a later segment does.
    pub fn has(&self, r: usize, msn: u64, part: Option<usize>) -> bool {
        let Some(rend) = self.renditions.get(r) else { return false };
        let Some(last) = rend.segments.last() else { return false };
        if msn < last.msn {
            return true;
        }
        if msn > last.msn {
            return false;
        }
        match part {
            None => last.complete,
            Some(p) => p < last.parts.len(),
        }
    }
}

/// Rendered playlists per (rendition, live, skip, gzip), each with the state version it was
/// rendered from.
/// Keyed by (rendition, live, skip, gzip, the viewer's signature if URLs are signed).
pub type RenderCache = HashMap<(usize, bool, bool, bool, Option<String>), (u64, Bytes)>;

/// What happened to a stream since a waiter last looked.
pub type Wake = watch::Receiver<u64>;

pub struct LiveHls {
    pub egress_id: String,
    pub dir: PathBuf,
    pub params: Params,
    state: RwLock<State>,
    wake: watch::Sender<u64>,
    pub cache: Mutex<RenderCache>,
}

impl LiveHls {
    /// `audio_kbps` is 0 without audio; every rendition carries the one audio track. Without
    /// `video` (audio only) the one rendition has no picture size.
    pub fn new(egress_id: &str, dir: PathBuf, timing: &HlsTiming, video: Option<&VideoSpec>, audio_kbps: u32, spec: &HlsSpec) -> Arc<Self> {
        let main = match video {
            Some(v) => Rung { name: String::new(), width: v.width, height: v.height, bitrate_kbps: v.bitrate_kbps },
            None => Rung { name: String::new(), width: 0, height: 0, bitrate_kbps: 0 },
        };
        let renditions = std::iter::once(&main)
            .chain(spec.ladder.iter())
            .map(|r| Rendition {
                folder: r.name.clone(),
                playlist_name: spec.playlist_name.clone(),
                live_playlist_name: spec.live_playlist_name.clone(),
                prefix: spec.segment_prefix.clone(),
                width: r.width,
                height: r.height,
                bitrate_kbps: r.bitrate_kbps + audio_kbps,
                init: None,
                codec: None,
                segments: vec![],
            })
            .collect();
        let state = State { renditions, finished: false, version: 0, last_change: Instant::now() };
        Arc::new(Self {
            egress_id: egress_id.to_string(),
            dir,
            params: Params::new(timing, spec.live_window),
            state: RwLock::new(state),
            wake: watch::channel(0).0,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The live store of `spec`'s HLS output in `dir`, if it has a segment output.
    pub fn for_spec(spec: &JobSpec, dir: PathBuf) -> Option<Arc<Self>> {
        let hls = spec.hls.as_ref().filter(|_| spec.serve_hls)?;
        Some(Self::new(&spec.egress_id, dir, &spec.timing(hls), spec.video.as_ref(), spec.audio_kbps(), hls))
    }

    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        // A panic while writing leaves plain data behind; keep serving it.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the state and wakes every waiter once.
    pub fn update<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let out = {
            let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
            let out = f(&mut st);
            st.version += 1;
            st.last_change = Instant::now();
            out
        };
        self.wake.send_modify(|n| *n += 1);
        out
    }

    /// A receiver that sees every later wake-up (subscribe before checking the state).
    pub fn subscribe(&self) -> Wake {
        self.wake.subscribe()
    }

    /// Runs until the stream is finished and dropped: every half target duration without a
    /// change, wakes the waiters so that those past their limit can answer 503.
    pub async fn watchdog(self: Arc<Self>) {
        let period = Duration::from_secs_f64(self.params.td() / 2.0);
        loop {
            tokio::time::sleep(period).await;
            let (finished, idle) = {
                let st = self.read();
                (st.finished, st.last_change.elapsed() >= period)
            };
            if finished {
                return;
            }
            if idle {
                self.wake.send_modify(|n| *n += 1);
            }
        }
    }
}

/// The live streams of this node, by egress id. The origin looks here first and falls back
/// to the files on disk for streams that are gone.
#[derive(Default)]
pub struct LiveRegistry {
    streams: RwLock<HashMap<String, Arc<LiveHls>>>,
}

impl LiveRegistry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn get(&self, egress_id: &str) -> Option<Arc<LiveHls>> {
        self.streams.read().unwrap_or_else(|p| p.into_inner()).get(egress_id).cloned()
    }

    pub fn insert(&self, stream: Arc<LiveHls>) {
        self.streams.write().unwrap_or_else(|p| p.into_inner()).insert(stream.egress_id.clone(), stream);
    }

    pub fn remove(&self, egress_id: &str) {
        self.streams.write().unwrap_or_else(|p| p.into_inner()).remove(egress_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendition(folder: &str) -> Rendition {
        Rendition {
            folder: folder.into(),
            playlist_name: "playlist.m3u8".into(),
            live_playlist_name: "live/live.m3u8".into(),
            prefix: "seg".into(),
            width: 640,
            height: 360,
            bitrate_kbps: 800,
            init: None,
            codec: None,
            segments: vec![],
        }
    }

    #[test]
    fn part_paths_round_trip() {
        let r = rendition("");
        assert_eq!(r.part_path(12, 3), "seg_00012.3.m4s");
        assert_eq!(r.parse_part_path("seg_00012.3.m4s"), Some((12, 3)));
        assert_eq!(r.parse_part_path("seg_00012.m4s"), None);
        assert_eq!(r.parse_part_path("seg_00012.x.m4s"), None);
        let r = rendition("360p");
        assert_eq!(r.part_path(1, 0), "360p/seg_00001.0.m4s");
        assert_eq!(r.parse_part_path("360p/seg_00001.0.m4s"), Some((1, 0)));
        assert_eq!(r.parse_part_path("seg_00001.0.m4s"), None);
        assert_eq!(r.playlist_path(true), "360p/live/live.m3u8");
    }

    #[test]
    fn a_part_past_a_complete_segment_waits_for_the_next_segment() {
        let part = Part { duration: 0.2, independent: true, data: Bytes::new(), published_us: 0 };
        let seg = |msn, parts: usize, complete| Segment {
            msn,
            duration: 0.2 * parts as f64,
            pdt_ms: 0,
            complete,
            bytes: 0,
            parts: vec![part.clone(); parts],
        };
        let mut rend = rendition("");
        rend.segments = vec![seg(1, 1, true), seg(2, 10, true)];
        let mut st = State { renditions: vec![rend], finished: false, version: 0, last_change: Instant::now() };
        assert!(st.has(0, 2, Some(9)) && st.has(0, 2, None) && st.has(0, 1, Some(1)));
        // 2.10 is 3.0: not there until segment 3 begins.
        assert!(!st.has(0, 2, Some(10)) && !st.has(0, 3, Some(0)));
        st.renditions[0].segments.push(seg(3, 1, false));
        assert!(st.has(0, 2, Some(10)) && st.has(0, 3, Some(0)) && !st.has(0, 3, Some(1)) && !st.has(0, 3, None));
    }

    #[test]
    fn limits_follow_the_spec() {
        let p = Params { target_duration: 2, part_target: 0.2, segment_secs: 2.0, frame_secs: 1.0 / 30.0, live_window: 6 };
        assert_eq!(p.advance_part_limit(), 15);
        assert!((p.part_hold_back() - 0.8).abs() < 1e-9);
        assert_eq!((p.hold_back(), p.skip_until()), (6.0, 12.0));
        assert_eq!(p.block_limit(), Duration::from_secs(6));
    }
}

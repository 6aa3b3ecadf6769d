//! Issue 17 (5): Chromium crash recovery. A web egress of the clock page (tests/pages/bench/
//! clock.html: the wall clock drawn into every frame) has its browser SIGKILLed, a renderer
//! killed, or its page hung; roomcast relaunches Chromium on the same page while the pipeline
//! runs on. Judged from the decoded outputs: the HLS recording, the MP4 and (x11) what an RTMP
//! server received are one unbroken timeline (frames evenly spaced), and the longest stretch
//! without a new clock value, the gap a viewer saw, is at most 5 s. The restart is in
//! EgressInfo.details and in /metrics; past `recovery.max_restarts` the egress fails.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::clock::{clock_frames, longest_gap};
use common::nginx::Nginx;
use common::*;
use serde_json::{json, Value};

const S: Duration = Duration::from_secs(1);
/// The most a viewer may see frozen or blank across a relaunch.
const MAX_GAP_SECS: f64 = 5.0;

/// Waits until the server runs exactly one browser other than `old`, and returns it.
async fn new_browser(server: &Server, old: i32, within: Duration) -> i32 {
    let deadline = Instant::now() + within;
    loop {
        let b = server.chromium_browsers();
        if b.len() == 1 && b[0] != old {
            return b[0];
        }
        assert!(Instant::now() < deadline, "no relaunched browser within {within:?}: {b:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// EgressInfo once its `details` names `needle`: the worker reports a relaunch when the new page
/// is up, a moment after its browser process appears.
async fn wait_details(server: &Server, id: &str, needle: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let info = server.info(id).await;
        if info["details"].as_str().unwrap_or_default().contains(needle) {
            return info;
        }
        assert!(Instant::now() < deadline, "details never named {needle:?} within {within:?}: {info}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn restarts_metric(metrics: &str) -> u64 {
    metrics.lines().find_map(|l| l.strip_prefix("roomcast_browser_restarts_total ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// One recording judged: every frame 1/30 s after the one before (no hole in the timeline),
/// the clock readable before and after the kill at `killed_ms` (wall clock), and the longest
/// frozen stretch within bounds. Returns that gap.
fn judge(what: &str, input: &str, killed_ms: u64) -> f64 {
    let frames = clock_frames(input);
    assert!(frames.len() > 300, "{what}: {} frames", frames.len());
    for w in frames.windows(2) {
        let step = w[1].0 - w[0].0;
        assert!((step - 1.0 / 30.0).abs() < 0.002, "{what}: frame at {:.3} s follows one at {:.3} s", w[1].0, w[0].0);
    }
    let clocks: Vec<u64> = frames.iter().filter_map(|f| f.1).collect();
    assert!(clocks.iter().any(|t| *t < killed_ms), "{what}: the page before the kill");
    assert!(clocks.iter().any(|t| *t > killed_ms + 3000), "{what}: the page after the relaunch");
    let gap = longest_gap(&frames);
    println!("{what}: {} frames, longest gap {gap:.2} s", frames.len());
    assert!(gap <= MAX_GAP_SECS, "{what}: {gap:.2} s without a new picture");
    gap
}

/// `ffmpeg` receiving an RTMP stream into an FLV file until it is told to stop.
struct RtmpRecorder(std::process::Child);

impl RtmpRecorder {
    fn start(url: &str, out: &std::path::Path) -> Self {
        let child = Command::new("ffmpeg")
            .args(["-v", "error", "-rw_timeout", "20000000", "-i", url, "-c", "copy", "-f", "flv"])
            .arg(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("ffmpeg");
        Self(child)
    }

    fn finish(mut self) {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
        reap(&mut self.0, 10 * S);
    }
}

/// Kills the egress's whole browser (SIGKILL), or one of its renderers, mid-egress.
async fn survives(backend: &str, kill_renderer: bool) {
    let server = Server::start_with_config(&format!("capture: {{backend: {backend}}}\n")).await;
    let nginx = (backend == "x11").then(|| Nginx::start(server.tmp.path(), free_port()));
    let mut request = json!({
        "url": server.page("bench/clock.html"),
        "segment_outputs": [{}],
        "file_outputs": [{"filepath": "rec.mp4"}],
    });
    if let Some(n) = &nginx {
        request["stream_outputs"] = json!([{"protocol": "RTMP", "urls": [n.url("crash")]}]);
    }
    let id = server.start_egress(request).await;
    server.wait_status(&id, "EGRESS_ACTIVE", 30 * S).await;
    let flv = server.tmp.path().join("rtmp.flv");
    let recorder = nginx.as_ref().map(|n| RtmpRecorder::start(&n.url("crash"), &flv));
    tokio::time::sleep(5 * S).await;

    let browsers = server.chromium_browsers();
    assert_eq!(browsers.len(), 1, "{browsers:?}");
    let killed_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    if kill_renderer {
        let renderers: Vec<i32> = server
            .chromium_pids()
            .into_iter()
            .filter(|pid| {
                String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()).contains("--type=renderer")
            })
            .collect();
        assert!(!renderers.is_empty(), "no renderer process");
        for pid in renderers {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    } else {
        unsafe { libc::kill(browsers[0], libc::SIGKILL) };
    }
    new_browser(&server, browsers[0], 20 * S).await;
    let info = wait_details(&server, &id, "chromium restarted 1 time(s)", 10 * S).await;
    assert_eq!(info["status"], "EGRESS_ACTIVE", "{backend}: {info}");
    let details = info["details"].as_str().unwrap_or_default().to_string();
    assert!(details.contains("chromium restarted 1 time(s)"), "{backend}: {info}");
    if kill_renderer {
        assert!(details.contains("renderer crashed") || details.contains("screencast ended"), "{backend}: {info}");
    }
    let (_, metrics) = server.get_text(&server.metrics_url).await;
    assert_eq!(restarts_metric(&metrics), 1, "{metrics}");
    tokio::time::sleep(8 * S).await;

    let done = server.stop(&id, "EGRESS_COMPLETE").await;
    assert!(done["details"].as_str().unwrap().contains("StopEgress API; chromium restarted 1 time(s)"), "{done}");
    let playlist = local_playlist(&server, &id, "playlist.m3u8");
    let text = std::fs::read_to_string(&playlist).unwrap();
    assert!(text.trim_end().ends_with("#EXT-X-ENDLIST") && !text.contains("#EXT-X-GAP"), "{text}");
    // The pipeline never stopped: one timeline, nothing for a player to jump.
    assert!(!text.contains("#EXT-X-DISCONTINUITY"), "{text}");
    judge(&format!("{backend} hls"), playlist.to_str().unwrap(), killed_ms);
    judge(&format!("{backend} mp4"), server.out.join(&id).join("rec.mp4").to_str().unwrap(), killed_ms);
    if let Some(r) = recorder {
        r.finish();
        let stream: &Value = &done["streamResults"][0];
        assert_eq!(stream["status"], "FINISHED", "the push went on through the relaunch: {done}");
        judge(&format!("{backend} rtmp"), flv.to_str().unwrap(), killed_ms);
    }
    server.assert_no_leftovers(10 * S).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn x11_egress_survives_a_chromium_kill() {
    let _serial = SERIAL.lock().await;
    survives("x11", false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn screencast_egress_survives_a_chromium_kill() {
    let _serial = SERIAL.lock().await;
    survives("screencast", false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn begin_frame_egress_survives_a_chromium_kill() {
    let _serial = SERIAL.lock().await;
    survives("begin_frame", false).await;
}

/// A renderer killed (the browser lives): Inspector.targetCrashed, then the same relaunch.
#[tokio::test(flavor = "multi_thread")]
async fn screencast_egress_survives_a_renderer_kill() {
    let _serial = SERIAL.lock().await;
    survives("screencast", true).await;
}

/// A page that hangs (an endless loop: no CDP answer, no frame) is relaunched after
/// `recovery.hang_secs`; it hangs again, and past `recovery.max_restarts` the egress fails
/// with the reason, its recording closed.
#[tokio::test(flavor = "multi_thread")]
async fn a_hung_page_is_relaunched_then_the_egress_fails_past_max_restarts() {
    let _serial = SERIAL.lock().await;
    let server =
        Server::start_with_config("capture: {backend: screencast}\nrecovery: {hang_secs: 3, max_restarts: 1, window_secs: 600}\n").await;
    let id = server.start_egress(json!({"url": server.page("demo/hang.html?after=2000"), "segment_outputs": [{}]})).await;
    server.wait_status(&id, "EGRESS_ACTIVE", 30 * S).await;
    let first = server.chromium_browsers();
    assert_eq!(first.len(), 1);
    // Hangs 2 s in, is found hung 3 s later, relaunched; hangs again.
    new_browser(&server, first[0], 20 * S).await;
    wait_details(&server, &id, "the page hung", 10 * S).await;
    let end = server.wait_ended(&id, 30 * S).await;
    assert_eq!(end["status"], "EGRESS_FAILED", "{end}");
    let error = end["error"].as_str().unwrap();
    assert!(error.contains("the page hung") && error.contains("recovery.max_restarts 1"), "{end}");
    let text = std::fs::read_to_string(local_playlist(&server, &id, "playlist.m3u8")).unwrap();
    assert!(text.trim_end().ends_with("#EXT-X-ENDLIST"), "{text}");
    server.assert_no_leftovers(10 * S).await;
}

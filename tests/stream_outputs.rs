//! Stream outputs against real servers: Debian's nginx with its RTMP module on loopback, read
//! back with ffprobe as a player would, and an SRT listener (ffmpeg). The real roomcast,
//! Chromium and GStreamer; the picture is the animated demo page.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::nginx::Nginx;
use common::*;
use serde_json::{json, Value};

const S: Duration = Duration::from_secs(1);
/// A stream key that must never appear in an API answer or a log.
const KEY: &str = "sk-live-7f3a9c2e";

/// ffprobe reading `secs` seconds of a live stream: streams and video packets (with flags).
fn probe(url: &str, secs: u32) -> Option<Value> {
    let out = Command::new("timeout")
        .args(["20", "ffprobe", "-v", "error", "-show_streams", "-select_streams", "v", "-show_packets", "-show_entries"])
        .args(["packet=pts_time,flags:stream=codec_name,profile,width,height,codec_type", "-read_intervals"])
        .arg(format!("%+{secs}"))
        .args(["-of", "json", url])
        .output()
        .expect("ffprobe");
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v["streams"].as_array().filter(|s| !s.is_empty())?;
    Some(v)
}

fn audio_codec(url: &str) -> Option<String> {
    let out = Command::new("timeout")
        .args([
            "20",
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "a",
            "-show_entries",
            "stream=codec_name,sample_rate",
            "-of",
            "json",
            url,
        ])
        .output()
        .ok()?;
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    let s = &v["streams"][0];
    Some(format!("{} {}", s["codec_name"].as_str()?, s["sample_rate"].as_str()?))
}

/// Keyframe times of a probe's video packets.
fn keyframes(v: &Value) -> Vec<f64> {
    v["packets"]
        .as_array()
        .map(|p| {
            p.iter()
                .filter(|p| p["flags"].as_str().is_some_and(|f| f.starts_with('K')))
                .filter_map(|p| p["pts_time"].as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

async fn wait_probe(url: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let u = url.to_string();
        if let Some(v) = tokio::task::spawn_blocking(move || probe(&u, 5)).await.unwrap() {
            return v;
        }
        assert!(Instant::now() < deadline, "no stream at {url} within {within:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn stream_result<'a>(info: &'a Value, url_prefix: &str) -> &'a Value {
    info["streamResults"]
        .as_array()
        .and_then(|r| r.iter().rev().find(|s| s["url"].as_str().is_some_and(|u| u.starts_with(url_prefix))))
        .unwrap_or_else(|| panic!("no stream result for {url_prefix}: {info}"))
}

/// Issue 7 (1), (2), (5): RTMP push to nginx, read back by ffprobe (H.264 720p, AAC 48 kHz,
/// a keyframe every 2 s); a second URL that points nowhere retries without touching the
/// first; nginx stopped for 10 s and started again → the push resumes by itself while the HLS
/// output keeps one unbroken timeline; UpdateStream removes and adds URLs live; stream keys
/// are redacted in every API answer and never logged.
#[tokio::test(flavor = "multi_thread")]
async fn rtmp_push_reconnects_isolated_and_redacted() {
    let _serial = SERIAL.lock().await;
    let server = Server::start_with_config("stream:\n  reconnect_initial_ms: 200\n  reconnect_max_ms: 1000\n").await;
    let mut nginx = Nginx::start(server.tmp.path(), free_port());
    let good = nginx.url(KEY);
    // Nothing listens on port 9: connection refused, again and again.
    let dead = format!("rtmp://127.0.0.1:9/live/{KEY}-dead");
    // A server that takes the connection and never answers: the push times out, again and again.
    let tarpit = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let wedged = format!("rtmp://127.0.0.1:{}/live/{KEY}-wedged", tarpit.local_addr().unwrap().port());
    std::thread::spawn(move || {
        let mut held = vec![];
        for c in tarpit.incoming().flatten() {
            held.push(c);
        }
    });

    let (code, err) = server
        .twirp("StartWebEgress", json!({"url": server.page("demo/animated.html"), "stream_outputs": [{"urls": ["http://x/a/b"]}]}))
        .await;
    assert_eq!((code, err["code"].as_str()), (400, Some("invalid_argument")), "{err}");

    let id = server
        .start_egress(json!({
            "url": server.page("demo/animated.html"),
            "segment_outputs": [{}],
            "stream_outputs": [{"protocol": "RTMP", "urls": [good, dead, wedged]}],
        }))
        .await;
    let active = server.wait_status(&id, "EGRESS_ACTIVE", 20 * S).await;
    let since = Instant::now();
    let shown = active.to_string();
    assert!(!shown.contains(KEY), "a stream key in EgressInfo: {shown}");
    assert!(shown.contains(&format!("rtmp://127.0.0.1:{}/live/{{redacted}}", nginx.port)), "{shown}");

    let v = wait_probe(&good, 20 * S).await;
    let video = &v["streams"][0];
    assert_eq!(
        (video["codec_name"].as_str(), video["width"].as_i64(), video["height"].as_i64()),
        (Some("h264"), Some(1280), Some(720)),
        "{v}"
    );
    assert!(matches!(video["profile"].as_str(), Some("Main" | "High")), "{video}");
    let keys = keyframes(&v);
    assert!(keys.len() >= 3, "keyframes {keys:?}");
    // After the one-part first segment (a keyframe at 0.2 s, so HLS players start at once),
    // every 2 s.
    for w in keys.windows(2).filter(|w| w[0] > 0.1) {
        assert!((w[1] - w[0] - 2.0).abs() < 0.1, "keyframes every 2 s: {keys:?}");
    }
    let good_for_audio = good.clone();
    let audio = tokio::task::spawn_blocking(move || audio_codec(&good_for_audio)).await.unwrap();
    assert_eq!(audio.as_deref(), Some("aac 48000"));

    // The dead URL keeps retrying, with its error, while the good one is unaffected.
    let info = server.info(&id).await;
    let d = stream_result(&info, "rtmp://127.0.0.1:9/");
    assert!(d["retries"].as_i64().unwrap_or(0) >= 1 && d["error"].as_str().unwrap_or("").contains("refused"), "{d}");
    assert!(d["status"].is_null() || d["status"] == "ACTIVE", "keeps trying: {d}");
    assert!(d["startedAt"].is_null(), "never connected, never started: {d}");
    let g = stream_result(&info, &format!("rtmp://127.0.0.1:{}/", nginx.port));
    assert!(g["startedAt"].as_str().is_some() && g["retries"].is_null(), "{g}");
    // The wedged one has timed out at least once by now (rtmp2sink's 5 s), unnoticed by the rest.
    let w = loop {
        let info = server.info(&id).await;
        let w = stream_result(&info, &wedged.replace(&format!("{KEY}-wedged"), "")).clone();
        if w["retries"].as_i64().unwrap_or(0) >= 1 || since.elapsed() > 20 * S {
            break w;
        }
        tokio::time::sleep(S).await;
    };
    assert!(w["retries"].as_i64().unwrap_or(0) >= 1 && w["startedAt"].is_null(), "{w}");

    // nginx goes away for 10 s; the push resumes by itself once it is back.
    nginx.pause();
    tokio::time::sleep(10 * S).await;
    nginx.resume();
    let back = Instant::now();
    wait_probe(&good, 30 * S).await;
    eprintln!("stream readable again {:?} after nginx came back", back.elapsed());
    let g = stream_result(&server.info(&id).await, &format!("rtmp://127.0.0.1:{}/", nginx.port)).clone();
    assert!(g["retries"].as_i64().unwrap_or(0) >= 1, "{g}");

    // UpdateStream: the dead URL goes, a second key on the same server comes.
    let second = nginx.url("second-key-91b2");
    let (code, updated) =
        server.twirp("UpdateStream", json!({"egress_id": id, "add_output_urls": [second], "remove_output_urls": [dead, wedged]})).await;
    assert_eq!(code, 200, "{updated}");
    assert!(!updated.to_string().contains("second-key-91b2"), "{updated}");
    let d = stream_result(&updated, "rtmp://127.0.0.1:9/");
    assert_eq!(d["status"], "FINISHED", "{updated}");
    wait_probe(&second, 20 * S).await;
    // Two keys on one server look alike redacted, yet each has its own entry, both started.
    let prefix = format!("rtmp://127.0.0.1:{}/", nginx.port);
    let deadline = Instant::now() + 10 * S;
    loop {
        let info = server.info(&id).await;
        let started = info["streamResults"].as_array().unwrap().iter().filter(|r| {
            r["url"].as_str().is_some_and(|u| u.starts_with(&prefix)) && r["endedAt"].is_null() && r["startedAt"].as_str().is_some()
        });
        if started.count() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "both live keys started: {info}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (code, err) =
        server.twirp("UpdateStream", json!({"egress_id": id, "remove_output_urls": ["rtmp://127.0.0.1:9/live/never-added"]})).await;
    assert_eq!((code, err["code"].as_str()), (400, Some("invalid_argument")), "{err}");

    let ran = since.elapsed().as_secs_f64();
    let done = server.stop(&id, "EGRESS_COMPLETE").await;
    for r in done["streamResults"].as_array().unwrap() {
        assert_eq!(r["status"], "FINISHED", "{done}");
    }
    // The HLS output never noticed: one timeline, 30 fps, as long as the egress ran.
    let playlist_url = done["segmentResults"][0]["playlistLocation"].as_str().unwrap().to_string();
    let (_, playlist) = server.get_text(&playlist_url).await;
    assert!(!playlist.contains("#EXT-X-DISCONTINUITY") && !playlist.contains("#EXT-X-GAP"), "{playlist}");
    let (frames, duration) = frames_and_duration(&ffprobe(&playlist_url));
    assert!(duration >= ran - 1.5, "HLS lasts {duration:.1} s of the {ran:.1} s the egress ran");
    assert!((frames / duration - 30.0).abs() <= 1.0, "{frames} frames in {duration:.2} s");
    let log = std::fs::read_to_string(server.tmp.path().join("serve.log")).unwrap();
    assert!(!log.contains(KEY) && !log.contains("second-key-91b2"), "a stream key in the log");
    server.assert_no_leftovers(10 * S).await;
}

/// Issue 7 (1): with `stream.give_up_secs`, a URL that keeps failing ends FAILED with its error
/// while the egress and its other outputs go on.
#[tokio::test(flavor = "multi_thread")]
async fn a_url_failing_past_give_up_is_failed_alone() {
    let _serial = SERIAL.lock().await;
    let server = Server::start_with_config("stream:\n  reconnect_initial_ms: 200\n  reconnect_max_ms: 500\n  give_up_secs: 2\n").await;
    let id = server
        .start_egress(json!({"url": server.page("demo/static.html"), "segment_outputs": [{}], "stream_outputs": [{"urls": ["rtmp://127.0.0.1:9/live/gone"]}]}))
        .await;
    server.wait_status(&id, "EGRESS_ACTIVE", 20 * S).await;
    let deadline = Instant::now() + 15 * S;
    let failed = loop {
        let info = server.info(&id).await;
        if info["streamResults"][0]["status"] == "FAILED" {
            break info;
        }
        assert!(Instant::now() < deadline, "not FAILED: {info}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let r = &failed["streamResults"][0];
    assert!(r["error"].as_str().unwrap_or("").contains("refused") && r["endedAt"].as_str().is_some(), "{r}");
    assert_eq!(failed["status"], "EGRESS_ACTIVE", "the egress goes on: {failed}");
    server.wait_segments(&id, 3, 20 * S).await;
    let done = server.stop(&id, "EGRESS_COMPLETE").await;
    assert_eq!(done["streamResults"][0]["status"], "FAILED", "{done}");
    server.assert_no_leftovers(10 * S).await;
}

/// Issue 7 (1), (5): SRT push, received by an SRT listener (ffmpeg) and decoded; a stream-only
/// egress (no segment output) serves no playlist.
#[tokio::test(flavor = "multi_thread")]
async fn srt_push_is_received_and_decoded() {
    let _serial = SERIAL.lock().await;
    let server = Server::start().await;
    let port = free_port();
    let out = server.tmp.path().join("srt.ts");
    // The listener takes 6 s of whatever arrives.
    let mut listener = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i", &format!("srt://127.0.0.1:{port}?mode=listener"), "-t", "6", "-c", "copy"])
        .arg(&out)
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("ffmpeg");
    let id = server
        .start_egress(json!({"url": server.page("demo/animated.html"), "stream_outputs": [{"protocol": "SRT", "urls": [format!("srt://127.0.0.1:{port}")]}]}))
        .await;
    let info = server.wait_status(&id, "EGRESS_ACTIVE", 20 * S).await;
    assert!(info["segmentResults"].as_array().is_none_or(|s| s.is_empty()), "no segment output asked: {info}");
    let (code, _) = server.get_text(&format!("{}/hls/{id}/live.m3u8", server.url)).await;
    assert_eq!(code, 404);
    let deadline = Instant::now() + 40 * S;
    loop {
        if let Ok(Some(_)) = listener.try_wait() {
            break;
        }
        assert!(Instant::now() < deadline, "the SRT listener got no 6 s of stream");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let probe = ffprobe(&out.display().to_string());
    let v = video_stream(&probe);
    assert_eq!((v["codec_name"].as_str(), v["width"].as_i64(), v["height"].as_i64()), (Some("h264"), Some(1280), Some(720)), "{probe}");
    let (frames, duration) = frames_and_duration(&probe);
    assert!(duration > 4.0 && (frames / duration - 30.0).abs() <= 2.0, "{frames} frames in {duration:.2} s");
    assert!(probe["streams"].as_array().unwrap().iter().any(|s| s["codec_name"] == "aac"), "{probe}");
    let done = server.stop(&id, "EGRESS_COMPLETE").await;
    assert_eq!(done["streamResults"][0]["status"], "FINISHED", "{done}");
    server.assert_no_leftovers(10 * S).await;
}

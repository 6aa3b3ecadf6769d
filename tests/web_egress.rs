//! End-to-end tests of web egress against the real binary, Chromium and GStreamer:
//! decoded output, the official SDK, bad input, failures and clean-up.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const S: Duration = Duration::from_secs(1);

/// (decoded video frames, container duration in seconds) of an ffprobe result.
/// Issue 2 (a) and (9): ~10 s of an animated page decodes as 1280×720 H.264 at 30 fps for the
/// time it ran, with a valid closed playlist and keyframes every 2 s (after a one-part first
/// segment); nothing is left running.
#[tokio::test(flavor = "multi_thread")]
async fn web_egress_decodes_as_720p30_h264() {
    let _serial = SERIAL.lock().await;
    let server = Server::start().await;
    let id = server.start_web(&server.page("demo/animated.html")).await;
    let active = server.wait_status(&id, "EGRESS_ACTIVE", 20 * S).await;
    let since = Instant::now();
    assert_eq!(active["segmentResults"][0]["playlistLocation"], format!("{}/hls/{id}/playlist.m3u8", server.url));
    tokio::time::sleep(10 * S).await;
    let (status, stopping) = server.twirp("StopEgress", json!({"egress_id": id})).await;
    let ran = since.elapsed().as_secs_f64();
    assert_eq!(status, 200, "{stopping}");
    assert_eq!(stopping["status"], "EGRESS_ENDING");
    let done = server.wait_status(&id, "EGRESS_COMPLETE", 20 * S).await;
    assert!(done["endedAt"].as_str().unwrap() >= done["startedAt"].as_str().unwrap());

    let playlist_url = done["segmentResults"][0]["playlistLocation"].as_str().unwrap().to_string();
    let (code, playlist) = server.get_text(&playlist_url).await;
    assert_eq!(code, 200);
    assert!(playlist.starts_with("#EXTM3U\n"), "{playlist}");
    assert!(playlist.contains("#EXT-X-MAP:URI=\"init.mp4\""), "{playlist}");
    assert!(playlist.contains("#EXT-X-MEDIA-SEQUENCE:1\n"), "{playlist}");
    assert!(playlist.trim_end().ends_with("#EXT-X-ENDLIST"), "{playlist}");
    let (_, live) = server.get_text(done["segmentResults"][0]["livePlaylistLocation"].as_str().unwrap()).await;
    assert!(live.trim_end().ends_with("#EXT-X-ENDLIST"), "{live}");

    let probe = ffprobe(&playlist_url);
    let v = video_stream(&probe);
    assert_eq!(v["codec_name"], "h264");
    assert_eq!((v["width"].as_i64(), v["height"].as_i64()), (Some(1280), Some(720)));
    assert_eq!(v["r_frame_rate"], "30/1");
    let (frames, duration) = frames_and_duration(&probe);
    assert!((duration - ran).abs() <= 1.0, "output lasts {duration:.2} s, the egress ran {ran:.2} s");
    assert!((frames / duration - 30.0).abs() <= 1.0, "{frames} frames in {duration:.2} s");

    // Keyframes only where segments start: at the start, one part (0.2 s) later (the first
    // segment is a single part, so players can start at once; a frame or two more when the
    // muxer's keyframe request reaches the encoder late), then every 2 s.
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-skip_frame",
            "nokey",
            "-select_streams",
            "v",
            "-show_entries",
            "frame=pts_time",
            "-of",
            "csv=p=0",
            &playlist_url,
        ])
        .output()
        .unwrap();
    let keys: Vec<f64> = String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().trim_end_matches(',').parse().ok()).collect();
    assert!(keys.len() >= 5, "keyframes at {keys:?}");
    assert!((0.18..0.32).contains(&(keys[1] - keys[0])), "keyframes at {keys:?}");
    for w in keys[1..].windows(2) {
        assert!((w[1] - w[0] - 2.0).abs() < 0.05, "keyframes at {keys:?}");
    }
    server.assert_no_leftovers(10 * S).await;
}

/// Issue 2 (b): LiveKit's own Node SDK starts, lists and stops a web egress.
#[tokio::test(flavor = "multi_thread")]
async fn official_node_sdk_starts_lists_and_stops() {
    let _serial = SERIAL.lock().await;
    let node_dir = repo().join("tests/node");
    assert!(
        node_dir.join("node_modules/livekit-server-sdk").exists(),
        "tests/node has no node_modules: run `npm ci --prefix tests/node` (scripts/test.sh does)"
    );
    let server = Server::start().await;
    let out = tokio::process::Command::new("node")
        .arg(node_dir.join("sdk_client.mjs"))
        .args([&server.url, KEY, SECRET, &server.page("demo/animated.html")])
        .output()
        .await
        .expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "sdk client failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("\"ok\":true"), "{stdout}");
    server.assert_no_leftovers(10 * S).await;
}

/// Issue 16 (5): the v2 StartEgress through the official Node SDK: one web source, four kinds of
/// output (segments, MP4, RTMP to nginx, images), EgressInfo carrying the v2 request, and the
/// refusals (media source, storage, webhooks: `unimplemented`; no output: `invalid_argument`).
#[tokio::test(flavor = "multi_thread")]
async fn official_node_sdk_v2_start_egress() {
    let _serial = SERIAL.lock().await;
    let server = Server::start().await;
    let nginx = common::nginx::Nginx::start(server.tmp.path(), free_port());
    let page = server.page("demo/animated.html");
    let got = sdk_json(Sdk::Node, "sdk_v2.mjs", &[&server.url, KEY, SECRET, &page, &nginx.url("v2key")], String::new);
    eprintln!("v2 through the Node SDK: {got}");
    assert_eq!(got["ok"], true, "{got}");
    server.assert_no_leftovers(10 * S).await;
}

/// Issue 16 (4, 5): LiveKit's official Python SDK against roomcast: a web egress with an RTMP
/// stream, UpdateStream adding and removing a URL, the v2 StartEgress, the refusal of a media
/// source, and ListEgress's page_token.
#[tokio::test(flavor = "multi_thread")]
async fn official_python_sdk() {
    let _serial = SERIAL.lock().await;
    let server = Server::start().await;
    let nginx = common::nginx::Nginx::start(server.tmp.path(), free_port());
    let page = server.page("demo/animated.html");
    let args = [server.url.as_str(), KEY, SECRET, &page, &nginx.url("py1"), &nginx.url("py2"), "standalone"];
    let got = sdk_json(Sdk::Python, "egress_sdk.py", &args, String::new);
    eprintln!("the Python SDK against roomcast: {got}");
    assert_eq!(got["refused"], "unimplemented", "{got}");
    server.assert_no_leftovers(10 * S).await;
}

/// One bad call: (what it is, method, body, token, content type, HTTP status, Twirp code).
type BadCall<'a> = (&'a str, &'a str, String, Option<String>, &'a str, u16, &'a str);

/// Issue 2 (c): every kind of bad input gets its Twirp error, and none starts a browser.
#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_twirp_errors() {
    let _serial = SERIAL.lock().await;
    let server = Server::start().await;
    let page = server.page("demo/animated.html");
    let good = json!({"url": page, "segment_outputs": [{}]}).to_string();
    let cases: Vec<BadCall> = vec![
        ("no token", "StartWebEgress", good.clone(), None, "application/json", 401, "unauthenticated"),
        (
            "wrong secret",
            "StartWebEgress",
            good.clone(),
            Some(token_with("another-secret-entirely", true)),
            "application/json",
            401,
            "unauthenticated",
        ),
        ("not a jwt", "StartWebEgress", good.clone(), Some("abc.def".into()), "application/json", 401, "unauthenticated"),
        ("no roomRecord", "StartWebEgress", good.clone(), Some(token(false)), "application/json", 403, "permission_denied"),
        (
            "file url",
            "StartWebEgress",
            json!({"url": "file:///etc/passwd", "segment_outputs": [{}]}).to_string(),
            Some(token(true)),
            "application/json",
            400,
            "invalid_argument",
        ),
        (
            "javascript url",
            "StartWebEgress",
            json!({"url": "javascript:alert(1)", "segment_outputs": [{}]}).to_string(),
            Some(token(true)),
            "application/json",
            400,
            "invalid_argument",
        ),
        (
            "unparsable url",
            "StartWebEgress",
            json!({"url": "http://[::1", "segment_outputs": [{}]}).to_string(),
            Some(token(true)),
            "application/json",
            400,
            "invalid_argument",
        ),
        ("no output", "StartWebEgress", json!({"url": page}).to_string(), Some(token(true)), "application/json", 400, "invalid_argument"),
        (
            "odd width",
            "StartWebEgress",
            json!({"url": page, "segment_outputs": [{}], "advanced": {"width": 641, "height": 360}}).to_string(),
            Some(token(true)),
            "application/json",
            400,
            "invalid_argument",
        ),
        (
            "escaping playlist",
            "StartWebEgress",
            json!({"url": page, "segment_outputs": [{"playlist_name": "../../x.m3u8"}]}).to_string(),
            Some(token(true)),
            "application/json",
            400,
            "invalid_argument",
        ),
        (
            "audio bitrate",
            "StartWebEgress",
            json!({"url": page, "segment_outputs": [{}], "advanced": {"audio_bitrate": 5000}}).to_string(),
            Some(token(true)),
            "application/json",
            400,
            "invalid_argument",
        ),
        (
            "opus at 44.1 kHz",
            "StartWebEgress",
            json!({"url": page, "segment_outputs": [{}], "advanced": {"audio_codec": "OPUS", "audio_frequency": 44100}}).to_string(),
            Some(token(true)),
            "application/json",
            400,
            "invalid_argument",
        ),
        (
            "both only",
            "StartWebEgress",
            json!({"url": page, "segment_outputs": [{}], "audio_only": true, "video_only": true}).to_string(),
            Some(token(true)),
            "application/json",
            400,
            "invalid_argument",
        ),
        (
            "mp3 audio",
            "StartWebEgress",
            json!({"url": page, "segment_outputs": [{}], "advanced": {"audio_codec": "AC_MP3"}}).to_string(),
            Some(token(true)),
            "application/json",
            501,
            "unimplemented",
        ),
        ("garbage json", "StartWebEgress", "{not json".into(), Some(token(true)), "application/json", 400, "malformed"),
        ("wrong field type", "StartWebEgress", json!({"url": 5}).to_string(), Some(token(true)), "application/json", 400, "malformed"),
        ("garbage protobuf", "StartWebEgress", "\u{ff}\u{ff}\u{ff}".into(), Some(token(true)), "application/protobuf", 400, "malformed"),
        (
            "unknown egress",
            "StopEgress",
            json!({"egress_id": "EG_nope"}).to_string(),
            Some(token(true)),
            "application/json",
            404,
            "not_found",
        ),
        ("unknown method", "Frobnicate", "{}".into(), Some(token(true)), "application/json", 404, "bad_route"),
        (
            "a file named like the HLS init segment",
            "StartWebEgress",
            json!({"url": "http://127.0.0.1:9/", "segment_outputs": [{}], "file_outputs": [{"filepath": "init.mp4"}]}).to_string(),
            Some(token(true)),
            "application/json",
            400,
            "invalid_argument",
        ),
        ("v2 without a source", "StartEgress", "{}".into(), Some(token(true)), "application/json", 400, "invalid_argument"),
    ];
    for (what, method, body, tok, ct, want_status, want_code) in cases {
        let (status, err) = server.twirp_raw(method, &body, tok.as_deref(), ct).await;
        assert_eq!((status, err["code"].as_str()), (want_status, Some(want_code)), "{what}: {err}");
        assert!(err["msg"].as_str().is_some_and(|m| !m.is_empty()), "{what}: no message in {err}");
    }
    let (_, list) = server.twirp("ListEgress", json!({})).await;
    assert_eq!(list["items"].as_array().map(|a| a.len()).unwrap_or(0), 0, "nothing started: {list}");
    assert!(server.chromium_pids().is_empty(), "bad input started a browser");
    assert!(server.sound_servers().is_empty(), "bad input started a sound server");
}

/// Issue 2 (d): a page that cannot be loaded fails the egress quickly, with the reason.
#[tokio::test(flavor = "multi_thread")]
async fn unreachable_page_fails_with_a_clear_error() {
    let _serial = SERIAL.lock().await;
    let server = Server::start().await;
    let started = Instant::now();
    let id = server.start_web(&format!("http://127.0.0.1:{}/nothing-listens-here", free_port())).await;
    let info = loop {
        let info = server.info(&id).await;
        if info["status"] == "EGRESS_FAILED" {
            break info;
        }
        assert_ne!(info["status"], "EGRESS_COMPLETE", "{info}");
        assert!(started.elapsed() < 15 * S, "not failed within 15 s: {info}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let error = info["error"].as_str().unwrap();
    // Chromium's requests go through roomcast's policy proxy, which names what failed.
    assert!(error.contains("page load error") && error.contains("Connection refused"), "{error}");
    // An HTTP error page is a failure too.
    let id = server.start_web(&server.page("demo/no-such-page.html")).await;
    let deadline = Instant::now() + 15 * S;
    loop {
        let info = server.info(&id).await;
        if info["status"] == "EGRESS_FAILED" {
            let error = info["error"].as_str().unwrap();
            assert!(error.contains("HTTP") && error.contains("no-such-page.html"), "{info}");
            break;
        }
        assert!(Instant::now() < deadline, "404 page did not fail the egress: {info}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.assert_no_leftovers(10 * S).await;
}

/// Issue 2 (4): advanced options are honoured, and a page that never repaints still gives a
/// constant frame rate.
#[tokio::test(flavor = "multi_thread")]
async fn advanced_options_and_static_page_constant_rate() {
    let _serial = SERIAL.lock().await;
    let server = Server::start().await;
    let id = server
        .start_egress(json!({"url": server.page("demo/static.html"), "segment_outputs": [{"segment_duration": 1}],
                   "advanced": {"width": 640, "height": 360, "framerate": 25, "video_bitrate": 800, "key_frame_interval": 1}}))
        .await;
    server.wait_status(&id, "EGRESS_ACTIVE", 20 * S).await;
    tokio::time::sleep(6 * S).await;
    let done = server.stop(&id, "EGRESS_COMPLETE").await;
    let url = done["segmentResults"][0]["playlistLocation"].as_str().unwrap();
    let probe = ffprobe(url);
    let v = video_stream(&probe);
    assert_eq!((v["width"].as_i64(), v["height"].as_i64()), (Some(640), Some(360)));
    assert_eq!(v["r_frame_rate"], "25/1");
    let (frames, duration) = frames_and_duration(&probe);
    assert!(duration > 5.0, "a static page still produces output: {duration}");
    assert!((frames / duration - 25.0).abs() <= 1.0, "{frames} frames in {duration:.2} s");
}

/// Issue 2 (10): killing one egress's Chromium fails that egress only; the other goes on.
/// (With no relaunch allowed: by default a killed Chromium is relaunched, tests/recovery.rs.)
#[tokio::test(flavor = "multi_thread")]
async fn one_failing_egress_leaves_the_others_running() {
    let _serial = SERIAL.lock().await;
    let server = Server::start_with_config("recovery: {max_restarts: 0}\n").await;
    let page = server.page("demo/animated.html");
    let a = server.start_web(&page).await;
    let b = server.start_web(&page).await;
    server.wait_status(&a, "EGRESS_ACTIVE", 30 * S).await;
    server.wait_status(&b, "EGRESS_ACTIVE", 30 * S).await;
    let browsers = server.chromium_browsers();
    assert_eq!(browsers.len(), 2, "one Chromium per egress: {browsers:?}");
    unsafe { libc::kill(browsers[0], libc::SIGKILL) };

    let deadline = Instant::now() + 20 * S;
    let (failed, survivor) = loop {
        let (ia, ib) = (server.info(&a).await, server.info(&b).await);
        match (ia["status"].as_str(), ib["status"].as_str()) {
            (Some("EGRESS_FAILED"), Some("EGRESS_ACTIVE")) => break (ia, b.clone()),
            (Some("EGRESS_ACTIVE"), Some("EGRESS_FAILED")) => break (ib, a.clone()),
            _ => {}
        }
        assert!(Instant::now() < deadline, "expected exactly one failure: {ia} {ib}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("chromium") && error.contains("recovery.max_restarts 0"), "{failed}");
    // What the failed egress had captured is kept, in a closed playlist.
    let (_, pl) = server.get_text(failed["segmentResults"][0]["playlistLocation"].as_str().unwrap()).await;
    assert!(pl.trim_end().ends_with("#EXT-X-ENDLIST"), "{pl}");

    let before = server.info(&survivor).await["segmentResults"][0]["segmentCount"].as_str().unwrap_or("0").parse::<i64>().unwrap();
    server.wait_segments(&survivor, before + 2, 15 * S).await;
    assert_eq!(server.chromium_browsers().len(), 1);
    server.stop(&survivor, "EGRESS_COMPLETE").await;
    server.assert_no_leftovers(10 * S).await;
}

/// A worker that dies (here: SIGKILL) fails its egress, its Chromium goes with it, and what
/// it had sent stays playable behind a closed playlist.
#[tokio::test(flavor = "multi_thread")]
async fn killed_worker_fails_cleanly_and_keeps_output() {
    let _serial = SERIAL.lock().await;
    let server = Server::start().await;
    let id = server.start_web(&server.page("demo/animated.html")).await;
    server.wait_status(&id, "EGRESS_ACTIVE", 20 * S).await;
    // Three finished segments: the one-part first one (0.2 s), then two of 2 s.
    server.wait_segments(&id, 3, 20 * S).await;
    let workers = server.workers();
    assert_eq!(workers.len(), 1, "{workers:?}");
    unsafe { libc::kill(workers[0], libc::SIGKILL) };
    let deadline = Instant::now() + 15 * S;
    let info = loop {
        let info = server.info(&id).await;
        if info["status"] == "EGRESS_FAILED" {
            break info;
        }
        assert!(Instant::now() < deadline, "{info}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(info["error"].as_str().unwrap().contains("worker process ended unexpectedly"), "{info}");
    server.assert_no_leftovers(10 * S).await;
    let url = info["segmentResults"][0]["playlistLocation"].as_str().unwrap();
    let (_, pl) = server.get_text(url).await;
    assert!(pl.trim_end().ends_with("#EXT-X-ENDLIST"), "{pl}");
    let probe = ffprobe(url);
    let duration: f64 = probe["format"]["duration"].as_str().unwrap().parse().unwrap();
    assert!(duration >= 4.2 - 0.05, "the three finished segments survive: {duration}");
}

/// Issue 2 (9): SIGTERM on `serve` stops every egress, finalises its playlists and ends
/// every Chromium before the process exits.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_everything_and_finalises() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _serial = SERIAL.lock().await;
    let (drain, grace) = (20, 2);
    let mut server = Server::start_with_config(&format!(
        "timeouts:\n  drain_secs: {drain}\nhttp:\n  header_read_timeout_secs: 120\n  close_grace_secs: {grace}\n"
    ))
    .await;
    let hls = server.start_web(&server.page("demo/animated.html")).await;
    let mp4 = server.start_egress(json!({"url": server.page("demo/animated.html"), "file_outputs": [{"filepath": "rec.mp4"}]})).await;
    server.wait_segments(&hls, 1, 20 * S).await;
    server.wait_status(&mp4, "EGRESS_ACTIVE", 20 * S).await;
    tokio::time::sleep(2 * S).await;
    // A client that sends half a request and waits: it must not hold the shutdown.
    let mut half = tokio::net::TcpStream::connect(server.url.trim_start_matches("http://")).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let t0 = Instant::now();
    unsafe { libc::kill(server.pid(), libc::SIGTERM) };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // New egresses are refused at once (or the listener is already gone).
    if let Ok(r) = reqwest::Client::new()
        .post(format!("{}/twirp/livekit.Egress/StartWebEgress", server.url))
        .bearer_auth(token(true))
        .json(&json!({"url": server.page("demo/animated.html"), "segment_outputs": [{}]}))
        .send()
        .await
    {
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        assert_eq!((status, body["code"].as_str()), (503, Some("unavailable")), "a start during shutdown: {body}");
    }
    let status = tokio::task::block_in_place(|| server.wait_exit(Duration::from_secs(drain + grace + 10)));
    let took = t0.elapsed();
    assert!(status.success(), "serve exited with {status}");
    assert!(took <= Duration::from_secs(drain + grace + 3), "serve took {took:?} to exit (drain {drain} s + grace {grace} s)");
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(2 * S, half.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "the half request's connection is closed: {closed:?}");
    assert!(server.chromium_pids().is_empty(), "chromium survived serve: {:?}", server.chromium_pids());
    assert!(server.workers().is_empty(), "workers survived serve");
    let pl = std::fs::read_to_string(local_playlist(&server, &hls, "playlist.m3u8")).unwrap();
    assert!(pl.trim_end().ends_with("#EXT-X-ENDLIST"), "{pl}");
    let file = server.out.join(&mp4).join("rec.mp4");
    let probe = ffprobe(&file.display().to_string());
    let duration: f64 = probe["format"]["duration"].as_str().and_then(|d| d.parse().ok()).unwrap_or(0.0);
    assert!(duration >= 1.0, "the MP4 is final and plays: {probe}");
}

/// Issue 17 (2): a client that never finishes its request headers is cut off after
/// `http.header_read_timeout_secs`; recordings are streamed with Range and HEAD; metrics are
/// on their own listener, not beside the API and origin.
#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_ranges_and_the_metrics_listener() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _serial = SERIAL.lock().await;
    let server = Server::start_with_config("http:\n  header_read_timeout_secs: 2\n").await;
    let mut half = tokio::net::TcpStream::connect(server.url.trim_start_matches("http://")).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut buf = vec![0u8; 512];
    let got = tokio::time::timeout(8 * S, half.read(&mut buf)).await;
    assert!(matches!(got, Ok(Ok(_)) | Ok(Err(_))), "a half request is cut off within the header timeout: {got:?}");

    let (code, _) = server.get_text(&format!("{}/metrics", server.url)).await;
    assert_eq!(code, 404, "no metrics beside the API and the origin");
    let (code, text) = server.get_text(&server.metrics_url).await;
    assert_eq!(code, 200, "metrics on their own listener: {text}");

    // A file in an egress folder, served with Range and HEAD.
    let dir = server.out.join("EG_range");
    std::fs::create_dir_all(&dir).unwrap();
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.join("rec.mp4"), &data).unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/hls/EG_range/rec.mp4", server.url);
    let r = http.get(&url).header("Range", "bytes=1000-1999").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(r.headers()["content-type"], "video/mp4");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[1000..2000]);
    let r = http.head(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-length"], "1000000");
    let full = http.get(&url).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(full.len(), data.len());
}

/// `await_start_signal`: nothing is recorded before the page logs START_RECORDING, and
/// END_RECORDING completes the egress by itself.
#[tokio::test(flavor = "multi_thread")]
async fn start_and_end_signals_from_the_page() {
    let _serial = SERIAL.lock().await;
    let server = Server::start().await;
    let t0 = Instant::now();
    let id = server
        .start_egress(
            json!({"url": server.page("demo/signal.html?start=2500&end=7000"), "await_start_signal": true, "segment_outputs": [{}]}),
        )
        .await;
    server.wait_status(&id, "EGRESS_ACTIVE", 20 * S).await;
    assert!(t0.elapsed() >= Duration::from_millis(2500), "active before the start signal");
    let done = server.wait_status(&id, "EGRESS_COMPLETE", 30 * S).await;
    assert_eq!(done["details"], "Source closed");
    let probe = ffprobe(done["segmentResults"][0]["playlistLocation"].as_str().unwrap());
    let duration: f64 = probe["format"]["duration"].as_str().unwrap().parse().unwrap();
    assert!((duration - 4.5).abs() <= 1.0, "recorded {duration:.2} s between the signals, expected ~4.5");
    server.assert_no_leftovers(10 * S).await;
}

//! End-to-end tests of the capture backends (issue 5): each one, chosen by config, runs the
//! Chromium (and for x11 the X server) it needs, gives exactly the requested frame rate with evenly spaced timestamps
//! and new pictures in (nearly) every frame of an animated page, and reports its frame
//! counts in `/metrics` while it runs.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

const S: Duration = Duration::from_secs(1);

/// Presentation times of every video frame of `input`, and of the frames that show a new
/// picture: ffmpeg's mpdecimate drops each frame that differs from the last kept one only by
/// noise (an encoder refining a still picture changes its decoded pixels a little).
fn frame_times(input: &str) -> (Vec<f64>, Vec<f64>) {
    let run = |filter: &str| -> Vec<f64> {
        let out = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-i", input, "-map", "0:v", "-vf", filter, "-fps_mode", "passthrough", "-f", "framemd5", "-"])
            .output()
            .expect("ffmpeg");
        assert!(out.status.success(), "ffmpeg {filter}: {}", String::from_utf8_lossy(&out.stderr));
        // framemd5: a "#tb 0: N/D" header, then "stream, dts, pts, duration, size, hash" lines.
        let text = String::from_utf8_lossy(&out.stdout);
        let tb: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("#tb 0: "))
            .and_then(|r| r.split_once('/'))
            .map(|(n, d)| n.trim().parse::<f64>().unwrap() / d.trim().parse::<f64>().unwrap())
            .expect("framemd5 time base");
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(',').nth(2)?.trim().parse::<f64>().ok().map(|pts| pts * tb))
            .collect()
    };
    (run("null"), run("mpdecimate"))
}

/// The log without its colour codes.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ ... letter
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The value of `roomcast_video_frames_total{egress_id=id,kind=kind}` in a metrics page.
fn frames_metric(metrics: &str, id: &str, kind: &str) -> Option<u64> {
    let key = format!("roomcast_video_frames_total{{egress_id=\"{id}\",kind=\"{kind}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(&key)).and_then(|v| v.trim().parse().ok())
}

async fn check_backend(backend: &str, binary_marker: &str, min_distinct: f64) {
    let server = Server::start_with_config(&format!("capture: {{backend: {backend}}}\n")).await;
    let id = server.start_egress(json!({"url": server.page("demo/animated.html"), "segment_outputs": [{}], "video_only": true})).await;
    server.wait_status(&id, "EGRESS_ACTIVE", 20 * S).await;
    let browsers = server.chromium_browsers();
    assert_eq!(browsers.len(), 1, "one browser for the egress: {browsers:?}");
    let cmd = String::from_utf8_lossy(&std::fs::read(format!("/proc/{}/cmdline", browsers[0])).unwrap()).replace('\0', " ");
    assert!(cmd.contains(binary_marker), "{backend} runs {binary_marker}: {cmd}");
    // Issue 17.4: CDP goes over a pipe; no process of Chromium's listens on a TCP port.
    let listening = listening_tcp_ports(&server.chromium_pids());
    assert!(listening.is_empty(), "{backend}: Chromium listens on TCP ports {listening:?}");
    tokio::time::sleep(6 * S).await;

    let (code, metrics) = server.get_text(&server.metrics_url).await;
    assert_eq!(code, 200);
    let captured = frames_metric(&metrics, &id, "captured").unwrap_or_else(|| panic!("no captured count for {id}: {metrics}"));
    let encoded = frames_metric(&metrics, &id, "encoded").expect("encoded count");
    // Six seconds at 30 fps (the counts are a second old at most).
    assert!(captured >= 120, "{backend}: {captured} frames captured in 6 s\n{metrics}");
    assert!(encoded >= 120, "{backend}: {encoded} frames encoded in 6 s\n{metrics}");
    assert!(metrics.contains(&format!("roomcast_encoder_lag_milliseconds{{egress_id=\"{id}\"}}")), "{metrics}");

    let done = server.stop(&id, "EGRESS_COMPLETE").await;
    let (_, after) = server.get_text(&server.metrics_url).await;
    assert!(!after.contains(&id), "an ended egress's series are gone: {after}");

    let url = done["segmentResults"][0]["playlistLocation"].as_str().unwrap().to_string();
    let (frames, new) = frame_times(&url);
    assert!(frames.len() >= 180, "{backend}: {} frames", frames.len());
    // Exactly the requested rate: every frame 1/30 s after the one before.
    for w in frames.windows(2) {
        assert!((w[1] - w[0] - 1.0 / 30.0).abs() < 0.002, "{backend}: frame at {:.4} follows one at {:.4}", w[1], w[0]);
    }
    // The page moves every frame: a repeated picture is a frame the capture missed.
    let distinct = new.len() as f64 / frames.len() as f64;
    println!("{backend}: {} frames, {:.1}% new pictures; metrics: captured {captured}, encoded {encoded}", frames.len(), distinct * 100.0);
    assert!(distinct >= min_distinct, "{backend}: only {:.1}% of frames show a new picture", distinct * 100.0);
    server.assert_no_leftovers(10 * S).await;
}

// How many frames show a new picture depends on how busy the machine is (a shared CI
// runner gets 80-92 % where a quiet one gets 97-100 %); the figures live in
// docs/benchmarks.md. The tests hold the behaviour: the capture follows the animation
// in most frames (a frozen page gives ~0 %, a capture running at half rate 50 %).
const MIN_NEW_PICTURES: f64 = 0.6;

/// Begin-frame control renders one frame per slot: (nearly) every output frame is a new picture.
#[tokio::test(flavor = "multi_thread")]
async fn begin_frame_capture_renders_every_frame_once() {
    let _serial = SERIAL.lock().await;
    check_backend("begin_frame", "chromium-headless-shell", MIN_NEW_PICTURES).await;
}

/// The screencast keeps every other frame of Chromium's 60 Hz compositor, re-timed onto the
/// 30 fps grid; jitter costs it a few repeated pictures.
#[tokio::test(flavor = "multi_thread")]
async fn screencast_capture_still_works() {
    let _serial = SERIAL.lock().await;
    check_backend("screencast", "--headless=new", MIN_NEW_PICTURES).await;
}

/// The x11 backend: a private X server (Xorg's dummy driver by default), Chromium as a kiosk
/// window on it, ximagesrc reading the screen at the frame rate.
#[tokio::test(flavor = "multi_thread")]
async fn x11_capture_reads_the_screen_of_its_own_x_server() {
    let _serial = SERIAL.lock().await;
    check_backend("x11", "--ozone-platform=x11", MIN_NEW_PICTURES).await;
}

/// Whether an X client (GStreamer's ximagesrc, reading one picture) gets into display `:n`
/// with the cookies of `xauthority`.
fn x_client_admitted(n: u32, xauthority: &str) -> bool {
    let mut child = std::process::Command::new("gst-launch-1.0")
        .args(["-q", "ximagesrc", &format!("display-name=:{n}"), "num-buffers=1", "!", "fakesink"])
        .env("XAUTHORITY", xauthority)
        .env_remove("DISPLAY")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("gst-launch-1.0 (apt install gstreamer1.0-tools)");
    let deadline = std::time::Instant::now() + 10 * S;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.success();
        }
        if std::time::Instant::now() > deadline {
            reap(&mut child, S);
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Issue 17 (4): the x11 backend's X server takes only clients with its cookie: a client
/// without it is refused, one with the cookie file the server was started with gets in.
#[tokio::test(flavor = "multi_thread")]
async fn x11_server_refuses_clients_without_its_cookie() {
    let _serial = SERIAL.lock().await;
    let server = Server::start_with_config("capture: {backend: x11}\n").await;
    let id = server.start_egress(json!({"url": server.page("demo/animated.html"), "segment_outputs": [{}], "video_only": true})).await;
    server.wait_status(&id, "EGRESS_ACTIVE", 30 * S).await;
    let xs = server.x_servers();
    assert_eq!(xs.len(), 1, "{xs:?}");
    let cmd: Vec<String> = std::fs::read(format!("/proc/{}/cmdline", xs[0]))
        .unwrap()
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let cookie = cmd.iter().skip_while(|a| *a != "-auth").nth(1).unwrap_or_else(|| panic!("no -auth in {cmd:?}")).clone();
    assert!(cmd.iter().any(|a| a == "-nolisten") && cmd.iter().any(|a| a == "tcp"), "no TCP listener: {cmd:?}");
    // The display number is not in its arguments (-displayfd): the one our cookie opens.
    let displays: Vec<u32> = std::fs::read_dir("/tmp/.X11-unix")
        .map(|d| d.flatten().filter_map(|e| e.file_name().to_str()?.strip_prefix('X')?.parse().ok()).collect())
        .unwrap_or_default();
    let ours = displays.iter().copied().find(|n| x_client_admitted(*n, &cookie));
    let ours = ours.unwrap_or_else(|| panic!("no display of {displays:?} admits the cookie {cookie}"));
    assert!(!x_client_admitted(ours, "/nonexistent"), "display :{ours} admitted a client without its cookie");
    let empty = server.tmp.path().join("empty-xauthority");
    std::fs::write(&empty, b"").unwrap();
    assert!(!x_client_admitted(ours, empty.to_str().unwrap()), "display :{ours} admitted a client with no cookie");
    server.stop(&id, "EGRESS_COMPLETE").await;
    server.assert_no_leftovers(10 * S).await;
}

/// A page that reports how often Chromium runs its animation frames: the count of
/// requestAnimationFrame callbacks over each second, sent to `/raf?fps=…` on the page's own site.
const RAF_PAGE: &str = r#"<!doctype html><html><body style="margin:0;background:#123">
<canvas id="c" width="640" height="360"></canvas><script>
const ctx = document.getElementById('c').getContext('2d');
let n = 0, t0 = 0;
function frame(t) {
  if (!t0) t0 = t;
  n++;
  ctx.fillStyle = `hsl(${(t / 5) % 360}, 80%, 50%)`;
  ctx.fillRect(0, 0, 640, 360);
  if (t - t0 >= 1000) { fetch(`/raf?fps=${(n * 1000 / (t - t0)).toFixed(1)}`); n = 0; t0 = t; }
  requestAnimationFrame(frame);
}
requestAnimationFrame(frame);
</script></body></html>"#;

/// The rates `RAF_PAGE` reports while a `x_server` egress at `fps` records it for 6 s.
async fn animation_rates(x_server: &str, fps: u32) -> Vec<f64> {
    use axum::{extract::Query, response::Html, routing::get, Router};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    let rates = Arc::new(Mutex::new(Vec::<f64>::new()));
    let seen = Arc::clone(&rates);
    let app = Router::new().route("/raf.html", get(|| async { Html(RAF_PAGE) })).route(
        "/raf",
        get(move |Query(q): Query<HashMap<String, String>>| async move {
            if let Some(fps) = q.get("fps").and_then(|v| v.parse().ok()) {
                seen.lock().unwrap().push(fps);
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let site = format!("http://{}", listener.local_addr().unwrap());
    let site_task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let server = Server::start_with_config(&format!(
        "capture: {{backend: x11, x_server: {x_server}}}
"
    ))
    .await;
    let id = server
        .start_egress(json!({"url": format!("{site}/raf.html"), "segment_outputs": [{}], "video_only": true,
                             "advanced": {"width": 640, "height": 360, "framerate": fps}}))
        .await;
    server.wait_status(&id, "EGRESS_ACTIVE", 20 * S).await;
    tokio::time::sleep(6 * S).await;
    server.stop(&id, "EGRESS_COMPLETE").await;
    server.assert_no_leftovers(10 * S).await;
    site_task.abort();
    let mut rates = rates.lock().unwrap().clone();
    // The first second includes the page's load.
    if !rates.is_empty() {
        rates.remove(0);
    }
    rates
}

/// Issue 5 (3), render only what is captured: on the default X server (Xorg's dummy driver
/// with one mode at the output rate) Chromium runs the page's animation frames at the output
/// frame rate, here 25 fps; on Xvfb (0 Hz mode) it falls back to 60 Hz.
#[tokio::test(flavor = "multi_thread")]
async fn x11_chromium_draws_at_the_output_frame_rate() {
    let _serial = SERIAL.lock().await;
    let median = |mut v: Vec<f64>| {
        assert!(v.len() >= 3, "the page reported {} seconds of frames: {v:?}", v.len());
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let xorg = animation_rates("xorg", 25).await;
    println!("xorg at 25 fps: page animation rates {xorg:?}");
    assert!((median(xorg.clone()) - 25.0).abs() < 1.5, "Chromium draws at 25 Hz on Xorg: {xorg:?}");
    let xvfb = animation_rates("xvfb", 25).await;
    println!("xvfb at 25 fps: page animation rates {xvfb:?}");
    assert!(median(xvfb.clone()) > 50.0, "Chromium draws at 60 Hz on Xvfb: {xvfb:?}");
}

/// A page that never changes still gives the full rate (its last picture again), and a
/// request for 25 fps gets 25.
#[tokio::test(flavor = "multi_thread")]
async fn begin_frame_capture_holds_the_rate_of_a_still_page() {
    let _serial = SERIAL.lock().await;
    let server = Server::start_with_config("capture: {backend: begin_frame}\n").await;
    let id = server
        .start_egress(json!({"url": server.page("demo/static.html"), "segment_outputs": [{}], "video_only": true,
                             "advanced": {"width": 640, "height": 360, "framerate": 25}}))
        .await;
    server.wait_status(&id, "EGRESS_ACTIVE", 20 * S).await;
    tokio::time::sleep(4 * S).await;
    let done = server.stop(&id, "EGRESS_COMPLETE").await;
    let url = done["segmentResults"][0]["playlistLocation"].as_str().unwrap().to_string();
    let (frames, new) = frame_times(&url);
    assert!(frames.len() >= 90, "{} frames", frames.len());
    for w in frames.windows(2) {
        assert!((w[1] - w[0] - 0.04).abs() < 0.002, "frame at {:.4} follows one at {:.4}", w[1], w[0]);
    }
    assert!(new.len() <= 3, "a still page shows {} different pictures, at {new:?}", new.len());
}

/// Issue 5 (4): with `pool.size: 1` a Chromium is launched before any request; the first
/// egress runs on that very browser, the pool refills in the background, a second egress
/// while the pool is empty starts cold, and SIGTERM leaves nothing behind (warm ones too).
#[tokio::test(flavor = "multi_thread")]
async fn warm_pool_serves_a_start_and_refills() {
    let _serial = SERIAL.lock().await;
    check_warm_pool("begin_frame").await;
}

/// The same on the x11 backend, whose warm worker also holds its X server: the first egress
/// records from that very screen.
#[tokio::test(flavor = "multi_thread")]
async fn x11_warm_pool_serves_a_start_and_refills() {
    let _serial = SERIAL.lock().await;
    check_warm_pool("x11").await;
}

async fn check_warm_pool(backend: &str) {
    // A refill well after the second start, so that one finds the pool empty.
    let mut server =
        Server::start_with_config(&format!("capture: {{backend: {backend}}}\npool: {{size: 1, refill_delay_ms: 8000}}\n")).await;
    let wait_browsers = |n: usize| {
        let server = &server;
        async move {
            for _ in 0..250 {
                let b = server.chromium_browsers();
                if b.len() == n {
                    return b;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("expected {n} browsers, have {:?}", server.chromium_browsers());
        }
    };
    let warm = wait_browsers(1).await;
    assert!(server.workers().len() == 1, "one warm worker waits: {:?}", server.workers());
    let warm_screens = server.x_servers();
    assert_eq!(warm_screens.len(), usize::from(backend == "x11"), "{backend}: X servers of the warm worker");

    let first = server.start_egress(json!({"url": server.page("demo/animated.html"), "segment_outputs": [{}]})).await;
    server.wait_status(&first, "EGRESS_ACTIVE", 20 * S).await;
    // The pool refills only 8 s after a start: this one finds it empty.
    let second = server.start_egress(json!({"url": server.page("demo/animated.html"), "segment_outputs": [{}]})).await;
    server.wait_status(&second, "EGRESS_ACTIVE", 20 * S).await;
    let log = strip_ansi(&std::fs::read_to_string(server.tmp.path().join("serve.log")).unwrap());
    let started: Vec<&str> = log.lines().filter(|l| l.contains("worker started") && l.contains("warm=")).collect();
    assert!(started.iter().any(|l| l.contains(&first) && l.contains("warm=true")), "first egress warm: {started:#?}");
    assert!(started.iter().any(|l| l.contains(&second) && l.contains("warm=false")), "second egress cold: {started:#?}");
    let running = server.chromium_browsers();
    assert!(running.contains(&warm[0]), "the warm browser {} runs the first egress: {running:?}", warm[0]);
    if backend == "x11" {
        let screens = server.x_servers();
        assert!(warm_screens.iter().all(|x| screens.contains(x)) && screens.len() == 2, "the warm screen and a cold one: {screens:?}");
    }
    // Both egresses' browsers, then the refilled warm one.
    let refilled = wait_browsers(3).await;
    tokio::time::sleep(2 * S).await;
    for id in [&first, &second] {
        let done = server.stop(id, "EGRESS_COMPLETE").await;
        let probe = ffprobe(done["segmentResults"][0]["playlistLocation"].as_str().unwrap());
        let (frames, duration) = frames_and_duration(&probe);
        assert!(
            duration > 2.0 && (frames / duration - 30.0).abs() <= 1.0,
            "{id}: {frames} frames in {duration:.2} s ({})",
            stream_summary(&probe)
        );
    }
    let left = wait_browsers(1).await;
    assert!(refilled.contains(&left[0]) && !running.contains(&left[0]), "the refilled browser waits: {left:?}");
    let status = server.terminate(30 * S);
    assert!(status.success(), "serve exit {status}");
    server.assert_no_leftovers(10 * S).await;
}

/// Issue 5 (5): `auto` picks x264 on a machine with no hardware encoder; asking for a
/// hardware encoder this machine lacks stops the service at start with a clear error, rather
/// than failing each egress (or silently falling back).
#[tokio::test(flavor = "multi_thread")]
async fn encoder_choice_is_resolved_at_start() {
    let _serial = SERIAL.lock().await;
    let server = Server::start().await;
    let log = strip_ansi(&std::fs::read_to_string(server.tmp.path().join("serve.log")).unwrap());
    assert!(log.lines().any(|l| l.contains("video encoder") && l.contains("configured=Auto") && l.contains("encoder=X264")), "{log}");
    drop(server);

    let dir = tempfile::tempdir().unwrap();
    for (choice, needs) in [("vaapi", "vaapih264enc"), ("nvenc", "nvh264enc")] {
        let config = dir.path().join(format!("{choice}.yaml"));
        std::fs::write(&config, format!("encoder: {{video: {choice}}}\n")).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_roomcast"))
            .args(["--config", &config.display().to_string(), "serve", "--bind", &format!("127.0.0.1:{}", free_port())])
            .env("TMPDIR", dir.path())
            .env("ROOMCAST_OUTPUT_DIR", dir.path().join("out"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{choice}: serve must not start without {needs}");
        assert!(stderr.contains(needs) && stderr.contains(&format!("encoder.video is {choice}")), "{choice}: {stderr}");
    }
    // A bad preset is refused when the config is read.
    let config = dir.path().join("preset.yaml");
    std::fs::write(&config, "encoder: {x264_preset: warp}\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .args(["--config", &config.display().to_string(), "serve", "--bind", &format!("127.0.0.1:{}", free_port())])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("x264_preset \"warp\""), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Issue 5 (2): a request may pick its capture backend with the `roomcast-capture` header
/// (LiveKit's request has no field for it); a bad value is `invalid_argument`, and no browser
/// starts for it.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_picks_its_capture_backend_by_header() {
    let _serial = SERIAL.lock().await;
    let server = Server::start().await;
    let body = json!({"url": server.page("demo/animated.html"), "segment_outputs": [{}], "video_only": true}).to_string();
    let start = |capture: &'static str| {
        let (server, body) = (&server, body.clone());
        async move {
            let resp = server
                .http()
                .post(format!("{}/twirp/livekit.Egress/StartWebEgress", server.url))
                .header("Authorization", format!("Bearer {}", token(true)))
                .header("Content-Type", "application/json")
                .header("roomcast-capture", capture)
                .body(body)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (code, err) = start("vnc").await;
    assert_eq!(code, 400, "{err}");
    assert_eq!(err["code"], "invalid_argument");
    assert!(err["msg"].as_str().unwrap().contains("use begin_frame, screencast or x11"), "{err}");
    assert!(server.chromium_pids().is_empty(), "no browser for a refused request");

    let (code, info) = start("screencast").await;
    assert_eq!(code, 200, "{info}");
    let id = info["egressId"].as_str().unwrap().to_string();
    server.wait_status(&id, "EGRESS_ACTIVE", 20 * S).await;
    let browsers = server.chromium_browsers();
    let cmd = String::from_utf8_lossy(&std::fs::read(format!("/proc/{}/cmdline", browsers[0])).unwrap()).replace('\0', " ");
    assert!(cmd.contains("--headless=new") && !cmd.contains("headless-shell"), "the header's backend, not the default: {cmd}");
    assert!(server.x_servers().is_empty(), "no X server for a CDP backend");
    server.stop(&id, "EGRESS_COMPLETE").await;
    server.assert_no_leftovers(10 * S).await;
}

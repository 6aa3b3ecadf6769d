//! Room composite end to end with a real SFU: four publishers in a real Chromium (each a solid
//! colour and a tone) and a roomcast room-composite egress to LL-HLS through our template's
//! adapter for that SFU. Everything is judged from the decoded output: tiles, layout changes,
//! a publisher leaving, the room's sound, the room's end.
//!
//! Both SFUs are real and started here, each in a network namespace of its own: Debian's Janus
//! with the VideoRoom configuration it ships (numeric room 1234), and livekit-server built from
//! its Go module by scripts/install-deps.sh.

mod common;

use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use common::janus::{Janus, DEFAULT_ROOM};
use common::livekit::LiveKit;
use common::*;
use livekit_api::access_token::{AccessToken, VideoGrants};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

const S: Duration = Duration::from_secs(1);
/// The LiveKit room's name (Janus's is its default configuration's, DEFAULT_ROOM).
const LK_ROOM: &str = "rc-room";

struct Publisher {
    name: &'static str,
    rgb: [u8; 3],
    freq: f64,
}

const PUBLISHERS: [Publisher; 4] = [
    Publisher { name: "Red", rgb: [0xe6, 0x28, 0x28], freq: 440.0 },
    Publisher { name: "Green", rgb: [0x28, 0xc8, 0x3c], freq: 660.0 },
    Publisher { name: "Blue", rgb: [0x28, 0x50, 0xe6], freq: 880.0 },
    Publisher { name: "Yellow", rgb: [0xe6, 0xc8, 0x28], freq: 1100.0 },
];

/// The room's SFU, as the test needs it.
enum Sfu {
    Janus(Janus),
    LiveKit(LiveKit),
}

impl Sfu {
    fn url(&self) -> &str {
        match self {
            Sfu::Janus(j) => &j.ws_url,
            Sfu::LiveKit(lk) => &lk.url,
        }
    }

    fn room(&self) -> &'static str {
        match self {
            Sfu::Janus(_) => DEFAULT_ROOM,
            Sfu::LiveKit(_) => LK_ROOM,
        }
    }

    /// roomcast's config for this SFU.
    fn config(&self) -> String {
        match self {
            Sfu::Janus(j) => format!("room:\n  sfu: janus\n  url: {}\n  start_timeout_secs: 30\n", j.ws_url),
            Sfu::LiveKit(lk) => format!(
                "room:\n  sfu: livekit\n  url: {}\n  api_key: {}\n  api_secret: {}\n  start_timeout_secs: 30\n",
                lk.url, lk.key, lk.secret
            ),
        }
    }

    /// What publisher `p` needs to join: for LiveKit, a token with publish rights.
    fn publisher(&self, p: &Publisher) -> Value {
        let color = format!("#{:02x}{:02x}{:02x}", p.rgb[0], p.rgb[1], p.rgb[2]);
        let mut v = json!({"name": p.name, "color": color, "freq": p.freq});
        if let Sfu::LiveKit(lk) = self {
            let token = AccessToken::with_api_key(&lk.key, &lk.secret)
                .with_identity(p.name)
                .with_name(p.name)
                .with_grants(VideoGrants { room_join: true, room: LK_ROOM.into(), ..Default::default() })
                .to_jwt()
                .unwrap();
            v["token"] = json!(token);
        }
        v
    }

    /// Hosts the publishers' Chromium may resolve.
    fn hosts(&self) -> Vec<String> {
        url::Url::parse(self.url()).ok().and_then(|u| u.host_str().map(str::to_string)).into_iter().collect()
    }

    /// Ends the room: Janus stops; LiveKit deletes the room (RoomService), and its server is
    /// handed back to live until the egress has ended.
    async fn end_room(self) -> Option<LiveKit> {
        match self {
            Sfu::Janus(j) => {
                drop(j);
                None
            }
            Sfu::LiveKit(lk) => {
                livekit_api::services::room::RoomClient::with_api_key(&lk.http_url, &lk.key, &lk.secret)
                    .delete_room(LK_ROOM)
                    .await
                    .expect("DeleteRoom");
                Some(lk)
            }
        }
    }
}

/// The publishers' browser (tests/node/publishers.mjs), driven over its stdio.
struct Publishers {
    child: Child,
    stdin: Option<ChildStdin>,
    events: tokio::sync::mpsc::UnboundedReceiver<Value>,
}

impl Publishers {
    fn start(server: &Server, sfu: &Sfu, publishers: &[Publisher]) -> Self {
        let cfg = json!({
            "templates": format!("{}/templates", server.url),
            "sfu": if matches!(sfu, Sfu::Janus(_)) { "janus" } else { "livekit" },
            "url": sfu.url(),
            "room": sfu.room(),
            "exclude": sfu.hosts(),
            "publishers": publishers.iter().map(|p| sfu.publisher(p)).collect::<Vec<_>>(),
        });
        let mut child = Command::new("node")
            .arg(repo().join("tests/node/publishers.mjs"))
            .arg(cfg.to_string())
            .current_dir(repo().join("tests/node"))
            .env("TMPDIR", server.tmp.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node (apt install nodejs)");
        let stdin = child.stdin.take();
        let stdout = tokio::process::ChildStdout::from_std(child.stdout.take().unwrap()).unwrap();
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&l) {
                    if v["event"] == "log" {
                        eprintln!("publisher: {v}");
                    }
                    let _ = tx.send(v);
                }
            }
        });
        Publishers { child, stdin, events }
    }

    async fn expect(&mut self, event: &str, within: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let ev = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("publishers: no {event} within {within:?}"))
                .expect("publishers' browser ended");
            assert_ne!(ev["event"], "error", "publisher failed: {ev}");
            if ev["event"] == event {
                return ev;
            }
        }
    }

    fn send(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }
}

impl Drop for Publishers {
    fn drop(&mut self) {
        // EOF on stdin: the script closes its browser and exits; then make sure by PID.
        drop(self.stdin.take());
        reap(&mut self.child, 10 * S);
    }
}

const W: usize = 64;
const H: usize = 36;

/// The last frame of a segment, scaled to 64×36, as RGB pixels.
fn last_frame(file: &std::path::Path) -> Vec<[u8; 3]> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-vf", &format!("scale={W}:{H}:flags=neighbor"), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("ffmpeg");
    assert!(out.status.success() && out.stdout.len() >= W * H * 3, "ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout[out.stdout.len() - W * H * 3..].chunks(3).map(|c| [c[0], c[1], c[2]]).collect()
}

/// Share of the picture showing each publisher's colour.
fn shares(pixels: &[[u8; 3]]) -> [f64; 4] {
    let mut n = [0usize; 4];
    for p in pixels {
        for (i, publisher) in PUBLISHERS.iter().enumerate() {
            let d: i32 = p.iter().zip(publisher.rgb).map(|(a, b)| (*a as i32 - b as i32).abs()).sum();
            if d < 90 {
                n[i] += 1;
            }
        }
    }
    n.map(|c| c as f64 / pixels.len() as f64)
}

async fn picture(server: &Server, id: &str) -> [f64; 4] {
    shares(&last_frame(&newest_segment(server, id).await))
}

/// Polls the output until its picture satisfies `ok`.
async fn wait_picture(server: &Server, id: &str, what: &str, within: Duration, ok: impl Fn(&[f64; 4]) -> bool) -> [f64; 4] {
    let deadline = Instant::now() + within;
    loop {
        let s = picture(server, id).await;
        if ok(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what} within {within:?}: colour shares {s:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Energy of one frequency in mono samples (Goertzel), per sample.
fn tone_power(samples: &[f64], rate: f64, freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / rate;
    let (mut s1, mut s2) = (0.0, 0.0);
    for x in samples {
        let s0 = x + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2) / samples.len() as f64
}

fn audio(file: &std::path::Path) -> Vec<f64> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-vn", "-ac", "1", "-ar", "16000", "-f", "s16le", "-"])
        .output()
        .expect("ffmpeg");
    assert!(out.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout.chunks(2).map(|b| i16::from_le_bytes([b[0], b[1]]) as f64 / 32768.0).collect()
}

/// Issue 6 (5): four publishers in a Janus room are four tiles in the output; UpdateLayout to
/// speaker changes the picture without a restart; a publisher who leaves disappears; the
/// room's sound (every publisher's tone) is in the output; when the room ends (here: the SFU
/// stops) the egress completes.
#[tokio::test(flavor = "multi_thread")]
async fn janus_room_composite_to_llhls() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    room_composite(Sfu::Janus(Janus::start_default(dir.path()))).await;
}

/// Issue 16 (2): the same against a real livekit-server, through our template's LiveKit adapter
/// (UpdateLayout goes through the recorder's metadata, set with RoomService; the room ends
/// when it is deleted).
#[tokio::test(flavor = "multi_thread")]
async fn livekit_room_composite_to_llhls() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    room_composite(Sfu::LiveKit(LiveKit::start(dir.path()))).await;
}

/// `publishers` in the room, published; then a grid room composite to LL-HLS, ACTIVE with two
/// segments. Returns the publishers' browser and the egress id.
async fn publish_and_record(server: &Server, sfu: &Sfu, publishers: &[Publisher]) -> (Publishers, String) {
    let mut browser = Publishers::start(server, sfu, publishers);
    for _ in publishers {
        browser.expect("published", 60 * S).await;
    }
    let (code, info) =
        server.twirp("StartRoomCompositeEgress", json!({"room_name": sfu.room(), "layout": "grid", "segment_outputs": [{}]})).await;
    assert_eq!(code, 200, "{info}");
    let id = info["egressId"].as_str().unwrap().to_string();
    server.wait_status(&id, "EGRESS_ACTIVE", 40 * S).await;
    server.wait_segments(&id, 2, 20 * S).await;
    (browser, id)
}

async fn room_composite(sfu: Sfu) {
    let server = Server::start_with_config(&sfu.config()).await;
    let (mut publishers, id) = publish_and_record(&server, &sfu, &PUBLISHERS).await;

    // Grid: every publisher has a quarter of the picture (less the gaps and name tags).
    let grid = wait_picture(&server, &id, "four tiles", 20 * S, |s| s.iter().all(|c| *c > 0.15)).await;
    eprintln!("grid shares {grid:?}");

    let (code, updated) = server.twirp("UpdateLayout", json!({"egress_id": id, "layout": "speaker"})).await;
    assert_eq!(code, 200, "{updated}");
    // Speaker: one tile on the stage, the others as thumbnails in a strip.
    let speaker = wait_picture(&server, &id, "a speaker layout", 15 * S, |s| {
        let big = s.iter().cloned().fold(0.0, f64::max);
        big > 0.4 && s.iter().filter(|c| **c > 0.003 && **c < 0.12).count() == 3
    })
    .await;
    eprintln!("speaker shares {speaker:?}");
    assert_eq!(server.info(&id).await["status"], "EGRESS_ACTIVE", "no restart for a layout change");

    // Single speaker: one publisher fills the picture, nobody else is seen.
    let (code, updated) = server.twirp("UpdateLayout", json!({"egress_id": id, "layout": "single-speaker"})).await;
    assert_eq!(code, 200, "{updated}");
    let single = wait_picture(&server, &id, "a single-speaker layout", 15 * S, |s| {
        let big = s.iter().cloned().fold(0.0, f64::max);
        big > 0.6 && s.iter().filter(|c| **c > 0.002).count() == 1
    })
    .await;
    eprintln!("single-speaker shares {single:?}");

    // Back to the grid, then Yellow leaves: three tiles, and no yellow anywhere.
    server.twirp("UpdateLayout", json!({"egress_id": id, "layout": "grid"})).await;
    wait_picture(&server, &id, "four tiles again", 15 * S, |s| s.iter().all(|c| *c > 0.15)).await;
    publishers.send("leave 3");
    publishers.expect("left", 20 * S).await;
    let after = wait_picture(&server, &id, "the leaver's tile gone", 20 * S, |s| s[3] < 0.002 && s[..3].iter().all(|c| *c > 0.1)).await;
    eprintln!("after leaving {after:?}");

    // The sound: each remaining publisher's tone stands well above frequencies nobody plays.
    let seg = newest_segment(&server, &id).await;
    let samples = audio(&seg);
    assert!(samples.len() > 16_000, "{} samples", samples.len());
    let floor = [500.0, 770.0, 1300.0].map(|f| tone_power(&samples, 16_000.0, f)).into_iter().fold(0.0, f64::max);
    for p in &PUBLISHERS[..3] {
        let power = tone_power(&samples, 16_000.0, p.freq);
        assert!(power > 20.0 * floor.max(1e-9), "{}'s {} Hz tone: power {power:.2e} vs floor {floor:.2e}", p.name, p.freq);
    }

    // The room ends (Janus stops; LiveKit deletes the room): the template signals
    // END_RECORDING and the egress completes with everything recorded so far in a closed
    // playlist.
    drop(publishers);
    let _server_until_the_end = sfu.end_room().await;
    let done = server.wait_status(&id, "EGRESS_COMPLETE", 30 * S).await;
    assert_eq!(done["details"], "Source closed", "{done}");
    assert!(done["segmentResults"][0]["segmentCount"].as_str().unwrap().parse::<i64>().unwrap() >= 5, "{done}");
    let (_, playlist) = server.get_text(done["segmentResults"][0]["playlistLocation"].as_str().unwrap()).await;
    assert!(playlist.trim_end().ends_with("#EXT-X-ENDLIST"), "{playlist}");
    // The layout changes were live: one continuous recording, no gap or discontinuity.
    assert!(!playlist.contains("#EXT-X-DISCONTINUITY") && !playlist.contains("#EXT-X-GAP"), "{playlist}");
    server.assert_no_leftovers(10 * S).await;
}

/// Issue 16 (3): a customer's template, written as LiveKit's docs have one written
/// (`@livekit/egress-sdk` + livekit-client, tests/customer/), runs unchanged as
/// `custom_base_url` in a real LiveKit room: its START_RECORDING starts the egress, a layout
/// change reaches it through the recorder's metadata (the SDK's `onLayoutChanged`), and its
/// END_RECORDING (the SDK's, on the room's end) completes the egress.
#[tokio::test(flavor = "multi_thread")]
async fn livekit_customer_template() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let sfu = Sfu::LiveKit(LiveKit::start(dir.path()));
    let server = Server::start_with_config(&sfu.config()).await;
    let two = &PUBLISHERS[..2];
    let mut publishers = Publishers::start(&server, &sfu, two);
    for _ in two {
        publishers.expect("published", 60 * S).await;
    }
    let template = server.page("customer/index.html");
    let (code, info) = server
        .twirp(
            "StartRoomCompositeEgress",
            json!({"room_name": LK_ROOM, "layout": "grid", "custom_base_url": template, "segment_outputs": [{}]}),
        )
        .await;
    assert_eq!(code, 200, "{info}");
    let id = info["egressId"].as_str().unwrap().to_string();
    server.wait_status(&id, "EGRESS_ACTIVE", 40 * S).await;
    server.wait_segments(&id, 2, 20 * S).await;

    // Its grid: the two cameras side by side, each about half of the picture.
    let grid = wait_picture(&server, &id, "two cameras side by side", 20 * S, |s| s[0] > 0.35 && s[1] > 0.35).await;
    eprintln!("customer grid shares {grid:?}");
    // Its "speaker": the first participant (Green sorts before Red) alone.
    let (code, updated) = server.twirp("UpdateLayout", json!({"egress_id": id, "layout": "speaker"})).await;
    assert_eq!(code, 200, "{updated}");
    let speaker = wait_picture(&server, &id, "the customer's speaker layout", 15 * S, |s| s[1] > 0.9 && s[0] < 0.002).await;
    eprintln!("customer speaker shares {speaker:?}");
    assert_eq!(server.info(&id).await["status"], "EGRESS_ACTIVE", "no restart for a layout change");

    drop(publishers);
    let _server_until_the_end = sfu.end_room().await;
    let done = server.wait_status(&id, "EGRESS_COMPLETE", 30 * S).await;
    assert_eq!(done["details"], "Source closed", "{done}");
    server.assert_no_leftovers(10 * S).await;
}

/// Issue 6 (6) and 16 (6): Janus as it ships (numeric room ids) and with `string_ids`; a room
/// joins by the token's `video.room` typed as that Janus types ids. A room the SFU does not
/// have, an id of the wrong type, and an SFU that does not answer end FAILED with the
/// template's reason within the start timeout, and their Chromium is ended.
#[tokio::test(flavor = "multi_thread")]
async fn janus_room_ids_and_failures() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let numeric = Janus::start_default(&dir.path().join("numeric"));
    let named = Janus::start_named(&dir.path().join("named"), &["rc-room", "777"]);
    let nobody = numeric.netns.ns_ip.rsplit_once('.').map(|(net, _)| format!("ws://{net}.9:8188")).unwrap();
    // (SFU, room, Ok(()) to record or Err(what the error says))
    let cases: [(&str, &str, Result<(), &str>); 7] = [
        (&numeric.ws_url, DEFAULT_ROOM, Ok(())),
        (&numeric.ws_url, "rc-room", Err("must be a positive integer")),
        (&numeric.ws_url, "4321", Err("Janus room \"4321\" does not exist")),
        (&named.ws_url, "rc-room", Ok(())),
        (&named.ws_url, "777", Ok(())),
        (&named.ws_url, "888", Err("names its rooms with strings")),
        (&nobody, DEFAULT_ROOM, Err("template error")),
    ];
    for (url, room, expected) in cases {
        let server = Server::start_with_config(&format!("room:\n  sfu: janus\n  url: {url}\n  start_timeout_secs: 20\n")).await;
        let since = Instant::now();
        let (code, info) = server.twirp("StartRoomCompositeEgress", json!({"room_name": room, "segment_outputs": [{}]})).await;
        assert_eq!(code, 200, "{info}");
        let id = info["egressId"].as_str().unwrap().to_string();
        match expected {
            Ok(()) => {
                // An empty room records (its picture is the empty layout) until stopped.
                server.wait_status(&id, "EGRESS_ACTIVE", 30 * S).await;
                eprintln!("{url} {room}: ACTIVE after {:?}", since.elapsed());
                let (code, stopped) = server.twirp("StopEgress", json!({"egress_id": id})).await;
                assert_eq!(code, 200, "{stopped}");
                assert_eq!(server.wait_ended(&id, 30 * S).await["status"], "EGRESS_COMPLETE");
            }
            Err(what) => {
                let end = server.wait_ended(&id, 35 * S).await;
                eprintln!("{url} {room}: {} after {:?}", end["error"], since.elapsed());
                assert_eq!(end["status"], "EGRESS_FAILED", "{end}");
                let error = end["error"].as_str().unwrap();
                assert!(error.contains("template error") && error.contains(what), "{room} at {url}: {end}");
            }
        }
        server.assert_no_leftovers(10 * S).await;
    }
}

/// Every frame of a recording, scaled to 64×36: each publisher's share of the picture, with
/// its presentation time.
fn all_frames(file: &std::path::Path) -> Vec<(f64, [f64; 4])> {
    let pts = clock::frame_pts(file.to_str().unwrap());
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-fps_mode", "passthrough", "-vf", &format!("scale={W}:{H}:flags=neighbor"), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("ffmpeg");
    assert!(out.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
    let shares: Vec<[f64; 4]> =
        out.stdout.chunks_exact(W * H * 3).map(|f| shares(&f.chunks(3).map(|c| [c[0], c[1], c[2]]).collect::<Vec<_>>())).collect();
    assert_eq!(shares.len(), pts.len());
    pts.into_iter().zip(shares).collect()
}

/// The egress's Chromium (not the publishers' browser, which the harness also sees): ours
/// sends everything through the worker's proxy.
fn egress_browsers(server: &Server) -> Vec<i32> {
    server
        .chromium_browsers()
        .into_iter()
        .filter(|pid| {
            String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()).contains("--proxy-server=")
        })
        .collect()
}

/// Issue 17 (5): a room composite's Chromium killed mid-egress is relaunched; its template
/// joins the room again, in the layout UpdateLayout last set (not the request's), and the
/// recording goes on as one timeline: the publishers are off the picture for at most 5 s.
/// For each capture backend.
#[tokio::test(flavor = "multi_thread")]
async fn janus_room_composite_survives_a_chromium_kill_x11() {
    let _serial = SERIAL.lock().await;
    room_survives_a_chromium_kill("x11").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn janus_room_composite_survives_a_chromium_kill_screencast() {
    let _serial = SERIAL.lock().await;
    room_survives_a_chromium_kill("screencast").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn janus_room_composite_survives_a_chromium_kill_begin_frame() {
    let _serial = SERIAL.lock().await;
    room_survives_a_chromium_kill("begin_frame").await;
}

async fn room_survives_a_chromium_kill(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let sfu = Sfu::Janus(Janus::start_default(dir.path()));
    let server = Server::start_with_config(&format!("{}capture: {{backend: {backend}}}\n", sfu.config())).await;
    let (publishers, id) = publish_and_record(&server, &sfu, &PUBLISHERS[..2]).await;
    let (code, updated) = server.twirp("UpdateLayout", json!({"egress_id": id, "layout": "single-speaker"})).await;
    assert_eq!(code, 200, "{updated}");
    let single = |s: &[f64; 4]| s[..2].iter().cloned().fold(0.0, f64::max) > 0.6 && s[..2].iter().filter(|c| **c > 0.002).count() == 1;
    wait_picture(&server, &id, "a single-speaker layout", 15 * S, single).await;

    let browsers = egress_browsers(&server);
    assert_eq!(browsers.len(), 1, "{browsers:?}");
    unsafe { libc::kill(browsers[0], libc::SIGKILL) };
    let deadline = Instant::now() + 20 * S;
    while egress_browsers(&server).iter().all(|b| *b == browsers[0]) {
        assert!(Instant::now() < deadline, "no relaunched browser");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Back in the room, in the layout last set.
    let segments = server.info(&id).await["segmentResults"][0]["segmentCount"].as_str().unwrap().parse::<i64>().unwrap();
    server.wait_segments(&id, segments + 3, 20 * S).await;
    wait_picture(&server, &id, "the single-speaker layout after the relaunch", 15 * S, single).await;
    // (The CDP backends hold their last picture through a relaunch, so that alone proves little
    // there: the grid shows both publishers only if the new page is live in the room.)
    server.twirp("UpdateLayout", json!({"egress_id": id, "layout": "grid"})).await;
    wait_picture(&server, &id, "both tiles in the new page", 15 * S, |s| s[0] > 0.15 && s[1] > 0.15).await;
    let info = server.info(&id).await;
    assert!(info["details"].as_str().unwrap_or_default().contains("chromium restarted 1 time(s)"), "{info}");

    let done = server.stop(&id, "EGRESS_COMPLETE").await;
    drop(publishers);
    let playlist = local_playlist(&server, &id, "playlist.m3u8");
    let text = std::fs::read_to_string(&playlist).unwrap();
    assert!(text.trim_end().ends_with("#EXT-X-ENDLIST") && !text.contains("#EXT-X-DISCONTINUITY"), "{done}\n{text}");
    let frames = all_frames(&playlist);
    for w in frames.windows(2) {
        assert!((w[1].0 - w[0].0 - 1.0 / 30.0).abs() < 0.002, "frame at {:.3} s follows one at {:.3} s", w[1].0, w[0].0);
    }
    // From the first frame showing the room to the last, the longest run without it.
    let seen: Vec<f64> = frames.iter().filter(|(_, s)| s[0] + s[1] > 0.2).map(|(t, _)| *t).collect();
    let gap = seen.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    println!("{backend} room composite: {} frames, the room off the picture for at most {gap:.2} s", frames.len());
    assert!(gap <= 5.0, "the room was off the picture for {gap:.2} s");
    server.assert_no_leftovers(10 * S).await;
}

//! Test harness: runs the real `roomcast serve` binary on a free loopback port with its own
//! output and temp folders, talks to it over HTTP, and finds the processes it started
//! (every child inherits the harness's TMPDIR, which is unique per server).

#![allow(dead_code)]

pub mod av;
pub mod clock;
pub mod janus;
pub mod livekit;
pub mod netns;
pub mod nginx;
pub mod pages;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use livekit_api::access_token::{AccessToken, VideoGrants};
use serde_json::{json, Value};

pub const KEY: &str = "test-key";
pub const SECRET: &str = "test-secret-that-is-long-enough";

/// End-to-end tests share two cores: run them one at a time even under a plain `cargo test`.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The harness's HTTP client. serve closes a connection that sends no request headers within
/// `http.header_read_timeout_secs` (10 s), idle keep-alive ones included; a client must not
/// reuse one that old, or its request races the close (IncompleteMessage).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().pool_idle_timeout(Duration::from_secs(5)).build().unwrap()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub struct Server {
    child: Option<Child>,
    pub url: String,
    /// Where `/metrics` is served (its own listener).
    pub metrics_url: String,
    pub tmp: tempfile::TempDir,
    pub out: PathBuf,
    http: reqwest::Client,
}

/// The tests' sandbox rule, added to every test config: Chromium itself resolves no name (its
/// page requests go through roomcast's proxy, which resolves them), so nothing it does sends
/// a DNS query out of this machine. Test configuration, never product behaviour.
pub const SANDBOX_RESOLVER_RULE: &str = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1";

/// `yaml` with [`SANDBOX_RESOLVER_RULE`] appended to `chromium.extra_flags` and, unless it
/// names its own, `network.nameservers` set to a loopback port nothing answers on: the names
/// the page proxy resolves (a test page's, Chromium's own background requests) get no answer
/// instead of a query leaving the machine.
pub fn sandboxed(yaml: &str) -> String {
    use serde_yaml::Value as Y;
    let mut doc: Y = serde_yaml::from_str(yaml).expect("test config is YAML");
    if doc.is_null() {
        doc = Y::Mapping(Default::default());
    }
    let root = doc.as_mapping_mut().expect("test config is a mapping");
    let chromium = root.entry(Y::from("chromium")).or_insert_with(|| Y::Mapping(Default::default()));
    let flags =
        chromium.as_mapping_mut().expect("chromium is a mapping").entry(Y::from("extra_flags")).or_insert_with(|| Y::Sequence(vec![]));
    flags.as_sequence_mut().expect("extra_flags is a list").push(Y::from(SANDBOX_RESOLVER_RULE));
    let network = root.entry(Y::from("network")).or_insert_with(|| Y::Mapping(Default::default()));
    let ns = network.as_mapping_mut().expect("network is a mapping").entry(Y::from("nameservers")).or_insert(Y::Null);
    if ns.is_null() {
        let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        *ns = Y::Sequence(vec![Y::from(format!("127.0.0.1:{port}"))]);
    }
    serde_yaml::to_string(&doc).unwrap()
}

impl Server {
    pub async fn start() -> Server {
        Self::start_with_config("{}\n").await
    }

    /// A server with this YAML as its config file (on top of the harness's environment).
    pub async fn start_with_config(yaml: &str) -> Server {
        Self::start_on(yaml, None).await
    }

    /// A server writing into `out` (another server's output folder, to restart on it), or into
    /// a folder of its own. The tests' pages and stream servers are on loopback, so the
    /// network policy is told to allow it (`ROOMCAST_NETWORK_ALLOW=127.0.0.1`).
    pub async fn start_on(yaml: &str, out: Option<&Path>) -> Server {
        Self::launch(yaml, out, Some("127.0.0.1")).await
    }

    /// A server with nothing added to its config's network policy (the policy's own tests).
    pub async fn start_with_policy(yaml: &str) -> Server {
        Self::launch(yaml, None, None).await
    }

    async fn launch(yaml: &str, out: Option<&Path>, allow: Option<&str>) -> Server {
        let tmp = tempfile::Builder::new().prefix("roomcast-test-").tempdir().unwrap();
        let config = tmp.path().join("roomcast.yaml");
        std::fs::write(&config, sandboxed(yaml)).unwrap();
        let out = out.map(Path::to_path_buf).unwrap_or_else(|| tmp.path().join("out"));
        let port = free_port();
        // The server's log goes to a file, shown when a test fails.
        let log = std::fs::File::create(tmp.path().join("serve.log")).unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let metrics_port = free_port();
        // An empty working directory: serve finds its templates in its own binary (issue 17.7).
        let cwd = tmp.path().join("cwd");
        std::fs::create_dir(&cwd).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_roomcast"));
        if let Some(allow) = allow {
            cmd.env("ROOMCAST_NETWORK_ALLOW", allow);
        }
        let child = cmd
            .current_dir(&cwd)
            .args(["--config", &config.display().to_string(), "serve", "--bind", &format!("127.0.0.1:{port}")])
            .env("LIVEKIT_API_KEY", KEY)
            .env("LIVEKIT_API_SECRET", SECRET)
            .env("ROOMCAST_OUTPUT_DIR", &out)
            .env("ROOMCAST_METRICS_BIND", format!("127.0.0.1:{metrics_port}"))
            .env("TMPDIR", tmp.path())
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info,chromiumoxide=error".into()))
            .stdin(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start roomcast serve");
        let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");
        let server = Server { child: Some(child), url, metrics_url, tmp, out, http: client() };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(r) = server.http.get(format!("{}/healthz", server.url)).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "roomcast serve did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// A page to egress: a test page (tests/pages/, served by the tests) or else one that
    /// production serves under /templates/ (the demo page, the room template).
    pub fn page(&self, path: &str) -> String {
        match pages::is_test_page(path) {
            true => format!("{}/{path}", pages::base()),
            false => format!("{}/templates/{path}", self.url),
        }
    }

    /// A Twirp call with JSON; returns the HTTP status and the body as JSON.
    pub async fn twirp_raw(&self, method: &str, body: &str, token: Option<&str>, content_type: &str) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}/twirp/livekit.Egress/{method}", self.url))
            .header("Content-Type", content_type)
            .body(body.to_string());
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let resp = req.send().await.expect("twirp request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn twirp(&self, method: &str, body: Value) -> (u16, Value) {
        self.twirp_raw(method, &body.to_string(), Some(&token(true)), "application/json").await
    }

    pub async fn start_web(&self, url: &str) -> String {
        self.start_egress(json!({"url": url, "segment_outputs": [{}]})).await
    }

    /// StartWebEgress with this request (answered 200); the new egress's id.
    pub async fn start_egress(&self, request: Value) -> String {
        let (status, info) = self.twirp("StartWebEgress", request).await;
        assert_eq!(status, 200, "StartWebEgress: {info}");
        info["egressId"].as_str().expect("egress id").to_string()
    }

    /// StopEgress (answered 200), then waits for the egress to end as `status`.
    pub async fn stop(&self, id: &str, status: &str) -> Value {
        let (code, info) = self.twirp("StopEgress", json!({"egress_id": id})).await;
        assert_eq!(code, 200, "StopEgress: {info}");
        self.wait_status(id, status, Duration::from_secs(20)).await
    }

    pub async fn info(&self, id: &str) -> Value {
        let (status, list) = self.twirp("ListEgress", json!({"egress_id": id})).await;
        assert_eq!(status, 200, "ListEgress: {list}");
        list["items"][0].clone()
    }

    /// Polls ListEgress until the egress reaches `status` (failing fast on an unexpected end).
    pub async fn wait_status(&self, id: &str, status: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let info = self.info(id).await;
            let now = info["status"].as_str().unwrap_or("EGRESS_STARTING");
            if now == status {
                return info;
            }
            let ended = ["EGRESS_COMPLETE", "EGRESS_FAILED", "EGRESS_ABORTED"].contains(&now);
            assert!(!ended, "egress {id} ended as {now} while waiting for {status}: {info}");
            assert!(Instant::now() < deadline, "egress {id} not {status} within {within:?}: {info}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Polls ListEgress until the egress has ended, however it ended.
    pub async fn wait_ended(&self, id: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let info = self.info(id).await;
            let s = &info["status"];
            // STARTING is the enum's zero, which protojson leaves out.
            if !(s.is_null() || s == "EGRESS_STARTING" || s == "EGRESS_ACTIVE" || s == "EGRESS_ENDING") {
                return info;
            }
            assert!(Instant::now() < deadline, "egress {id} not ended within {within:?}: {info}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn wait_segments(&self, id: &str, n: i64, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let info = self.info(id).await;
            let count = info["segmentResults"][0]["segmentCount"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0i64);
            if count >= n {
                return info;
            }
            assert!(Instant::now() < deadline, "egress {id} has {count} < {n} segments: {info}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub async fn get_text(&self, url: &str) -> (u16, String) {
        let r = self.http.get(url).send().await.expect("GET");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }

    /// Processes this server started, directly or not: they inherit its TMPDIR, and Chromium's
    /// (which overwrite their environment with their title) name a profile under it.
    pub fn descendants(&self, comm_prefix: &str) -> Vec<i32> {
        processes_marked_by(self.tmp.path())
            .into_iter()
            .filter(|(pid, comm)| *pid != self.pid() && comm.starts_with(comm_prefix))
            .map(|(pid, _)| pid)
            .collect()
    }

    pub fn chromium_pids(&self) -> Vec<i32> {
        self.descendants("chrom")
    }

    /// The main Chromium processes (not zygotes or renderers), one per egress.
    pub fn chromium_browsers(&self) -> Vec<i32> {
        self.chromium_pids()
            .into_iter()
            .filter(|pid| {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmd = String::from_utf8_lossy(&cmd);
                cmd.contains("--remote-debugging-pipe") && !cmd.contains("--type=")
            })
            .collect()
    }

    pub fn workers(&self) -> Vec<i32> {
        self.descendants("roomcast")
    }

    /// The egresses' private sound servers.
    pub fn sound_servers(&self) -> Vec<i32> {
        self.descendants("pulseaudio")
    }

    /// The x11 backend's private X servers.
    pub fn x_servers(&self) -> Vec<i32> {
        let mut pids = self.descendants("Xvfb");
        pids.extend(self.descendants("Xorg"));
        pids
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(&mut self, within: Duration) -> ExitStatus {
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        self.wait_exit(within)
    }

    /// Waits for serve to exit (killing it and failing the test if it does not).
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("server running");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("roomcast serve did not exit within {within:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL, as a crash or the OOM killer would: nothing gets to clean up.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("server running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Waits until none of the processes this server started is alive.
    pub async fn assert_no_leftovers(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let left: Vec<i32> =
                self.chromium_pids().into_iter().chain(self.workers()).chain(self.sound_servers()).chain(self.x_servers()).collect();
            if left.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "processes left behind: {left:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.tmp.path().join("serve.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("---- roomcast serve log (last 60 lines) ----");
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
        if self.child.is_some() {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.terminate(Duration::from_secs(30))));
        }
        // Never leave anything behind, even when a test failed half-way.
        for pid in self.chromium_pids().into_iter().chain(self.workers()).chain(self.sound_servers()).chain(self.x_servers()) {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// (pid, comm) of live processes whose environment has TMPDIR=`dir` or whose command line
/// names a path under `dir`, and of their descendants (the children of Chromium's headless
/// shell name no profile and overwrite their environment).
pub fn processes_marked_by(dir: &Path) -> Vec<(i32, String)> {
    let env_needle = format!("TMPDIR={}", dir.display()).into_bytes();
    let path_needle = dir.display().to_string().into_bytes();
    let Ok(entries) = std::fs::read_dir("/proc") else { return vec![] };
    // (pid, parent, comm, marked) of every live process.
    let mut all = vec![];
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let mut fields = stat.rsplit(") ").next().unwrap_or("").split_whitespace();
        // Zombies are dead already; they only wait for their parent to reap them.
        let state = fields.next().unwrap_or("?");
        let parent: i32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if state == "Z" || state == "X" || stat.is_empty() {
            continue;
        }
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let by_env = env.split(|b| *b == 0).any(|kv| kv == env_needle.as_slice());
        let by_cmd = cmd.windows(path_needle.len().max(1)).any(|w| w == path_needle.as_slice());
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string();
        all.push((pid, parent, comm, by_env || by_cmd));
    }
    let mut marked: std::collections::HashSet<i32> = all.iter().filter(|p| p.3).map(|p| p.0).collect();
    loop {
        let more: Vec<i32> = all.iter().filter(|p| marked.contains(&p.1) && !marked.contains(&p.0)).map(|p| p.0).collect();
        if more.is_empty() {
            break;
        }
        marked.extend(more);
    }
    all.into_iter().filter(|p| marked.contains(&p.0)).map(|(pid, _, comm, _)| (pid, comm)).collect()
}

pub fn token(record: bool) -> String {
    token_with(SECRET, record)
}

pub fn token_with(secret: &str, record: bool) -> String {
    AccessToken::with_api_key(KEY, secret)
        .with_grants(VideoGrants { room_record: record, room_list: !record, ..Default::default() })
        .to_jwt()
        .unwrap()
}

/// ffprobe's JSON for a playlist or file: streams (with counted frames) and format.
pub fn ffprobe(input: &str) -> Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-show_streams", "-show_format", "-of", "json", input])
        .output()
        .expect("ffprobe (apt install ffmpeg)");
    assert!(out.status.success(), "ffprobe {input}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Decoded video frames and the container's duration (s) of an ffprobe result.
pub fn frames_and_duration(probe: &Value) -> (f64, f64) {
    let frames: f64 = video_stream(probe)["nb_read_frames"].as_str().unwrap().parse().unwrap();
    let duration: f64 = probe["format"]["duration"].as_str().unwrap().parse().unwrap();
    (frames, duration)
}

/// Each stream's type, start, duration and frame count, for failure messages.
pub fn stream_summary(probe: &Value) -> String {
    let streams = probe["streams"].as_array().cloned().unwrap_or_default();
    let each: Vec<String> = streams
        .iter()
        .map(|s| format!("{} start {} duration {} frames {}", s["codec_type"], s["start_time"], s["duration"], s["nb_read_frames"]))
        .collect();
    format!("format start {} duration {}; {}", probe["format"]["start_time"], probe["format"]["duration"], each.join("; "))
}

pub fn video_stream(probe: &Value) -> Value {
    probe["streams"].as_array().unwrap().iter().find(|s| s["codec_type"] == "video").cloned().expect("a video stream")
}

pub fn local_playlist(server: &Server, id: &str, name: &str) -> PathBuf {
    server.out.join(id).join(name)
}

/// The newest complete segment of an egress's live playlist, with its init segment, as one
/// playable fMP4 file (fetched from the origin like any player would).
pub async fn newest_segment(server: &Server, id: &str) -> PathBuf {
    let base = format!("{}/hls/{id}", server.url);
    let (code, live) = server.get_text(&format!("{base}/live.m3u8")).await;
    assert_eq!(code, 200, "{live}");
    let uri = live.lines().rev().find(|l| !l.starts_with('#') && !l.trim().is_empty()).expect("a segment").trim().to_string();
    let mut bytes = server.http().get(format!("{base}/init.mp4")).send().await.unwrap().bytes().await.unwrap().to_vec();
    bytes.extend(server.http().get(format!("{base}/{uri}")).send().await.unwrap().bytes().await.unwrap());
    let path = server.tmp.path().join("newest-segment.mp4");
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Waits up to `within` for a child we asked to exit, then kills it; reaped either way.
pub fn reap(child: &mut Child, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// LiveKit's official server SDKs as the tests' clients.
#[derive(Clone, Copy, Debug)]
pub enum Sdk {
    /// A script of tests/node/ (livekit-server-sdk, pinned by its lock file).
    Node,
    /// A script of tests/python/ in the virtualenv install-deps makes (livekit-api, pinned).
    Python,
}

/// Runs an SDK script with `args`; it must succeed, and its last stdout line is its answer, as
/// JSON. `context` adds to the failure message (a server's log, say).
pub fn sdk_json(sdk: Sdk, script: &str, args: &[&str], context: impl Fn() -> String) -> Value {
    let (program, dir) = match sdk {
        Sdk::Node => (PathBuf::from("node"), repo().join("tests/node")),
        Sdk::Python => (repo().join(".deps/py/bin/python"), repo().join("tests/python")),
    };
    assert!(program.components().count() == 1 || program.exists(), "{} is missing: run scripts/install-deps.sh", program.display());
    let out = Command::new(&program).arg(dir.join(script)).args(args).current_dir(&dir).output().expect("SDK script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{script} {args:?} failed:\n{stdout}\n{}\n{}", String::from_utf8_lossy(&out.stderr), context());
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{script} {args:?}: {e}: {stdout}{}", String::from_utf8_lossy(&out.stderr)))
}

/// The TCP ports the processes `pids` listen on (IPv4 and IPv6), from their sockets' inodes in
/// /proc/net/tcp{,6}.
pub fn listening_tcp_ports(pids: &[i32]) -> Vec<u16> {
    let mut inodes = std::collections::HashSet::new();
    for pid in pids {
        for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).into_iter().flatten().flatten() {
            if let Some(inode) =
                std::fs::read_link(fd.path()).ok().and_then(|t| t.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_string))
            {
                inodes.insert(inode);
            }
        }
    }
    let mut ports = vec![];
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table).unwrap_or_default().lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address, rem_address, st (0A = LISTEN), ..., inode is the 10th field.
            if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                if let Some(port) = f[1].rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok()) {
                    ports.push(port);
                }
            }
        }
    }
    ports
}

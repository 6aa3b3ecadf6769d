//! Origin load benchmark (issue 3, 7b): N concurrent LL-HLS clients on loopback against the
//! real `roomcast serve`, each doing what hls.js does in low-latency mode: a blocking playlist
//! reload for the next part (`_HLS_msn`/`_HLS_part`), then a fetch of that part, again and
//! again. The stream is a real egress (Chromium + x264) of a static page, the cheapest source.
//!
//! Reported per N: the CPU of the serve process alone (the origin; the egress's worker and
//! Chromium are separate processes and not counted), requests per second, and the delay from a
//! part's publication (the `roomcast-published-us` header the origin sets from the instant the
//! writer published the part) to the client having the whole response, p50/p99, for the
//! blocking playlist answers and for the part fetches.
//!
//! Run: `bash benches/origin_load.sh [--clients 100,1000,10000] [--seconds 15]`. Clients and
//! server share the machine's cores, so at large N the delays include the clients' own CPU.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

const KEY: &str = "bench-key";
const SECRET: &str = "bench-secret-that-is-long-enough";

struct Args {
    clients: Vec<usize>,
    seconds: u64,
    ramp_secs: u64,
}

fn parse_args() -> Args {
    let mut a = Args { clients: vec![100, 1000, 10_000], seconds: 15, ramp_secs: 5 };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--clients" => {
                a.clients = it.next().expect("--clients N[,N…]").split(',').map(|n| n.trim().parse().expect("a number")).collect()
            }
            "--seconds" => a.seconds = it.next().expect("--seconds S").parse().expect("a number"),
            "--ramp" => a.ramp_secs = it.next().expect("--ramp S").parse().expect("a number"),
            // cargo bench passes --bench; ignore it and anything else of the harness's.
            _ => {}
        }
    }
    a
}

fn epoch_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// utime + stime of a process, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0) + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    lim.rlim_cur
}

/// `segment_00012.3.m4s` → (12, 3).
fn part_of(uri: &str) -> Option<(u64, u64)> {
    let name = uri.rsplit('/').next()?.strip_suffix(".m4s")?;
    let (msn, part) = name.rsplit_once('_')?.1.split_once('.')?;
    Some((msn.parse().ok()?, part.parse().ok()?))
}

fn hint_of(playlist: &str) -> Option<String> {
    let line = playlist.lines().find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:"))?;
    Some(line.split("URI=\"").nth(1)?.split('"').next()?.to_string())
}

#[derive(Default)]
struct Samples {
    playlist_us: Vec<u64>,
    part_us: Vec<u64>,
    requests: u64,
    errors: u64,
    part_bytes: u64,
}

struct Answer {
    ok: bool,
    published_us: u64,
    gzip: bool,
    body: bytes::Bytes,
}

/// One keep-alive HTTP/1.1 connection, as a player has to its origin.
struct Conn {
    addr: std::net::SocketAddr,
    sender: Option<hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>>,
}

impl Conn {
    async fn get(&mut self, path: &str, gzip: bool) -> Result<Answer, String> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let tcp = tokio::net::TcpStream::connect(self.addr).await.map_err(|e| format!("connect: {e}"))?;
            let _ = tcp.set_nodelay(true);
            let (sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.map_err(|e| format!("handshake: {e}"))?;
            tokio::spawn(conn);
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut().ok_or("no connection")?;
        let mut req = hyper::Request::get(path).header(hyper::header::HOST, self.addr.to_string());
        if gzip {
            req = req.header(hyper::header::ACCEPT_ENCODING, "gzip");
        }
        let req = req.body(http_body_util::Empty::new()).map_err(|e| e.to_string())?;
        let resp = match sender.send_request(req).await {
            Ok(r) => r,
            Err(e) => {
                self.sender = None;
                return Err(format!("request: {e}"));
            }
        };
        let (head, body) = resp.into_parts();
        let body = http_body_util::BodyExt::collect(body).await.map_err(|e| format!("body: {e}"))?.to_bytes();
        Ok(Answer {
            ok: head.status.is_success(),
            published_us: head.headers.get("roomcast-published-us").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(0),
            gzip: head.headers.get(hyper::header::CONTENT_ENCODING).is_some_and(|v| v == "gzip"),
            body,
        })
    }
}

/// One client: blocking reload for the hinted part, then that part, until `until`.
async fn client(addr: std::net::SocketAddr, base: String, until: Instant, measure_from: Instant) -> Samples {
    let mut s = Samples::default();
    let mut conn = Conn { addr, sender: None };
    let mut next: Option<String> = None;
    while Instant::now() < until {
        let measuring = Instant::now() >= measure_from;
        let path = match next.as_deref().and_then(part_of) {
            Some((m, p)) => format!("{base}/live.m3u8?_HLS_msn={m}&_HLS_part={p}"),
            None => format!("{base}/live.m3u8"),
        };
        let a = match conn.get(&path, true).await {
            Ok(a) if a.ok => a,
            _ => {
                s.errors += 1;
                next = None;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let done = epoch_us();
        if measuring {
            s.requests += 1;
            if next.is_some() && a.published_us > 0 {
                s.playlist_us.push(done.saturating_sub(a.published_us));
            }
        }
        let text = if a.gzip {
            let mut t = String::new();
            let _ = flate2::read::GzDecoder::new(&a.body[..]).read_to_string(&mut t);
            t
        } else {
            String::from_utf8_lossy(&a.body).into_owned()
        };
        // The part asked for is now listed: fetch it (what a player does next), then block
        // for the one after it, which the new playlist hints.
        if let Some(want) = next.take() {
            match conn.get(&format!("{base}/{want}"), false).await {
                Ok(p) if p.ok => {
                    if measuring {
                        s.requests += 1;
                        s.part_bytes += p.body.len() as u64;
                        s.part_us.push(epoch_us().saturating_sub(p.published_us));
                    }
                }
                _ => s.errors += 1,
            }
        }
        next = hint_of(&text);
    }
    s
}

fn quantile(v: &mut [u64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    v[((v.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0
}

struct Serve {
    child: Child,
    url: String,
    tmp: tempfile::TempDir,
}

impl Serve {
    fn start() -> Serve {
        let tmp = tempfile::Builder::new().prefix("roomcast-origin-load-").tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let log = std::fs::File::create(tmp.path().join("serve.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_roomcast"))
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .env("LIVEKIT_API_KEY", KEY)
            .env("LIVEKIT_API_SECRET", SECRET)
            .env("ROOMCAST_OUTPUT_DIR", tmp.path().join("out"))
            .env("ROOMCAST_TEMPLATES_DIR", root.join("templates"))
            .env("TMPDIR", tmp.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("roomcast serve");
        Serve { child, url: format!("http://127.0.0.1:{port}"), tmp }
    }

    fn token() -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_roomcast"))
            .arg("token")
            .env("LIVEKIT_API_KEY", KEY)
            .env("LIVEKIT_API_SECRET", SECRET)
            .output()
            .expect("roomcast token");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        // SIGTERM ends the egress (worker, Chromium) and the server; wait for it by PID.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("origin_load: serve ignored SIGTERM; killed (log in {})", self.tmp.path().display());
    }
}

async fn twirp(http: &reqwest::Client, url: &str, token: &str, method: &str, body: Value) -> Value {
    http.post(format!("{url}/twirp/livekit.Egress/{method}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("twirp call")
        .json()
        .await
        .expect("twirp JSON")
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let fds = raise_fd_limit();
    let serve = Serve::start();
    let control = reqwest::Client::new();
    let up = Instant::now();
    while control.get(format!("{}/healthz", serve.url)).send().await.is_err() {
        assert!(up.elapsed() < Duration::from_secs(10), "serve did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let token = Serve::token();
    let info = twirp(
        &control,
        &serve.url,
        &token,
        "StartWebEgress",
        json!({"url": format!("{}/templates/demo/static.html", serve.url), "segment_outputs": [{}]}),
    )
    .await;
    let id = info["egressId"].as_str().unwrap_or_else(|| panic!("StartWebEgress: {info}")).to_string();
    let base = format!("{}/hls/{id}", serve.url);
    let addr: std::net::SocketAddr = serve.url.trim_start_matches("http://").parse().expect("a socket address");
    let path_base = format!("/hls/{id}");
    // Wait for the stream's first segment, so every client joins a running stream.
    let up = Instant::now();
    loop {
        let text = control.get(format!("{base}/live.m3u8")).send().await.ok();
        let text = match text {
            Some(r) => r.text().await.unwrap_or_default(),
            None => String::new(),
        };
        if text.contains("#EXTINF") {
            break;
        }
        assert!(up.elapsed() < Duration::from_secs(30), "no segment after 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pid = serve.child.id();
    println!(
        "origin load: roomcast serve (release), one live 1280x720/30 egress of templates/demo/static.html, 200 ms parts; \
         each client: blocking reload for the next part, then that part (hls.js LL pattern), HTTP/1.1 keep-alive, gzip; \
         {}s ramp-up then {}s measured per N; loopback, clients on the same 2 cores; fd limit {fds}\n",
        args.ramp_secs, args.seconds
    );
    println!(
        "| clients | origin CPU cores | clients' CPU cores | requests/s | parts/s per client (of 5) | playlist delay p50 ms | p99 ms | part delay p50 ms | p99 ms | part KB avg | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for &n in &args.clients {
        let start = Instant::now();
        let measure_from = start + Duration::from_secs(args.ramp_secs);
        let until = measure_from + Duration::from_secs(args.seconds);
        let mut tasks = Vec::with_capacity(n);
        for i in 0..n {
            // Joins spread over the first half of the ramp-up, as viewers arrive.
            let delay = Duration::from_secs_f64(args.ramp_secs as f64 / 2.0 * i as f64 / n as f64);
            let base = path_base.clone();
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                client(addr, base, until, measure_from).await
            }));
        }
        tokio::time::sleep_until(measure_from.into()).await;
        let (cpu0, me0) = (cpu_secs(pid), cpu_secs(std::process::id()));
        let t0 = Instant::now();
        tokio::time::sleep_until(until.into()).await;
        let secs = t0.elapsed().as_secs_f64();
        let cores = (cpu_secs(pid) - cpu0) / secs;
        let client_cores = (cpu_secs(std::process::id()) - me0) / secs;
        let mut all = Samples::default();
        for t in tasks {
            if let Ok(s) = t.await {
                all.playlist_us.extend(s.playlist_us);
                all.part_us.extend(s.part_us);
                all.requests += s.requests;
                all.errors += s.errors;
                all.part_bytes += s.part_bytes;
            }
        }
        let parts = all.part_us.len().max(1) as f64;
        println!(
            "| {n} | {cores:.2} | {client_cores:.2} | {:.0} | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
            all.requests as f64 / args.seconds as f64,
            all.part_us.len() as f64 / args.seconds as f64 / n as f64,
            quantile(&mut all.playlist_us, 0.5),
            quantile(&mut all.playlist_us, 0.99),
            quantile(&mut all.part_us, 0.5),
            quantile(&mut all.part_us, 0.99),
            all.part_bytes as f64 / parts / 1000.0,
            all.errors
        );
        // Let closed connections drain before the next level.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let _ = twirp(&control, &serve.url, &token, "StopEgress", json!({"egress_id": id})).await;
}

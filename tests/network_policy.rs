//! End-to-end tests of the network policy (issue 17.1). A test host in a network namespace
//! serves the pages (Python's http.server) and answers DNS (dnsmasq) for `*.roomcast.test`,
//! which roomcast resolves through `network.nameservers` the way production resolves through
//! its resolver; the namespace's /24 is what `network.allow` opens. A canary listener on
//! loopback stands for an internal service: nothing a page or a stream output does may reach it.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::netns::Netns;
use common::*;
use serde_json::json;

const S: Duration = Duration::from_secs(1);

/// The test host's page port (not 80: this machine's sandbox intercepts port 80).
const PAGE_PORT: u16 = 8080;

/// The pages: an animated one that also tries to reach the canary (by address, and by a name
/// that resolves to loopback) and the metadata address, and a redirect to the canary.
const PAGE_SERVER: &str = r#"
import http.server, socketserver, sys
host, canary, report = sys.argv[1], sys.argv[2], sys.argv[3]
PAGE = """<!doctype html><html><body style="margin:0;background:#204">
<canvas id=c width=1280 height=720></canvas><script>
const ctx = document.getElementById('c').getContext('2d');
function f(t) { ctx.fillStyle = `hsl(${(t / 5) % 360}, 80%, 50%)`; ctx.fillRect(0, 0, 1280, 720); requestAnimationFrame(f); }
requestAnimationFrame(f);
async function probe(name, url) {
  let r; try { await fetch(url, {mode: 'no-cors', cache: 'no-store'}); r = 'answered'; } catch (e) { r = 'failed'; }
  await fetch('/report?' + new URLSearchParams({name, r}));
}
probe('loopback', 'http://127.0.0.1:CANARY/leak');
probe('rebound', 'http://home.roomcast.test:CANARY/leak');
probe('metadata', 'http://meta.roomcast.test/latest/meta-data/');
</script></body></html>""".replace('CANARY', canary)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith('/report?'):
            with open(report, 'a') as f:
                f.write(self.path + '\n')
            self.send_response(204); self.end_headers()
        elif self.path == '/redirect':
            self.send_response(302); self.send_header('Location', f'http://127.0.0.1:{canary}/redir'); self.end_headers()
        else:
            body = PAGE.encode()
            self.send_response(200); self.send_header('Content-Type', 'text/html'); self.send_header('Content-Length', str(len(body))); self.end_headers()
            self.wfile.write(body)
    def log_message(self, *a): pass
class Server(http.server.ThreadingHTTPServer):
    # HTTPServer's own server_bind asks DNS for the host's name: no query may leave here.
    def server_bind(self):
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = host, 8080
Server((host, 8080), H).serve_forever()
"#;

/// The test host: the namespace, its DNS server and its page server, ended by PID on drop.
struct TestHost {
    net: Netns,
    children: Vec<Child>,
    report: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl TestHost {
    fn start(canary: u16) -> Self {
        let net = Netns::create();
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("report.txt");
        let script = dir.path().join("pages.py");
        std::fs::write(&script, PAGE_SERVER).unwrap();
        let ns = |args: &[&str]| {
            Command::new("ip").args(["netns", "exec", &net.name]).args(args).stdin(Stdio::null()).spawn().expect("ip netns exec")
        };
        let dns = ns(&[
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            &format!("--listen-address={}", net.ns_ip),
            "--port=53",
            "--user=root",
            "--pid-file=",
            &format!("--address=/www.roomcast.test/{}", net.ns_ip),
            "--address=/meta.roomcast.test/169.254.169.254",
            "--address=/home.roomcast.test/127.0.0.1",
        ]);
        let pages = ns(&["python3", &script.display().to_string(), &net.ns_ip, &canary.to_string(), &report.display().to_string()]);
        let host = TestHost { net, children: vec![dns, pages], report, _dir: dir };
        // Up when the page answers from the host's side.
        let deadline = std::time::Instant::now() + 10 * S;
        while std::net::TcpStream::connect((host.net.ns_ip.as_str(), PAGE_PORT)).is_err() {
            assert!(std::time::Instant::now() < deadline, "the test host's page server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        host
    }

    fn reports(&self) -> String {
        std::fs::read_to_string(&self.report).unwrap_or_default()
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A loopback listener counting the connections it gets.
async fn canary() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&hits);
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    (port, hits)
}

/// Issue 17.1: a page on a name resolved by the test DNS server records; what it, its redirect
/// or a stream output tries to reach inside (loopback, also through a name that resolves there,
/// and the metadata address) is refused, and the canary never sees a connection; what can be
/// judged at request time is invalid_argument.
#[tokio::test(flavor = "multi_thread")]
async fn pages_and_streams_reach_only_what_the_policy_allows() {
    let _serial = SERIAL.lock().await;
    let (canary_port, hits) = canary().await;
    let host = TestHost::start(canary_port);
    let subnet = format!("{}.0/24", host.net.ns_ip.rsplit_once('.').unwrap().0);
    let server =
        Server::start_with_policy(&format!("network: {{allow: [\"{subnet}\"], nameservers: [\"{}:53\"]}}\n", host.net.ns_ip)).await;

    // Refused at request time: literals in refused ranges and localhost, for pages and streams.
    let refused_now = |body: serde_json::Value| {
        let server = &server;
        async move {
            let (code, err) = server.twirp("StartWebEgress", body.clone()).await;
            assert_eq!((code, err["code"].as_str()), (400, Some("invalid_argument")), "{body}: {err}");
            let msg = err["msg"].as_str().unwrap().to_string();
            assert!(msg.contains("refused by the network policy"), "{msg}");
            msg
        }
    };
    let page = &format!("http://www.roomcast.test:{PAGE_PORT}/");
    for (url, why) in [
        (format!("http://127.0.0.1:{canary_port}/"), "loopback"),
        ("http://169.254.169.254/latest/meta-data/".into(), "link-local"),
        ("http://[fe80::1]/".into(), "link-local"),
        ("http://192.168.0.1/".into(), "private"),
        (format!("http://localhost:{canary_port}/"), "localhost"),
    ] {
        let msg = refused_now(json!({"url": url, "segment_outputs": [{}]})).await;
        assert!(msg.contains(why), "{url}: {msg}");
    }
    for url in
        ["rtmp://127.0.0.1:1935/live/secret-key", "rtmp://169.254.169.254:80/a/secret-key", "srt://10.1.2.3:9000?streamid=secret-key"]
    {
        let msg = refused_now(json!({"url": page, "stream_outputs": [{"urls": [url]}]})).await;
        assert!(!msg.contains("secret-key"), "the stream key is not shown: {msg}");
    }

    // A page on a name: it records, its stream to a name that resolves to the metadata address
    // fails (naming the address, not the key) and the egress goes on.
    let id = server
        .start_egress(
            json!({"url": page, "segment_outputs": [{}], "stream_outputs": [{"urls": ["rtmp://meta.roomcast.test/live/secret-key"]}]}),
        )
        .await;
    server.wait_status(&id, "EGRESS_ACTIVE", 20 * S).await;
    // UpdateStream is judged the same way.
    let (code, err) = server.twirp("UpdateStream", json!({"egress_id": id, "add_output_urls": ["rtmp://10.9.9.9/live/k"]})).await;
    assert_eq!((code, err["code"].as_str()), (400, Some("invalid_argument")), "{err}");
    let deadline = tokio::time::Instant::now() + 15 * S;
    while host.reports().lines().count() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "the page's probes did not all report: {:?}", host.reports());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(2 * S).await;
    let done = server.stop(&id, "EGRESS_COMPLETE").await;
    let stream = &done["streamResults"][0];
    assert_eq!(stream["status"], "FAILED", "{done}");
    let error = stream["error"].as_str().unwrap();
    assert!(error.contains("169.254.169.254") && error.contains("link-local") && !error.contains("secret-key"), "{error}");
    let playlist = done["segmentResults"][0]["playlistLocation"].as_str().unwrap().to_string();
    let (frames, duration) = frames_and_duration(&ffprobe(&playlist));
    assert!(frames >= 60.0 && duration >= 2.0, "the page on a name recorded {frames} frames, {duration} s");

    // A page that redirects inside, and a name that resolves to the metadata address: FAILED,
    // naming the refused address.
    for (url, why) in [
        (format!("http://www.roomcast.test:{PAGE_PORT}/redirect"), format!("127.0.0.1:{canary_port} is loopback")),
        (format!("http://meta.roomcast.test:{PAGE_PORT}/"), "resolves to 169.254.169.254".to_string()),
    ] {
        let id = server.start_web(&url).await;
        let info = server.wait_ended(&id, 20 * S).await;
        assert_eq!(info["status"], "EGRESS_FAILED", "{url}: {info}");
        let error = info["error"].as_str().unwrap();
        assert!(error.contains("refused by the network policy") && error.contains(&why), "{url}: {error}");
    }

    assert_eq!(hits.load(Ordering::SeqCst), 0, "the loopback canary was reached; page probes: {}", host.reports());
    server.assert_no_leftovers(10 * S).await;
}

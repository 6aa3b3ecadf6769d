//! A real LiveKit server for the room tests: livekit-server built from its Go module by
//! scripts/install-deps.sh (.deps/bin/livekit-server), in a network namespace of its own (its
//! ICE ignores loopback, see netns.rs), optionally on a Redis of its own (Debian's
//! redis-server, on loopback inside the same namespace). Both are ended by PID on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use super::netns::Netns;

/// The key pair this server knows (its secret is long enough for livekit-server's check).
pub const LK_KEY: &str = "roomcast-test-key";
pub const LK_SECRET: &str = "roomcast-test-secret-at-least-32-characters";

pub fn binary() -> PathBuf {
    super::repo().join(".deps/bin/livekit-server")
}

pub struct LiveKit {
    child: Child,
    redis: Option<Child>,
    /// The signalling URL clients join with (ws://…:7880).
    pub url: String,
    /// The same server's HTTP API (RoomService, Egress).
    pub http_url: String,
    /// Redis's address as seen from the host (the namespace's address), when started with one.
    pub redis_address: Option<String>,
    pub log: PathBuf,
    pub key: String,
    pub secret: String,
    // Dropped after the processes: the namespace outlives them.
    pub netns: Netns,
}

impl LiveKit {
    /// A single node (no Redis): rooms and signalling only.
    pub fn start(dir: &Path) -> Self {
        Self::start_inner(dir, false, None)
    }

    /// With a Redis, as livekit-server runs when egress workers serve it over psrpc.
    pub fn start_with_redis(dir: &Path) -> Self {
        Self::start_inner(dir, true, None)
    }

    /// With a Redis and webhooks to `http://<host side of the veth>:<port>/`.
    pub fn start_with_webhooks(dir: &Path, port: u16) -> Self {
        Self::start_inner(dir, true, Some(port))
    }

    fn start_inner(dir: &Path, with_redis: bool, webhook_port: Option<u16>) -> Self {
        let bin = binary();
        assert!(bin.exists(), "{} is missing: run scripts/install-deps.sh (it builds livekit-server from its Go module)", bin.display());
        let netns = Netns::create();
        let ip = netns.ns_ip.clone();
        let redis = with_redis.then(|| start_redis(&netns, dir));
        let redis_yaml = if with_redis { format!("redis:\n  address: {ip}:6379\n") } else { String::new() };
        let webhook_yaml = match webhook_port {
            Some(port) => format!("webhook:\n  api_key: {LK_KEY}\n  urls: [\"http://{}:{port}/\"]\n", netns.host_ip),
            None => String::new(),
        };
        let config = dir.join("livekit.yaml");
        std::fs::write(
            &config,
            format!(
                "port: 7880\nbind_addresses: [\"{ip}\"]\n{redis_yaml}rtc:\n  tcp_port: 7881\n  port_range_start: 50000\n  port_range_end: 50400\n  use_external_ip: false\n  node_ip: {ip}\n  interfaces:\n    includes: [\"{iface}\"]\nkeys:\n  {LK_KEY}: {LK_SECRET}\n{webhook_yaml}logging:\n  level: info\n",
                iface = netns.ns_if,
            ),
        )
        .unwrap();
        let log = dir.join("livekit.log");
        let child = Command::new("ip")
            .args(["netns", "exec", &netns.name])
            .arg(&bin)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::options().append(true).open(&log).unwrap())
            .spawn()
            .expect("livekit-server");
        let lk = LiveKit {
            child,
            redis,
            url: format!("ws://{ip}:7880"),
            http_url: format!("http://{ip}:7880"),
            redis_address: with_redis.then(|| format!("{ip}:6379")),
            log,
            key: LK_KEY.into(),
            secret: LK_SECRET.into(),
            netns,
        };
        wait_listening(&format!("{ip}:7880"), "livekit-server", &lk.log);
        lk
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

/// redis-server on the namespace's address, port 6379, no persistence; waits until it listens.
fn start_redis(netns: &Netns, dir: &Path) -> Child {
    let ip = &netns.ns_ip;
    let log = std::fs::File::options().create(true).append(true).open(dir.join("redis.log")).unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", &netns.name, "redis-server", "--bind", ip, "--port", "6379"])
        .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(Stdio::inherit())
        .spawn()
        .expect("redis-server (apt install redis-server)");
    wait_listening(&format!("{ip}:6379"), "redis-server", &dir.join("redis.log"));
    child
}

impl LiveKit {
    /// Kills Redis (SIGKILL, by PID: its data is gone, as after a crash), keeps it down for
    /// `down_for`, and starts a fresh one on the same address.
    pub fn restart_redis(&mut self, dir: &Path, down_for: Duration) {
        let mut old = self.redis.take().expect("started with a Redis");
        let _ = old.kill();
        let _ = old.wait();
        std::thread::sleep(down_for);
        self.redis = Some(start_redis(&self.netns, dir));
    }
}

fn wait_listening(addr: &str, what: &str, log: &Path) {
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {addr}: {}", std::fs::read_to_string(log).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for LiveKit {
    fn drop(&mut self) {
        // `ip netns exec` execs its command: these PIDs are the servers' own.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        super::reap(&mut self.child, Duration::from_secs(10));
        if let Some(redis) = self.redis.as_mut() {
            unsafe { libc::kill(redis.id() as i32, libc::SIGTERM) };
            super::reap(redis, Duration::from_secs(5));
        }
    }
}

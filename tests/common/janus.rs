//! A real SFU for the room tests: Debian's Janus (VideoRoom over WebSockets) in a network
//! namespace of its own, joined to the host by a veth pair. Janus ignores loopback
//! interfaces for ICE, and no test traffic may reach the machine's external address, so
//! the SFU gets a private /24 that only this test uses. Everything is removed on drop.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip (apt install iproute2)");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// A namespace with one veth: `host_ip` on our side, `ns_ip` inside.
pub struct Netns {
    pub name: String,
    pub ns_if: String,
    host_if: String,
    pub host_ip: String,
    pub ns_ip: String,
}

impl Netns {
    pub fn create() -> Self {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        // Interface names are at most 15 characters.
        let tag = format!("rc{}x{n}", pid % 100_000);
        let subnet = format!("10.{}.{}", 200 + (pid / 250) % 50, (pid + n) % 250);
        let host_if = format!("{tag}h");
        let ns = Netns {
            name: format!("{tag}-ns"),
            ns_if: format!("{tag}n"),
            host_if: host_if.clone(),
            host_ip: format!("{subnet}.1"),
            ns_ip: format!("{subnet}.2"),
        };
        ip(&["netns", "add", &ns.name]);
        ip(&["link", "add", &host_if, "type", "veth", "peer", "name", &ns.ns_if]);
        ip(&["link", "set", &ns.ns_if, "netns", &ns.name]);
        ip(&["addr", "add", &format!("{}/24", ns.host_ip), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&["netns", "exec", &ns.name, "ip", "addr", "add", &format!("{}/24", ns.ns_ip), "dev", &ns.ns_if]);
        ip(&["netns", "exec", &ns.name, "ip", "link", "set", &ns.ns_if, "up"]);
        ip(&["netns", "exec", &ns.name, "ip", "link", "set", "lo", "up"]);
        // Replies to the host's addresses go back over the veth.
        ip(&["netns", "exec", &ns.name, "ip", "route", "add", "default", "via", &ns.host_ip]);
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the veth, and with it ours, though not
        // always at once: ours is deleted too (an error if it is gone already).
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
        let _ = Command::new("ip").args(["link", "del", &self.host_if]).stderr(Stdio::null()).status();
    }
}

/// Janus in its namespace, with the VideoRoom rooms named (string ids).
pub struct Janus {
    child: Child,
    pub ws_url: String,
    pub log: std::path::PathBuf,
    // Dropped after the process: the namespace outlives Janus.
    pub netns: Netns,
}

impl Janus {
    pub fn start(dir: &Path, rooms: &[&str]) -> Self {
        let netns = Netns::create();
        let conf = dir.join("janus-conf");
        std::fs::create_dir_all(&conf).unwrap();
        let lib = "/usr/lib/x86_64-linux-gnu/janus";
        std::fs::write(
            conf.join("janus.jcfg"),
            format!(
                r#"general: {{
    configs_folder = "{conf}"
    plugins_folder = "{lib}/plugins"
    transports_folder = "{lib}/transports"
    events_folder = "{lib}/events"
    loggers_folder = "{lib}/loggers"
    debug_level = 4
    debug_colors = false
    session_timeout = 60
}}
media: {{
    rtp_port_range = "20000-40000"
}}
nat: {{
    ignore_mdns = true
    ice_enforce_list = "{iface}"
}}
plugins: {{
    disable = "libjanus_audiobridge.so,libjanus_duktape.so,libjanus_echotest.so,libjanus_lua.so,libjanus_nosip.so,libjanus_recordplay.so,libjanus_sip.so,libjanus_streaming.so,libjanus_textroom.so,libjanus_videocall.so,libjanus_voicemail.so"
}}
transports: {{
    disable = "libjanus_http.so,libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_pfunix.so,libjanus_rabbitmq.so"
}}
loggers: {{
    disable = "libjanus_jsonlog.so"
}}
events: {{
    broadcast = false
}}
"#,
                conf = conf.display(),
                iface = netns.ns_if,
            ),
        )
        .unwrap();
        let mut videoroom = String::from("general: {\n    string_ids = true\n}\n");
        for room in rooms {
            // Janus takes a room's id from its section's name.
            videoroom.push_str(&format!(
                "room-{room}: {{\n    description = \"{room}\"\n    publishers = 16\n    bitrate = 512000\n    fir_freq = 10\n    audiocodec = \"opus\"\n    videocodec = \"vp8\"\n    audiolevel_event = true\n}}\n"
            ));
        }
        std::fs::write(conf.join("janus.plugin.videoroom.jcfg"), videoroom).unwrap();
        std::fs::write(
            conf.join("janus.transport.websockets.jcfg"),
            format!(
                "general: {{\n    json = \"plain\"\n    ws = true\n    ws_port = 8188\n    ws_ip = \"{}\"\n    wss = false\n}}\nadmin: {{\n    admin_ws = false\n    admin_wss = false\n}}\n",
                netns.ns_ip
            ),
        )
        .unwrap();
        let log = dir.join("janus.log");
        let child = Command::new("ip")
            .args(["netns", "exec", &netns.name, "janus", "-o", "-F"])
            .arg(&conf)
            .arg("-C")
            .arg(conf.join("janus.jcfg"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("janus (apt install janus)");
        let janus = Janus { child, ws_url: format!("ws://{}:8188", netns.ns_ip), log, netns };
        // Up when its WebSocket port takes connections.
        let addr: std::net::SocketAddr = format!("{}:8188", janus.netns.ns_ip).parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "janus did not listen on {addr}: {}",
                std::fs::read_to_string(&janus.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        janus
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Janus {
    fn drop(&mut self) {
        // `ip netns exec` execs janus: this PID is Janus's own.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        super::reap(&mut self.child, Duration::from_secs(5));
    }
}

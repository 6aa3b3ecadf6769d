//! A real SFU for the room tests: Debian's Janus (VideoRoom over WebSockets) in a network
//! namespace of its own (see netns.rs: Janus ignores loopback interfaces for ICE). Everything
//! is removed on drop.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use super::netns::Netns;

/// The room of Janus's default VideoRoom configuration (Debian's
/// /etc/janus/janus.plugin.videoroom.jcfg: numeric ids, no `string_ids`).
pub const DEFAULT_ROOM: &str = "1234";

/// Janus in its namespace.
pub struct Janus {
    child: Child,
    pub ws_url: String,
    pub log: std::path::PathBuf,
    // Dropped after the process: the namespace outlives Janus.
    pub netns: Netns,
}

impl Janus {
    /// With the VideoRoom configuration Janus ships (rooms 1234 and 5678, numeric ids).
    pub fn start_default(dir: &Path) -> Self {
        let shipped = "/etc/janus/janus.plugin.videoroom.jcfg";
        let videoroom = std::fs::read_to_string(shipped).unwrap_or_else(|e| panic!("{shipped}: {e} (apt install janus)"));
        Self::start_with(dir, &videoroom)
    }

    /// With the given rooms, named (string ids).
    pub fn start_named(dir: &Path, rooms: &[&str]) -> Self {
        let mut videoroom = String::from("general: {\n    string_ids = true\n}\n");
        for room in rooms {
            // Janus takes a room's id from its section's name.
            videoroom.push_str(&format!(
                "room-{room}: {{\n    description = \"{room}\"\n    publishers = 16\n    bitrate = 512000\n    fir_freq = 10\n    audiocodec = \"opus\"\n    videocodec = \"vp8\"\n    audiolevel_event = true\n}}\n"
            ));
        }
        Self::start_with(dir, &videoroom)
    }

    fn start_with(dir: &Path, videoroom: &str) -> Self {
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

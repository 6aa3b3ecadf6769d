//! A network namespace joined to the host by a veth pair, for the SFUs of the room tests:
//! Janus and livekit-server ignore loopback interfaces for ICE, and no test traffic may reach
//! the machine's external address, so each SFU gets a private /24 that only its test uses.
//! Removed on drop.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

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

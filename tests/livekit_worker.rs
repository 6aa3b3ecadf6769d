//! roomcast as the egress worker of a real livekit-server (issue 16, item 4): livekit-server and
//! its Redis run in a network namespace (tests/common/livekit.rs); roomcast serves psrpc on
//! that Redis; LiveKit's Node SDK talks only to livekit-server. Nothing here is a mock.

mod common;

use std::process::Command;
use std::time::Duration;

use common::livekit::LiveKit;
use common::*;
use serde_json::Value;

const S: Duration = Duration::from_secs(1);

fn worker_config(lk: &LiveKit) -> String {
    format!(
        "redis:\n  address: {}\nroom:\n  sfu: livekit\n  url: {}\n  api_key: {}\n  api_secret: {}\n",
        lk.redis_address.as_deref().unwrap(),
        lk.url,
        lk.key,
        lk.secret
    )
}

/// A web egress started, listed and stopped through livekit-server with the official Node SDK
/// runs on roomcast: livekit-server's answers (STARTING, then ACTIVE with segments, then
/// COMPLETE) are what roomcast reported over IOInfo, and its live playlist is roomcast's.
#[tokio::test(flavor = "multi_thread")]
async fn livekit_server_dispatches_web_egress_to_roomcast() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let lk = LiveKit::start_with_redis(dir.path());
    let server = Server::start_with_config(&worker_config(&lk)).await;
    let page = server.page("demo/static.html");
    let out = Command::new("node")
        .arg(repo().join("tests/node/lk_dispatch.mjs"))
        .args([&lk.http_url, &lk.key, &lk.secret, &page])
        .current_dir(repo().join("tests/node"))
        .output()
        .expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "lk_dispatch.mjs failed:\n{stdout}\n{}\n--- livekit-server log (tail) ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        tail(&lk.log, 40)
    );
    let result: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("one JSON line");
    eprintln!("dispatch through livekit-server: {result}");
    let id = result["egressId"].as_str().unwrap();
    // roomcast's own API agrees: the egress ran here and completed.
    let ended = server.wait_ended(id, 10 * S).await;
    assert_eq!(ended["status"], "EGRESS_COMPLETE", "{ended}");
    server.assert_no_leftovers(10 * S).await;
}

/// A room composite started through livekit-server runs on roomcast; UpdateLayout through
/// livekit-server lands on roomcast's recorder (identity = egress id) as metadata; deleting the
/// room completes the egress; livekit-server's own webhooks egress_started, egress_updated and
/// egress_ended carry roomcast's EgressInfo and verify with the SDK's WebhookReceiver.
#[tokio::test(flavor = "multi_thread")]
async fn livekit_server_room_composite_and_webhooks() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let lk = LiveKit::start_with_webhooks(dir.path(), port);
    let server = Server::start_with_config(&worker_config(&lk)).await;
    let out = Command::new("node")
        .arg(repo().join("tests/node/lk_room.mjs"))
        .args([&lk.http_url, &lk.key, &lk.secret, "rc-dispatch", &lk.netns.host_ip, &port.to_string()])
        .current_dir(repo().join("tests/node"))
        .env("TMPDIR", server.tmp.path())
        .output()
        .expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "lk_room.mjs failed:\n{stdout}\n{}\n--- livekit-server log (tail) ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        tail(&lk.log, 40)
    );
    let result: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("one JSON line");
    eprintln!("room composite through livekit-server: {result}");
    let events: Vec<&str> = result["events"].as_array().unwrap().iter().filter_map(|e| e.as_str()).collect();
    for wanted in ["egress_started", "egress_updated", "egress_ended"] {
        assert!(events.contains(&wanted), "no {wanted} webhook: {events:?}");
    }
    let id = result["egressId"].as_str().unwrap();
    let ended = server.wait_ended(id, 10 * S).await;
    assert_eq!(ended["status"], "EGRESS_COMPLETE", "{ended}");
    assert_eq!(ended["details"], "Source closed", "{ended}");
    server.assert_no_leftovers(10 * S).await;
}

fn tail(path: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

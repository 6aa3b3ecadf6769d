//! roomcast as the egress worker of a real livekit-server (issue 16, item 4): livekit-server and
//! its Redis run in a network namespace (tests/common/livekit.rs); roomcast serves psrpc on
//! that Redis; LiveKit's Node SDK talks only to livekit-server. Nothing here is a mock.

mod common;

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
    let result = node_json(&lk, "lk_dispatch.mjs", &[&page]);
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
    let result = node_json(&lk, "lk_room.mjs", &["rc-dispatch", &lk.netns.host_ip, &port.to_string()]);
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

/// Issue 16 (4, 5): both official SDKs pointed at livekit-server, roomcast the worker behind it:
/// the v2 StartEgress with four outputs and its refusals (Node), then with Python a web egress
/// whose RTMP URLs UpdateStream changes (livekit-server forwards it over psrpc), the v2 request,
/// and room composites (v1 with UpdateLayout, v2 template source) in a room made by RoomService.
#[tokio::test(flavor = "multi_thread")]
async fn official_sdks_through_livekit_server() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let lk = LiveKit::start_with_redis(dir.path());
    let server = Server::start_with_config(&worker_config(&lk)).await;
    let nginx = common::nginx::Nginx::start(server.tmp.path(), free_port());
    let page = server.page("demo/animated.html");
    let node = sdk_on(&lk, Sdk::Node, "sdk_v2.mjs", &[&page, &nginx.url("lkv2")]);
    eprintln!("v2 through livekit-server (Node SDK): {node}");
    assert_eq!(node["ok"], true, "{node}");
    let py = sdk_on(&lk, Sdk::Python, "egress_sdk.py", &[&page, &nginx.url("lkpy1"), &nginx.url("lkpy2"), "livekit"]);
    eprintln!("through livekit-server (Python SDK): {py}");
    assert_eq!(py["rooms"].as_array().map(Vec::len), Some(2), "{py}");
    // roomcast ran every one of them.
    for id in [&node["egressId"], &py["web"], &py["v2"], &py["rooms"][0], &py["rooms"][1]] {
        let ended = server.wait_ended(id.as_str().unwrap(), 10 * S).await;
        assert_eq!(ended["status"], "EGRESS_COMPLETE", "{ended}");
    }
    server.assert_no_leftovers(10 * S).await;
}

/// Runs an SDK script against livekit-server (its URL and keys first, then `args`).
fn sdk_on(lk: &LiveKit, sdk: Sdk, script: &str, args: &[&str]) -> Value {
    let mut all = vec![lk.http_url.as_str(), lk.key.as_str(), lk.secret.as_str()];
    all.extend_from_slice(args);
    sdk_json(sdk, script, &all, || format!("--- livekit-server log (tail) ---\n{}", tail(&lk.log, 40)))
}

fn node_json(lk: &LiveKit, script: &str, args: &[&str]) -> Value {
    sdk_on(lk, Sdk::Node, script, args)
}

/// One call through livekit-server with the Node SDK (tests/node/lk_call.mjs).
fn lk_call(lk: &LiveKit, args: &[&str]) -> Value {
    node_json(lk, "lk_call.mjs", args)
}

/// Which of the workers runs `id` (its own ListEgress knows it).
async fn runner(workers: &[&Server], id: &str) -> Option<usize> {
    for (i, w) in workers.iter().enumerate() {
        let (code, list) = w.twirp("ListEgress", serde_json::json!({"egress_id": id})).await;
        if code == 200 && list["items"].as_array().is_some_and(|a| !a.is_empty()) {
            return Some(i);
        }
    }
    None
}

/// Two roomcast workers on one Redis, one slot each (`max_concurrent: 1`): two egresses started
/// through livekit-server land one on each (a full worker makes no claim); a third finds no
/// worker and livekit-server answers with an error; once a slot is free again, a room created
/// with `egress.room` (auto egress) is recorded by the worker that has it.
#[tokio::test(flavor = "multi_thread")]
async fn two_workers_capacity_and_auto_egress() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let lk = LiveKit::start_with_redis(dir.path());
    let cfg = format!("{}max_concurrent: 1\n", worker_config(&lk));
    let a = Server::start_with_config(&cfg).await;
    let b = Server::start_with_config(&cfg).await;
    let page = a.page("demo/static.html");

    let first = lk_call(&lk, &["startWeb", &page]);
    let id1 = first["egressId"].as_str().unwrap_or_else(|| panic!("{first}")).to_string();
    let second = lk_call(&lk, &["startWeb", &page]);
    let id2 = second["egressId"].as_str().unwrap_or_else(|| panic!("{second}")).to_string();
    let (r1, r2) = (runner(&[&a, &b], &id1).await, runner(&[&a, &b], &id2).await);
    eprintln!("{id1} on worker {r1:?}, {id2} on worker {r2:?}");
    assert!(r1.is_some() && r2.is_some() && r1 != r2, "one egress per worker: {r1:?} {r2:?}");

    let third = lk_call(&lk, &["startWeb", &page]);
    eprintln!("a third egress with both workers full: {third}");
    // livekit-server retries a StartEgress nobody claims (unavailable) with backoff, past the
    // SDK's own request timeout, so the SDK reports either livekit-server's error or its timeout.
    assert!(third["error"].is_string(), "no worker may take a third egress: {third}");
    // Let those retries run out before a slot frees up, so the third request cannot land late.
    tokio::time::sleep(15 * S).await;

    // Free worker r1's slot, then let livekit-server start an egress on its own.
    let stopped = lk_call(&lk, &["stop", &id1]);
    assert_eq!(stopped["egressId"], id1.as_str(), "{stopped}");
    let free = if r1 == Some(0) { &a } else { &b };
    free.wait_ended(&id1, 30 * S).await;
    let room = lk_call(&lk, &["autoRoom", "rc-auto"]);
    assert_eq!(room["name"], "rc-auto", "{room}");
    let deadline = std::time::Instant::now() + 30 * S;
    let auto_id = loop {
        let listed = lk_call(&lk, &["list", "rc-auto"]);
        if let Some(id) = listed.as_array().and_then(|l| l.first()).and_then(|i| i["egressId"].as_str()) {
            break id.to_string();
        }
        assert!(std::time::Instant::now() < deadline, "no auto egress for rc-auto: {listed}");
        tokio::time::sleep(S / 2).await;
    };
    assert_eq!(runner(&[&a, &b], &auto_id).await, r1, "the auto egress runs on the worker with a free slot");
    free.wait_status(&auto_id, "EGRESS_ACTIVE", 30 * S).await;
    // livekit-server knows exactly these three: the third request never ran anywhere.
    let all = lk_call(&lk, &["list"]);
    let mut ids: Vec<&str> = all.as_array().unwrap().iter().filter_map(|i| i["egressId"].as_str()).collect();
    ids.sort();
    let mut want = vec![id1.as_str(), id2.as_str(), auto_id.as_str()];
    want.sort();
    assert_eq!(ids, want, "{all}");
    for id in [&auto_id, &id2] {
        lk_call(&lk, &["stop", id]);
    }
    for w in [&a, &b] {
        w.assert_no_leftovers(30 * S).await;
    }
}

/// A worker SIGKILLed mid-egress: livekit-server never asks its workers, so the survivor tells
/// it. The dead worker's lease on the egress in Redis runs out (10 s), the other worker's sweep
/// finds the record without a lease and sends IOInfo.UpdateEgress with EGRESS_FAILED; the SDK,
/// asking livekit-server, sees the egress FAILED with that reason and its last segment count.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_worker_s_egress_ends_failed() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let lk = LiveKit::start_with_redis(dir.path());
    let cfg = format!("{}max_concurrent: 1\n", worker_config(&lk));
    let mut a = Server::start_with_config(&cfg).await;
    let mut b = Server::start_with_config(&cfg).await;
    let page = a.page("demo/static.html");
    let started = lk_call(&lk, &["startWeb", &page]);
    let id = started["egressId"].as_str().unwrap_or_else(|| panic!("{started}")).to_string();
    let on = runner(&[&a, &b], &id).await.expect("a worker runs it");
    let (dead, alive) = if on == 0 { (&mut a, &mut b) } else { (&mut b, &mut a) };
    dead.wait_segments(&id, 1, 30 * S).await;
    tokio::time::sleep(S).await; // let the segment's update reach livekit-server
    dead.kill();
    let killed = std::time::Instant::now();
    let deadline = killed + 40 * S;
    let failed = loop {
        let listed = lk_call(&lk, &["list"]);
        let info = listed.as_array().and_then(|l| l.iter().find(|i| i["egressId"] == id.as_str()).cloned());
        if let Some(i) = info.filter(|i| i["status"] == "EGRESS_FAILED") {
            break i;
        }
        assert!(std::time::Instant::now() < deadline, "livekit-server still has {id} running: {listed}");
        tokio::time::sleep(S / 2).await;
    };
    eprintln!("livekit-server reports the lost egress {:.1} s after the kill: {failed}", killed.elapsed().as_secs_f64());
    assert!(failed["error"].as_str().unwrap_or_default().contains("lease"), "{failed}");
    assert!(failed["segmentResults"][0]["segmentCount"].as_str().is_some_and(|n| n != "0"), "the last reported outputs are kept: {failed}");
    // The survivor's own list never had it, and it still serves new egresses.
    assert_eq!(runner(&[&*alive], &id).await, None);
    let next = lk_call(&lk, &["startWeb", &page]);
    let next_id = next["egressId"].as_str().unwrap_or_else(|| panic!("{next}")).to_string();
    alive.wait_status(&next_id, "EGRESS_ACTIVE", 30 * S).await;
    lk_call(&lk, &["stop", &next_id]);
    alive.wait_ended(&next_id, 30 * S).await;
    alive.assert_no_leftovers(30 * S).await;
    dead.assert_no_leftovers(10 * S).await;
}

/// Redis killed and back after 3 s (empty, as after a crash): roomcast's psrpc subscriber
/// reconnects and subscribes again, its commands reconnect, and the next egress through
/// livekit-server runs on roomcast as before.
#[tokio::test(flavor = "multi_thread")]
async fn redis_restart_is_survived() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut lk = LiveKit::start_with_redis(dir.path());
    let server = Server::start_with_config(&worker_config(&lk)).await;
    let page = server.page("demo/static.html");
    lk.restart_redis(dir.path(), 3 * S);
    // Both sides reconnect with backoff (roomcast's subscriber: at most 5 s between tries).
    let deadline = std::time::Instant::now() + 30 * S;
    let id = loop {
        let started = lk_call(&lk, &["startWeb", &page]);
        if let Some(id) = started["egressId"].as_str() {
            break id.to_string();
        }
        assert!(std::time::Instant::now() < deadline, "no egress through livekit-server after Redis came back: {started}");
        tokio::time::sleep(S).await;
    };
    server.wait_status(&id, "EGRESS_ACTIVE", 30 * S).await;
    let stopped = lk_call(&lk, &["stop", &id]);
    assert_eq!(stopped["egressId"], id.as_str(), "StopEgress reaches roomcast's handler: {stopped}");
    let ended = server.wait_ended(&id, 30 * S).await;
    assert_eq!(ended["status"], "EGRESS_COMPLETE", "{ended}");
    let log = std::fs::read_to_string(server.tmp.path().join("serve.log")).unwrap_or_default();
    assert!(log.contains("Redis subscription back"), "the subscriber reconnected (serve.log)");
    server.assert_no_leftovers(10 * S).await;
}

fn tail(path: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

//! Room composite without an SFU: the LiveKit template contract as a custom template sees it
//! (the URL parameters and the recorder's token, START_RECORDING / END_RECORDING, layout
//! updates over CDP and through LiveKit's RoomService), and templates that fail: a
//! `div.error`, or no start signal at all. The real roomcast, Chromium and GStreamer; the
//! template and the RoomService endpoint are served by the test itself, since no LiveKit
//! server can be installed here.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Html;
use axum::routing::{get, post};
use axum::Router;
use common::*;
use livekit_api::access_token::TokenVerifier;
use livekit_protocol as proto;
use prost::Message;
use serde_json::{json, Value};

const S: Duration = Duration::from_secs(1);

/// What the test's site saw: template loads (their query), layouts the page heard of, and
/// RoomService calls (body, bearer token).
#[derive(Default)]
struct Seen {
    loads: Vec<HashMap<String, String>>,
    layouts: Vec<String>,
    room_service: Vec<(Value, String)>,
}

type Site = Arc<Mutex<Seen>>;

/// A custom template that keeps LiveKit's contract: starts once loaded, reports each layout
/// event back, and ends the recording when told the layout "end".
const TEMPLATE: &str = r#"<!doctype html><html><body style="margin:0;background:#2850e6">
<script>
setTimeout(() => console.log('START_RECORDING'), 300);
window.addEventListener('roomcast:layout', (e) => {
  fetch('/seen?layout=' + encodeURIComponent(e.detail.layout));
  if (e.detail.layout === 'end') console.log('END_RECORDING');
});
</script></body></html>"#;

const ERROR_TEMPLATE: &str = r#"<!doctype html><html><body>
<script>setTimeout(() => { document.body.innerHTML = '<div class="error">could not join: no such room</div>'; }, 500);</script>
</body></html>"#;

const SILENT_TEMPLATE: &str = "<!doctype html><html><body>waiting forever</body></html>";

async fn site() -> (String, Site) {
    let seen: Site = Arc::default();
    let app = Router::new()
        .route(
            "/tpl.html",
            get(|State(s): State<Site>, Query(q): Query<HashMap<String, String>>| async move {
                s.lock().unwrap().loads.push(q);
                Html(TEMPLATE)
            }),
        )
        .route("/error.html", get(|| async { Html(ERROR_TEMPLATE) }))
        .route("/silent.html", get(|| async { Html(SILENT_TEMPLATE) }))
        .route(
            "/seen",
            get(|State(s): State<Site>, Query(q): Query<HashMap<String, String>>| async move {
                s.lock().unwrap().layouts.push(q.get("layout").cloned().unwrap_or_default());
            }),
        )
        .route(
            "/twirp/livekit.RoomService/UpdateParticipant",
            // livekit-api speaks Twirp in protobuf.
            post(|State(s): State<Site>, headers: HeaderMap, body: axum::body::Bytes| async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                let req = proto::UpdateParticipantRequest::decode(body).expect("an UpdateParticipantRequest");
                let seen = json!({"room": req.room, "identity": req.identity, "metadata": req.metadata});
                s.lock().unwrap().room_service.push((seen, auth));
                let info = proto::ParticipantInfo { identity: req.identity, metadata: req.metadata, ..Default::default() };
                ([("content-type", "application/protobuf")], info.encode_to_vec())
            }),
        )
        .with_state(Arc::clone(&seen));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

async fn start_room(server: &Server, body: Value) -> (u16, Value) {
    server.twirp("StartRoomCompositeEgress", body).await
}

async fn wait_for<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Issue 6 (1), (3), (5): the template gets LiveKit Egress's parameters and a recorder token
/// with exactly the egress grants; recording starts at START_RECORDING; UpdateLayout reaches
/// the page without a restart and sets the recorder's metadata via RoomService; END_RECORDING
/// completes the egress with a closed playlist; bad requests get Twirp errors.
#[tokio::test(flavor = "multi_thread")]
async fn livekit_template_contract_and_layout_updates() {
    let _serial = SERIAL.lock().await;
    let (site_url, seen) = site().await;
    let sfu_url = site_url.replace("http://", "ws://");
    let server = Server::start_with_config(&format!("room:\n  url: {sfu_url}\n")).await;

    let (code, err) = start_room(&server, json!({"room_name": "", "segment_outputs": [{}]})).await;
    assert_eq!((code, err["code"].as_str()), (400, Some("invalid_argument")), "{err}");
    let (code, err) =
        start_room(&server, json!({"room_name": "r", "custom_base_url": "file:///etc/passwd", "segment_outputs": [{}]})).await;
    assert_eq!((code, err["code"].as_str()), (400, Some("invalid_argument")), "{err}");
    let (code, err) = server.twirp("UpdateLayout", json!({"egress_id": "EG_nope", "layout": "grid"})).await;
    assert_eq!((code, err["code"].as_str()), (404, Some("not_found")), "{err}");

    let (code, info) = start_room(
        &server,
        json!({"room_name": "lk-room", "layout": "grid", "custom_base_url": format!("{site_url}/tpl.html"), "segment_outputs": [{}],
               "file_outputs": [{"filepath": "{room_name}/{time}.mp4"}]}),
    )
    .await;
    assert_eq!(code, 200, "{info}");
    let id = info["egressId"].as_str().unwrap().to_string();
    assert_eq!(info["roomName"], "lk-room");
    assert!(info["status"].is_null() || info["status"] == "EGRESS_STARTING", "{info}");
    server.wait_status(&id, "EGRESS_ACTIVE", 20 * S).await;

    let q = seen.lock().unwrap().loads.first().cloned().expect("the template was loaded");
    assert_eq!(q.get("layout").map(String::as_str), Some("grid"));
    assert_eq!(q.get("url"), Some(&sfu_url));
    assert!(!q.contains_key("sfu"), "LiveKit templates get LiveKit's parameters only: {q:?}");
    let claims = TokenVerifier::with_api_key(KEY, SECRET).verify(&q["token"]).expect("a token signed with the configured keys");
    assert_eq!(claims.sub, id, "the recorder's identity is the egress id");
    assert_eq!(claims.video.room, "lk-room");
    assert!(claims.video.room_join && claims.video.hidden && claims.video.recorder);
    assert_eq!(
        (claims.video.can_subscribe, claims.video.can_publish, claims.video.can_publish_data),
        (Some(true), Some(false), Some(false))
    );
    assert!(!claims.video.room_admin && !claims.video.room_record);

    // A web egress has no layout to update.
    let web = server.start_web(&server.page("demo/static.html")).await;
    let (code, err) = server.twirp("UpdateLayout", json!({"egress_id": web, "layout": "grid"})).await;
    assert_eq!((code, err["code"].as_str()), (400, Some("invalid_argument")), "{err}");
    server.wait_status(&web, "EGRESS_ACTIVE", 20 * S).await;
    server.stop(&web, "EGRESS_COMPLETE").await;

    server.wait_segments(&id, 2, 20 * S).await;
    let (code, updated) = server.twirp("UpdateLayout", json!({"egress_id": id, "layout": "speaker"})).await;
    assert_eq!(code, 200, "{updated}");
    assert_eq!(updated["roomComposite"]["layout"], "speaker", "{updated}");
    wait_for("the page hears of the new layout", 10 * S, || seen.lock().unwrap().layouts.contains(&"speaker".to_string()).then_some(()))
        .await;
    let (body, auth) =
        wait_for("RoomService.UpdateParticipant is called", 10 * S, || seen.lock().unwrap().room_service.first().cloned()).await;
    assert_eq!((body["room"].as_str(), body["identity"].as_str()), (Some("lk-room"), Some(id.as_str())), "{body}");
    let meta: Value = serde_json::from_str(body["metadata"].as_str().unwrap()).unwrap();
    assert_eq!(meta, json!({"layout": "speaker"}));
    let admin = TokenVerifier::with_api_key(KEY, SECRET).verify(auth.trim_start_matches("Bearer ")).expect("RoomService call is signed");
    assert!(admin.video.room_admin && admin.video.room == "lk-room", "{:?}", admin.video);
    assert_eq!(server.info(&id).await["status"], "EGRESS_ACTIVE", "no restart");

    // The template ends the recording itself.
    let (code, _) = server.twirp("UpdateLayout", json!({"egress_id": id, "layout": "end"})).await;
    assert_eq!(code, 200);
    let done = server.wait_status(&id, "EGRESS_COMPLETE", 20 * S).await;
    assert_eq!(done["details"], "Source closed", "{done}");
    let (_, playlist) = server.get_text(done["segmentResults"][0]["playlistLocation"].as_str().unwrap()).await;
    assert!(playlist.trim_end().ends_with("#EXT-X-ENDLIST"), "{playlist}");
    // Issue 17 (8): LiveKit's placeholders are filled, in a sub-folder of the egress's folder.
    let file = done["fileResults"][0]["filename"].as_str().unwrap_or_default().to_string();
    assert!(file.starts_with("lk-room/20") && file.ends_with(".mp4"), "{done}");
    let written = std::fs::metadata(server.out.join(&id).join(&file)).map(|m| m.len()).unwrap_or(0);
    assert!(written > 10_000, "{file}: {written} bytes");
    let (code, err) = server.twirp("UpdateLayout", json!({"egress_id": id, "layout": "grid"})).await;
    assert_eq!((code, err["code"].as_str()), (412, Some("failed_precondition")), "{err}");
    server.assert_no_leftovers(10 * S).await;
}

/// Issue 6 (6): a template that shows LiveKit's `div.error`, and one that never signals, end
/// FAILED with a clear error within the configured start timeout, and their Chromium is gone.
#[tokio::test(flavor = "multi_thread")]
async fn failing_templates_end_failed_in_bounded_time() {
    let _serial = SERIAL.lock().await;
    let (site_url, _) = site().await;
    let server = Server::start_with_config("room:\n  start_timeout_secs: 4\n").await;
    for (page, expected) in
        [("error.html", "template error: could not join: no such room"), ("silent.html", "start signal not received within 4s")]
    {
        let since = Instant::now();
        let (code, info) =
            start_room(&server, json!({"room_name": "r", "custom_base_url": format!("{site_url}/{page}"), "segment_outputs": [{}]})).await;
        assert_eq!(code, 200, "{info}");
        let id = info["egressId"].as_str().unwrap().to_string();
        let end = server.wait_ended(&id, 25 * S).await;
        assert_eq!(end["status"], "EGRESS_FAILED", "{end}");
        assert!(end["error"].as_str().unwrap().contains(expected), "{page}: {end}");
        assert!(since.elapsed() < 20 * S, "{page} took {:?}", since.elapsed());
        if page == "silent.html" {
            assert!(since.elapsed() >= 4 * S, "the timeout is the configured one");
        }
        server.assert_no_leftovers(10 * S).await;
    }
}

/// Issue 17 (4): no secret reaches the egress's processes or leaves roomcast: the API secret
/// (in serve's environment), the recorder's token (in the template URL) and a stream key are
/// in no child's argv or environment, in no ListEgress answer and in no line of the log.
#[tokio::test(flavor = "multi_thread")]
async fn secrets_stay_out_of_children_logs_and_egress_info() {
    let _serial = SERIAL.lock().await;
    let (site_url, seen) = site().await;
    let server = Server::start_with_config(&format!("room:\n  url: {}\n", site_url.replace("http://", "ws://"))).await;
    let stream_key = "sk_live_9f8e7d6c5b4a";
    let (code, info) = start_room(
        &server,
        json!({"room_name": "secret-room", "custom_base_url": format!("{site_url}/tpl.html"), "segment_outputs": [{}],
               "stream_outputs": [{"protocol": "RTMP", "urls": [format!("rtmp://127.0.0.1:9/live/{stream_key}")]}]}),
    )
    .await;
    assert_eq!(code, 200, "{info}");
    let id = info["egressId"].as_str().unwrap().to_string();
    server.wait_status(&id, "EGRESS_ACTIVE", 20 * S).await;
    let token = seen.lock().unwrap().loads.first().and_then(|q| q.get("token").cloned()).expect("the template got its token");
    let secrets = [("the API secret", SECRET), ("the recorder's token", token.as_str()), ("the stream key", stream_key)];
    let children = server.descendants("");
    assert!(children.len() >= 3, "the egress's processes: {children:?}");
    for pid in &children {
        for part in ["cmdline", "environ"] {
            let raw = std::fs::read(format!("/proc/{pid}/{part}")).unwrap_or_default();
            let text = String::from_utf8_lossy(&raw);
            for (what, secret) in secrets {
                assert!(!text.contains(secret), "{what} in /proc/{pid}/{part}: {}", text.replace('\0', " "));
            }
        }
    }
    let (_, list) = server.twirp("ListEgress", json!({})).await;
    let list = list.to_string();
    for (what, secret) in secrets {
        assert!(!list.contains(secret), "{what} in ListEgress: {list}");
    }
    let (code, _) = server.twirp("UpdateLayout", json!({"egress_id": id, "layout": "end"})).await;
    assert_eq!(code, 200);
    let done = server.wait_status(&id, "EGRESS_COMPLETE", 20 * S).await;
    for (what, secret) in secrets {
        assert!(!done.to_string().contains(secret), "{what} in the final EgressInfo: {done}");
    }
    let log = std::fs::read_to_string(server.tmp.path().join("serve.log")).unwrap_or_default();
    assert!(log.contains("page loaded"), "the log has the worker's lines");
    for (what, secret) in secrets {
        assert!(!log.contains(secret), "{what} in serve's log");
    }
    server.assert_no_leftovers(10 * S).await;
}

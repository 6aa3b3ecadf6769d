//! The live side of the origin: LL-HLS playlists rendered from a stream's memory, with
//! blocking playlist reload (`_HLS_msn` / `_HLS_part`), delta updates (`_HLS_skip`), parts
//! served from memory, and the preload-hinted part held until it is complete.
//!
//! Waiting costs nothing per viewer: a waiter sleeps on the stream's `watch` channel, which
//! the writer bumps once per part (and the stream's watchdog when it stalls). Playlists are
//! rendered (and gzipped) once per stream version, however many viewers were waiting.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::live::{LiveHls, State};
use super::playlist::{self, MediaOpts};
use crate::spec::MULTIVARIANT_NAME;

pub const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Diagnostic header: when the newest part in the answer was published (µs since the epoch),
/// so benchmarks can measure publication → response delay from outside.
pub const PUBLISHED_HEADER: &str = "roomcast-published-us";

/// Delivery directives of a playlist request (rfc8216bis 6.2.5).
#[derive(Debug, Default, PartialEq)]
pub struct Directives {
    pub msn: Option<u64>,
    pub part: Option<u64>,
    pub skip: bool,
}

impl Directives {
    pub fn parse(query: Option<&str>) -> Result<Self, String> {
        let mut d = Directives::default();
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let num = |v: &str| v.parse::<u64>().map_err(|_| format!("{k}={v:?} is not a non-negative integer"));
            match k.as_ref() {
                "_HLS_msn" => d.msn = Some(num(&v)?),
                "_HLS_part" => d.part = Some(num(&v)?),
                // v2 also asks to skip date ranges; we write none, so it is the same as YES.
                "_HLS_skip" => d.skip = matches!(v.as_ref(), "YES" | "v2"),
                _ => {}
            }
        }
        if d.part.is_some() && d.msn.is_none() {
            return Err("_HLS_part requires _HLS_msn".into());
        }
        Ok(d)
    }
}

pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).any(|v| {
        v.split(',').any(|e| {
            let mut it = e.split(';');
            let name = it.next().unwrap_or("").trim();
            let q0 = it.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !q0
        })
    })
}

pub fn gzip(data: &[u8]) -> Bytes {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 3), flate2::Compression::fast());
    let _ = enc.write_all(data);
    enc.finish().map(Bytes::from).unwrap_or_default()
}

fn error(status: StatusCode, cache: String, msg: impl Into<String>) -> Response {
    let mut r = (status, msg.into()).into_response();
    if let Ok(v) = HeaderValue::from_str(&cache) {
        r.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    r
}

pub fn playlist_response(body: Bytes, gz: bool, cache: &str) -> Response {
    let mut r = Response::new(Body::from(body));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(PLAYLIST_TYPE));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if let Ok(v) = HeaderValue::from_str(cache) {
        h.insert(header::CACHE_CONTROL, v);
    }
    if gz {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    r
}

fn media_response(data: Bytes, content_type: &'static str, published_us: u64) -> Response {
    let mut r = Response::new(Body::from(data));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    h.insert(PUBLISHED_HEADER, HeaderValue::from(published_us));
    r
}

enum Waited {
    Ready,
    TimedOut,
}

/// Waits until `ready` holds (or the stream is finished or gone), at most the spec's 3 × TD.
async fn wait_until(stream: &LiveHls, mut ready: impl FnMut(&State) -> bool) -> Waited {
    let started = Instant::now();
    // Subscribed before the first check, so no wake-up between the two is missed.
    let mut wake = stream.subscribe();
    loop {
        {
            let st = stream.read();
            if st.finished || ready(&st) {
                return Waited::Ready;
            }
        }
        if started.elapsed() >= stream.params.block_limit() {
            return Waited::TimedOut;
        }
        if wake.changed().await.is_err() {
            return Waited::Ready;
        }
    }
}

/// Answers a request for a file of a live stream, or `None` if it is not one of its
/// in-memory resources (segments are then served from disk).
/// `signed`: the viewer's `exp=…&sig=…`, added to every URI of the playlists answered.
pub async fn serve(stream: Arc<LiveHls>, file: &str, query: Option<&str>, headers: &HeaderMap, signed: Option<&str>) -> Option<Response> {
    let gz = accepts_gzip(headers);
    if file == MULTIVARIANT_NAME {
        return Some(multivariant(&stream, gz, signed).await);
    }
    let found = {
        let st = stream.read();
        let mut found = None;
        for (r, rend) in st.renditions.iter().enumerate() {
            if file == rend.playlist_path(true) {
                found = Some(Resource::Playlist(r, true));
            } else if file == rend.playlist_path(false) {
                found = Some(Resource::Playlist(r, false));
            } else if file == rend.init_path() {
                found = rend.init.clone().map(Resource::Init);
            } else if let Some((msn, part)) = rend.parse_part_path(file) {
                found = Some(Resource::Part(r, msn, part));
            }
            if found.is_some() {
                break;
            }
        }
        found
    };
    Some(match found? {
        Resource::Playlist(r, live) => media_playlist(&stream, r, live, query, gz, signed).await,
        Resource::Init(data) => media_response(data, "video/mp4", 0),
        Resource::Part(r, msn, part) => part_response(&stream, r, msn, part).await,
    })
}

enum Resource {
    Playlist(usize, bool),
    Init(Bytes),
    Part(usize, u64, usize),
}

async fn multivariant(stream: &LiveHls, gz: bool, signed: Option<&str>) -> Response {
    let td = stream.params.target_duration;
    let ready = |st: &State| st.renditions.iter().all(|r| r.codec.is_some());
    if let Waited::TimedOut = wait_until(stream, ready).await {
        return error(StatusCode::SERVICE_UNAVAILABLE, "no-store".into(), "the stream has not started");
    }
    let text = {
        let st = stream.read();
        playlist::render_multivariant(&st, &stream.params, MULTIVARIANT_NAME, true)
    }
    .map(|t| match signed {
        Some(q) => super::signing::sign_uris(&t, q),
        None => t,
    });
    match text {
        Some(t) if gz => playlist_response(gzip(t.as_bytes()), true, &format!("public, max-age={td}")),
        Some(t) => playlist_response(Bytes::from(t), false, &format!("public, max-age={td}")),
        // Finished before it started: nothing to play.
        None => error(StatusCode::NOT_FOUND, format!("public, max-age={td}"), "the stream has no media"),
    }
}

async fn media_playlist(stream: &LiveHls, r: usize, live: bool, query: Option<&str>, gz: bool, signed: Option<&str>) -> Response {
    let p = stream.params;
    let td = p.target_duration;
    let d = match Directives::parse(query) {
        Ok(d) => d,
        Err(e) => return error(StatusCode::BAD_REQUEST, "no-store".into(), e),
    };
    let blocking = d.msn.is_some();
    if let Some(msn) = d.msn {
        // Requests too far ahead are refused at once (rfc8216bis 6.2.5.2).
        let st = stream.read();
        let rend = &st.renditions[r];
        if !st.finished {
            let (last_msn, last_part) = rend.last_part().unwrap_or((0, 0));
            if msn > last_msn + 2 {
                return error(
                    StatusCode::BAD_REQUEST,
                    "no-store".into(),
                    format!("_HLS_msn={msn} is more than two segments ahead of {last_msn}"),
                );
            }
            if let Some(part) = d.part {
                let per_segment = (p.segment_secs / p.part_target).round().max(1.0) as i64;
                let ahead = (msn as i64 - last_msn as i64) * per_segment + part as i64 - last_part as i64;
                if ahead > p.advance_part_limit() as i64 {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "no-store".into(),
                        format!("_HLS_part={part} of _HLS_msn={msn} is beyond the advance part limit"),
                    );
                }
            }
        }
    }
    let ready = |st: &State| match d.msn {
        Some(msn) => st.has(r, msn, d.part.map(|p| p as usize)),
        // A plain request waits for the stream's first complete segment (the first is short,
        // about one part): players need one to start (hls.js reports an empty level and
        // retries a second later) and Apple's rules want segments in every playlist.
        None => st.renditions[r].segments.first().is_some_and(|s| s.complete),
    };
    if let Waited::TimedOut = wait_until(stream, ready).await {
        let cache = if blocking { "no-store".to_string() } else { format!("public, max-age={td}") };
        return error(StatusCode::SERVICE_UNAVAILABLE, cache, "the requested part did not appear in time");
    }
    let (body, published) = render_cached(stream, r, live, d.skip, gz, signed);
    // Blocking answers name a moment of the stream and may be cached long; others briefly.
    let cache = if blocking { format!("public, max-age={}", 6 * td) } else { format!("public, max-age={}", (td / 2).max(1)) };
    let mut resp = playlist_response(body, gz, &cache);
    resp.headers_mut().insert(PUBLISHED_HEADER, HeaderValue::from(published));
    resp
}

/// One rendering (and one gzip) per stream version and variant, shared by every viewer.
const MAX_CACHED_RENDERINGS: usize = 64;

/// With signed URLs the viewer's signature is part of the key: viewers holding the same
/// location (one signature per egress and expiry) still share one rendering.
fn render_cached(stream: &LiveHls, r: usize, live: bool, skip: bool, gz: bool, signed: Option<&str>) -> (Bytes, u64) {
    let st = stream.read();
    let published = st.renditions[r].segments.last().and_then(|s| s.parts.last()).map(|p| p.published_us).unwrap_or(0);
    let key = (r, live, skip, gz, signed.map(str::to_string));
    let mut cache = stream.cache.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((v, body)) = cache.get(&key) {
        if *v == st.version {
            return (body.clone(), published);
        }
    }
    let mut text = playlist::render_media(&st, &stream.params, r, MediaOpts { live, skip, low_latency: true });
    if let Some(q) = signed {
        text = super::signing::sign_uris(&text, q);
        // Signatures an operator mints per viewer would each keep a rendering: bounded.
        if cache.len() >= MAX_CACHED_RENDERINGS {
            cache.clear();
        }
    }
    let body = if gz { gzip(text.as_bytes()) } else { Bytes::from(text) };
    cache.insert(key, (st.version, body.clone()));
    (body, published)
}

async fn part_response(stream: &LiveHls, r: usize, msn: u64, part: usize) -> Response {
    let td = stream.params.target_duration;
    let not_found = || error(StatusCode::NOT_FOUND, format!("public, max-age={td}"), "no such part");
    let lookup = |st: &State| st.renditions[r].part(msn, part).map(|p| (p.data.clone(), p.published_us));
    let hinted = {
        let st = stream.read();
        if let Some((data, at)) = lookup(&st) {
            return media_response(data, "video/iso.segment", at);
        }
        st.next_part(&stream.params, r) == Some((msn, part))
    };
    if !hinted {
        return not_found();
    }
    // The hinted part: held until it is complete, then sent whole (rfc8216bis 6.2.6). If the
    // stream moves past it (its segment ended sooner), the hint is dropped: 404.
    let gone = |st: &State| {
        let rend = &st.renditions[r];
        rend.segments.last().is_some_and(|s| s.msn > msn || (s.msn == msn && s.complete))
    };
    let waited = wait_until(stream, |st| lookup(st).is_some() || gone(st)).await;
    let found = lookup(&stream.read());
    match (waited, found) {
        (_, Some((data, at))) => media_response(data, "video/iso.segment", at),
        (Waited::TimedOut, None) => error(StatusCode::SERVICE_UNAVAILABLE, "no-store".into(), "the part did not appear in time"),
        (Waited::Ready, None) => not_found(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives() {
        assert_eq!(Directives::parse(None).unwrap(), Directives::default());
        let d = Directives::parse(Some("_HLS_msn=5&_HLS_part=2&_HLS_skip=YES&x=1")).unwrap();
        assert_eq!(d, Directives { msn: Some(5), part: Some(2), skip: true });
        assert!(Directives::parse(Some("_HLS_part=2")).is_err());
        assert!(Directives::parse(Some("_HLS_msn=-1")).is_err());
        assert!(Directives::parse(Some("_HLS_msn=abc")).is_err());
        assert!(Directives::parse(Some("_HLS_skip=v2")).unwrap().skip);
    }

    #[test]
    fn gzip_negotiation() {
        let mut h = HeaderMap::new();
        assert!(!accepts_gzip(&h));
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("br, gzip;q=0.8"));
        assert!(accepts_gzip(&h));
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip;q=0, br"));
        assert!(!accepts_gzip(&h));
    }
}

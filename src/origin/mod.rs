//! The HTTP origin: LL-HLS for live egresses (from memory: the [`live`] store that each
//! egress's HLS writer publishes into, rendered by [`playlist`], served by [`llhls`]),
//! segments and the playlists of ended egresses from the output folder, the player page, and
//! the templates Chromium loads. It knows nothing of jobs or workers.

pub mod assets;
pub mod live;
pub mod llhls;
pub mod playlist;
pub mod signing;

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tower::ServiceExt;
use tower_http::cors::CorsLayer;
use tower_http::services::ServeFile;

use live::LiveRegistry;

const PLAYER_HTML: &str = include_str!("../../web/player.html");
const HLS_JS: &[u8] = include_bytes!("../../web/vendor/hls.min.js");

#[derive(Clone)]
pub struct OriginState {
    pub output_dir: PathBuf,
    pub streams: Arc<LiveRegistry>,
    /// Set when `origin.signing_key` is: every `/hls/…` request must be signed.
    pub signer: Option<Arc<signing::Signer>>,
}

pub fn router(state: OriginState, templates: assets::TemplateSource) -> Router {
    let pages = Router::new().route("/templates/{*file}", get(assets::template_file)).with_state(templates);
    Router::new()
        .route("/hls/{egress_id}/{*file}", get(hls_file))
        .route("/play/{egress_id}", get(|| async { Html(PLAYER_HTML) }))
        .route("/play/{egress_id}/{*playlist}", get(|| async { Html(PLAYER_HTML) }))
        .route("/static/hls.min.js", get(hls_js))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
        .merge(pages)
        .layer(CorsLayer::permissive())
}

async fn hls_js() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript"), (header::CACHE_CONTROL, "public, max-age=86400")], HLS_JS)
}

/// A request path inside the egress folder, or None if it tries to leave it.
pub fn safe_join(base: &Path, egress_id: &str, file: &str) -> Option<PathBuf> {
    let valid_id = !egress_id.is_empty() && egress_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let rel = Path::new(file);
    let valid_file = rel.components().all(|c| matches!(c, Component::Normal(_)));
    (valid_id && valid_file && !file.is_empty()).then(|| base.join(egress_id).join(rel))
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("m3u8") => "application/vnd.apple.mpegurl",
        Some("m4s") => "video/iso.segment",
        Some("mp4") => "video/mp4",
        _ => "application/octet-stream",
    }
}

async fn hls_file(
    State(st): State<OriginState>,
    UrlPath((egress_id, file)): UrlPath<(String, String)>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let Some(path) = safe_join(&st.output_dir, &egress_id, &file) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    // With signed URLs, the viewer's exp/sig, handed on to every URI its playlists list.
    let signed = match st.signer.as_deref().map(|s| s.verify(&egress_id, query.as_deref())).transpose() {
        Ok(q) => q,
        Err(denied) => {
            let mut r = (StatusCode::FORBIDDEN, format!("{denied}\n")).into_response();
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return r;
        }
    };
    if let Some(stream) = st.streams.get(&egress_id) {
        if let Some(r) = llhls::serve(stream, &file, query.as_deref(), &headers, signed.as_deref()).await {
            return r;
        }
    }
    let ct = content_type(&path);
    if ct == llhls::PLAYLIST_TYPE {
        // A stream no longer in memory: its playlists are final (and small: read whole).
        return match tokio::fs::read(&path).await {
            Ok(data) => {
                let data = match &signed {
                    Some(q) => signing::sign_uris(&String::from_utf8_lossy(&data), q).into_bytes(),
                    None => data,
                };
                let gz = llhls::accepts_gzip(&headers);
                let body = if gz { llhls::gzip(&data) } else { data.into() };
                llhls::playlist_response(body, gz, "public, max-age=60")
            }
            Err(_) => StatusCode::NOT_FOUND.into_response(),
        };
    }
    // Segments and recordings are streamed from disk, never read whole (fifty downloads of a
    // long MP4 would hold fifty copies), with Range and HEAD as players and downloaders use.
    let mut req = axum::http::Request::new(axum::body::Body::empty());
    *req.method_mut() = method;
    for h in [header::RANGE, header::IF_RANGE, header::IF_MODIFIED_SINCE, header::IF_UNMODIFIED_SINCE] {
        if let Some(v) = headers.get(&h) {
            req.headers_mut().insert(h, v.clone());
        }
    }
    let Ok(mut r) = ServeFile::new_with_mime(&path, &mime_of(ct)).oneshot(req).await;
    if r.status().is_success() {
        r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(llhls::IMMUTABLE));
    }
    r.map(axum::body::Body::new)
}

fn mime_of(ct: &'static str) -> mime::Mime {
    ct.parse().unwrap_or(mime::APPLICATION_OCTET_STREAM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_egress_folder() {
        let base = Path::new("/out");
        assert_eq!(safe_join(base, "EG_a1", "live/x.m3u8"), Some(PathBuf::from("/out/EG_a1/live/x.m3u8")));
        assert_eq!(safe_join(base, "EG_a1", "../EG_b/x"), None);
        assert_eq!(safe_join(base, "..", "x"), None);
        assert_eq!(safe_join(base, "EG_a1", "/etc/passwd"), None);
        assert_eq!(safe_join(base, "EG_a1", ""), None);
    }
}

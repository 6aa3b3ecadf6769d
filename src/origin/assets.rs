//! The pages roomcast serves itself, built into the binary: the room template and test
//! publisher (`templates/`, built from `web/` before cargo runs), the demo page. `roomcast
//! serve` therefore works from any working directory; a configured `templates_dir` is looked
//! at first, file by file, so a designer can override one template without copying the rest.

use std::path::PathBuf;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;
use tower::ServiceExt;
use tower_http::services::ServeDir;

#[derive(RustEmbed)]
#[folder = "templates/"]
struct Templates;

/// Where `/templates/{*file}` looks: the override folder first (if configured), then the
/// binary.
#[derive(Clone, Default)]
pub struct TemplateSource {
    pub override_dir: Option<PathBuf>,
}

/// Whether the binary carries the room template (false when cargo ran before `npm run build`).
pub fn has_room_template() -> bool {
    Templates::get("room/index.html").is_some()
}

pub async fn template_file(State(src): State<TemplateSource>, UrlPath(file): UrlPath<String>) -> Response {
    if let Some(dir) = &src.override_dir {
        let req = axum::http::Request::get(format!("/{file}")).body(Body::empty());
        if let Ok(req) = req {
            let Ok(r) = ServeDir::new(dir).oneshot(req).await;
            if r.status() != StatusCode::NOT_FOUND {
                return r.map(Body::new);
            }
        }
    }
    let path = if file.ends_with('/') || file.is_empty() { format!("{file}index.html") } else { file };
    match Templates::get(&path) {
        Some(f) => {
            let mime = f.metadata.mimetype();
            let mut r = Response::new(Body::from(f.data.into_owned()));
            if let Ok(v) = HeaderValue::from_str(mime) {
                r.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            r
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

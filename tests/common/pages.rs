//! The test pages (tests/pages/: the A/V and clock pages, a still page, a page that signals),
//! served by the tests themselves on loopback: production serves only its templates. One
//! server per test binary, on a thread and runtime of its own, so a test that blocks its own
//! runtime never stalls a Chromium loading a page.

use std::path::Path;
use std::sync::OnceLock;

/// `http://127.0.0.1:<port>`, where tests/pages/ is served.
pub fn base() -> &'static str {
    static BASE: OnceLock<String> = OnceLock::new();
    BASE.get_or_init(|| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the test page server");
        let url = format!("http://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let dir = super::repo().join("tests/pages");
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new().fallback_service(tower_http::services::ServeDir::new(dir));
                axum::serve(listener, app).await.unwrap();
            });
        });
        url
    })
}

/// Whether `path` (a query allowed) is one of the test pages.
pub fn is_test_page(path: &str) -> bool {
    let file = path.split('?').next().unwrap_or(path);
    Path::new(&super::repo().join("tests/pages").join(file)).is_file()
}

//! The page's forward proxy: Chromium sends every request through it (`--proxy-server`, with
//! loopback not bypassed), and it connects only where the network policy allows, to the
//! addresses it judged itself. This is how the policy covers navigations, redirects (each hop
//! is a new request), subresources, fetches and WebSockets, and why DNS rebinding cannot get
//! through: the name is resolved once, here, and the connection goes to the judged answer.
//!
//! Written by hand on hyper: CONNECT tunnels (https, wss, and Chromium's ws) and absolute-form
//! plain HTTP are all a page needs, and no maintained crate is a forward proxy with a
//! pluggable connector. WebRTC media (UDP to ICE candidates) does not pass through a proxy;
//! docs/operations.md says so.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::resolve::{Blocked, Checker};
use super::Refusal;

/// Refusals kept for the egress's error (the first ones are the telling ones).
const MAX_REFUSALS: usize = 32;

type Body = BoxBody<Bytes, hyper::Error>;

/// A running proxy, ended when dropped.
pub struct Proxy {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    task: JoinHandle<()>,
}

/// What the proxy could not do, for the egress's error (the first ones are the telling ones).
#[derive(Default)]
struct Seen {
    refused: Vec<Refusal>,
    /// (`host:port`, why).
    unreachable: Vec<(String, String)>,
}

impl Proxy {
    /// Listens on a free loopback port.
    pub async fn start(checker: Checker) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.context("binding the page proxy")?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let state = Arc::new(State { checker, seen: Arc::clone(&seen) });
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(req, Arc::clone(&state)));
                    let conn = hyper::server::conn::http1::Builder::new()
                        .preserve_header_case(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades();
                    if let Err(e) = conn.await {
                        debug!("page proxy connection: {e}");
                    }
                });
            }
        });
        Ok(Self { addr, seen, task })
    }

    /// What Chromium's `--proxy-server` names.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request refused so far (at most [`MAX_REFUSALS`]).
    pub fn refusals(&self) -> Vec<Refusal> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).refused.clone()
    }

    /// Why requests that were allowed could not be sent (no such name, connection refused),
    /// as (`host:port`, why).
    pub fn unreachable(&self) -> Vec<(String, String)> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).unreachable.clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct State {
    checker: Checker,
    seen: Arc<Mutex<Seen>>,
}

impl State {
    /// The answer to a request that may not go where it asks.
    fn blocked(&self, target: String, b: Blocked) -> Response<Body> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        match b {
            Blocked::Refused(r) => {
                warn!(target = %r.target, "page request refused by the network policy: {r}");
                let text = format!("refused by the network policy: {r}\n");
                if seen.refused.len() < MAX_REFUSALS {
                    seen.refused.push(r);
                }
                respond(StatusCode::FORBIDDEN, text)
            }
            Blocked::Unreachable(why) => {
                debug!("page request failed: {why}");
                if seen.unreachable.len() < MAX_REFUSALS {
                    seen.unreachable.push((target, why.clone()));
                }
                respond(StatusCode::BAD_GATEWAY, format!("{why}\n"))
            }
        }
    }
}

fn respond(status: StatusCode, text: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(text)).map_err(|never| match never {}).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain"));
    r
}

async fn handle(req: Request<Incoming>, state: Arc<State>) -> Result<Response<Body>, Infallible> {
    Ok(match req.method() == Method::CONNECT {
        true => tunnel(req, &state).await,
        false => forward(req, &state).await,
    })
}

/// CONNECT host:port: a byte tunnel to a judged address.
async fn tunnel(req: Request<Incoming>, state: &State) -> Response<Body> {
    let Some(auth) = req.uri().authority().cloned() else {
        return respond(StatusCode::BAD_REQUEST, "CONNECT needs host:port\n".into());
    };
    let port = auth.port_u16().unwrap_or(443);
    let mut upstream = match state.checker.connect(auth.host(), port).await {
        Ok(s) => s,
        Err(b) => return state.blocked(format!("{}:{port}", auth.host()), b),
    };
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(client) => {
                let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut upstream).await;
            }
            Err(e) => debug!("page proxy tunnel: {e}"),
        }
    });
    Response::new(Empty::new().map_err(|never| match never {}).boxed())
}

/// An absolute-form `GET http://host/path`: sent on a fresh connection to a judged address.
async fn forward(mut req: Request<Incoming>, state: &State) -> Response<Body> {
    let uri = req.uri().clone();
    if uri.scheme_str() != Some("http") {
        return respond(StatusCode::BAD_REQUEST, "a proxy request needs an absolute http:// URL\n".into());
    }
    let Some(host) = uri.host() else {
        return respond(StatusCode::BAD_REQUEST, "no host\n".into());
    };
    let port = uri.port_u16().unwrap_or(80);
    let upstream = match state.checker.connect(host, port).await {
        Ok(s) => s,
        Err(b) => return state.blocked(format!("{host}:{port}"), b),
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await {
        Ok(c) => c,
        Err(e) => return respond(StatusCode::BAD_GATEWAY, format!("{host}:{port}: {e}\n")),
    };
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            debug!("page proxy upstream: {e}");
        }
    });
    // The origin server gets an origin-form request; the proxy's own headers stay here.
    let path = uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
    *req.uri_mut() = match path.parse() {
        Ok(p) => p,
        Err(_) => return respond(StatusCode::BAD_REQUEST, "bad path\n".into()),
    };
    req.headers_mut().remove("proxy-connection");
    req.headers_mut().remove(hyper::header::PROXY_AUTHORIZATION);
    match sender.send_request(req).await {
        Ok(resp) => resp.map(|b| b.boxed()),
        Err(e) => respond(StatusCode::BAD_GATEWAY, format!("{host}:{port}: {e}\n")),
    }
}

//! `roomcast serve`: the API and the origin on one listener, metrics on another, and an
//! orderly shutdown on SIGINT or SIGTERM: refuse new egresses, stop every egress in parallel
//! within `timeouts.drain_secs` (finalising its outputs), then close connections.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::api::{self, auth::Auth, ApiState};
use crate::config::Config;
use crate::job::manager::JobManager;
use crate::listener::{self, Limits};
use crate::metrics::Metrics;
use crate::origin::live::LiveRegistry;
use crate::origin::{self, OriginState};

pub async fn serve(mut cfg: Config) -> Result<()> {
    crate::pipeline::init()?;
    // Once, here: every egress gets the concrete encoder, and a missing one stops the start.
    cfg.encoder.video = crate::pipeline::encoder::resolve(cfg.encoder.video)?;
    let (key, secret, dev) = cfg.keys()?;
    if dev {
        warn!(api_key = %key, api_secret = %secret, "no API keys configured: using the development key pair (loopback only)");
        eprintln!("roomcast: development keys  LIVEKIT_API_KEY={key}  LIVEKIT_API_SECRET={secret}");
    }
    std::fs::create_dir_all(&cfg.output_dir).with_context(|| format!("creating {}", cfg.output_dir.display()))?;
    let cfg = Arc::new(cfg);
    let streams = LiveRegistry::new();
    let metrics = Metrics::new();
    let jobs = JobManager::new(Arc::clone(&cfg), Arc::clone(&streams), Arc::clone(&metrics));
    jobs.recover();
    jobs.start_retention();
    jobs.start_pool();
    // Behind livekit-server: its egress requests arrive over psrpc on Redis.
    let worker = match cfg.redis.url() {
        Some(url) => Some(
            api::egress_worker::EgressWorker::start(&url, &cfg.cluster_id, Arc::clone(&jobs))
                .await
                .with_context(|| format!("serving livekit-server over Redis at {}", cfg.redis.address.as_deref().unwrap_or_default()))?,
        ),
        None => None,
    };
    let app = api::router(ApiState { auth: Arc::new(Auth::new(&key, &secret)), jobs: Arc::clone(&jobs) }).merge(origin::router(
        OriginState {
            output_dir: cfg.output_dir.clone(),
            streams,
            signer: origin::signing::Signer::from_config(&cfg.origin).map(Arc::new),
        },
        origin::assets::TemplateSource { override_dir: cfg.templates_dir.clone() },
    ));
    if !origin::assets::has_room_template() && cfg.templates_dir.is_none() {
        warn!(
            "this binary carries no room template (built before `npm run build`): room composites need templates_dir or room.template_base"
        );
    }
    let limits = Limits {
        header_read_timeout: Duration::from_secs(cfg.http.header_read_timeout_secs.max(1)),
        max_connections: cfg.http.max_connections,
        close_grace: Duration::from_secs(cfg.http.close_grace_secs),
    };
    let listener = tokio::net::TcpListener::bind(cfg.bind).await.with_context(|| format!("binding {}", cfg.bind))?;
    let addr = listener.local_addr()?;
    let (close_tx, close) = watch::channel(false);
    let mut servers = vec![tokio::spawn(listener::serve(listener, app, limits, close.clone()))];
    // Metrics name every live egress: on their own listener, loopback unless configured.
    if let Some(bind) = cfg.metrics_bind {
        match tokio::net::TcpListener::bind(bind).await {
            Ok(l) => {
                let m = Router::new()
                    .route("/metrics", get(move || async move { ([(CONTENT_TYPE, "text/plain; version=0.0.4")], metrics.render()) }));
                info!(addr = %l.local_addr()?, "metrics serving");
                servers.push(tokio::spawn(listener::serve(l, m, limits, close.clone())));
            }
            Err(e) => warn!(%bind, "metrics not served: binding failed: {e}"),
        }
    }
    info!(%addr, public_url = %cfg.public_url(), "roomcast serving");
    eprintln!("roomcast: listening on http://{addr}");
    shutdown_signal().await;
    // New egresses are refused at once; the running ones stop in parallel while the origin
    // still serves their final playlists; then the connections get a bounded grace.
    info!("shutting down: stopping egresses");
    jobs.refuse_new();
    if let Some(w) = &worker {
        w.stop_accepting().await;
    }
    jobs.shutdown(Duration::from_secs(cfg.timeouts.drain_secs)).await;
    // The final EgressInfo of each stopped egress still goes to livekit-server.
    if let Some(w) = &worker {
        w.drain(Duration::from_secs(5)).await;
    }
    let _ = close_tx.send(true);
    for s in servers {
        let _ = s.await;
    }
    info!("bye");
    Ok(())
}
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

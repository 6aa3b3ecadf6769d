//! The `roomcast` command line.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use livekit_api::access_token::{AccessToken, VideoGrants};
use livekit_protocol as proto;
use roomcast::config::Config;
use roomcast::origin::live::LiveHls;
use roomcast::output::Outputs;
use roomcast::spec::{JobSpec, DEFAULT_FRAMERATE, DEFAULT_HEIGHT, DEFAULT_WIDTH};
use roomcast::worker::{self, WorkerEvent};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "roomcast", version, about = "Headless-browser composition egress: web pages and WebRTC rooms to HLS")]
struct Cli {
    /// YAML config file (env: ROOMCAST_CONFIG).
    #[arg(long, global = true, env = "ROOMCAST_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the service: the LiveKit Egress API and the HLS origin.
    Serve {
        /// Listen address (overrides config and ROOMCAST_BIND).
        #[arg(long)]
        bind: Option<std::net::SocketAddr>,
    },
    /// Run one web egress in the foreground until Ctrl-C or the duration.
    Run {
        /// Page to capture.
        #[arg(long)]
        url: String,
        /// Folder for the playlists and segments.
        #[arg(long)]
        out: PathBuf,
        /// Stop after this many seconds.
        #[arg(long)]
        duration: Option<f64>,
        #[arg(long, default_value_t = DEFAULT_WIDTH as i32)]
        width: i32,
        #[arg(long, default_value_t = DEFAULT_HEIGHT as i32)]
        height: i32,
        #[arg(long, default_value_t = DEFAULT_FRAMERATE as i32)]
        framerate: i32,
    },
    /// Print an API token (roomRecord grant) signed with the configured or development keys.
    Token {
        /// Validity in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
    /// Internal: one egress in a child process, driven by `serve` over stdin/stdout.
    #[command(hide = true)]
    Worker,
    /// Internal: one stream output (RTMP/SRT) fed fragmented MP4 on stdin by `serve`.
    #[command(hide = true)]
    Push,
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,chromiumoxide=warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

#[tokio::main]
async fn main() -> Result<()> {
    init_logging();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Worker => {
            // Exit at once when done: tokio's stdin reader would otherwise hold the runtime
            // open until the supervisor closes the pipe.
            let result = worker::ipc::child_main().await;
            if let Err(e) = &result {
                eprintln!("roomcast worker: {e:#}");
            }
            std::process::exit(i32::from(result.is_err()));
        }
        Cmd::Push => {
            let result = roomcast::output::push::child_main();
            if let Err(e) = &result {
                eprintln!("roomcast push: {e:#}");
            }
            std::process::exit(i32::from(result.is_err()));
        }
        Cmd::Serve { bind } => {
            let mut cfg = Config::load(cli.config.as_deref())?;
            if let Some(b) = bind {
                cfg.bind = b;
            }
            roomcast::server::serve(cfg).await
        }
        Cmd::Token { ttl } => {
            let cfg = Config::load(cli.config.as_deref())?;
            let (key, secret, _) = cfg.keys()?;
            let token = AccessToken::with_api_key(&key, &secret)
                .with_ttl(Duration::from_secs(ttl))
                .with_grants(VideoGrants { room_record: true, ..Default::default() })
                .to_jwt()?;
            println!("{token}");
            Ok(())
        }
        Cmd::Run { url, out, duration, width, height, framerate } => {
            let cfg = Config::load(cli.config.as_deref())?;
            let req = proto::WebEgressRequest {
                url,
                segment_outputs: vec![proto::SegmentedFileOutput::default()],
                options: Some(proto::web_egress_request::Options::Advanced(proto::EncodingOptions {
                    width,
                    height,
                    framerate,
                    ..Default::default()
                })),
                ..Default::default()
            };
            let spec = JobSpec::from_web_request("run", &req, &cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
            run_foreground(spec, out, duration, &cfg).await
        }
    }
}

/// `roomcast run`: the same worker code and outputs as `serve`, in this process, writing HLS
/// to `out`.
async fn run_foreground(spec: JobSpec, out: PathBuf, duration: Option<f64>, cfg: &Config) -> Result<()> {
    let hls_spec = spec.hls.clone().context("no hls output")?;
    let live = LiveHls::for_spec(&spec, out.clone());
    let mut outputs = Outputs::new(&spec, &out, live, cfg.stream.retry())?;
    let stop = CancellationToken::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let egress = {
        let stop = stop.clone();
        tokio::spawn(async move { worker::run(&spec, tx, mpsc::unbounded_channel().1, stop, None).await })
    };
    let timer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            match duration {
                Some(d) => tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs_f64(d)) => {}
                    _ = tokio::signal::ctrl_c() => {}
                },
                None => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
            stop.cancel();
        })
    };
    let mut failed = None;
    while let Some(ev) = rx.recv().await {
        match ev {
            WorkerEvent::Media(m) => {
                if let Some(e) = outputs.push(m) {
                    failed.get_or_insert(e);
                    stop.cancel();
                }
            }
            WorkerEvent::Active => eprintln!("roomcast: capturing; writing to {}", out.display()),
            WorkerEvent::BrowserRestarted { reason } => eprintln!("roomcast: chromium relaunched ({reason}); recording goes on"),
            // The worker logs its own frame counts when it ends.
            WorkerEvent::BrowserStarted { .. } | WorkerEvent::Stats(_) => {}
        }
    }
    let result = egress.await.context("egress task")?;
    timer.abort();
    let (infos, error) = outputs.finish().await;
    let stats = infos.segments.unwrap_or_default();
    eprintln!(
        "roomcast: {} segments, {:.1} s, playlist {}",
        stats.segment_count,
        stats.duration_ns as f64 / 1e9,
        out.join(&hls_spec.playlist_name).display()
    );
    result?;
    match error.or(failed) {
        Some(e) => Err(anyhow::anyhow!(e)),
        None => Ok(()),
    }
}

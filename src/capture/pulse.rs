//! A private PulseAudio server per egress: one null sink that is its Chromium's only output,
//! whose monitor the pipeline records. Each egress gets its own server (socket, runtime
//! folder, sink), so concurrent egresses can never hear each other, whatever sink a page or
//! Chromium would pick; the server lives in its own process group and dies with the worker.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tokio::process::{Child, Command};
use tracing::info;

/// Name of the null sink; its monitor source is `{SINK}.monitor`.
pub const SINK: &str = "roomcast";

pub struct SoundServer {
    /// Held so the process is reaped (and killed on drop with the group).
    _child: Child,
    pgid: i32,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl SoundServer {
    /// Starts the server and waits until it accepts clients.
    pub async fn start(pulseaudio: &str, sample_rate: u32, channels: u32, timeout: Duration) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("roomcast-pulse-").tempdir().context("creating the sound server's folder")?;
        let socket = dir.path().join("native");
        // Clients (Chromium) open streams at the server's default rate: make it the sink's,
        // or the server resamples every page's sound (Chromium asked for 44.1 kHz).
        let conf = dir.path().join("pulse");
        std::fs::create_dir_all(&conf).context("creating the sound server's config folder")?;
        std::fs::write(
            conf.join("daemon.conf"),
            format!("default-sample-format = float32le\ndefault-sample-rate = {sample_rate}\ndefault-sample-channels = {channels}\n"),
        )
        .context("writing the sound server's daemon.conf")?;
        let mut cmd = Command::new(pulseaudio);
        cmd.args([
            "-n", // no default script: only the modules below
            "--daemonize=no",
            "--use-pid-file=no",
            "--system=no",
            "--exit-idle-time=-1",
            "--disallow-exit",
            "--realtime=no",
            "--high-priority=no",
            "--log-target=stderr",
            "--log-level=warning",
        ])
        .arg(format!("--load=module-native-protocol-unix socket={} auth-anonymous=1", socket.display()))
        // Never suspended (module-suspend-on-idle is not loaded): a silent page still gives
        // continuous silence on the monitor.
        .arg(format!("--load=module-null-sink sink_name={SINK} rate={sample_rate} channels={channels}"))
        .env("HOME", dir.path())
        .env("XDG_RUNTIME_DIR", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        // As root it reads only /etc/pulse unless pointed here.
        .env("PULSE_CONFIG_PATH", &conf)
        .env_remove("PULSE_SERVER");
        crate::proc::own(&mut cmd);
        let mut child = cmd.spawn().with_context(|| format!("starting {pulseaudio} (apt install pulseaudio)"))?;
        let pid = child.id().ok_or_else(|| anyhow!("pulseaudio exited at once"))? as i32;
        // As root it always warns that it is not meant to be; that is expected.
        crate::proc::log_stderr(&mut child, "pulseaudio");
        let started = Instant::now();
        loop {
            if tokio::net::UnixStream::connect(&socket).await.is_ok() {
                info!(pid, "sound server started");
                return Ok(Self { _child: child, pgid: pid, socket, _dir: dir });
            }
            if let Ok(Some(status)) = child.try_wait() {
                bail!("pulseaudio exited during start-up ({status})");
            }
            if started.elapsed() > timeout {
                unsafe { libc::killpg(pid, libc::SIGKILL) };
                bail!("pulseaudio did not accept clients within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Restarts the sink's rendering once the recorder is connected. A null sink with no
    /// client renders in 2 s blocks, and only picks up a client's latency at the next block:
    /// without this the first samples reach the recorder up to 2 s late (measured 1.8 s).
    /// Suspending and resuming it starts a block at the latency the recorder asked for.
    pub async fn restart_sink(&self) -> Result<()> {
        for suspend in ["1", "0"] {
            let out = Command::new("pactl")
                .args(["--server", &self.address(), "suspend-sink", SINK, suspend])
                .stdin(Stdio::null())
                .output()
                .await
                .context("running pactl (apt install pulseaudio-utils)")?;
            if !out.status.success() {
                bail!("pactl suspend-sink {SINK} {suspend}: {}", String::from_utf8_lossy(&out.stderr).trim());
            }
        }
        Ok(())
    }

    /// `PULSE_SERVER` value for clients (Chromium, pulsesrc).
    pub fn address(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    /// The source to record: everything played into the sink.
    pub fn monitor(&self) -> String {
        format!("{SINK}.monitor")
    }
}

impl Drop for SoundServer {
    fn drop(&mut self) {
        unsafe { libc::killpg(self.pgid, libc::SIGKILL) };
    }
}

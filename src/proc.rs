//! Child processes: our own subcommands (`roomcast worker`, `roomcast push`) and the helpers an
//! egress owns (its sound server, its X server, Chromium). Each runs in a process group of its
//! own (the unit a kill reaches, Chromium's zygote and renderers included), and its stderr is
//! drained into the log so it never blocks on a full pipe.

use std::process::Stdio;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};
use tracing::debug;

/// The variables of serve's environment a child keeps; everything else (LIVEKIT_API_SECRET,
/// the SFU's secret, Redis credentials, a cloud's tokens) stays out of processes that decode
/// media from arbitrary room participants.
const ENV_ALLOW: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "TZ",
    "TMPDIR",
    "RUST_LOG",
    "RUST_BACKTRACE",
    "FONTCONFIG_FILE",
    "FONTCONFIG_PATH",
    "LD_LIBRARY_PATH",
];
/// GStreamer's debugging and plugin variables, for the worker and push processes.
const ENV_ALLOW_PREFIX: &[&str] = &["GST_"];

fn env_allowed(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy();
    ENV_ALLOW.contains(&name.as_ref()) || ENV_ALLOW_PREFIX.iter().any(|p| name.starts_with(p))
}

/// Starts `cmd` from a cleared environment: the allow-listed variables of ours, then those the
/// caller set on `cmd` itself (DISPLAY, PULSE_SERVER, …), which win.
pub fn clean_env(cmd: &mut Command) -> &mut Command {
    let explicit: Vec<_> = cmd.as_std().get_envs().map(|(k, v)| (k.to_owned(), v.map(|v| v.to_owned()))).collect();
    cmd.env_clear();
    for (k, v) in std::env::vars_os() {
        if env_allowed(&k) {
            cmd.env(k, v);
        }
    }
    for (k, v) in explicit {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd
}

/// SIGKILL for the child when the process that started it dies, even by SIGKILL.
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe; it only sets this child's parent-death signal.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd
}

/// Sets up `cmd` as an owned helper: a cleaned environment ([`clean_env`]; call this after
/// setting its own variables), no stdin/stdout, stderr piped (see [`log_stderr`]), its own
/// process group, SIGKILL on drop and on the parent's death.
pub fn own(cmd: &mut Command) -> &mut Command {
    clean_env(cmd);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).process_group(0).kill_on_drop(true);
    die_with_parent(cmd)
}

/// `roomcast <name>`: this very binary as a child, with a cleaned environment, in a process
/// group of its own, killed on drop. The caller sets its pipes (and whether it dies with us).
pub fn subcommand(name: &str) -> Result<Command> {
    let exe = std::env::current_exe().context("locating the roomcast binary")?;
    let mut cmd = Command::new(exe);
    cmd.arg(name).process_group(0).kill_on_drop(true);
    clean_env(&mut cmd);
    Ok(cmd)
}

/// Logs the child's stderr lines at debug level, tagged with `name`.
pub fn log_stderr(child: &mut Child, name: &'static str) {
    log_stderr_as(child, name, str::to_string);
}

/// Like [`log_stderr`], each line passed through `shown` first (which may redact a secret);
/// returns the last non-empty line seen so far, for an error message.
pub fn log_stderr_as(child: &mut Child, name: &'static str, shown: impl Fn(&str) -> String + Send + 'static) -> Arc<Mutex<String>> {
    let last = Arc::new(Mutex::new(String::new()));
    if let Some(stderr) = child.stderr.take() {
        let last = Arc::clone(&last);
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let line = shown(&line);
                debug!(process = name, "{line}");
                if !line.trim().is_empty() {
                    *last.lock().unwrap_or_else(|p| p.into_inner()) = line;
                }
            }
        });
    }
    last
}

/// SIGKILL to a process group we created (its leader's PID is the group id).
pub fn kill_group(pgid: i32) {
    if pgid > 1 {
        // ESRCH (already gone) is fine.
        unsafe {
            libc::killpg(pgid, libc::SIGKILL);
        }
    }
}

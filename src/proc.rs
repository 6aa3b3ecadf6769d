//! Helper processes an egress owns (its sound server, its X server): each in a process group
//! of its own, killed when dropped and when the worker that started it dies, its stderr
//! drained into the log so it never blocks on a full pipe.

use std::process::Stdio;

use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};
use tracing::debug;

/// Sets up `cmd` as an owned helper: no stdin/stdout, stderr piped (see [`log_stderr`]), its
/// own process group, SIGKILL on drop and on the parent's death.
pub fn own(cmd: &mut Command) -> &mut Command {
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).process_group(0).kill_on_drop(true);
    // SAFETY: prctl is async-signal-safe; it only sets this child's parent-death signal.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd
}

/// Logs the helper's stderr lines at debug level, tagged with `name`.
pub fn log_stderr(child: &mut Child, name: &'static str) {
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                debug!(process = name, "{line}");
            }
        });
    }
}

//! A private X server per egress (Xvfb), for the X11 capture backend: Chromium runs as an
//! ordinary kiosk window on it and the pipeline reads the screen with `ximagesrc`, as LiveKit
//! Egress does. The server picks a free display itself (`-displayfd`), lives in its own
//! process group and dies with the worker.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};
use tracing::info;

pub struct XServer {
    _child: Child,
    pgid: i32,
    display: String,
}

impl XServer {
    /// Starts Xvfb with one `width`×`height` 24-bit screen and waits until it takes clients.
    pub async fn start(xvfb: &str, width: u32, height: u32, timeout: Duration) -> Result<Self> {
        // Xvfb writes the display number it chose to this pipe once it accepts connections.
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills the two descriptors we own from here on.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            bail!("pipe for Xvfb: {}", std::io::Error::last_os_error());
        }
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let write_fd = write.as_raw_fd();
        let mut cmd = Command::new(xvfb);
        cmd.args(["-displayfd", &write_fd.to_string(), "-screen", "0", &format!("{width}x{height}x24"), "-nolisten", "tcp", "-noreset"]);
        crate::proc::own(&mut cmd);
        // SAFETY: fcntl is async-signal-safe; the write end must survive exec (it was opened
        // close-on-exec).
        unsafe {
            cmd.pre_exec(move || {
                libc::fcntl(write_fd, libc::F_SETFD, 0);
                Ok(())
            });
        }
        let mut child = cmd.spawn().with_context(|| format!("starting {xvfb} (apt install xvfb)"))?;
        drop(write);
        let pgid = child.id().ok_or_else(|| anyhow!("Xvfb exited at once"))? as i32;
        crate::proc::log_stderr(&mut child, "xvfb");
        let mut pipe = tokio::io::BufReader::new(tokio::fs::File::from_std(std::fs::File::from(read)));
        let mut number = String::new();
        let read = tokio::time::timeout(timeout, pipe.read_line(&mut number)).await;
        let number = number.trim().to_string();
        match read {
            Ok(Ok(_)) if !number.is_empty() => {}
            Ok(_) => {
                let status = child.try_wait().ok().flatten();
                bail!("Xvfb did not start (exit {status:?})")
            }
            Err(_) => {
                unsafe { libc::killpg(pgid, libc::SIGKILL) };
                bail!("Xvfb did not take clients within {timeout:?}")
            }
        }
        let name = format!(":{number}");
        info!(pid = pgid, display = %name, "X server started");
        Ok(Self { _child: child, pgid, display: name })
    }

    /// `:N`, for DISPLAY and ximagesrc.
    pub fn display(&self) -> &str {
        &self.display
    }
}

impl Drop for XServer {
    fn drop(&mut self) {
        // SAFETY: signals the process group we created; ESRCH (gone already) is fine.
        unsafe { libc::killpg(self.pgid, libc::SIGKILL) };
    }
}

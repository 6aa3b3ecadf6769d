//! A private X server per egress, for the X11 capture backend: Chromium runs as an ordinary
//! kiosk window on it and the pipeline reads the screen with `ximagesrc`, as LiveKit Egress
//! does. The server picks a free display itself (`-displayfd`), lives in its own process group
//! and dies with the worker.
//!
//! Xorg with the dummy driver is the default because its screen's refresh rate is ours to set:
//! Chromium's compositor ticks at the X screen's rate, so a mode at the output frame rate makes
//! it draw only the frames we keep. Xvfb's one mode reports 0 Hz and Chromium falls back to
//! 60 Hz.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};
use tracing::info;

use crate::config::XServerKind;
use crate::spec::BrowserSpec;

pub struct XServer {
    _child: Child,
    pgid: i32,
    display: String,
    /// Chromium's drawing period on this screen, µs (Xorg only: on Xvfb it draws at its
    /// default 60 Hz).
    tick_us: Option<u64>,
    /// Xorg's config and log, removed with the server.
    _dir: Option<tempfile::TempDir>,
    /// The only clients it admits hold this.
    cookie: super::xauth::Cookie,
}

/// The dummy driver's lowest pixel clock, kHz (11 MHz in xf86-video-dummy), with a margin.
const MIN_CLOCK_KHZ: u64 = 12_000;

/// The highest horizontal or vertical total we write (RandR's fields are 16-bit).
const MAX_TOTAL: u64 = 65_000;

/// The dummy driver's smallest screen: 64 wide (RandR's minimum; narrower fails its CRTC set-up)
/// and 128 high ("too small for the hardware").
const XORG_MIN: (u32, u32) = (64, 128);

/// An Xorg config: the dummy driver, one `width`×`height` mode refreshing `fps` times a second,
/// no input devices, and (see [`XServer::start`]) none of the admin's config snippets.
fn xorg_config(width: u32, height: u32, fps: u32) -> String {
    // Blanking sized so that the pixel clock is a whole number of kHz (Xorg keeps kHz):
    // htotal a multiple of 200 and vtotal of 5 make fps × htotal × vtotal a multiple of 1000.
    // The dummy driver refuses clocks under 11 MHz, so small or slow modes get wider blanking.
    // Totals stay under 65536: RandR, where Chromium reads the rate, keeps them in 16 bits.
    let fps = u64::from(fps.max(1));
    let pixels = (MIN_CLOCK_KHZ * 1000).div_ceil(fps);
    let mut htotal = u64::from(width + 160).div_ceil(200) * 200;
    let mut vtotal = (u64::from(height + 20).div_ceil(5) * 5).max(pixels.div_ceil(htotal).div_ceil(5) * 5);
    if vtotal > MAX_TOTAL {
        htotal = pixels.div_ceil(MAX_TOTAL).div_ceil(200) * 200;
        vtotal = pixels.div_ceil(htotal).div_ceil(5) * 5;
    }
    let clock_khz = fps * htotal * vtotal / 1000;
    let (hs, he) = (width + 32, width + 152);
    let (vs, ve) = (height + 3, height + 8);
    // The dummy driver's framebuffer, in KiB, with room to spare.
    let video_ram = (u64::from(width) * u64::from(height) * 4 / 1024 + 1024).max(16384);
    // Its highest clock (DacSpeed, MHz) defaults to 300 MHz: 4K at 60 needs more.
    let dac_mhz = (clock_khz / 1000 + 1).max(300);
    format!(
        r#"Section "ServerFlags"
  Option "AutoAddDevices" "false"
  Option "AutoEnableDevices" "false"
  Option "DontVTSwitch" "true"
  Option "BlankTime" "0"
  Option "StandbyTime" "0"
  Option "SuspendTime" "0"
  Option "OffTime" "0"
EndSection
Section "Device"
  Identifier "roomcast"
  Driver "dummy"
  VideoRam {video_ram}
  DacSpeed {dac_mhz}
EndSection
Section "Monitor"
  Identifier "roomcast"
  HorizSync 0.001 - 100000.0
  VertRefresh 0.1 - 1000.0
  Modeline "roomcast" {mhz}.{khz:03} {width} {hs} {he} {htotal} {height} {vs} {ve} {vtotal}
EndSection
Section "Screen"
  Identifier "roomcast"
  Device "roomcast"
  Monitor "roomcast"
  DefaultDepth 24
  SubSection "Display"
    Depth 24
    Modes "roomcast"
    Virtual {width} {height}
  EndSubSection
EndSection
"#,
        mhz = clock_khz / 1000,
        khz = clock_khz % 1000,
    )
}

impl XServer {
    /// Starts the configured X server with one `width`×`height` 24-bit screen refreshing
    /// `fps` times a second (on Xorg) and waits until it takes clients.
    pub async fn start(browser: &BrowserSpec, width: u32, height: u32, fps: u32, timeout: Duration) -> Result<Self> {
        let kind = match browser.x_server {
            XServerKind::Xorg if width < XORG_MIN.0 || height < XORG_MIN.1 => {
                info!(width, height, "Xorg's dummy screen cannot be this small: Xvfb instead (Chromium draws at 60 Hz)");
                XServerKind::Xvfb
            }
            k => k,
        };
        let (binary, install) = match kind {
            XServerKind::Xorg => (browser.xorg_path.as_str(), "apt install xserver-xorg-core xserver-xorg-video-dummy"),
            XServerKind::Xvfb => (browser.xvfb_path.as_str(), "apt install xvfb"),
        };
        // Xvfb writes the display number it chose to this pipe once it accepts connections.
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills the two descriptors we own from here on.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            bail!("pipe for Xvfb: {}", std::io::Error::last_os_error());
        }
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let write_fd = write.as_raw_fd();
        let cookie = super::xauth::Cookie::create()?;
        let mut cmd = Command::new(binary);
        cmd.args(["-displayfd", &write_fd.to_string(), "-nolisten", "tcp", "-noreset"]);
        cmd.arg("-auth").arg(cookie.path());
        let dir = match kind {
            XServerKind::Xvfb => {
                cmd.args(["-screen", "0", &format!("{width}x{height}x24")]);
                None
            }
            XServerKind::Xorg => {
                let dir = tempfile::Builder::new().prefix("roomcast-xorg-").tempdir().context("creating the X server's folder")?;
                let config = dir.path().join("xorg.conf");
                std::fs::write(&config, xorg_config(width, height, fps)).context("writing the Xorg config")?;
                // An empty folder in place of /etc/X11/xorg.conf.d, so an admin's snippets stay
                // out (Debian's own, in /usr/share/X11/xorg.conf.d, are input quirks only). As a
                // plain user Xorg logs that it cannot open this folder, and goes on.
                let snippets = dir.path().join("xorg.conf.d");
                std::fs::create_dir(&snippets).context("creating the Xorg config folder")?;
                cmd.arg("-config").arg(&config).arg("-configdir").arg(&snippets);
                cmd.arg("-logfile").arg(dir.path().join("xorg.log"));
                // No console to take: this is a service's screen, not a seat's.
                cmd.args(["-novtswitch", "-sharevts", "-nocursor"]);
                Some(dir)
            }
        };
        crate::proc::own(&mut cmd);
        // SAFETY: fcntl is async-signal-safe; the write end must survive exec (it was opened
        // close-on-exec).
        unsafe {
            cmd.pre_exec(move || {
                libc::fcntl(write_fd, libc::F_SETFD, 0);
                Ok(())
            });
        }
        let mut child = cmd.spawn().with_context(|| format!("starting {binary} ({install})"))?;
        drop(write);
        let pgid = child.id().ok_or_else(|| anyhow!("{binary} exited at once"))? as i32;
        crate::proc::log_stderr(&mut child, "x-server");
        let mut pipe = tokio::io::BufReader::new(tokio::fs::File::from_std(std::fs::File::from(read)));
        let mut number = String::new();
        let read = tokio::time::timeout(timeout, pipe.read_line(&mut number)).await;
        let number = number.trim().to_string();
        match read {
            Ok(Ok(_)) if !number.is_empty() => {}
            Ok(_) => {
                let status = child.wait().await.ok();
                let log = dir.as_ref().map(|d| errors_in_log(&d.path().join("xorg.log"))).unwrap_or_default();
                bail!("{binary} did not start (exit {status:?}){log}")
            }
            Err(_) => {
                unsafe { libc::killpg(pgid, libc::SIGKILL) };
                bail!("{binary} did not take clients within {timeout:?}")
            }
        }
        if let Some(d) = &dir {
            // A mode the driver refuses is skipped silently for one of its defaults (another
            // size, 60 Hz): the screen would not be the one asked for.
            let log = std::fs::read_to_string(d.path().join("xorg.log")).unwrap_or_default();
            if let Some(line) = log.lines().find(|l| l.contains("Not using mode \"roomcast\"")) {
                unsafe { libc::killpg(pgid, libc::SIGKILL) };
                bail!("Xorg refused the {width}x{height} {fps} Hz screen mode: {}", line.trim());
            }
        }
        let name = format!(":{number}");
        info!(pid = pgid, display = %name, server = ?kind, fps, "X server started");
        let tick_us = (kind == XServerKind::Xorg).then(|| chromium_tick_us(fps));
        Ok(Self { _child: child, pgid, display: name, tick_us, _dir: dir, cookie })
    }

    /// `:N`, for DISPLAY and ximagesrc.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// The cookie file a client needs (Chromium's XAUTHORITY).
    pub fn xauthority(&self) -> &std::path::Path {
        self.cookie.path()
    }

    /// How often Chromium draws on this screen, µs, where that follows the screen's mode.
    pub fn chromium_tick_us(&self) -> Option<u64> {
        self.tick_us
    }
}

/// Chromium's frame interval on a screen refreshing `fps` times a second: it reads the mode's
/// rate from RandR and keeps `1 / rate` as whole microseconds, truncated (base::Seconds).
/// Measured: 30 fps → 33 333, 25 → 40 000, 60 → 16 666 (each the period at which its drawing
/// keeps one phase of CLOCK_MONOTONIC across restarts and minutes).
fn chromium_tick_us(fps: u32) -> u64 {
    1_000_000 / u64::from(fps.max(1))
}

/// Xorg's `(EE)` lines, for the error when it did not start (it writes them to its log, and to
/// stderr only at verbosity it also floods with notices).
fn errors_in_log(log: &std::path::Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let errors: Vec<&str> = text.lines().filter(|l| l.contains("(EE)") && !l.contains("(EE) error,")).map(str::trim).take(5).collect();
    if errors.is_empty() {
        String::new()
    } else {
        format!(": {}", errors.join("; "))
    }
}

impl Drop for XServer {
    fn drop(&mut self) {
        // SAFETY: signals the process group we created; ESRCH (gone already) is fine.
        unsafe { libc::killpg(self.pgid, libc::SIGKILL) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mode's refresh is exactly the frame rate: Chromium paces its drawing by it.
    #[test]
    fn xorg_mode_refreshes_at_the_frame_rate() {
        for (w, h, fps) in [
            (1280, 720, 30),
            (1920, 1080, 30),
            (1280, 720, 25),
            (1920, 1080, 60),
            (640, 360, 25),
            (320, 180, 1),
            (128, 128, 1),
            (16, 3840, 1),
            (3840, 3840, 60),
        ] {
            let conf = xorg_config(w, h, fps);
            let line = conf.lines().find(|l| l.trim_start().starts_with("Modeline")).unwrap();
            let f: Vec<&str> = line.split_whitespace().collect();
            let clock_hz = (f[2].parse::<f64>().unwrap() * 1e6).round();
            let (htotal, vtotal): (f64, f64) = (f[6].parse().unwrap(), f[10].parse().unwrap());
            assert_eq!(f[3], w.to_string());
            assert_eq!(f[7], h.to_string());
            assert!((clock_hz / (htotal * vtotal) - f64::from(fps)).abs() < 1e-9, "{line}");
            assert!(clock_hz >= 11e6, "above the dummy driver's lowest clock: {line}");
            assert!(htotal <= 65535.0 && vtotal <= 65535.0, "16-bit totals: {line}");
            let dac: f64 = conf.lines().find_map(|l| l.trim().strip_prefix("DacSpeed ")).unwrap().parse().unwrap();
            assert!(clock_hz <= dac * 1e6, "within the driver's highest clock: {line}");
            assert!(conf.contains(&format!("Virtual {w} {h}")));
        }
    }

    #[test]
    fn chromium_ticks_are_whole_microseconds() {
        assert_eq!([30, 25, 60, 24, 50, 1].map(chromium_tick_us), [33_333, 40_000, 16_666, 41_666, 20_000, 1_000_000]);
    }
}

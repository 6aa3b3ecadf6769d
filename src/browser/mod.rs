//! One headless Chromium per egress: launched from Debian's binary with a fresh profile in its
//! own process group (so the whole tree — zygote, renderers, GPU process — ends with it), driven
//! over CDP with chromiumoxide, through a pipe rather than a DevTools TCP port ([`pipe`]).

mod pipe;

use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::cdp::browser_protocol::page::{EventLoadEventFired, NavigateParams};
use chromiumoxide::cdp::browser_protocol::target::CreateTargetParams;
use chromiumoxide::cdp::js_protocol::runtime::{ConsoleApiCalledType, EventConsoleApiCalled};
use chromiumoxide::{Browser, Page};
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::net::proxy::Proxy;
use crate::net::Checker;
use crate::spec::BrowserSpec;

/// Flags for frames driven by `HeadlessExperimental.beginFrame` (Chromium's headless rendering
/// notes: every compositor stage runs inside one BeginFrame, so its screenshot shows it).
const BEGIN_FRAME_FLAGS: &[&str] = &[
    "--enable-begin-frame-control",
    "--run-all-compositor-stages-before-draw",
    "--disable-new-content-rendering-timeout",
    "--disable-threaded-animation",
    "--disable-threaded-scrolling",
    "--disable-checker-imaging",
];

/// Which Chromium and how its frames are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rendering {
    /// Chromium's new headless mode; the compositor paints at its own 60 Hz.
    Headless,
    /// `chromium-headless-shell`; a frame is rendered only when a BeginFrame asks for it.
    BeginFrameControl,
    /// An ordinary full-screen kiosk window on an X server (DISPLAY given at launch).
    X11,
}

/// Flags every Chromium of ours gets: headless, every request through the policy-checking
/// `proxy` (loopback too: `<-loopback>` takes it off the implicit bypass list), no background
/// services, media autoplay without a gesture.
fn flags(spec: &BrowserSpec, rendering: Rendering, profile: &std::path::Path, width: u32, height: u32, proxy: &str) -> Vec<String> {
    let mut f: Vec<String> = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--disable-breakpad",
        "--disable-dev-shm-usage",
        "--disable-background-timer-throttling",
        "--disable-renderer-backgrounding",
        "--disable-backgrounding-occluded-windows",
        "--autoplay-policy=no-user-gesture-required",
        "--webrtc-ip-handling-policy=default_public_interface_only",
        "--hide-scrollbars",
        "--password-store=basic",
        "--remote-debugging-pipe",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    match rendering {
        Rendering::Headless => f.push("--headless=new".into()),
        // The shell is headless by build.
        Rendering::BeginFrameControl => f.extend(BEGIN_FRAME_FLAGS.iter().map(|s| s.to_string())),
        Rendering::X11 => f.extend(
            [
                "--ozone-platform=x11",
                "--kiosk",
                "--window-position=0,0",
                "--noerrdialogs",
                "--disable-infobars",
                "--disable-session-crashed-bubble",
            ]
            .iter()
            .map(|s| s.to_string()),
        ),
    }
    f.push(format!("--proxy-server={proxy}"));
    f.push("--proxy-bypass-list=<-loopback>".into());
    f.push(format!("--user-data-dir={}", profile.display()));
    f.push(format!("--window-size={width},{height}"));
    f.extend(spec.extra_flags.iter().cloned());
    f.push("about:blank".into());
    f
}

pub struct Chromium {
    child: Child,
    pgid: i32,
    browser: Browser,
    handler: JoinHandle<()>,
    profile: Option<tempfile::TempDir>,
    rendering: Rendering,
    /// Every request of the page goes through it; it lives as long as the browser.
    proxy: Proxy,
    /// The CDP connection's way to the pipe.
    _cdp: pipe::Bridge,
}

impl Chromium {
    /// Launches Chromium and connects to it; fails within `timeout`. `sound_server` is the
    /// `PULSE_SERVER` its audio goes to (the egress's own), or None for no audio output.
    pub async fn launch(
        spec: &BrowserSpec,
        rendering: Rendering,
        width: u32,
        height: u32,
        sound_server: Option<&str>,
        display: Option<&str>,
        timeout: Duration,
    ) -> Result<Self> {
        let profile = tempfile::Builder::new().prefix("roomcast-chromium-").tempdir().context("creating profile dir")?;
        let binary = match rendering {
            Rendering::Headless | Rendering::X11 => &spec.chromium_path,
            Rendering::BeginFrameControl => &spec.headless_shell_path,
        };
        let checker = Checker::new(spec.network.clone()).context("the network policy's resolver")?;
        let proxy = Proxy::start(checker).await?;
        let mut cmd = Command::new(binary);
        cmd.args(flags(spec, rendering, profile.path(), width, height, &proxy.url()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        match display {
            Some(d) => {
                cmd.env("DISPLAY", d).env(crate::capture::xauth::ENV, std::env::var_os(crate::capture::xauth::ENV).unwrap_or_default())
            }
            None => cmd.env_remove("DISPLAY"),
        };
        match sound_server {
            Some(s) => cmd.env("PULSE_SERVER", s),
            // Nowhere to play: never a sound server of the host's.
            None => cmd.env("PULSE_SERVER", "unix:/nonexistent"),
        };
        // If the process that launched it dies (even by SIGKILL), so does Chromium.
        crate::proc::die_with_parent(&mut cmd);
        crate::proc::clean_env(&mut cmd);
        let pipes = pipe::Pipes::new()?;
        pipes.install(&mut cmd);
        let mut child = cmd.spawn().with_context(|| match rendering {
            Rendering::Headless | Rendering::X11 => format!("starting {binary}"),
            Rendering::BeginFrameControl => format!("starting {binary} (apt install chromium-headless-shell)"),
        })?;
        let pid = child.id().ok_or_else(|| anyhow!("chromium exited at once"))? as i32;
        info!(pid, "chromium started");
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("no chromium stderr"))?;
        let mut lines = BufReader::new(stderr).lines();
        let mut guard = KillGuard(Some(pid));
        // Drained all along so Chromium never blocks on a full pipe; its last words explain a
        // start that failed.
        let (last_tx, last_rx) = tokio::sync::watch::channel(String::new());
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                debug!(target: "chromium", "{line}");
                let _ = last_tx.send(line);
            }
        });
        let bridge = pipe::Pipes::bridge(pipes).await?;
        let (browser, mut handler) = Browser::connect(bridge.url.clone()).await.context("connecting to chromium over CDP")?;
        let handler = tokio::spawn(async move {
            while let Some(ev) = handler.next().await {
                if let Err(e) = ev {
                    debug!("cdp handler: {e}");
                }
            }
        });
        // Started once it answers over the pipe.
        let answered = tokio::time::timeout(timeout, browser.version()).await;
        let why = |what: String| {
            let last = last_rx.borrow().clone();
            match last.is_empty() {
                true => anyhow!("{what}"),
                false => anyhow!("{what}; its last words: {last}"),
            }
        };
        match answered {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                handler.abort();
                return Err(why(format!("chromium did not answer over CDP: {e}")));
            }
            Err(_) => {
                handler.abort();
                return Err(why(format!("chromium did not start within {timeout:?}")));
            }
        }
        guard.0 = None;
        Ok(Self { child, pgid: pid, browser, handler, profile: Some(profile), rendering, proxy, _cdp: bridge })
    }

    /// Why the page at `url` may have failed in the proxy, for the egress's error: the network
    /// policy's refusals (a redirect's target too), then why `url`'s own host could not be
    /// reached (Chromium's background requests fail there as well, and are not the reason).
    pub fn request_failures(&self, url: &str) -> Vec<String> {
        let own =
            url::Url::parse(url).ok().and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?))).unwrap_or_default();
        let refused = self.proxy.refusals().into_iter().map(|r| format!("refused by the network policy: {r}"));
        let unreachable = self.proxy.unreachable().into_iter().filter(|(t, _)| *t == own).map(|(_, why)| why);
        refused.chain(unreachable).collect()
    }

    pub fn pid(&self) -> i32 {
        self.pgid
    }

    /// Opens a tab whose viewport is exactly `width`×`height` (in new headless the window size
    /// alone leaves room for browser UI); under begin-frame control it renders only when told.
    pub async fn new_page(&self, width: u32, height: u32) -> Result<Page> {
        let target = CreateTargetParams::builder()
            .url("about:blank")
            .enable_begin_frame_control(self.rendering == Rendering::BeginFrameControl)
            .build()
            .map_err(|e| anyhow!("target parameters: {e}"))?;
        let page = self.browser.new_page(target).await.context("opening a tab")?;
        // A kiosk window is the screen's size already; emulating it would only rescale.
        if self.rendering != Rendering::X11 {
            page.execute(SetDeviceMetricsOverrideParams::new(width as i64, height as i64, 1.0, false))
                .await
                .context("setting the viewport")?;
        }
        Ok(page)
    }

    /// Resolves when the Chromium process ends, with a description of how.
    pub async fn exited(&mut self) -> String {
        match self.child.wait().await {
            Ok(status) => format!("chromium exited unexpectedly ({status})"),
            Err(e) => format!("chromium lost: {e}"),
        }
    }

    /// Ends a Chromium that crashed or hung at once (no polite close: it would only wait).
    pub async fn discard(self) {
        self.end("chromium discarded").await;
    }

    /// Asks Chromium to close, then ends it.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.browser.close()).await;
        self.end("chromium ended").await;
    }

    /// Ends the whole process group, reaps it and removes the profile.
    async fn end(mut self, what: &'static str) {
        crate::proc::kill_group(self.pgid);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        self.handler.abort();
        if let Some(p) = self.profile.take() {
            let _ = p.close();
        }
        info!(pid = self.pgid, "{what}");
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        crate::proc::kill_group(self.pgid);
    }
}

struct KillGuard(Option<i32>);
impl Drop for KillGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            crate::proc::kill_group(pid);
        }
    }
}

/// Navigates and waits for the load event; network errors and HTTP errors fail clearly.
pub async fn load(page: &Page, url: &str, timeout: Duration) -> Result<()> {
    let shown = mask_jwts(url);
    let mut loaded = page.event_listener::<EventLoadEventFired>().await?;
    let nav = tokio::time::timeout(timeout, page.execute(NavigateParams::new(url)))
        .await
        .map_err(|_| anyhow!("page load error: no response from {shown} within {timeout:?}"))?
        .context("page load error")?;
    if let Some(err) = &nav.result.error_text {
        if err.contains("ERR_HTTP_RESPONSE_CODE_FAILURE") {
            bail!("page load error: HTTP error status ({err}) loading {shown}");
        }
        bail!("page load error: {err} loading {shown}");
    }
    tokio::time::timeout(timeout, loaded.next())
        .await
        .map_err(|_| anyhow!("page load error: {shown} did not finish loading within {timeout:?}"))?;
    let status = page
        .evaluate("performance.getEntriesByType('navigation')[0]?.responseStatus ?? 0")
        .await
        .ok()
        .and_then(|v| v.into_value::<i64>().ok())
        .unwrap_or(0);
    if status >= 400 {
        bail!("page load error: HTTP {status} from {shown}");
    }
    Ok(())
}

pub type ConsoleEvents = chromiumoxide::listeners::EventStream<EventConsoleApiCalled>;

/// Subscribes to the page's console; do it before navigating so no early message is missed.
pub async fn console(page: &Page) -> Result<ConsoleEvents> {
    Ok(page.event_listener::<EventConsoleApiCalled>().await?)
}

/// How often a template waiting to start is checked for LiveKit's error element.
const ERROR_POLL: Duration = Duration::from_millis(250);

/// The text of the template's `div.error`, if it shows one (LiveKit's template contract).
async fn template_error(page: &Page) -> Option<String> {
    let text = page.evaluate("(document.querySelector('div.error')?.innerText ?? '').trim()").await.ok()?.into_value::<String>().ok()?;
    (!text.is_empty()).then_some(text)
}

/// Waits for the template's START_RECORDING until `deadline`; a `div.error`, an
/// END_RECORDING first, or the deadline fails it with the reason.
pub async fn await_start(page: &Page, events: &mut ConsoleEvents, deadline: tokio::time::Instant, limit: Duration) -> Result<()> {
    let mut poll = tokio::time::interval(ERROR_POLL);
    loop {
        tokio::select! {
            s = next_signal(events) => match s? {
                START_RECORDING => return Ok(()),
                _ => bail!("the template signalled END_RECORDING before START_RECORDING"),
            },
            _ = poll.tick() => {
                if let Some(e) = template_error(page).await {
                    bail!("template error: {e}");
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                // The last word goes to the template's own reason, if it has one by now.
                if let Some(e) = template_error(page).await {
                    bail!("template error: {e}");
                }
                bail!("start signal not received within {limit:?}: the template never logged START_RECORDING");
            }
        }
    }
}

pub const START_RECORDING: &str = "START_RECORDING";
pub const END_RECORDING: &str = "END_RECORDING";

/// The JavaScript that tells a running template of a new layout: a `roomcast:layout` event
/// (our templates listen; others ignore it).
pub fn layout_script(layout: &str) -> String {
    // JSON is valid JavaScript for a string literal, whatever the layout contains.
    let lit = serde_json::Value::String(layout.to_string());
    format!("window.dispatchEvent(new CustomEvent('roomcast:layout', {{ detail: {{ layout: {lit} }} }})); true")
}

/// Longest console message kept in the log.
const CONSOLE_LOG_MAX: usize = 500;

/// A template's console errors and warnings go to the egress's log (target `template`): they
/// are how a template that never starts explains itself. Anything shaped like a JWT (the
/// recorder's token, should a template print its URL) is masked.
fn log_console(ev: &EventConsoleApiCalled) {
    if !matches!(ev.r#type, ConsoleApiCalledType::Error | ConsoleApiCalledType::Warning | ConsoleApiCalledType::Assert) {
        return;
    }
    let text: Vec<String> = ev
        .args
        .iter()
        .map(|a| match a.value.as_ref() {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => a.description.clone().unwrap_or_default(),
        })
        .collect();
    let text = mask_jwts(&text.join(" "));
    let text: String = text.chars().take(CONSOLE_LOG_MAX).collect();
    warn!(target: "template", kind = ?ev.r#type, "{text}");
}

/// Replaces every `eyJ….….…` run (a JWT's base64url header, payload and signature) with `[token]`.
pub fn mask_jwts(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("eyJ") {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let len = tail.find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))).unwrap_or(tail.len());
        if tail[..len].matches('.').count() >= 2 {
            out.push_str("[token]");
        } else {
            out.push_str(&tail[..len]);
        }
        rest = &tail[len..];
    }
    out.push_str(rest);
    out
}

/// The next of LiveKit's two console signals the page logs.
async fn next_signal(events: &mut ConsoleEvents) -> Result<&'static str> {
    while let Some(ev) = events.next().await {
        log_console(&ev);
        for a in &ev.args {
            match a.value.as_ref().and_then(|v| v.as_str()) {
                Some(START_RECORDING) => return Ok(START_RECORDING),
                Some(END_RECORDING) => return Ok(END_RECORDING),
                _ => {}
            }
        }
    }
    warn!("console event stream ended");
    bail!("page closed before logging its start signal")
}

/// Waits until the page logs `signal` (LiveKit's console contract: `START_RECORDING`).
pub async fn wait_console(events: &mut ConsoleEvents, signal: &str) -> Result<()> {
    while let Some(ev) = events.next().await {
        log_console(&ev);
        if ev.args.iter().any(|a| a.value.as_ref().and_then(|v| v.as_str()) == Some(signal)) {
            return Ok(());
        }
    }
    warn!("console event stream ended");
    bail!("page closed before logging {signal}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_lines_mask_tokens() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
        assert_eq!(mask_jwts(&format!("join failed: url=ws://x?token={jwt}&a=1")), "join failed: url=ws://x?token=[token]&a=1");
        assert_eq!(mask_jwts("eyJ alone and eyJabc.d"), "eyJ alone and eyJabc.d");
    }

    #[test]
    fn layout_script_quotes_the_layout() {
        let s = layout_script("a'); alert(1); ('");
        assert!(s.contains(r#"layout: "a'); alert(1); ('""#), "{s}");
    }
}

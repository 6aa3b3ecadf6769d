//! One Chromium's page at work for an egress: a tab opened (begin-frame driving and the
//! console subscribed before it navigates), loaded (room composites until the template's
//! START_RECORDING), its CDP picture started, and what tells that it crashed or hung. A
//! crash makes a new one in a new Chromium ([`relaunch`]) while the pipeline runs on.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use chromiumoxide::cdp::browser_protocol::inspector::{EnableParams, EventTargetCrashed};
use chromiumoxide::listeners::EventStream;
use chromiumoxide::Page;
use futures::StreamExt;
use tokio::sync::mpsc;
use tracing::{debug, info};

use super::recovery::{Launcher, Liveness};
use super::{rendering, WorkerEvent, AUDIO_ONLY_VIEWPORT};
use crate::browser::{self, Chromium, ConsoleEvents, Rendering};
use crate::capture::{beginframe::BeginFrames, screencast, Frame};
use crate::spec::JobSpec;

pub(super) struct Session {
    pub page: Page,
    /// Under begin-frame control nothing renders unless told: frames are driven from the
    /// tab's opening on, so the page loads and animates as it would anywhere else.
    pub driver: Option<BeginFrames>,
    /// Only subscribed when the page's signals matter: an unread console would buffer forever.
    pub console: Option<ConsoleEvents>,
    /// The tab's renderer crash events, read by [`crashed`].
    pub crashed: Option<EventStream<EventTargetCrashed>>,
    pub liveness: Liveness,
}

impl Session {
    pub async fn open(spec: &JobSpec, chromium: &Chromium) -> Result<Self> {
        let (width, height) = spec.video.as_ref().map(|v| (v.width, v.height)).unwrap_or(AUDIO_ONLY_VIEWPORT);
        let page = chromium.new_page(width, height).await?;
        let driver = match (rendering(spec), &spec.video) {
            (Rendering::BeginFrameControl, Some(v)) => Some(BeginFrames::start(&page, v.framerate, v.jpeg_quality)),
            _ => None,
        };
        let console = match spec.await_start_signal {
            true => Some(browser::console(&page).await?),
            false => None,
        };
        // A renderer that dies says so on its tab's Inspector domain; a browser that dies is
        // seen by its process's exit.
        let crashed = match page.execute(EnableParams::default()).await {
            Ok(_) => page.event_listener::<EventTargetCrashed>().await.ok(),
            Err(e) => {
                debug!("Inspector.enable: {e}");
                None
            }
        };
        let liveness = Liveness::start(&page);
        Ok(Self { page, driver, console, crashed, liveness })
    }

    /// Loads the page and, for room composites, waits for START_RECORDING: one deadline for
    /// both, so a stuck template fails in the start timeout whatever stage it is stuck in
    /// (a failure is worth passing through [`explain`]).
    pub async fn start(&mut self, spec: &JobSpec) -> Result<()> {
        let start_timeout = Duration::from_secs(spec.start_timeout_secs);
        let deadline = tokio::time::Instant::now() + start_timeout;
        browser::load(&self.page, &spec.url, start_timeout).await?;
        if let Some(console) = self.console.as_mut() {
            browser::await_start(&self.page, console, deadline, start_timeout).await?;
        }
        Ok(())
    }

    /// The CDP picture from now on (None on a screen, which the pipeline reads itself): the
    /// screencast's first screenshot, and the frames.
    pub async fn picture(&mut self, spec: &JobSpec) -> Result<Option<(Option<Frame>, mpsc::Receiver<Frame>)>> {
        let Some(v) = spec.video.as_ref().filter(|_| rendering(spec) != Rendering::X11) else { return Ok(None) };
        Ok(Some(match self.driver.as_mut() {
            Some(d) => (None, d.capture()),
            None => {
                // Headless Chrome paints at 60 Hz; skip compositor frames we would drop anyway.
                let every_nth = (60 / v.framerate.max(1)).max(1);
                let (first, frames) = screencast::start(&self.page, v.width, v.height, v.jpeg_quality, every_nth).await?;
                (Some(first), frames)
            }
        }))
    }
}

/// A page that could not load fails with what the proxy saw (the refused address, the refused
/// connection), not only with Chromium's ERR_TUNNEL_CONNECTION_FAILED or the proxy's HTTP
/// 403/502.
pub(super) fn explain(chromium: &Chromium, url: &str, e: anyhow::Error) -> anyhow::Error {
    match chromium.request_failures(url).first() {
        Some(why) => anyhow!("{e:#}: {why}"),
        None => e,
    }
}

/// Resolves when a session's renderer has crashed (never, if that cannot be watched).
pub(super) async fn crashed(events: &mut Option<EventStream<EventTargetCrashed>>) {
    match events.as_mut() {
        Some(events) => match events.next().await {
            Some(_) => {}
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// Ends the crashed or hung Chromium, launches another and brings the page back up in it
/// (a room composite's template joins the room again). The supervisor learns the new PID.
pub(super) async fn relaunch(
    spec: &JobSpec,
    launcher: &Launcher,
    chromium: &mut Chromium,
    events: &mpsc::UnboundedSender<WorkerEvent>,
) -> Result<Session> {
    // Killed first: a hung one may still hold the X server's screen or the sound sink.
    crate::proc::kill_group(chromium.pid());
    let fresh = launcher.launch().await.context("relaunching chromium")?;
    let _ = events.send(WorkerEvent::BrowserStarted { pid: fresh.pid() });
    std::mem::replace(chromium, fresh).discard().await;
    let mut session = Session::open(spec, chromium).await?;
    session.start(spec).await.map_err(|e| explain(chromium, &spec.url, e))?;
    info!(pid = chromium.pid(), "chromium relaunched: the page is back");
    Ok(session)
}

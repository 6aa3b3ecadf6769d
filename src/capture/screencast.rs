//! CDP `Page.startScreencast` capture: JPEG frames of the page's viewport, acknowledged at
//! once so Chrome keeps sending.

use anyhow::{Context, Result};
use base64::Engine;
use bytes::Bytes;
use chromiumoxide::cdp::browser_protocol::page::{
    CaptureScreenshotFormat, CaptureScreenshotParams, EventScreencastFrame, ScreencastFrameAckParams, StartScreencastFormat,
    StartScreencastParams, StopScreencastParams,
};
use chromiumoxide::Page;
use futures::StreamExt;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::Frame;
use crate::clock::epoch_now;

/// Starts the screencast: the page's picture now (a screenshot, stamped when it was asked
/// for), and the screencast frames that follow, stamped by Chromium when they were drawn.
/// `every_nth` skips compositor frames: headless Chrome paints at 60 Hz, so 2 gives 30 fps.
pub async fn start(page: &Page, width: u32, height: u32, quality: u32, every_nth: u32) -> Result<(Frame, mpsc::Receiver<Frame>)> {
    let mut events = page.event_listener::<EventScreencastFrame>().await?;
    let (tx, rx) = mpsc::channel(8);
    let ack_page = page.clone();
    tokio::spawn(async move {
        while let Some(ev) = events.next().await {
            // Ack first: Chrome sends no new frame until the previous one is acknowledged.
            if let Err(e) = ack_page.execute(ScreencastFrameAckParams::new(ev.session_id)).await {
                debug!("screencast ack failed: {e}");
            }
            let jpeg = match base64::engine::general_purpose::STANDARD.decode(AsRef::<str>::as_ref(&ev.data)) {
                Ok(b) => Bytes::from(b),
                Err(e) => {
                    warn!("bad screencast frame: {e}");
                    continue;
                }
            };
            let captured_at = ev.metadata.timestamp.as_ref().map(|t| *t.inner()).unwrap_or_else(epoch_now);
            if tx.send(Frame { jpeg, captured_at, repeat: false }).await.is_err() {
                break;
            }
        }
    });
    let params = StartScreencastParams::builder()
        .format(StartScreencastFormat::Jpeg)
        .quality(quality as i64)
        .max_width(width as i64)
        .max_height(height as i64)
        .every_nth_frame(every_nth.max(1) as i64)
        .build();
    page.execute(params).await.context("starting the screencast")?;
    // Chrome sends screencast frames only when something repaints: a page that is already
    // still would send none. One screenshot gives the pipeline its first picture.
    let shot = CaptureScreenshotParams::builder().format(CaptureScreenshotFormat::Jpeg).quality(quality as i64).build();
    let captured_at = epoch_now();
    let shot = page.execute(shot).await.context("taking the first frame")?;
    let jpeg =
        base64::engine::general_purpose::STANDARD.decode(AsRef::<str>::as_ref(&shot.result.data)).context("decoding the first frame")?;
    Ok((Frame { jpeg: jpeg.into(), captured_at, repeat: false }, rx))
}

pub async fn stop(page: &Page) {
    if let Err(e) = page.execute(StopScreencastParams::default()).await {
        debug!("stopping screencast: {e}");
    }
}

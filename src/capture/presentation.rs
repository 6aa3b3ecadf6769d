//! How far behind its animation frame the screen shows a page, in Chromium's ticks.
//!
//! Chromium draws a page's animation frame on screen 0, 1 or 2 ticks after that frame
//! began, and which it is differs between egresses (its compositor settles into a pipeline
//! depth at start-up) and now and then within one. On the x11 backend's 30 Hz screen a tick
//! is 33 ms, so the picture's delay, and the A/V offset with it, moves in 33 ms steps
//! (measured with tests/av_sync.rs: +10, −23 and −57 ms for depths 0, 1 and 2). The sound
//! must follow the picture's delay, so the worker measures it here and the pipeline shifts
//! the sound by it.
//!
//! The measure is the page's own Element Timing: a probe script adds a one-glyph element at
//! 2 % opacity in the bottom-right corner from inside an animation frame callback, and
//! Element Timing reports when the frame that painted it was presented. The delay from the
//! animation frame's start to that presentation is the depth times the tick plus the drawing
//! itself (measured: 4–12 ms at every depth). The same probe tells when the screen first
//! shows the loaded page, where recording starts.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use chromiumoxide::cdp::js_protocol::runtime::EvaluateParams;
use chromiumoxide::js::{Evaluation, EvaluationResult};
use chromiumoxide::Page;

/// Defines the probe in the page (once; again after a navigation cleared it): `presented()`
/// resolves once a frame drawn from now on is on screen, `follow()` starts the periodic glyphs
/// (five a second for three seconds, then one every three seconds: each one repaints the
/// page), and `median()` is the median of the last five delays in ms (null while there are
/// fewer than three).
const PROBE: &str = r#"(() => {
  const key = Symbol.for('roomcast.presentation');
  if (window[key]) return;
  const delays = [], pending = new Map(), waiters = [];
  let n = 0, following = false;
  new PerformanceObserver(list => {
    for (const e of list.getEntries()) {
      const t = pending.get(e.identifier);
      if (t === undefined) continue;
      pending.delete(e.identifier);
      delays.push(e.renderTime - t);
      if (delays.length > 5) delays.shift();
      waiters.splice(0).forEach(w => w(true));
    }
  }).observe({ type: 'element' });
  const glyph = () => requestAnimationFrame(now => {
    const id = 'roomcast-probe-' + n++;
    const s = document.createElement('span');
    s.setAttribute('elementtiming', id);
    s.setAttribute('aria-hidden', 'true');
    s.textContent = '.';
    s.style.cssText = 'position:fixed;right:0;bottom:0;margin:0;padding:0;font:4px sans-serif;' +
      'color:rgba(0,0,0,0.02);pointer-events:none;user-select:none';
    document.documentElement.appendChild(s);
    pending.set(id, now);
    // Its entry comes within a few frames; a paint that never comes is forgotten.
    setTimeout(() => s.remove(), 1500);
    setTimeout(() => pending.delete(id), 5000);
  });
  const loop = () => setTimeout(() => { glyph(); loop(); }, n < 15 ? 200 : 3000);
  window[key] = {
    presented: () => new Promise(resolve => { waiters.push(resolve); glyph(); setTimeout(() => resolve(false), 1000); }),
    follow: () => { if (!following) { following = true; loop(); } },
    median: () => {
      if (delays.length < 3) return null;
      const s = [...delays].sort((a, b) => a - b);
      return s[s.length >> 1];
    },
  };
})()"#;

/// The median delay; -1 while there are too few, -2 without the probe.
const READ: &str = "(() => { const p = window[Symbol.for('roomcast.presentation')]; return p ? (p.median() ?? -1) : -2; })()";

/// How long a call into the page may take. The worker's loop waits on these calls, and a
/// Chromium that died answers nothing: the loop must get back to noticing that.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// How long `follow()` measures five times a second (15 glyphs, 200 ms apart) before it
/// slows to one glyph every 3 s.
pub const FAST_PHASE: Duration = Duration::from_secs(3);

async fn evaluate(page: &Page, what: &str, params: impl Into<Evaluation>) -> Result<EvaluationResult> {
    tokio::time::timeout(ANSWER_WITHIN, page.evaluate(params))
        .await
        .map_err(|_| anyhow!("{what}: no answer within {ANSWER_WITHIN:?}"))?
        .with_context(|| what.to_string())
}

/// Defines the probe.
pub async fn install(page: &Page) -> Result<()> {
    evaluate(page, "installing the presentation probe", PROBE).await?;
    Ok(())
}

/// Waits until the screen shows what the page has drawn by now (true), or a second (false):
/// Chromium's picture lags its animation frames by up to a few ticks, so right after the load
/// event the screen can still show the blank window (white, which the A/V test once took for
/// a flash).
pub async fn await_next_presented(page: &Page) -> Result<bool> {
    let expr = "window[Symbol.for('roomcast.presentation')].presented()";
    let params =
        EvaluateParams::builder().expression(expr).await_promise(true).return_by_value(true).build().map_err(anyhow::Error::msg)?;
    evaluate(page, "waiting for a presented frame", params).await?.into_value::<bool>().context("the presented frame's answer")
}

/// Starts measuring the delay (the periodic glyphs).
pub async fn follow(page: &Page) -> Result<()> {
    evaluate(page, "starting the presentation probe", "window[Symbol.for('roomcast.presentation')].follow()").await?;
    Ok(())
}

/// The median delay from animation frame to presentation, ms, once there are enough; the
/// probe is put back if a navigation took it.
pub async fn median_delay_ms(page: &Page) -> Result<Option<f64>> {
    let v = evaluate(page, "reading the presentation probe", READ).await?.into_value::<f64>().context("the probe's answer")?;
    if v == -2.0 {
        install(page).await?;
        follow(page).await?;
    }
    Ok((v >= 0.0).then_some(v))
}

/// Ticks between an animation frame and its presentation, from the median delay.
pub fn ticks_behind(delay_ms: f64, tick_ms: f64) -> u32 {
    // The drawing adds 4–12 ms to whole ticks: truncation keeps it out.
    (delay_ms.max(0.0) / tick_ms).floor().min(4.0) as u32
}

#[cfg(test)]
mod tests {
    use super::ticks_behind;

    #[test]
    fn delays_measured_at_each_depth() {
        let tick = 1000.0 / 30.0;
        // Medians from tests/av_sync.rs runs whose A/V offsets were +10, −23 and −57 ms.
        assert_eq!([5.9, 11.2, 37.2, 40.8, 70.1, 73.2].map(|d| ticks_behind(d, tick)), [0, 0, 1, 1, 2, 2]);
        assert_eq!(ticks_behind(-3.0, tick), 0);
    }
}

// Plays a roomcast player page (/play/{egress_id}/{playlist}) in Debian's Chromium, driven by
// playwright-core, and reports how playback went as one JSON object on stdout.
//
//   node tests/node/play.mjs --url http://127.0.0.1:PORT/play/EG_x/live.m3u8 --seconds 20 [--clock] [--json]
//
// Options:
//   --url URL            the player page; only loopback hosts (127.0.0.0/8, [::1]). "-" reads it
//                        from the first line of stdin once the browser is up (with --ready-file this
//                        lets a caller launch the browser before it starts the egress)
//   --seconds N          how long to observe once playback has started (default 20)
//   --clock              the page being egressed is templates/bench/clock.html: decode its clock
//                        from every presented frame and report glass-to-glass latency (g2g_ms)
//   --json               print the JSON object on one line and nothing else (default: indented,
//                        plus a one-line summary on stderr)
//   --wait-playlist S    first wait up to S seconds for the page's playlist (/hls/...) to answer 200
//                        (hls.js does not retry a 404 manifest) (default 0: don't wait)
//   --start-timeout S    give up if no frame plays within S seconds of opening the page (default 30)
//   --ready-file PATH    create PATH once the browser is launched and ready for the URL
//   --chromium PATH      the browser (default /usr/bin/chromium; never a downloaded one)
//   --selftest           instead of playing: open --url (templates/bench/clock.html served over
//                        loopback), decode the page's own canvas and CDP screencast JPEGs of it (full
//                        size and scaled to 640x360) and report the decode errors
//
// Exit code: 0 when playback started and no fatal error occurred (hls.js fatal error or a media
// element error) during the observation, 1 otherwise (the reason on stderr and in "error"),
// 2 for bad usage.
//
// Output (player mode). Keys are stable; integration tests read them. Times in ms unless _s.
// {
//   "ok": bool,                   // same as exit code 0
//   "error": string|null,         // why ok is false
//   "url": string, "seconds": N,  // the page and the requested observation length
//   "observed_s": number,         // actual observation length (from playback start)
//   "page_open_epoch_ms": int,    // Date.now() when the page was navigated to
//   "first_frame_epoch_ms": int,  // wall-clock time the first frame was expected on glass
//   "started_ms": int|null,       // page open -> first frame on glass
//   "stalls": int,                // 'waiting' events after playback start that lasted more than
//                                 //  100 ms: from the event's timeStamp to the presentationTime of
//                                 //  the next new frame (compositor clock, so a busy main thread
//                                 //  does not lengthen them); one still open at the end counts whole
//   "stall_ms": int,              // total duration of those stalls
//   "freezes": int, "freeze_ms": int, // periods of > 250 ms in which currentTime did not advance
//                                 //  although not paused, whether or not 'waiting' fired
//   "max_frame_gap_ms": number,   // longest time between two consecutively presented frames
//   "frames_presented": int,      // frames presented during the observation (rVFC presentedFrames)
//   "fps_presented": number,      // frames_presented / observed_s
//   "frames_dropped": int,        // getVideoPlaybackQuality().droppedVideoFrames during it
//   "video_width": int, "video_height": int,
//   "hls_errors": [string],       // window.roomcast.errors (hls.js error details, fatal or not)
//   "fatal": bool,                // a fatal hls.js error or a media element error occurred
//   "fatal_errors": [string],     // their details
//   "page_errors": [string],      // uncaught exceptions in the player page
//   "latency_s": {"n","p50","p95","min","max"}|null, // hls.latency sampled every 250 ms (> 0 only)
//   "target_latency_s": number|null, // hls.targetLatency at the end
//   "ll_hls": bool,               // hls.js loaded a playlist with LL-HLS parts
//   "buffer_s": {"n","p50","min"}|null, // forward buffer sampled every 250 ms
//   "playback_rate": number,      // video.playbackRate at the end
//   "playback_rate_min": number, "playback_rate_max": number, // over the 250 ms samples
//   "stall_events": [{"ms", "events": [string]}], // per stall: hls.js playlist/media loads and
//                                 //  errors from 3 s before it to its end, as "T kind what"
//                                 //  (T in ms from the stall's start)
//   "g2g_ms": null | {            // with --clock: glass-to-glass latency of distinct clock frames
//     "n", "p50", "p95", "min", "max",
//     "misreads": int,            // presented frames whose clock failed validation (rejected)
//     "repeats": int,             // presented frames showing the same page frame as the previous
//                                 //  one (not counted in n: their timestamp is not fresh)
//     "misread_reasons": {reason: count} // guard | bit | crc | range | outside
//   }
// A failed run prints the same keys (zeros/nulls where nothing was measured).
// }
import { chromium } from 'playwright-core';
import { parseArgs } from 'node:util';
import { writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

const CHROMIUM_FLAGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-extensions',
  '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
  '--autoplay-policy=no-user-gesture-required',
];

// ---------------------------------------------------------------------------------------------
// The clock decoder. Runs inside pages (injected with its source), so it must stay self-contained.
// Layout: see templates/bench/clock.html. `data` is RGBA of an image whose top-left is the page's
// top-left at scale (sx, sy) (intrinsic video pixels per CSS px of the 1280x720 page).
// Returns {ok: true, t, n} or {ok: false, reason}. Rejects rather than guesses: guards must be
// clearly black and white, every timestamp bit must read opposite in the inverted row, the
// counter and CRC bits must be clear of the threshold, and the CRC-16 must match.
function decodeClock(data, w, h, sx, sy) {
  const S = 24, X0 = 16, Y0 = 16;
  const half = Math.max(1, Math.floor(4 * Math.min(sx, sy)));
  const lum = (r, c) => {
    const cx = Math.round((X0 + c * S + S / 2) * sx), cy = Math.round((Y0 + r * S + S / 2) * sy);
    let sum = 0, k = 0;
    for (let y = cy - half; y <= cy + half; y++) {
      for (let x = cx - half; x <= cx + half; x++) {
        if (x < 0 || y < 0 || x >= w || y >= h) continue;
        const i = (y * w + x) * 4;
        sum += 0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2];
        k++;
      }
    }
    return k ? sum / k : NaN;
  };
  // [row, column, expected] of the guard squares
  const guards = [[0, 0, 1], [0, 1, 0], [0, 50, 0], [0, 51, 1], [1, 0, 0], [1, 1, 1], [1, 50, 1], [1, 51, 0],
    [2, 0, 1], [2, 1, 0], [2, 34, 0], [2, 35, 1]];
  let wMin = 255, bMax = 0, wSum = 0, bSum = 0;
  for (const [r, c, e] of guards) {
    const v = lum(r, c);
    if (Number.isNaN(v)) return { ok: false, reason: 'outside' };
    if (e) { wMin = Math.min(wMin, v); wSum += v; } else { bMax = Math.max(bMax, v); bSum += v; }
  }
  if (wMin - bMax < 80) return { ok: false, reason: 'guard' };
  const white = wSum / 6, black = bSum / 6, thr = (white + black) / 2, span = white - black;
  let t = 0;
  for (let c = 2; c < 50; c++) {
    const a = lum(0, c), b = lum(1, c);
    const bit = a > b ? 1 : 0;
    if (Math.abs(a - b) < 0.4 * span || (bit ? !(a > thr && b < thr) : !(a < thr && b > thr))) {
      return { ok: false, reason: 'bit' };
    }
    t = t * 2 + bit;
  }
  const word = (from) => {
    let v = 0;
    for (let c = from; c < from + 16; c++) {
      const x = lum(2, c);
      if (Math.abs(x - thr) < 0.2 * span) return -1;
      v = v * 2 + (x > thr ? 1 : 0);
    }
    return v;
  };
  const n = word(2), crc = word(18);
  if (n < 0 || crc < 0) return { ok: false, reason: 'bit' };
  const bytes = [];
  for (let i = 5; i >= 0; i--) bytes.push(Math.floor(t / 256 ** i) % 256);
  bytes.push(n >> 8, n & 0xff);
  let c16 = 0xffff;
  for (const byte of bytes) {
    c16 ^= byte << 8;
    for (let i = 0; i < 8; i++) c16 = (c16 & 0x8000) ? ((c16 << 1) ^ 0x1021) & 0xffff : (c16 << 1) & 0xffff;
  }
  if (c16 !== crc) return { ok: false, reason: 'crc' };
  return { ok: true, t, n };
}

// ---------------------------------------------------------------------------------------------
// The probe, installed in the player page before its own scripts run (addInitScript). It hooks
// hls.js's ERROR event through window.roomcast as soon as the page sets it, follows the <video>
// with requestVideoFrameCallback, and records everything the JSON reports.
function probe(opts, decodeClock) {
  const P = window.__rcProbe = {
    firstFrameEpoch: null, playingEpoch: null, observing: false, video: null,
    fatalErrors: [], pageErrors: [], stalls: [], freezes: [], events: [], stallSpans: [], latency: [], buffer: [], rates: [],
    maxGap: 0, lastGlass: null, obsPresented0: null, presented: 0, dropped0: 0,
    g2g: [], misreads: 0, repeats: 0, misreadReasons: {}, lastN: -1, ll: false, width: 0, height: 0,
  };
  const hooked = new WeakSet();
  function hookHls(hls) {
    if (!hls || hooked.has(hls) || typeof hls.on !== 'function') return;
    hooked.add(hls);
    hls.on('hlsError', (_, d) => {
      if (d && d.fatal) P.fatalErrors.push(String(d.details));
      log('error', String(d && d.details));
    });
    // What the player fetched and when, so a stall can be explained afterwards.
    hls.on('hlsLevelLoaded', (_, d) => {
      const l = d.details;
      log('playlist', `${l.endSN}.${l.partList ? l.partList[l.partList.length - 1].index : '-'}`
        + ` ${Math.round(d.stats.loading.end - d.stats.loading.start)}ms`);
    });
    hls.on('hlsFragLoaded', (_, d) => {
      const st = (d.part || d.frag).stats.loading;
      log('media', `${d.frag.sn}.${d.part ? d.part.index : '*'} ${Math.round(st.end - st.start)}ms`);
    });
  }
  // Last 600 events: [performance.now(), kind, text].
  const log = (kind, text) => { P.events.push([performance.now(), kind, text]); if (P.events.length > 600) P.events.shift(); };
  let rc;
  Object.defineProperty(window, 'roomcast', {
    configurable: true, enumerable: true,
    get() { return rc; },
    set(v) {
      rc = v;
      if (v && typeof v === 'object') {
        let h = v.hls;
        Object.defineProperty(v, 'hls', {
          configurable: true, enumerable: true, get() { return h; }, set(x) { h = x; hookHls(x); },
        });
        hookHls(h);
      }
    },
  });
  window.addEventListener('error', (e) => P.pageErrors.push(String(e.message)));

  const wall = (perfTime) => Date.now() - performance.now() + perfTime;
  let canvas = null, ctx = null;

  function onFrame(now, md) {
    const video = P.video;
    video.requestVideoFrameCallback(onFrame);
    // The frame's time on glass: expectedDisplayTime is the compositor's estimate of when this
    // frame is shown (the vsync it is composited for), on the performance.now() timeline. We turn
    // it into wall-clock ms with an offset read now (Date.now() - performance.now()) rather than
    // performance.timeOrigin, which can drift from the wall clock the clock page drew with over
    // a long-lived page. Date.now() at the callback alone would be up to a frame early.
    const glass = wall(md.expectedDisplayTime);
    P.width = video.videoWidth; P.height = video.videoHeight;
    if (P.firstFrameEpoch === null) { P.firstFrameEpoch = glass; P.firstMediaTime = md.mediaTime; }
    if (!P.observing) return;
    if (P.obsPresented0 === null) P.obsPresented0 = md.presentedFrames - 1;
    P.presented = md.presentedFrames - P.obsPresented0;
    if (P.lastGlass !== null) P.maxGap = Math.max(P.maxGap, glass - P.lastGlass);
    P.lastGlass = glass;
    // A stall ends with the first new frame after it.
    if (stall && md.mediaTime > stall.ct) {
      const d = md.presentationTime - stall.from;
      if (d > 100) { P.stalls.push(d); P.stallSpans.push([stall.from, md.presentationTime]); }
      stall = null;
    }
    if (!opts.clock) return;
    const w = video.videoWidth, h = video.videoHeight;
    if (!w || !h) return;
    const sx = w / 1280, sy = h / 720;
    const stripH = Math.min(h, Math.ceil(112 * sy));
    if (!canvas || canvas.width !== w || canvas.height !== stripH) {
      canvas = document.createElement('canvas');
      canvas.width = w; canvas.height = stripH;
      ctx = canvas.getContext('2d', { willReadFrequently: true, alpha: false });
    }
    ctx.drawImage(video, 0, 0, w, stripH, 0, 0, w, stripH);
    const r = decodeClock(ctx.getImageData(0, 0, w, stripH).data, w, stripH, sx, sy);
    // A timestamp from the future or from long before the egress can't be right either.
    if (r.ok && (r.t > Date.now() + 1000 || r.t < Date.now() - 600000)) { r.ok = false; r.reason = 'range'; }
    if (!r.ok) {
      P.misreads++;
      P.misreadReasons[r.reason] = (P.misreadReasons[r.reason] || 0) + 1;
      return;
    }
    if (r.n === P.lastN) { P.repeats++; return; }
    P.lastN = r.n;
    P.g2g.push(glass - r.t);
  }

  let stall = null, freezeFrom = null, lastCt = -1;
  function tick() {
    const v = P.video;
    if (!v) return;
    const now = performance.now();
    if (!P.observing) {
      // Playback has started once a frame is on glass and currentTime moves on from it.
      if (P.firstFrameEpoch !== null && !v.paused && v.currentTime > (P.firstMediaTime || 0)) {
        P.observing = true;
        P.playingEpoch = Date.now();
        const q = v.getVideoPlaybackQuality();
        P.dropped0 = q.droppedVideoFrames;
        lastCt = v.currentTime; freezeFrom = now;
      }
      return;
    }
    if (v.currentTime !== lastCt || v.paused) {
      if (freezeFrom !== null && now - freezeFrom > 250 && !v.paused) P.freezes.push(now - freezeFrom);
      lastCt = v.currentTime; freezeFrom = now;
    }
  }
  function sample() {
    const v = P.video;
    if (!P.observing || !v) return;
    const hls = window.roomcast && window.roomcast.hls;
    if (hls) {
      const l = hls.latency;
      if (typeof l === 'number' && Number.isFinite(l) && l > 0) P.latency.push(l);
      P.targetLatency = Number.isFinite(hls.targetLatency) ? hls.targetLatency : null;
      const lv = hls.levels && hls.levels[hls.currentLevel >= 0 ? hls.currentLevel : 0];
      if (lv && lv.details && lv.details.partList && lv.details.partList.length) P.ll = true;
    }
    P.rates.push(v.playbackRate);
    for (let i = 0; i < v.buffered.length; i++) {
      if (v.buffered.start(i) <= v.currentTime + 0.05 && v.currentTime <= v.buffered.end(i)) {
        P.buffer.push(v.buffered.end(i) - v.currentTime);
      }
    }
  }
  P.finish = () => {
    const v = P.video, now = performance.now();
    if (stall && now - stall.from > 100) { P.stalls.push(now - stall.from); P.stallSpans.push([stall.from, now]); }
    if (freezeFrom !== null && v && !v.paused && now - freezeFrom > 250) P.freezes.push(now - freezeFrom);
    P.observing = false;
    const q = v ? v.getVideoPlaybackQuality() : { droppedVideoFrames: 0 };
    return {
      firstFrameEpoch: P.firstFrameEpoch, playingEpoch: P.playingEpoch, endEpoch: Date.now(),
      stalls: P.stalls, freezes: P.freezes, maxGap: P.maxGap, presented: P.presented,
      dropped: q.droppedVideoFrames - P.dropped0, width: P.width, height: P.height,
      hlsErrors: (window.roomcast && window.roomcast.errors || []).slice(0, 500).map(String),
      fatalErrors: P.fatalErrors, pageErrors: P.pageErrors, latency: P.latency, buffer: P.buffer,
      targetLatency: P.targetLatency ?? null, ll: P.ll, rates: P.rates,
      playbackRate: v ? v.playbackRate : null, g2g: P.g2g, misreads: P.misreads,
      misreadReasons: P.misreadReasons, repeats: P.repeats,
      // Per stall, what the player did from 3 s before it to its end (ms relative to its start).
      stallEvents: P.stallSpans.map(([from, to]) => ({
        ms: Math.round(to - from),
        events: P.events.filter(([t]) => t >= from - 3000 && t <= to + 200)
          .map(([t, k, x]) => `${Math.round(t - from)} ${k} ${x}`),
      })),
    };
  };
  P.state = () => ({
    firstFrameEpoch: P.firstFrameEpoch, playingEpoch: P.playingEpoch,
    fatal: P.fatalErrors.length > 0, fatalErrors: P.fatalErrors,
    status: (document.getElementById('status') || {}).textContent || '',
  });

  document.addEventListener('DOMContentLoaded', () => {
    const video = P.video = document.getElementById('video') || document.querySelector('video');
    if (!video) { P.pageErrors.push('no <video> in the page'); return; }
    video.addEventListener('waiting', (e) => {
      if (P.observing && !stall) stall = { from: e.timeStamp, ct: video.currentTime };
    });
    video.addEventListener('error', () => {
      const e = video.error;
      P.fatalErrors.push(`media error ${e ? e.code : '?'}${e && e.message ? ': ' + e.message : ''}`);
    });
    video.requestVideoFrameCallback(onFrame);
    setInterval(tick, 20);
    setInterval(sample, 250);
  });
}

// ---------------------------------------------------------------------------------------------
function quantiles(xs) {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  const q = (p) => {
    const i = (s.length - 1) * p, lo = Math.floor(i), hi = Math.ceil(i);
    return s[lo] + (s[hi] - s[lo]) * (i - lo);
  };
  return { n: s.length, p50: q(0.5), p95: q(0.95), min: s[0], max: s[s.length - 1] };
}
const round = (x, d = 1) => (x === null || x === undefined || Number.isNaN(x) ? null : Math.round(x * 10 ** d) / 10 ** d);
const roundQ = (q, d) => q && Object.fromEntries(Object.entries(q).map(([k, v]) => [k, k === 'n' ? v : round(v, d)]));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Every key of the player-mode JSON, so a failed run prints the same shape.
function blankResult(url, seconds, clock) {
  return {
    ok: false, error: null, url: url ?? null, seconds, observed_s: 0, page_open_epoch_ms: null,
    first_frame_epoch_ms: null, started_ms: null, stalls: 0, stall_ms: 0, freezes: 0, freeze_ms: 0,
    max_frame_gap_ms: 0, frames_presented: 0, fps_presented: 0, frames_dropped: 0, video_width: 0,
    video_height: 0, hls_errors: [], fatal: false, fatal_errors: [], page_errors: [], latency_s: null,
    target_latency_s: null, ll_hls: false, buffer_s: null, playback_rate: null, playback_rate_min: null,
    playback_rate_max: null, stall_events: [],
    g2g_ms: clock ? { n: 0, p50: null, p95: null, min: null, max: null, misreads: 0, repeats: 0, misread_reasons: {} } : null,
  };
}

function checkLoopback(url) {
  let u;
  try { u = new URL(url); } catch { throw new Error(`not a URL: ${url}`); }
  const h = u.hostname;
  if (!(/^127\.\d+\.\d+\.\d+$/.test(h) || h === '[::1]')) {
    throw new Error(`only loopback URLs (127.0.0.0/8 or [::1]) are allowed, not ${h}`);
  }
  return u;
}

async function waitForPlaylist(u, seconds) {
  const hls = new URL(u);
  hls.pathname = hls.pathname.replace(/^\/play\//, '/hls/');
  const end = Date.now() + seconds * 1000;
  let last = '';
  for (;;) {
    try {
      const r = await fetch(hls, { signal: AbortSignal.timeout(2000) });
      await r.arrayBuffer();
      if (r.ok) return;
      last = `HTTP ${r.status}`;
    } catch (e) {
      last = String(e.message || e);
    }
    if (Date.now() > end) throw new Error(`playlist ${hls} not available after ${seconds} s (${last})`);
    await sleep(50);
  }
}

async function readUrlFromStdin() {
  const rl = createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (line.trim()) { rl.close(); return line.trim(); }
  }
  throw new Error('no URL on stdin');
}

async function play(browser, a) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  const page = await context.newPage();
  await page.addInitScript({ content: `(${probe})(${JSON.stringify({ clock: a.clock })}, ${decodeClock});` });
  if (a.readyFile) writeFileSync(a.readyFile, `${process.pid}\n`);
  const url = a.url === '-' ? await readUrlFromStdin() : a.url;
  checkLoopback(url);
  if (a.waitPlaylist > 0) await waitForPlaylist(url, a.waitPlaylist);

  const out = blankResult(url, a.seconds, a.clock);
  const pageOpen = Date.now();
  out.page_open_epoch_ms = pageOpen;
  await page.goto(url, { waitUntil: 'domcontentloaded', timeout: 15000 });
  let state;
  for (;;) {
    state = await page.evaluate(() => window.__rcProbe.state());
    if (state.playingEpoch !== null || state.fatal) break;
    if (Date.now() - pageOpen > a.startTimeout * 1000) {
      out.error = `playback did not start within ${a.startTimeout} s (player status: ${state.status.trim()})`;
      break;
    }
    await sleep(50);
  }
  if (state.playingEpoch !== null && !state.fatal) {
    const end = state.playingEpoch + a.seconds * 1000;
    while (Date.now() < end) {
      await sleep(Math.min(500, Math.max(0, end - Date.now())));
      if ((await page.evaluate(() => window.__rcProbe.state())).fatal) break;
    }
  }
  const r = await page.evaluate(() => window.__rcProbe.finish());
  await context.close();

  const sum = (xs) => xs.reduce((s, x) => s + x, 0);
  const observed = r.playingEpoch !== null ? (r.endEpoch - r.playingEpoch) / 1000 : 0;
  const fatal = r.fatalErrors.length > 0;
  Object.assign(out, {
    observed_s: round(observed, 2),
    first_frame_epoch_ms: r.firstFrameEpoch === null ? null : Math.round(r.firstFrameEpoch),
    started_ms: r.firstFrameEpoch === null ? null : Math.round(r.firstFrameEpoch - pageOpen),
    stalls: r.stalls.length,
    stall_ms: Math.round(sum(r.stalls)),
    freezes: r.freezes.length,
    freeze_ms: Math.round(sum(r.freezes)),
    max_frame_gap_ms: round(r.maxGap),
    frames_presented: r.presented,
    fps_presented: observed > 0 ? round(r.presented / observed, 2) : 0,
    frames_dropped: r.dropped,
    video_width: r.width, video_height: r.height,
    hls_errors: r.hlsErrors,
    fatal,
    fatal_errors: r.fatalErrors,
    page_errors: r.pageErrors,
    latency_s: roundQ(quantiles(r.latency), 3),
    target_latency_s: round(r.targetLatency, 3),
    ll_hls: r.ll,
    buffer_s: r.buffer.length ? (({ n, p50, min }) => ({ n, p50, min }))(roundQ(quantiles(r.buffer), 3)) : null,
    playback_rate: r.playbackRate,
    playback_rate_min: r.rates.length ? Math.min(...r.rates) : null,
    playback_rate_max: r.rates.length ? Math.max(...r.rates) : null,
    stall_events: r.stallEvents,
    g2g_ms: a.clock
      ? { ...(roundQ(quantiles(r.g2g), 1) || out.g2g_ms), misreads: r.misreads, repeats: r.repeats,
        misread_reasons: r.misreadReasons }
      : null,
  });
  if (fatal) out.error = `fatal player error: ${r.fatalErrors.join(', ')}`;
  else if (r.playingEpoch === null && !out.error) out.error = 'playback did not start';
  out.ok = !out.error;
  return out;
}

// Decoder sanity check against the clock page itself: no video coding involved.
async function selftest(browser, a) {
  const url = a.url;
  checkLoopback(url);
  const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  const page = await context.newPage();
  await page.goto(url, { waitUntil: 'load' });
  // 1. The page's own canvas, read right after it drew, against what it drew (window.clockLast):
  //    tests the decoder's logic and layout; the error must be exactly 0.
  const direct = await page.evaluate(async ({ dec, frames }) => {
    const decode = eval(`(${dec})`);
    const c = document.getElementById('code');
    const ctx = c.getContext('2d');
    const errs = []; let misreads = 0, wrong = 0;
    for (let i = 0; i < frames; i++) {
      await new Promise((r) => requestAnimationFrame(r));
      const drawn = window.clockLast;
      const r = decode(ctx.getImageData(0, 0, c.width, c.height).data, c.width, c.height, 1, 1);
      if (!r.ok) misreads++;
      else if (r.t !== drawn.t || r.n !== drawn.n) wrong++;
      else errs.push(r.t - drawn.t);
    }
    return { errs, misreads, wrong };
  }, { dec: decodeClock.toString(), frames: 120 });

  // 2. CDP screencast JPEGs (what roomcast's capture gets), stamped by Chromium with the time the
  //    frame was swapped: decoded time vs that stamp is render -> composite delay plus decode error.
  const cdp = await context.newCDPSession(page);
  const frames = [];
  cdp.on('Page.screencastFrame', (f) => {
    frames.push({ data: f.data, ts: f.metadata.timestamp * 1000 });
    cdp.send('Page.screencastFrameAck', { sessionId: f.sessionId }).catch(() => {});
  });
  await cdp.send('Page.startScreencast', { format: 'jpeg', quality: 80, maxWidth: 1280, maxHeight: 720, everyNthFrame: 1 });
  await sleep(Math.min(a.seconds, 10) * 1000);
  await cdp.send('Page.stopScreencast');
  const dpage = await context.newPage();
  const shots = await dpage.evaluate(async ({ dec, frames }) => {
    const decode = eval(`(${dec})`);
    const out = { full: { errs: [], misreads: 0 }, scaled: { errs: [], misreads: 0 }, size: null };
    for (const f of frames) {
      const bytes = Uint8Array.from(atob(f.data), (ch) => ch.charCodeAt(0));
      const bmp = await createImageBitmap(new Blob([bytes], { type: 'image/jpeg' }));
      out.size = [bmp.width, bmp.height];
      for (const [key, w, h] of [['full', bmp.width, bmp.height], ['scaled', 640, 360]]) {
        const c = new OffscreenCanvas(w, h);
        const ctx = c.getContext('2d', { willReadFrequently: true });
        ctx.drawImage(bmp, 0, 0, w, h);
        const r = decode(ctx.getImageData(0, 0, w, h).data, w, h, w / 1280, h / 720);
        if (r.ok) out[key].errs.push(f.ts - r.t); else out[key].misreads++;
      }
    }
    return out;
  }, { dec: decodeClock.toString(), frames });
  await context.close();
  const rep = (x) => ({ ...(roundQ(quantiles(x.errs), 2) || { n: 0 }), misreads: x.misreads, ...(x.wrong === undefined ? {} : { wrong: x.wrong }) });
  const out = {
    url,
    direct_canvas_err_ms: rep(direct),
    screencast_size: shots.size,
    screencast_frames: frames.length,
    screencast_err_ms: rep(shots.full),
    screencast_640x360_err_ms: rep(shots.scaled),
  };
  out.ok = direct.misreads === 0 && direct.wrong === 0 && direct.errs.length > 0 && shots.full.errs.length > 0 && shots.full.misreads === 0;
  out.error = out.ok ? null : 'decoder self-test failed (misreads or no decoded frames)';
  return out;
}

async function main() {
  let a;
  try {
    const { values } = parseArgs({
      options: {
        url: { type: 'string' }, seconds: { type: 'string', default: '20' }, clock: { type: 'boolean', default: false },
        json: { type: 'boolean', default: false }, 'wait-playlist': { type: 'string', default: '0' },
        'start-timeout': { type: 'string', default: '30' }, 'ready-file': { type: 'string' },
        chromium: { type: 'string', default: '/usr/bin/chromium' }, selftest: { type: 'boolean', default: false },
      },
    });
    a = {
      url: values.url, seconds: Number(values.seconds), clock: values.clock, json: values.json,
      waitPlaylist: Number(values['wait-playlist']), startTimeout: Number(values['start-timeout']),
      readyFile: values['ready-file'], chromium: values.chromium, selftest: values.selftest,
    };
    if (!a.url) throw new Error('--url is required');
    for (const k of ['seconds', 'waitPlaylist', 'startTimeout']) {
      if (!Number.isFinite(a[k]) || a[k] < 0) throw new Error(`bad --${k}`);
    }
  } catch (e) {
    console.error(`play.mjs: ${e.message}\nusage: node tests/node/play.mjs --url URL [--seconds N] [--clock] [--json] [--wait-playlist S] [--start-timeout S] [--ready-file PATH] [--selftest]`);
    process.exit(2);
  }

  let out;
  let browser;
  try {
    // Playwright closes the browser itself on SIGINT/SIGTERM/SIGHUP (its defaults); the finally
    // below covers every other way out.
    browser = await chromium.launch({ executablePath: a.chromium, headless: true, args: CHROMIUM_FLAGS, timeout: 30000 });
    out = a.selftest ? await selftest(browser, a) : await play(browser, a);
  } catch (e) {
    out = { ...(a.selftest ? { ok: false, url: a.url } : blankResult(a.url, a.seconds, a.clock)),
      error: String(e && e.message || e) };
  } finally {
    if (browser) await browser.close().catch(() => {});
  }
  process.stdout.write(JSON.stringify(out, null, a.json ? 0 : 2) + '\n');
  if (!out.ok) console.error(`play.mjs: ${out.error}`);
  else if (!a.json && !a.selftest) {
    const g = out.g2g_ms;
    console.error(`play.mjs: started in ${out.started_ms} ms, ${out.stalls} stalls, latency p50 ${out.latency_s?.p50 ?? '-'} s`
      + (g ? `, g2g p50 ${g.p50} ms p95 ${g.p95} ms (n ${g.n}, misreads ${g.misreads})` : ''));
  }
  process.exitCode = out.ok ? 0 : 1;
}

await main();

// Room publishers for roomcast's room tests: one Debian Chromium (through playwright-core),
// one page per publisher, each publishing a solid colour and a tone to the room with
// roomcast's publisher page (templates/publisher). Driven over stdio by the Rust test:
//   node publishers.mjs '<json config>'
//   config: {templates, sfu: janus|livekit, url, room, exclude: [host...],
//            publishers: [{name, color, freq, token (LiveKit)}]}
// Prints one JSON line per event ({"event":"published","index":i} …); reads commands
// ("leave <i>", "quit") from stdin, one per line.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const cfg = JSON.parse(process.argv[2]);
const say = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const exclude = ['127.0.0.1', ...(cfg.exclude ?? [])].map((h) => `EXCLUDE ${h}`).join(', ');
const profile = mkdtempSync(join(tmpdir(), 'roomcast-publishers-'));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--disable-extensions', '--autoplay-policy=no-user-gesture-required',
    '--disable-background-timer-throttling', '--disable-renderer-backgrounding',
    '--disable-backgrounding-occluded-windows',
    '--webrtc-ip-handling-policy=default_public_interface_only',
    `--host-resolver-rules=MAP * ~NOTFOUND, ${exclude}`,
  ],
  viewport: { width: 400, height: 260 },
});

const pages = [];
async function open(i) {
  const p = cfg.publishers[i];
  const page = await ctx.newPage();
  page.on('pageerror', (e) => say({ event: 'log', index: i, text: `pageerror: ${e.message}` }));
  const q = new URLSearchParams({ sfu: cfg.sfu ?? 'janus', url: cfg.url, room: cfg.room, name: p.name, color: p.color, freq: String(p.freq) });
  if (p.token) q.set('token', p.token);
  await page.goto(`${cfg.templates}/publisher/index.html?${q}`);
  await page.waitForFunction(() => ['published', 'error'].includes(window.roomcastPublisher?.state), null, { timeout: 30000 });
  const state = await page.evaluate(() => window.roomcastPublisher);
  say(state.state === 'published' ? { event: 'published', index: i } : { event: 'error', index: i, error: state.error });
  pages[i] = page;
}

let quitting = false;
async function quit() {
  if (quitting) return;
  quitting = true;
  await ctx.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
  say({ event: 'quit' });
  process.exit(0);
}
process.on('SIGTERM', quit);
process.stdin.on('end', quit);

try {
  for (let i = 0; i < cfg.publishers.length; i++) await open(i);
} catch (e) {
  say({ event: 'error', error: String(e) });
}
say({ event: 'ready' });

for await (const line of createInterface({ input: process.stdin })) {
  const [cmd, arg] = line.trim().split(/\s+/);
  if (cmd === 'leave') {
    const i = Number(arg);
    await pages[i]?.evaluate(() => window.leave()).catch((e) => say({ event: 'log', index: i, text: String(e) }));
    await pages[i]?.close().catch(() => {});
    say({ event: 'left', index: i });
  } else if (cmd === 'quit') {
    await quit();
  }
}
await quit();

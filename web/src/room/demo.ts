/**
 * RoomAdapter for a synthetic room with no SFU (`sfu=demo`): canvas "cameras" in solid palette
 * colours, an optional screen share and optional tones. For designers previewing a layout and
 * for tests that check layout geometry and the start/audio paths cheaply. `url` and `token` are
 * ignored.
 *
 * Query parameters (besides `layout`):
 *   participants=N   0..=32, default 4 (or the number of `names` when only those are given)
 *   names=a,b,c      display names of the first participants; empty or missing entries get the
 *                    default "Participant 01", "Participant 02", ...
 *   screen=1         one extra participant "Screen" (id `screen`, no camera) sharing a screen
 *   speaker=i        participant i (0-based) is the active speaker; default 0
 *   audio=1          each participant also sends a sine tone of 300 + 100·i Hz at gain 0.1
 * A malformed or out-of-range value is an error (shown as div.error), not silently clamped.
 *
 * Participant i has id `p{i}` (0-based) and a 320×180 camera canvas filled with
 * `demoColour(i)`; a 12×12 white marker with a black edge moves back and forth in its top-right
 * corner (within x 232..288, y 10..22: inside what a 1024×720 cover-cropped stage still shows)
 * so that frames keep coming. The screen share is a 1280×720 canvas: white, with a 40 px black
 * frame round the edge, and a 20×20 white marker moving along the top band (within x 60..1240,
 * y 10..30); the left, right and bottom bands are always solid black.
 */

import { Emitter, type RoomAdapter } from './adapter';

/**
 * The first 16 participants' colours: 16 hues 22.5° apart, ordered so that neighbours differ by
 * 157.5°, fully saturated, HSL lightness alternating 0.5 / 0.7. Each pair is at least 81 apart in
 * RGB (Euclidean, 0..255 per channel).
 */
export const DEMO_PALETTE: readonly string[] = [
  '#ff0000', '#66ffc6', '#ff00bf', '#79ff66', '#8000ff', '#ecff66', '#0040ff', '#ff9f66',
  '#00ffff', '#ff669f', '#00ff40', '#ec66ff', '#80ff00', '#7966ff', '#ffbf00', '#66c6ff',
];

/**
 * Participants 17..32: the same hues with HSL lightness 0.2 lower. All 32 colours are at least 71
 * apart, and at least 77 from the template's backgrounds, tile and avatar greys, the speaking
 * outline, white and black.
 */
export const DEMO_PALETTE_SECOND: readonly string[] = [
  '#990000', '#00ff9f', '#990073', '#20ff00', '#4d0099', '#dfff00', '#002699', '#ff6000',
  '#009999', '#ff0060', '#009926', '#df00ff', '#4d9900', '#2000ff', '#997300', '#009fff',
];

export const DEMO_MAX_PARTICIPANTS = 32;
const DEFAULT_PARTICIPANTS = 4;

/** Camera colour of participant `i` (0-based). */
export function demoColour(i: number): string {
  const list = i < DEMO_PALETTE.length ? DEMO_PALETTE : DEMO_PALETTE_SECOND;
  return list[i % DEMO_PALETTE.length]!;
}

export function demoName(i: number): string {
  return `Participant ${String(i + 1).padStart(2, '0')}`;
}

export const DEMO_SCREEN_ID = 'screen';

const CAMERA_W = 320;
const CAMERA_H = 180;
const SCREEN_W = 1280;
const SCREEN_H = 720;
const SCREEN_FRAME = 40;
const FPS = 15;
const TONE_GAIN = 0.1;

declare global {
  interface Window {
    /** Set by the demo adapter: what it shows, for tests that sample the picture. */
    roomcastDemo?: {
      participants: Array<{ id: string; name: string; colour: string }>;
      screen: boolean;
      speaker?: string;
    };
  }
}

export interface DemoOptions {
  names: string[];
  screen: boolean;
  speaker?: number;
  audio: boolean;
}

function parseCount(raw: string, what: string, max: number): number {
  if (!/^\d+$/.test(raw) || Number(raw) > max) throw new Error(`demo: ${what} must be an integer 0..${max}, not "${raw}"`);
  return Number(raw);
}

function parseFlag(raw: string | null, what: string): boolean {
  const v = (raw ?? '').trim().toLowerCase();
  if (v === '' || v === '0' || v === 'false') return false;
  if (v === '1' || v === 'true') return true;
  throw new Error(`demo: ${what} must be 1 or 0, not "${raw}"`);
}

/** Reads the demo's own query parameters; throws an Error meant for div.error. */
export function readDemoOptions(search: string): DemoOptions {
  const q = new URLSearchParams(search);
  const given = (q.get('names') ?? '').trim() === '' ? [] : (q.get('names') ?? '').split(',').map((s) => s.trim());
  const rawCount = (q.get('participants') ?? '').trim();
  let count: number;
  if (rawCount !== '') count = parseCount(rawCount, 'participants', DEMO_MAX_PARTICIPANTS);
  else if (given.length > 0) count = given.length;
  else count = DEFAULT_PARTICIPANTS;
  if (count > DEMO_MAX_PARTICIPANTS) throw new Error(`demo: at most ${DEMO_MAX_PARTICIPANTS} participants (got ${count} names)`);
  const names = Array.from({ length: count }, (_, i) => given[i] || demoName(i));
  const rawSpeaker = (q.get('speaker') ?? '').trim();
  let speaker: number | undefined = count > 0 ? 0 : undefined;
  if (rawSpeaker !== '') {
    speaker = parseCount(rawSpeaker, 'speaker', DEMO_MAX_PARTICIPANTS - 1);
    if (speaker >= count) throw new Error(`demo: speaker ${speaker} is not one of the ${count} participants (0-based)`);
  }
  return { names, screen: parseFlag(q.get('screen'), 'screen'), speaker, audio: parseFlag(q.get('audio'), 'audio') };
}

interface Source {
  canvas: HTMLCanvasElement;
  ctx: CanvasRenderingContext2D;
  draw: (frame: number) => void;
  track: MediaStreamTrack;
}

function canvasSource(w: number, h: number, draw: (ctx: CanvasRenderingContext2D, frame: number) => void): Source {
  const canvas = document.createElement('canvas');
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext('2d');
  if (!ctx) throw new Error('demo: no 2D canvas context');
  // Paint before capturing so the very first frame already has the colour.
  draw(ctx, 0);
  const track = canvas.captureStream(FPS).getVideoTracks()[0];
  if (!track) throw new Error('demo: canvas.captureStream gave no video track');
  return { canvas, ctx, draw: (frame) => draw(ctx, frame), track };
}

/** Back and forth over `span` px, one step per frame. */
function bounce(frame: number, span: number): number {
  const period = 2 * span;
  const t = frame % period;
  return t <= span ? t : period - t;
}

function drawCamera(colour: string): (ctx: CanvasRenderingContext2D, frame: number) => void {
  return (ctx, frame) => {
    ctx.fillStyle = colour;
    ctx.fillRect(0, 0, CAMERA_W, CAMERA_H);
    const x = 232 + bounce(frame, 44); // 232..276; 12 wide, so the right edge stays within 288
    ctx.fillStyle = '#000000';
    ctx.fillRect(x, 10, 12, 12);
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(x + 2, 12, 8, 8);
  };
}

function drawScreen(ctx: CanvasRenderingContext2D, frame: number): void {
  if (frame === 0) {
    ctx.fillStyle = '#000000';
    ctx.fillRect(0, 0, SCREEN_W, SCREEN_H);
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(SCREEN_FRAME, SCREEN_FRAME, SCREEN_W - 2 * SCREEN_FRAME, SCREEN_H - 2 * SCREEN_FRAME);
  }
  // Only the top band changes: the marker moves 8 px a frame over x 60..1220.
  ctx.fillStyle = '#000000';
  ctx.fillRect(SCREEN_FRAME, 0, SCREEN_W - 2 * SCREEN_FRAME, SCREEN_FRAME);
  const x = 60 + bounce(frame, 145) * 8;
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(x, 10, 20, 20);
}

export class DemoAdapter extends Emitter implements RoomAdapter {
  readonly providesActiveSpeakers = true;
  private readonly options: DemoOptions;
  private readonly sources: Source[] = [];
  private audioCtx?: AudioContext;
  private readonly oscillators: OscillatorNode[] = [];
  private timer?: number;
  private frame = 0;
  private joined = false;
  private ended = false;

  constructor(search: string) {
    super();
    this.options = readDemoOptions(search);
  }

  connect(): Promise<void> {
    if (this.joined) return Promise.resolve();
    this.joined = true;
    const { names, screen, speaker, audio } = this.options;
    const tones = audio ? this.tones(names.length) : [];
    names.forEach((name, i) => {
      const id = `p${i}`;
      this.emit('participantJoined', { id, name });
      const cam = canvasSource(CAMERA_W, CAMERA_H, drawCamera(demoColour(i)));
      this.sources.push(cam);
      this.emit('trackAdded', { participantId: id, kind: 'camera', track: cam.track });
      const tone = tones[i];
      if (tone) this.emit('trackAdded', { participantId: id, kind: 'audio', track: tone });
    });
    if (screen) {
      this.emit('participantJoined', { id: DEMO_SCREEN_ID, name: 'Screen' });
      const src = canvasSource(SCREEN_W, SCREEN_H, drawScreen);
      this.sources.push(src);
      this.emit('trackAdded', { participantId: DEMO_SCREEN_ID, kind: 'screen', track: src.track });
    }
    if (speaker !== undefined) this.emit('activeSpeakers', { ids: [`p${speaker}`] });
    window.roomcastDemo = {
      participants: names.map((name, i) => ({ id: `p${i}`, name, colour: demoColour(i) })),
      screen,
      speaker: speaker === undefined ? undefined : `p${speaker}`,
    };
    this.timer = window.setInterval(() => {
      this.frame++;
      for (const s of this.sources) s.draw(this.frame);
    }, 1000 / FPS);
    return Promise.resolve();
  }

  /** One oscillator per participant into its own MediaStream, so each is a separate remote-like track. */
  private tones(n: number): MediaStreamTrack[] {
    if (n === 0) return [];
    const ctx = new AudioContext();
    this.audioCtx = ctx;
    // Created without a user gesture; the egress's autoplay policy lets it run, resume() makes sure.
    void ctx.resume();
    const out: MediaStreamTrack[] = [];
    for (let i = 0; i < n; i++) {
      const osc = new OscillatorNode(ctx, { type: 'sine', frequency: 300 + 100 * i });
      const gain = new GainNode(ctx, { gain: TONE_GAIN });
      const dest = ctx.createMediaStreamDestination();
      osc.connect(gain).connect(dest);
      osc.start();
      this.oscillators.push(osc);
      const track = dest.stream.getAudioTracks()[0];
      if (track) out.push(track);
    }
    return out;
  }

  videoPending(): boolean {
    // Every video track is handed over inside connect().
    return false;
  }

  /** Never called by the room itself: the demo only ends when the page asks. */
  disconnect(): void {
    if (this.ended) return;
    this.ended = true;
    window.clearInterval(this.timer);
    for (const s of this.sources) s.track.stop();
    for (const o of this.oscillators) o.stop();
    void this.audioCtx?.close();
    if (this.joined) this.emit('disconnected', { reason: 'disconnected by the page' });
  }
}

/**
 * TEST/DEMO publisher for end-to-end tests: publishes a solid-colour canvas (with a moving marker,
 * so frames keep changing) and a sine tone to a Janus VideoRoom or a LiveKit room, without any
 * camera or microphone. Query: sfu (janus default | livekit), url (the SFU's ws URL), room
 * (Janus), token (LiveKit: a token with publish rights), name, color (CSS colour), freq (Hz),
 * optional screen=1 to publish the video as a screen share, optional gain (0..1, default 0.25).
 * Progress is exposed for the driving test as document.title and window.roomcastPublisher;
 * window.leave() unpublishes and leaves.
 */

import { Room, Track } from 'livekit-client';

import { attachVideoRoom, type JanusJS, openSession, type PluginHandle, roomId, type Janus } from '../shared/janus-session';

type State = 'starting' | 'published' | 'left' | 'error';

declare global {
  interface Window {
    roomcastPublisher: { state: State; error?: string; id?: string | number };
    leave: () => Promise<void>;
    /** Tone loudness (0..1); tests use it to make one publisher the active speaker. */
    setGain: (gain: number) => void;
  }
}

const WIDTH = 320;
const HEIGHT = 180;
const FPS = 15;

const q = new URLSearchParams(window.location.search);
const url = q.get('url') ?? '';
const room = q.get('room') ?? '';
const name = q.get('name') || 'publisher';
const color = q.get('color') || '#808080';
const freq = Number(q.get('freq') || '440');
const asScreen = q.get('screen') === '1';
const initialGain = Number(q.get('gain') ?? '0.25');
const sfu = q.get('sfu') ?? 'janus';
const token = q.get('token') ?? '';

let janus: Janus | undefined;
let handle: PluginHandle | undefined;

function setState(state: State, error?: string): void {
  const prev = window.roomcastPublisher;
  // A late error after leaving (the socket closing) is the expected end, not a failure.
  if (prev?.state === 'left' && state === 'error') return;
  window.roomcastPublisher = { ...prev, state, error };
  document.title = state === 'error' ? `error: ${error ?? 'unknown'}` : state;
  const status = document.getElementById('status');
  if (status) status.textContent = document.title;
}

function canvasTrack(): MediaStreamTrack {
  const canvas = document.createElement('canvas');
  canvas.width = WIDTH;
  canvas.height = HEIGHT;
  document.body.appendChild(canvas);
  const ctx = canvas.getContext('2d');
  if (!ctx) throw new Error('no 2d canvas context');
  let x = 0;
  const draw = (): void => {
    ctx.fillStyle = color;
    ctx.fillRect(0, 0, WIDTH, HEIGHT);
    // Small and in a corner band, so tests sampling the middle of a tile see the pure colour.
    ctx.fillStyle = '#000000';
    ctx.fillRect(x, HEIGHT - 12, 12, 8);
    x = (x + 4) % (WIDTH - 12);
  };
  draw();
  // A timer, not requestAnimationFrame: rAF stops for pages that are not in front, and tests
  // open several publishers in one browser.
  window.setInterval(draw, 1000 / FPS);
  const track = canvas.captureStream(FPS).getVideoTracks()[0];
  if (!track) throw new Error('canvas.captureStream gave no video track');
  return track;
}

function toneTrack(): MediaStreamTrack {
  const ac = new AudioContext();
  void ac.resume();
  const osc = ac.createOscillator();
  osc.frequency.value = Number.isFinite(freq) && freq > 0 ? freq : 440;
  const gain = ac.createGain();
  gain.gain.value = Number.isFinite(initialGain) ? initialGain : 0.25;
  window.setGain = (g: number) => gain.gain.setValueAtTime(g, ac.currentTime);
  const dest = ac.createMediaStreamDestination();
  osc.connect(gain).connect(dest);
  osc.start();
  const track = dest.stream.getAudioTracks()[0];
  if (!track) throw new Error('WebAudio gave no audio track');
  return track;
}

function videoMid(h: PluginHandle): string | undefined {
  const pc = h.webrtcStuff.pc;
  return pc?.getTransceivers().find((t) => t.sender.track?.kind === 'video')?.mid ?? undefined;
}

/** LiveKit: the room is the token's; published once both tracks are up. */
async function publishLiveKit(): Promise<void> {
  if (!url || !token) throw new Error('url and token parameters are required');
  const video = canvasTrack();
  const audio = toneTrack();
  const lk = new Room();
  await lk.connect(url, token);
  await lk.localParticipant.publishTrack(video, { source: asScreen ? Track.Source.ScreenShare : Track.Source.Camera, name });
  await lk.localParticipant.publishTrack(audio, { source: Track.Source.Microphone });
  setState('published');
  window.leave = async (): Promise<void> => {
    setState('left');
    await lk.disconnect();
  };
}

async function publish(): Promise<void> {
  if (sfu === 'livekit') return publishLiveKit();
  if (!url || !room) throw new Error('url and room parameters are required');
  const video = canvasTrack();
  const audio = toneTrack();
  janus = await openSession(url, {
    error: (message) => setState('error', `connection lost: ${message}`),
    destroyed: () => undefined,
  });
  let webrtcUp = false;
  let mediaUp = false;
  const maybePublished = (): void => {
    // webrtcup: DTLS is done; media: Janus has received video. Both, or the room may see a black tile.
    if (webrtcUp && mediaUp && window.roomcastPublisher.state === 'starting') setState('published');
  };
  const h = await attachVideoRoom(janus, `roomcast-test-publisher-${Math.random().toString(36).slice(2)}`, {
    webrtcState: (up: boolean) => {
      webrtcUp = up;
      if (!up && window.roomcastPublisher.state === 'published') setState('error', 'PeerConnection closed');
      maybePublished();
    },
    mediaState: (medium: 'audio' | 'video', receiving: boolean) => {
      if (medium === 'video') mediaUp = receiving;
      maybePublished();
    },
    iceState: (state) => {
      if (state === 'failed') setState('error', 'ICE failed');
    },
    onmessage: (msg: JanusJS.Message, jsep?: JanusJS.JSEP) => {
      if (jsep) h.handleRemoteJsep({ jsep });
      const kind = msg['videoroom'] as string | undefined;
      if (kind === 'joined') {
        window.roomcastPublisher.id = msg['id'] as string | number;
        offer(h, video, audio);
      } else if (kind === 'event' && msg['error_code'] !== undefined) {
        setState('error', `Janus error ${String(msg['error_code'])}: ${String(msg['error'])}`);
      }
    },
  });
  handle = h;
  h.send({ message: { request: 'join', ptype: 'publisher', room: await roomId(h, room), display: name } });
}

function offer(h: PluginHandle, video: MediaStreamTrack, audio: MediaStreamTrack): void {
  h.createOffer({
    tracks: [
      { type: 'audio', capture: audio, recv: false },
      { type: 'video', capture: video, recv: false },
    ],
    success: (jsep: JanusJS.JSEP) => {
      const mid = videoMid(h);
      const message: JanusJS.PluginMessage['message'] = { request: 'configure', audio: true, video: true };
      if (asScreen && mid !== undefined) message['descriptions'] = [{ mid, description: 'screen share' }];
      h.send({ message, jsep });
    },
    error: (err: Error) => setState('error', `createOffer failed: ${String(err)}`),
  });
}

function sendAndWait(h: PluginHandle, request: string): Promise<void> {
  // Janus acknowledges unpublish/leave asynchronously; the request being accepted is enough here.
  return new Promise<void>((resolve) => {
    h.send({ message: { request }, success: () => resolve(), error: () => resolve() });
  });
}

window.leave = async (): Promise<void> => {
  const h = handle;
  const j = janus;
  setState('left');
  if (h) {
    await sendAndWait(h, 'unpublish');
    await sendAndWait(h, 'leave');
    h.hangup(false);
  }
  await new Promise<void>((resolve) => {
    if (!j) return resolve();
    j.destroy({ success: () => resolve(), error: () => resolve() });
  });
};

window.roomcastPublisher = { state: 'starting' };
document.title = 'starting';
publish().catch((err: unknown) => setState('error', err instanceof Error ? err.message : String(err)));

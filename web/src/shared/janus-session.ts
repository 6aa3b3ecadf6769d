/**
 * janus.js set-up shared by the room template and the test publisher: one place that knows the
 * library's global init, its WebRTC shim dependency and the settings a sealed test network needs.
 */

import Janus, { type JanusJS } from 'janus-gateway';
import adapter from 'webrtc-adapter';

export type { JanusJS };
export type PluginHandle = JanusJS.PluginHandle;

let initDone: Promise<void> | undefined;

function init(): Promise<void> {
  initDone ??= new Promise<void>((resolve) => {
    Janus.init({
      // Only warnings and errors: janus.js logs at console.log level otherwise, which is the
      // channel the egress watches for START_RECORDING.
      debug: ['warn', 'error'] as unknown as JanusJS.InitOptions['debug'],
      // The npm build of janus.js expects the adapter to be handed in rather than a global.
      dependencies: Janus.useDefaultDependencies({ adapter }),
      callback: () => resolve(),
    });
  });
  return initDone;
}

export interface SessionCallbacks {
  /** Called for a failed connect and for a lost connection alike (janus.js does not tell them apart). */
  error: (message: string) => void;
  destroyed: () => void;
}

/** Opens a Janus session; the promise settles once, while `callbacks` keep reporting afterwards. */
export async function openSession(url: string, callbacks: SessionCallbacks): Promise<Janus> {
  await init();
  if (!Janus.isWebrtcSupported()) throw new Error('WebRTC is not supported by this browser');
  return new Promise<Janus>((resolve, reject) => {
    let opened = false;
    const janus: Janus = new Janus({
      server: url,
      // janus.js defaults to a public STUN server; rooms are reached over host candidates and a
      // STUN request to the internet would only add a slow, failing gathering step.
      iceServers: [],
      success: () => {
        opened = true;
        resolve(janus);
      },
      error: (err: unknown) => {
        const message = String(err);
        if (opened) callbacks.error(message);
        else reject(new Error(message));
      },
      destroyed: () => callbacks.destroyed(),
    });
  });
}

/** Attaches a VideoRoom handle; message and track callbacks are the caller's. */
export function attachVideoRoom(
  janus: Janus,
  opaqueId: string,
  callbacks: Omit<JanusJS.PluginCallbacks, 'success' | 'error'>,
): Promise<PluginHandle> {
  return new Promise<PluginHandle>((resolve, reject) => {
    janus.attach({
      ...callbacks,
      plugin: 'janus.plugin.videoroom',
      opaqueId,
      success: (handle: PluginHandle) => resolve(handle),
      error: (err: string) => reject(new Error(`could not attach to the VideoRoom plugin: ${err}`)),
    });
  });
}

/** Sends an asynchronous VideoRoom request; its outcome arrives as an onmessage event. */
export function request(handle: PluginHandle, message: JanusJS.PluginMessage['message'], jsep?: JanusJS.JSEP): void {
  handle.send({
    message,
    jsep,
    error: (err: string) => console.warn(`roomcast: Janus ${message.request} request failed: ${err}`),
  });
}

export { Janus };

/** VideoRoom's error for a field of the wrong JSON type (e.g. a string room on a numeric-id Janus). */
const JANUS_VIDEOROOM_ERROR_INVALID_ELEMENT = 430;

type ExistsReply = { videoroom?: string; exists?: boolean; error_code?: number; error?: string };

function wrongType(reply: ExistsReply): boolean {
  return reply.error_code === JANUS_VIDEOROOM_ERROR_INVALID_ELEMENT;
}

function exists(handle: PluginHandle, room: string | number): Promise<ExistsReply> {
  return new Promise<ExistsReply>((resolve, reject) => {
    handle.send({
      message: { request: 'exists', room },
      success: (reply: unknown) => resolve((reply ?? {}) as ExistsReply),
      error: (err: string) => reject(new Error(`Janus exists request failed: ${err}`)),
    });
  });
}

/**
 * The room's id as this Janus types it. A VideoRoom numbers its rooms unless `string_ids` is
 * on, and refuses an id of the other type, while our grant (`video.room`) is always a string:
 * a name that reads as a positive integer is tried as a number first, then as a string. A name
 * that is not a number on a numeric-id Janus is refused here, with the reason.
 */
export async function roomId(handle: PluginHandle, room: string): Promise<string | number> {
  const asNumber = /^[1-9][0-9]{0,15}$/.test(room) ? Number(room) : undefined;
  if (asNumber !== undefined && Number.isSafeInteger(asNumber)) {
    const reply = await exists(handle, asNumber);
    if (!wrongType(reply)) return asNumber;
    // This Janus has string ids: the same name as a string.
    const named = await exists(handle, room);
    if (named.exists === false) {
      throw new Error(`Janus room "${room}" does not exist (this Janus names its rooms with strings, string_ids = true)`);
    }
    return room;
  }
  const reply = await exists(handle, room);
  if (wrongType(reply)) {
    throw new Error(
      `Janus room "${room}" cannot exist on this Janus: its VideoRoom numbers its rooms (string_ids is off), so the room name must be a positive integer`,
    );
  }
  return room;
}

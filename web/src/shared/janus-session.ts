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

/**
 * The LiveKit Egress template contract, as roomcast (and LiveKit's own egress) drives a page:
 * query parameters in, console signals and an error element out, layout changes pushed in.
 */

/** The adapters this template has; roomcast's `room.sfu` names one of the first two. */
export const SFU_KINDS = ['livekit', 'janus', 'demo'] as const;
export type SfuKind = (typeof SFU_KINDS)[number];

export interface TemplateParams {
  /** SFU websocket URL (empty when absent; the demo adapter needs none). */
  url: string;
  /** Join token (a LiveKit-style JWT; for Janus only its `video.room` grant is read). */
  token: string;
  /** Requested layout; never empty here. */
  layout: string;
  /**
   * roomcast's extension: which adapter to join with, lower-cased; `livekit` when absent (so
   * LiveKit Egress's three parameters alone mean LiveKit). May be a name this template does not
   * know: main.ts reports that as an error rather than guessing.
   */
  sfu: string;
}

export const DEFAULT_LAYOUT = 'grid';

export function isSfuKind(sfu: string): sfu is SfuKind {
  return (SFU_KINDS as readonly string[]).includes(sfu);
}

export function readParams(search: string = window.location.search): TemplateParams {
  const q = new URLSearchParams(search);
  return {
    url: q.get('url') ?? '',
    token: q.get('token') ?? '',
    layout: (q.get('layout') ?? '').trim() || DEFAULT_LAYOUT,
    sfu: (q.get('sfu') ?? '').trim().toLowerCase() || 'livekit',
  };
}

let started = false;
let ended = false;

/** The egress starts encoding when it sees this line; it must appear exactly once. */
export function startRecording(): void {
  if (started || ended) return;
  started = true;
  console.log('START_RECORDING');
}

/** The egress stops when it sees this line; later calls are no-ops so every exit path may call it. */
export function endRecording(): void {
  if (ended) return;
  ended = true;
  console.log('END_RECORDING');
}

export function recordingStarted(): boolean {
  return started;
}

/**
 * The egress looks for `div.error` with text to fail the request with that message, so the
 * message must be non-empty and there must be only one such element.
 */
export function showError(message: string): void {
  const text = message.trim() || 'unknown error';
  let el = document.querySelector<HTMLDivElement>('div.error');
  if (!el) {
    el = document.createElement('div');
    el.className = 'error';
    document.body.appendChild(el);
  }
  el.textContent = text;
  console.error(`roomcast: ${text}`);
}

/** roomcast pushes layout changes over CDP as a DOM event, so no SFU round trip is needed. */
export function onLayoutEvent(handler: (layout: string) => void): void {
  window.addEventListener('roomcast:layout', (ev: Event) => {
    const detail = (ev as CustomEvent<unknown>).detail;
    const layout = detail && typeof detail === 'object' ? (detail as { layout?: unknown }).layout : undefined;
    if (typeof layout === 'string') handler(layout.trim() || DEFAULT_LAYOUT);
    else console.warn('roomcast: roomcast:layout event without a string detail.layout');
  });
}

/**
 * LiveKit's egress updates the recorder's participant metadata to `{"layout": "..."}`; anything
 * else in the metadata (or none at all) is not a layout change.
 */
export function layoutFromMetadata(metadata: string | undefined): string | undefined {
  if (!metadata) return undefined;
  try {
    const parsed: unknown = JSON.parse(metadata);
    if (parsed && typeof parsed === 'object') {
      const layout = (parsed as { layout?: unknown }).layout;
      if (typeof layout === 'string') return layout.trim() || DEFAULT_LAYOUT;
    }
  } catch {
    // Metadata is free-form; a non-JSON value is simply not meant for us.
  }
  return undefined;
}

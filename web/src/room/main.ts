/**
 * Entry point of the room template: reads the contract's parameters, joins the room through the
 * adapter for the requested SFU, and feeds what it hears to the layout view and the audio output.
 */

import type { RoomAdapter } from './adapter';
import { AudioOut } from './audio';
import { endRecording, isSfuKind, onLayoutEvent, readParams, SFU_KINDS, showError, type TemplateParams } from './contract';
import { DemoAdapter } from './demo';
import { JanusAdapter } from './janus';
import { LayoutView } from './layouts';
import { LiveKitAdapter } from './livekit';
import { SpeakerDetector } from './speaker';
import { armStart } from './start';

declare global {
  interface Window {
    /** Read-only view of the page's state for tests and debugging over CDP. */
    roomcastRoom?: {
      layout: () => string;
      speaker: () => string | undefined;
      participants: () => ReturnType<LayoutView['participants']>;
    };
  }
}

function byId(id: string): HTMLElement {
  const el = document.getElementById(id);
  if (!el) throw new Error(`template is missing #${id}`);
  return el;
}

/** Throws (an Error for div.error) on an unknown SFU or parameters its adapter rejects up front. */
function createAdapter(params: TemplateParams): RoomAdapter {
  const sfu = params.sfu;
  if (!isSfuKind(sfu)) throw new Error(`unknown sfu "${sfu}" (this template knows ${SFU_KINDS.join(', ')})`);
  switch (sfu) {
    case 'livekit':
      return new LiveKitAdapter(params.url, params.token);
    case 'janus':
      return new JanusAdapter(params.url, params.token);
    case 'demo':
      return new DemoAdapter(window.location.search);
  }
}

function main(): void {
  const params = readParams();
  const view = new LayoutView(byId('stage'));
  view.setLayout(params.layout);
  onLayoutEvent((layout) => view.setLayout(layout));
  window.roomcastRoom = {
    layout: () => view.currentLayout(),
    speaker: () => view.currentSpeaker(),
    participants: () => view.participants(),
  };

  let adapter: RoomAdapter;
  try {
    adapter = createAdapter(params);
  } catch (err) {
    showError(err instanceof Error ? err.message : String(err));
    return;
  }

  const audio = new AudioOut(byId('audio'));
  const detector = adapter.providesActiveSpeakers ? undefined : new SpeakerDetector((id) => view.setSpeaker(id));

  adapter.on('participantJoined', ({ id, name }) => view.upsertParticipant(id, name));
  adapter.on('participantLeft', ({ id }) => {
    view.removeParticipant(id);
    audio.removeParticipant(id);
    detector?.removeParticipant(id);
  });
  adapter.on('trackAdded', ({ participantId, kind, track }) => {
    if (kind === 'audio') {
      // Play first: the detector only hears what an element plays.
      audio.add(participantId, track);
      detector?.add(participantId, track);
    } else {
      view.setTrack(participantId, kind, track);
    }
  });
  adapter.on('trackRemoved', ({ participantId, kind, track }) => {
    if (kind === 'audio') {
      audio.remove(track);
      detector?.remove(track);
    } else {
      view.setTrack(participantId, kind, undefined);
    }
  });
  adapter.on('activeSpeakers', ({ ids }) => view.setSpeaker(ids[0]));
  adapter.on('layout', ({ layout }) => view.setLayout(layout));
  adapter.on('disconnected', ({ reason }) => {
    console.warn(`roomcast: left the room (${reason})`);
    endRecording();
  });

  adapter
    .connect()
    .then(() => armStart(adapter, view))
    .catch((err: unknown) => showError(err instanceof Error ? err.message : String(err)));
}

main();

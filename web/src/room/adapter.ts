/**
 * What the layout core needs from an SFU, and nothing more, so that LiveKit and Janus rooms
 * render through the same code. Adapters report facts (who is there, which tracks arrived);
 * the core decides what to show.
 */

/** Which role a track plays on screen; audio is only ever heard. */
export type TrackKind = 'camera' | 'screen' | 'audio';

export interface RoomEventMap {
  participantJoined: { id: string; name: string };
  participantLeft: { id: string };
  trackAdded: { participantId: string; kind: TrackKind; track: MediaStreamTrack };
  trackRemoved: { participantId: string; kind: TrackKind; track: MediaStreamTrack };
  /** Loudest first; only from adapters whose SFU computes it (see `providesActiveSpeakers`). */
  activeSpeakers: { ids: string[] };
  /** A layout pushed through the SFU itself (LiveKit participant metadata). */
  layout: { layout: string };
  /** The room is over for us: ended, destroyed, kicked or the connection is lost. */
  disconnected: { reason: string };
}

export type RoomEventName = keyof RoomEventMap;
type Handler<K extends RoomEventName> = (ev: RoomEventMap[K]) => void;

export interface RoomAdapter {
  /**
   * Resolves once joined (the moment the 2 s "no video" clock starts); rejects with an Error
   * whose message is shown to whoever requested the recording.
   */
  connect(): Promise<void>;
  disconnect(): void;
  /** False when the core has to derive the active speaker from audio levels itself. */
  readonly providesActiveSpeakers: boolean;
  /**
   * True while the SFU has announced video that has not arrived as a track yet, so the start
   * heuristic waits for a frame instead of starting on an empty picture.
   */
  videoPending(): boolean;
  on<K extends RoomEventName>(name: K, handler: Handler<K>): void;
}

/** Small typed emitter the adapters share; events are delivered synchronously, in order. */
export class Emitter {
  private readonly handlers = new Map<RoomEventName, Array<(ev: never) => void>>();

  on<K extends RoomEventName>(name: K, handler: Handler<K>): void {
    const list = this.handlers.get(name) ?? [];
    list.push(handler as (ev: never) => void);
    this.handlers.set(name, list);
  }

  emit<K extends RoomEventName>(name: K, ev: RoomEventMap[K]): void {
    for (const h of this.handlers.get(name) ?? []) {
      try {
        (h as Handler<K>)(ev);
      } catch (err) {
        // One broken listener must not stop the others (e.g. the audio mixer) from hearing it.
        console.error(`roomcast: ${name} handler failed`, err);
      }
    }
  }
}

/**
 * RoomAdapter for the Janus VideoRoom plugin (multistream API, Janus >= 1.0). The recorder joins
 * as a publisher that never publishes, only to learn who publishes, and receives every feed
 * through one multistream subscriber handle.
 */

import { Emitter, type RoomAdapter, type TrackKind } from './adapter';
import { attachVideoRoom, type JanusJS, openSession, type PluginHandle, request, roomId, type Janus } from '../shared/janus-session';

const CONNECT_TIMEOUT_MS = 10_000;
/** Renegotiations are serialised; one that Janus never answers must not block the room forever. */
const NEGOTIATION_TIMEOUT_MS = 5_000;
const RECORDER_DISPLAY = 'roomcast-recorder';
const JANUS_ERROR_NO_SUCH_ROOM = 426;

/** The room name comes from the LiveKit-style grant `video.room` that roomcast mints for Janus too. */
export function roomFromToken(token: string): string {
  const part = token.split('.')[1];
  if (!part) throw new Error('token is not a JWT (needed to pick the Janus room)');
  let payload: unknown;
  try {
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '=');
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    payload = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new Error('token payload is not base64url JSON');
  }
  const room = (payload as { video?: { room?: unknown } } | null)?.video?.room;
  if (typeof room !== 'string' || room === '') throw new Error('token has no video.room grant (needed to pick the Janus room)');
  return room;
}

interface PublisherStream {
  type: 'audio' | 'video' | 'data';
  mid: string;
  description?: string;
  disabled?: boolean;
}

interface Publisher {
  /** As Janus sent it: a string with string_ids, a number otherwise; requests must echo the type. */
  id: string | number;
  display?: string;
  streams?: PublisherStream[];
}

interface SubscriberStream {
  mid: string;
  type: 'audio' | 'video' | 'data';
  active?: boolean;
  feed_id?: string | number;
  feed_mid?: string;
  feed_description?: string;
}

interface Emitted {
  feed: string;
  kind: TrackKind;
  track: MediaStreamTrack;
}

function isScreen(description: string | undefined): boolean {
  return !!description && description.toLowerCase().includes('screen');
}

export class JanusAdapter extends Emitter implements RoomAdapter {
  /** VideoRoom's talking events need audiolevel_event in the room config; levels are measured here instead. */
  readonly providesActiveSpeakers = false;
  private readonly room: string;
  /** `room` typed as this Janus types room ids (see roomId). */
  private roomId: string | number = '';
  private janus?: Janus;
  private pub?: PluginHandle;
  private sub?: PluginHandle;
  private subAttaching = false;
  /** The first subscription is a join, later ones are subscribe requests on the same handle. */
  private subJoined = false;
  private privateId?: number;
  private myId?: string | number;
  private joined = false;
  private ended = false;

  /** Publishing feeds by String(id). */
  private readonly feeds = new Map<string, Publisher>();
  /** "feed/feedMid" pairs already requested from the subscriber. */
  private readonly requested = new Set<string>();
  private readonly queue: Array<{ feed: string | number; mid?: string }> = [];
  private negotiating = false;
  private negotiationTimer?: number;

  /** Subscriber mid → the feed stream Janus put there (mids are recycled across feeds). */
  private readonly midMap = new Map<string, { feed: string; kind: TrackKind; feedMid?: string }>();
  private readonly tracksByMid = new Map<string, MediaStreamTrack>();
  private readonly emitted = new Map<string, Emitted>();

  constructor(
    private readonly url: string,
    token: string,
  ) {
    super();
    this.room = roomFromToken(token);
  }

  connect(): Promise<void> {
    if (!this.url) return Promise.reject(new Error('missing url parameter (Janus websocket URL)'));
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const fail = (message: string): void => {
        if (settled) return;
        settled = true;
        window.clearTimeout(timer);
        this.ended = true;
        this.teardown();
        reject(new Error(message));
      };
      // A websocket to an unreachable host can hang for minutes; the egress needs an answer sooner.
      const timer = window.setTimeout(
        () => fail(`could not join Janus room "${this.room}" at ${this.url} within ${CONNECT_TIMEOUT_MS / 1000} s (server unreachable?)`),
        CONNECT_TIMEOUT_MS,
      );
      const joinedOk = (): void => {
        if (settled) return;
        settled = true;
        window.clearTimeout(timer);
        this.joined = true;
        resolve();
      };
      openSession(this.url, {
        error: (message) => (settled ? this.end(`connection to Janus lost: ${message}`) : fail(message)),
        destroyed: () => this.end('Janus session destroyed'),
      })
        .then(async (janus) => {
          if (settled) {
            janus.destroy({ notifyDestroyed: false });
            return;
          }
          this.janus = janus;
          this.pub = await attachVideoRoom(janus, `${RECORDER_DISPLAY}-${Math.random().toString(36).slice(2)}`, {
            onmessage: (msg) => this.onPublisherMessage(msg, joinedOk, fail),
          });
          try {
            this.roomId = await roomId(this.pub, this.room);
          } catch (err) {
            // Janus answered: the reason is about the room, not the connection.
            fail(err instanceof Error ? err.message : String(err));
            return;
          }
          if (settled) return;
          request(this.pub, { request: 'join', ptype: 'publisher', room: this.roomId, display: RECORDER_DISPLAY });
        })
        .catch((err: unknown) =>
          fail(`could not connect to Janus at ${this.url}: ${err instanceof Error ? err.message : String(err)}`),
        );
    });
  }

  private onPublisherMessage(msg: JanusJS.Message, joinedOk: () => void, fail: (m: string) => void): void {
    const kind = msg['videoroom'] as string | undefined;
    if (kind === 'joined') {
      this.myId = msg['id'] as string | number;
      this.privateId = msg['private_id'] as number | undefined;
      this.addPublishers(msg['publishers'] as Publisher[] | undefined);
      joinedOk();
      return;
    }
    if (kind === 'destroyed') {
      this.end(`Janus room "${this.room}" was destroyed`);
      return;
    }
    if (kind !== 'event') return;
    const code = msg['error_code'] as number | undefined;
    if (code !== undefined) {
      if (!this.joined) {
        fail(
          code === JANUS_ERROR_NO_SUCH_ROOM
            ? `Janus room "${this.room}" does not exist`
            : `Janus refused to join room "${this.room}": ${String(msg['error'] ?? code)}`,
        );
      } else {
        console.warn(`roomcast: Janus error ${code}: ${String(msg['error'])}`);
      }
      return;
    }
    this.addPublishers(msg['publishers'] as Publisher[] | undefined);
    for (const key of ['unpublished', 'leaving'] as const) {
      const id = msg[key] as string | number | undefined;
      // "ok" is Janus's reply to our own unpublish/leave, not someone else's.
      if (id !== undefined && id !== 'ok') this.removeFeed(String(id));
    }
    const kicked = msg['kicked'] as string | number | undefined;
    if (kicked !== undefined && this.myId !== undefined && String(kicked) === String(this.myId)) {
      this.end('kicked from the Janus room');
    }
  }

  private addPublishers(list: Publisher[] | undefined): void {
    for (const p of list ?? []) {
      if (p.display === RECORDER_DISPLAY) continue;
      const key = String(p.id);
      const streams = (p.streams ?? []).filter((s) => !s.disabled && (s.type === 'audio' || s.type === 'video'));
      if (streams.length === 0) continue;
      const isNew = !this.feeds.has(key);
      this.feeds.set(key, p);
      if (isNew) this.emit('participantJoined', { id: key, name: p.display || key });
      // A feed that is already subscribed re-announces itself when it adds streams; ask for the new ones only.
      if (isNew && !streams.some((s) => this.requested.has(`${key}/${s.mid}`))) {
        for (const s of streams) this.requested.add(`${key}/${s.mid}`);
        this.queue.push({ feed: p.id });
      } else {
        for (const s of streams) {
          if (this.requested.has(`${key}/${s.mid}`)) continue;
          this.requested.add(`${key}/${s.mid}`);
          this.queue.push({ feed: p.id, mid: s.mid });
        }
      }
    }
    this.pump();
    this.reconcile();
  }

  private removeFeed(key: string): void {
    if (!this.feeds.delete(key)) return;
    for (const r of [...this.requested]) if (r.startsWith(`${key}/`)) this.requested.delete(r);
    for (let i = this.queue.length - 1; i >= 0; i--) if (String(this.queue[i]!.feed) === key) this.queue.splice(i, 1);
    // Janus drops the feed's streams from our subscription by itself and renegotiates.
    this.reconcile();
    this.emit('participantLeft', { id: key });
  }

  /** Sends queued subscriptions as one request, once the previous negotiation has finished. */
  private pump(): void {
    if (this.negotiating || this.queue.length === 0 || this.ended || !this.janus) return;
    if (!this.sub) {
      if (this.subAttaching) return;
      this.subAttaching = true;
      attachVideoRoom(this.janus, `${RECORDER_DISPLAY}-sub-${Math.random().toString(36).slice(2)}`, {
        onmessage: (msg, jsep) => this.onSubscriberMessage(msg, jsep),
        onremotetrack: (track, mid, on, meta) => this.onRemoteTrack(track, mid, on, meta),
      })
        .then((handle) => {
          this.sub = handle;
          this.subAttaching = false;
          this.pump();
        })
        .catch((err: unknown) => {
          this.subAttaching = false;
          console.error('roomcast: could not create the Janus subscriber', err);
        });
      return;
    }
    const streams = this.queue.splice(0, this.queue.length);
    this.setNegotiating(true);
    if (!this.subJoined) {
      this.subJoined = true;
      request(this.sub, { request: 'join', ptype: 'subscriber', room: this.roomId, streams, private_id: this.privateId });
    } else {
      request(this.sub, { request: 'subscribe', streams });
    }
  }

  private setNegotiating(on: boolean): void {
    this.negotiating = on;
    window.clearTimeout(this.negotiationTimer);
    if (on) {
      this.negotiationTimer = window.setTimeout(() => {
        console.warn('roomcast: Janus did not answer a subscription change in time; going on');
        this.setNegotiating(false);
        this.pump();
      }, NEGOTIATION_TIMEOUT_MS);
    }
  }

  private onSubscriberMessage(msg: JanusJS.Message, jsep?: JanusJS.JSEP): void {
    const kind = msg['videoroom'] as string | undefined;
    if (kind === 'attached' || kind === 'updated') {
      const streams = msg['streams'] as SubscriberStream[] | undefined;
      if (streams) this.updateMidMap(streams);
    } else if (kind === 'event' && msg['error_code'] !== undefined) {
      // Typically a feed that left between our request and Janus handling it.
      console.warn(`roomcast: Janus subscriber error ${String(msg['error_code'])}: ${String(msg['error'])}`);
      if (!this.sub?.webrtcStuff?.pc) this.subJoined = false;
      this.setNegotiating(false);
      this.pump();
      return;
    }
    if (!jsep) {
      if (kind === 'updated' || kind === 'attached') {
        this.setNegotiating(false);
        this.pump();
      }
      return;
    }
    const sub = this.sub;
    if (!sub) return;
    sub.createAnswer({
      jsep,
      // Receive only: the recorder sends nothing.
      tracks: [],
      success: (answer: JanusJS.JSEP) => {
        request(sub, { request: 'start' }, answer);
        this.setNegotiating(false);
        this.pump();
      },
      error: (err: string) => {
        console.error(`roomcast: could not answer Janus's offer: ${err}`);
        this.setNegotiating(false);
        this.pump();
      },
    });
  }

  private updateMidMap(streams: SubscriberStream[]): void {
    this.midMap.clear();
    for (const s of streams) {
      if (s.active === false || s.feed_id === undefined || (s.type !== 'audio' && s.type !== 'video')) continue;
      const feed = String(s.feed_id);
      let kind: TrackKind = 'audio';
      if (s.type === 'video') {
        const published = this.feeds.get(feed)?.streams?.find((p) => p.mid === s.feed_mid);
        kind = isScreen(s.feed_description) || isScreen(published?.description) ? 'screen' : 'camera';
      }
      this.midMap.set(s.mid, { feed, kind, feedMid: s.feed_mid });
    }
    this.reconcile();
  }

  private onRemoteTrack(track: MediaStreamTrack, mid: string, on: boolean, meta?: JanusJS.RemoteTrackMetadata): void {
    // "mute" only means no packets for a while; the tile keeps its last frame rather than flickering.
    if (meta?.reason === 'mute' || meta?.reason === 'unmute') return;
    if (on) this.tracksByMid.set(mid, track);
    else this.tracksByMid.delete(mid);
    this.reconcile();
  }

  /** Brings what the core was told in line with (mid → feed) ∩ (mid → track) ∩ present feeds. */
  private reconcile(): void {
    for (const [mid, prev] of [...this.emitted]) {
      const m = this.midMap.get(mid);
      const track = this.tracksByMid.get(mid);
      if (!m || !track || m.feed !== prev.feed || m.kind !== prev.kind || track !== prev.track || !this.feeds.has(prev.feed)) {
        this.emitted.delete(mid);
        this.emit('trackRemoved', { participantId: prev.feed, kind: prev.kind, track: prev.track });
      }
    }
    for (const [mid, track] of this.tracksByMid) {
      const m = this.midMap.get(mid);
      if (!m || this.emitted.has(mid) || !this.feeds.has(m.feed)) continue;
      this.emitted.set(mid, { feed: m.feed, kind: m.kind, track });
      this.emit('trackAdded', { participantId: m.feed, kind: m.kind, track });
    }
  }

  videoPending(): boolean {
    const delivered = new Set<string>();
    for (const [mid, e] of this.emitted) {
      if (e.kind !== 'audio') delivered.add(`${e.feed}/${this.midMap.get(mid)?.feedMid ?? ''}`);
    }
    for (const [key, p] of this.feeds) {
      for (const s of p.streams ?? []) {
        if (s.type === 'video' && !s.disabled && !delivered.has(`${key}/${s.mid}`)) return true;
      }
    }
    return false;
  }

  private end(reason: string): void {
    if (this.ended) return;
    this.ended = true;
    this.teardown();
    if (this.joined) this.emit('disconnected', { reason });
  }

  private teardown(): void {
    window.clearTimeout(this.negotiationTimer);
    const janus = this.janus;
    this.janus = undefined;
    try {
      // Destroying the session detaches its handles, which leaves the room; a separate leave
      // request would race the destroy and fail with "no such session".
      janus?.destroy({ notifyDestroyed: false });
    } catch (err) {
      console.warn('roomcast: Janus teardown failed', err);
    }
  }

  disconnect(): void {
    this.end('disconnected by the page');
  }
}

/**
 * RoomAdapter for LiveKit (livekit-client). The recorder joins with the egress token, which
 * makes it hidden, so it never appears to others and `remoteParticipants` is exactly the room.
 */

import {
  ConnectionState,
  DisconnectReason,
  type Participant,
  ParticipantEvent,
  type RemoteParticipant,
  type RemoteTrack,
  type RemoteTrackPublication,
  Room,
  RoomEvent,
  setLogLevel,
  Track,
} from 'livekit-client';
import { Emitter, type RoomAdapter, type TrackKind } from './adapter';
import { layoutFromMetadata } from './contract';

function kindOf(track: RemoteTrack): TrackKind {
  if (track.kind === Track.Kind.Audio) return 'audio';
  return track.source === Track.Source.ScreenShare ? 'screen' : 'camera';
}

function displayName(p: Participant): string {
  return p.name || p.identity;
}

// The SDK logs every state change at info level; the console is the egress's signal channel and
// its log, so keep it to what needs attention.
setLogLevel('warn');

export class LiveKitAdapter extends Emitter implements RoomAdapter {
  readonly providesActiveSpeakers = true;
  private readonly room: Room;
  private readonly known = new Set<string>();
  private connected = false;

  constructor(
    private readonly url: string,
    private readonly token: string,
  ) {
    super();
    // adaptiveStream would pause video the page does not show at full size (thumbnails, hidden
    // tiles) and dynacast changes layers under us; the recorder wants every stream as sent.
    this.room = new Room({ adaptiveStream: false, dynacast: false });
    this.wire();
  }

  private wire(): void {
    const room = this.room;
    room.on(RoomEvent.ParticipantConnected, (p: RemoteParticipant) => this.ensure(p));
    room.on(RoomEvent.ParticipantDisconnected, (p: RemoteParticipant) => {
      if (!this.known.delete(p.identity)) return;
      this.emit('participantLeft', { id: p.identity });
    });
    room.on(RoomEvent.ParticipantNameChanged, (_name: string, p: Participant) => {
      // A rename re-announces the participant; the core treats a known id as an update.
      if (this.known.has(p.identity)) this.emit('participantJoined', { id: p.identity, name: displayName(p) });
    });
    room.on(
      RoomEvent.TrackSubscribed,
      (track: RemoteTrack, _pub: RemoteTrackPublication, p: RemoteParticipant) => {
        this.ensure(p);
        this.emit('trackAdded', { participantId: p.identity, kind: kindOf(track), track: track.mediaStreamTrack });
      },
    );
    room.on(
      RoomEvent.TrackUnsubscribed,
      (track: RemoteTrack, _pub: RemoteTrackPublication, p: RemoteParticipant) => {
        this.emit('trackRemoved', { participantId: p.identity, kind: kindOf(track), track: track.mediaStreamTrack });
      },
    );
    room.on(RoomEvent.ActiveSpeakersChanged, (speakers: Participant[]) => {
      const ids = speakers.filter((s) => s !== room.localParticipant).map((s) => s.identity);
      this.emit('activeSpeakers', { ids });
    });
    room.localParticipant.on(ParticipantEvent.ParticipantMetadataChanged, () => {
      const layout = layoutFromMetadata(room.localParticipant.metadata);
      if (layout) this.emit('layout', { layout });
    });
    room.on(RoomEvent.Disconnected, (reason?: DisconnectReason) => {
      // Before connect() resolves a disconnect is a failed join, which connect() reports itself.
      if (!this.connected) return;
      this.connected = false;
      const why = reason === undefined ? 'unknown' : (DisconnectReason[reason] ?? String(reason));
      this.emit('disconnected', { reason: why });
    });
  }

  private ensure(p: RemoteParticipant): void {
    if (this.known.has(p.identity)) return;
    this.known.add(p.identity);
    this.emit('participantJoined', { id: p.identity, name: displayName(p) });
  }

  async connect(): Promise<void> {
    if (!this.url) throw new Error('missing url parameter (SFU websocket URL)');
    if (!this.token) throw new Error('missing token parameter');
    try {
      await this.room.connect(this.url, this.token, { autoSubscribe: true });
    } catch (err) {
      throw new Error(`could not join the LiveKit room at ${this.url}: ${err instanceof Error ? err.message : String(err)}`);
    }
    this.connected = this.room.state === ConnectionState.Connected;
    // ParticipantConnected only fires for later arrivals; those already present come from here.
    for (const p of this.room.remoteParticipants.values()) this.ensure(p);
    const layout = layoutFromMetadata(this.room.localParticipant.metadata);
    if (layout) this.emit('layout', { layout });
  }

  disconnect(): void {
    void this.room.disconnect();
  }

  videoPending(): boolean {
    for (const p of this.room.remoteParticipants.values()) {
      for (const pub of p.trackPublications.values()) {
        if (pub.kind === Track.Kind.Video && !pub.isMuted && !pub.track) return true;
      }
    }
    return false;
  }
}

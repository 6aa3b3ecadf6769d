/**
 * Plays every remote audio track through its own <audio> element. The egress records the page's
 * audio output, so this is what puts the room's mix into the recording; it is also what makes
 * Chromium feed remote WebRTC audio to WebAudio at all (without a playing element an
 * AnalyserNode on the stream reads silence), which the level meter relies on.
 */

export class AudioOut {
  private readonly elements = new Map<string, { participantId: string; el: HTMLAudioElement }>();

  constructor(private readonly container: HTMLElement) {}

  add(participantId: string, track: MediaStreamTrack): void {
    if (this.elements.has(track.id)) return;
    const el = document.createElement('audio');
    el.autoplay = true;
    el.srcObject = new MediaStream([track]);
    el.dataset['participant'] = participantId;
    this.container.appendChild(el);
    // Autoplay is allowed by the egress's Chromium flags; a rejection means a misconfigured browser.
    el.play().catch((err: unknown) => console.warn('roomcast: audio playback refused', err));
    this.elements.set(track.id, { participantId, el });
  }

  remove(track: MediaStreamTrack): void {
    const entry = this.elements.get(track.id);
    if (!entry) return;
    this.elements.delete(track.id);
    entry.el.srcObject = null;
    entry.el.remove();
  }

  removeParticipant(participantId: string): void {
    for (const [id, entry] of [...this.elements]) {
      if (entry.participantId !== participantId) continue;
      this.elements.delete(id);
      entry.el.srcObject = null;
      entry.el.remove();
    }
  }
}

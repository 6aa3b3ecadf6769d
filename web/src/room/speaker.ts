/**
 * Derives the active speaker from remote audio levels, for SFUs that do not announce one.
 * Levels are smoothed and a new speaker must win clearly for a few samples, so that two people
 * talking at once do not make the stage flip back and forth.
 */

const SAMPLE_MS = 100;
const SMOOTHING = 0.6;
/** RMS of the float waveform below which a participant counts as silent. */
const SILENCE = 0.01;
/** A challenger has to be this much louder than the current speaker... */
const MARGIN = 1.5;
/** ...for this many consecutive samples. */
const WIN_SAMPLES = 3;

interface Meter {
  participantId: string;
  source: MediaStreamAudioSourceNode;
  analyser: AnalyserNode;
}

export class SpeakerDetector {
  private ctx?: AudioContext;
  private readonly meters = new Map<string, Meter>();
  private readonly smoothed = new Map<string, number>();
  private current?: string;
  private challenger?: string;
  private wins = 0;
  private timer?: number;
  private buf?: Float32Array<ArrayBuffer>;

  constructor(private readonly onChange: (speakerId: string | undefined) => void) {}

  add(participantId: string, track: MediaStreamTrack): void {
    if (this.meters.has(track.id)) return;
    this.ctx ??= new AudioContext();
    // Created without a user gesture; the egress's autoplay policy lets it run, resume() makes sure.
    void this.ctx.resume();
    const source = this.ctx.createMediaStreamSource(new MediaStream([track]));
    const analyser = this.ctx.createAnalyser();
    analyser.fftSize = 1024;
    // Not connected to the destination: the <audio> element already plays it, this only listens.
    source.connect(analyser);
    this.meters.set(track.id, { participantId, source, analyser });
    this.timer ??= window.setInterval(() => this.sample(), SAMPLE_MS);
  }

  remove(track: MediaStreamTrack): void {
    const m = this.meters.get(track.id);
    if (!m) return;
    this.meters.delete(track.id);
    m.source.disconnect();
    this.forgetIfSilent(m.participantId);
  }

  removeParticipant(participantId: string): void {
    for (const [id, m] of [...this.meters]) {
      if (m.participantId !== participantId) continue;
      this.meters.delete(id);
      m.source.disconnect();
    }
    this.forgetIfSilent(participantId);
  }

  private forgetIfSilent(participantId: string): void {
    if ([...this.meters.values()].some((m) => m.participantId === participantId)) return;
    this.smoothed.delete(participantId);
    if (this.current === participantId) {
      this.current = undefined;
      this.onChange(undefined);
    }
  }

  private sample(): void {
    const levels = new Map<string, number>();
    for (const m of this.meters.values()) {
      if (!this.buf || this.buf.length !== m.analyser.fftSize) this.buf = new Float32Array(m.analyser.fftSize);
      m.analyser.getFloatTimeDomainData(this.buf);
      let sum = 0;
      for (const v of this.buf) sum += v * v;
      const rms = Math.sqrt(sum / this.buf.length);
      levels.set(m.participantId, Math.max(levels.get(m.participantId) ?? 0, rms));
    }
    let loudest: string | undefined;
    let loudestLevel = SILENCE;
    for (const [id, level] of levels) {
      const s = SMOOTHING * (this.smoothed.get(id) ?? 0) + (1 - SMOOTHING) * level;
      this.smoothed.set(id, s);
      if (s > loudestLevel) {
        loudest = id;
        loudestLevel = s;
      }
    }
    if (!loudest || loudest === this.current) {
      this.challenger = undefined;
      this.wins = 0;
      return;
    }
    const currentLevel = this.current ? (this.smoothed.get(this.current) ?? 0) : 0;
    if (currentLevel >= SILENCE && loudestLevel < currentLevel * MARGIN) {
      this.challenger = undefined;
      this.wins = 0;
      return;
    }
    this.wins = this.challenger === loudest ? this.wins + 1 : 1;
    this.challenger = loudest;
    // With nobody on stage yet there is nothing to flicker away from: take the first voice at once.
    if (this.current === undefined || this.wins >= WIN_SAMPLES) {
      this.current = loudest;
      this.challenger = undefined;
      this.wins = 0;
      this.onChange(loudest);
    }
  }
}

/**
 * One participant's picture (camera or screen share) with its name. A tile's element is created
 * once and only moved by changing its box: a <video> taken out of the document is paused by the
 * browser, so re-parenting on every layout change would stall the picture.
 */

export class Tile {
  readonly el: HTMLDivElement;
  private readonly video: HTMLVideoElement;
  private readonly label: HTMLDivElement;
  private readonly avatar: HTMLDivElement;
  private track?: MediaStreamTrack;
  private frameHandle?: number;
  private placed = false;

  constructor(
    readonly key: string,
    readonly participantId: string,
    readonly screen: boolean,
    name: string,
    private readonly onFirstFrame: () => void,
  ) {
    this.el = document.createElement('div');
    this.el.className = screen ? 'tile screen' : 'tile';
    this.el.dataset['participant'] = participantId;
    this.el.dataset['kind'] = screen ? 'screen' : 'camera';
    this.avatar = document.createElement('div');
    this.avatar.className = 'avatar';
    this.video = document.createElement('video');
    this.video.muted = true; // sound comes from AudioOut, once per track
    this.video.autoplay = true;
    this.video.playsInline = true;
    this.video.disablePictureInPicture = true;
    this.label = document.createElement('div');
    this.label.className = 'name';
    this.el.append(this.avatar, this.video, this.label);
    this.setName(name);
  }

  setName(name: string): void {
    this.label.textContent = this.screen ? `${name} (screen)` : name;
    this.avatar.textContent = initials(name);
  }

  setTrack(track: MediaStreamTrack | undefined): void {
    if (track === this.track) return;
    this.track = track;
    this.el.classList.toggle('has-video', !!track);
    if (!track) {
      this.video.srcObject = null;
      return;
    }
    this.video.srcObject = new MediaStream([track]);
    this.video.play().catch((err: unknown) => console.warn('roomcast: video playback refused', err));
    this.watchFirstFrame();
  }

  hasTrack(): boolean {
    return !!this.track;
  }

  place(rect: { x: number; y: number; w: number; h: number } | undefined): void {
    this.placed = !!rect;
    if (!rect) {
      // Keep the last box so a tile that comes back fades in where it was.
      this.el.classList.add('hidden');
      return;
    }
    this.el.classList.remove('hidden');
    const s = this.el.style;
    s.left = `${rect.x}px`;
    s.top = `${rect.y}px`;
    s.width = `${rect.w}px`;
    s.height = `${rect.h}px`;
  }

  /** Whether the last layout pass gave this tile a box. */
  isPlaced(): boolean {
    return this.placed;
  }

  setSpeaking(on: boolean): void {
    this.el.classList.toggle('speaking', on);
  }

  remove(): void {
    this.setTrack(undefined);
    this.el.remove();
  }

  /** The start heuristic wants a frame on screen, not just a track: both signals, whichever is first. */
  private watchFirstFrame(): void {
    const video = this.video;
    const fire = (): void => {
      if (this.frameHandle !== undefined && 'cancelVideoFrameCallback' in video) video.cancelVideoFrameCallback(this.frameHandle);
      this.frameHandle = undefined;
      video.removeEventListener('loadeddata', onData);
      if (this.track) this.onFirstFrame();
    };
    const onData = (): void => {
      // loadeddata means decoded, not yet painted: let two frames go by.
      requestAnimationFrame(() => requestAnimationFrame(fire));
    };
    if ('requestVideoFrameCallback' in video) this.frameHandle = video.requestVideoFrameCallback(() => fire());
    video.addEventListener('loadeddata', onData, { once: true });
  }
}

function initials(name: string): string {
  const parts = name.trim().split(/\s+/).filter(Boolean);
  const letters = parts.length > 1 ? [parts[0]![0], parts[parts.length - 1]![0]] : [name.trim()[0]];
  return letters.join('').toUpperCase();
}

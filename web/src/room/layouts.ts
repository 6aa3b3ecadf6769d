/**
 * The layout view: keeps one Tile per camera and per screen share, and places them for the
 * current layout (`grid`, `speaker`, `single-speaker`, each with a `-light` variant). Every
 * change re-runs the pure geometry and lets CSS transitions animate the boxes.
 */

import { computeLayout, type LayoutBase } from './geometry';
import { Tile } from './tile';

const BASES: readonly LayoutBase[] = ['grid', 'speaker', 'single-speaker'];
/** Matches the CSS fade, so a leaving tile is gone from the DOM once it is invisible. */
const FADE_MS = 300;

export interface ParsedLayout {
  base: LayoutBase;
  light: boolean;
  name: string;
}

export function parseLayout(name: string): ParsedLayout {
  const raw = name.trim().toLowerCase();
  const light = raw.endsWith('-light');
  const base = (light ? raw.slice(0, -'-light'.length) : raw) as LayoutBase;
  if (BASES.includes(base)) return { base, light, name: raw };
  console.warn(`roomcast: unknown layout "${name}", using grid`);
  return { base: 'grid', light: false, name: 'grid' };
}

interface Person {
  name: string;
  camera: Tile;
  screen?: Tile;
}

export class LayoutView {
  private layout: ParsedLayout = { base: 'grid', light: false, name: 'grid' };
  private readonly people = new Map<string, Person>();
  private speaker?: string;
  private readonly waiting: HTMLDivElement;
  private readonly frameListeners: Array<() => void> = [];
  private framed = false;
  private scheduled = false;

  constructor(private readonly root: HTMLElement) {
    this.waiting = document.createElement('div');
    this.waiting.className = 'waiting';
    this.waiting.textContent = 'Waiting for participants…';
    root.appendChild(this.waiting);
    window.addEventListener('resize', () => this.schedule());
  }

  setLayout(name: string): void {
    this.layout = parseLayout(name);
    document.body.classList.toggle('light', this.layout.light);
    document.body.dataset['layout'] = this.layout.name;
    this.schedule();
  }

  currentLayout(): string {
    return this.layout.name;
  }

  currentSpeaker(): string | undefined {
    return this.speaker;
  }

  /** Also fires at once when a frame was already shown (tracks can arrive before the join settles). */
  onFirstFrame(listener: () => void): void {
    this.frameListeners.push(listener);
    if (this.framed) listener();
  }

  upsertParticipant(id: string, name: string): void {
    const p = this.people.get(id);
    if (p) {
      p.name = name;
      p.camera.setName(name);
      p.screen?.setName(name);
      return;
    }
    const camera = this.newTile(id, false, name);
    this.people.set(id, { name, camera });
    this.schedule();
  }

  removeParticipant(id: string): void {
    const p = this.people.get(id);
    if (!p) return;
    this.people.delete(id);
    for (const tile of [p.camera, p.screen]) if (tile) this.fadeOut(tile);
    if (this.speaker === id) this.speaker = undefined;
    this.schedule();
  }

  setTrack(id: string, kind: 'camera' | 'screen', track: MediaStreamTrack | undefined): void {
    const p = this.people.get(id);
    if (!p) return;
    if (kind === 'camera') {
      p.camera.setTrack(track);
    } else if (track) {
      p.screen ??= this.newTile(id, true, p.name);
      p.screen.setTrack(track);
    } else if (p.screen) {
      this.fadeOut(p.screen);
      p.screen = undefined;
    }
    this.schedule();
  }

  /** `undefined` keeps the current speaker: silence should not empty the stage. */
  setSpeaker(id: string | undefined): void {
    if (id === undefined || id === this.speaker || !this.people.has(id)) return;
    this.speaker = id;
    this.schedule();
  }

  hasVideo(): boolean {
    for (const p of this.people.values()) if (p.camera.hasTrack() || p.screen?.hasTrack()) return true;
    return false;
  }

  participants(): Array<{ id: string; name: string; camera: boolean; screen: boolean }> {
    return [...this.people].map(([id, p]) => ({ id, name: p.name, camera: p.camera.hasTrack(), screen: !!p.screen }));
  }

  private newTile(id: string, screen: boolean, name: string): Tile {
    const tile = new Tile(screen ? `${id}#screen` : id, id, screen, name, () => {
      this.framed = true;
      for (const l of this.frameListeners) l();
    });
    // Enter invisible, then fade in at the box the next layout pass gives it.
    tile.el.classList.add('hidden', 'entering');
    this.root.appendChild(tile.el);
    return tile;
  }

  private fadeOut(tile: Tile): void {
    tile.el.classList.add('hidden', 'leaving');
    window.setTimeout(() => tile.remove(), FADE_MS);
  }

  /** Coalesces bursts (a participant joining brings a join and two tracks) into one pass. */
  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      this.apply();
    });
  }

  private apply(): void {
    const tiles: Tile[] = [];
    for (const p of this.people.values()) {
      tiles.push(p.camera);
      if (p.screen) tiles.push(p.screen);
    }
    const w = window.innerWidth;
    const h = window.innerHeight;
    const rects = computeLayout(this.layout.base, tiles, this.speaker, w, h);
    const speaker = this.speaker ?? tiles.find((t) => !t.screen)?.participantId;
    for (const tile of tiles) {
      const entering = tile.el.classList.contains('entering');
      const rect = rects.get(tile.key);
      if (entering && rect) {
        // Place without animating the box, then fade in on the next frame.
        tile.el.classList.add('no-move');
        tile.place(rect);
        tile.el.classList.add('hidden');
        // Flush styles so the browser has seen the invisible state it is to transition from.
        void tile.el.getBoundingClientRect();
        requestAnimationFrame(() => {
          tile.el.classList.remove('entering', 'no-move');
          // A pass since then may have hidden it (no box any more) or it may be leaving already.
          if (tile.isPlaced() && !tile.el.classList.contains('leaving')) tile.el.classList.remove('hidden');
        });
      } else {
        tile.place(rect);
      }
      tile.setSpeaking(!tile.screen && tile.participantId === speaker && this.layout.base === 'grid' && tiles.length > 1);
    }
    this.waiting.classList.toggle('shown', tiles.length === 0);
  }
}

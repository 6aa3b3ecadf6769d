/**
 * Pure tile geometry: which tile goes where for a layout and a viewport. Kept free of the DOM so
 * the rules (grid shape, stage and strip) can be read and reasoned about in one place.
 */

export type LayoutBase = 'grid' | 'speaker' | 'single-speaker';

export interface Rect {
  x: number;
  y: number;
  w: number;
  h: number;
}

export interface TileInfo {
  key: string;
  participantId: string;
  screen: boolean;
}

/** Participants' pictures are 16:9 nearly always; cells are shaped for that and cover-cropped. */
const ASPECT = 16 / 9;
/** Share of the width the thumbnail strip takes next to the stage. */
const STRIP_SHARE = 0.2;

function gapFor(w: number, h: number): number {
  return Math.max(2, Math.round(Math.min(w, h) * 0.006));
}

/** Columns for n tiles so that a 16:9 picture in each cell is as large as possible. */
export function gridColumns(n: number, w: number, h: number): number {
  let best = 1;
  let bestScore = -1;
  for (let c = 1; c <= n; c++) {
    const r = Math.ceil(n / c);
    const score = Math.min(w / c, (h / r) * ASPECT);
    // ">=" prefers more columns on a tie: two people side by side rather than stacked.
    if (score >= bestScore) {
      best = c;
      bestScore = score;
    }
  }
  return best;
}

function grid(keys: string[], area: Rect, gap: number): Map<string, Rect> {
  const out = new Map<string, Rect>();
  const n = keys.length;
  if (n === 0) return out;
  const cols = gridColumns(n, area.w, area.h);
  const rows = Math.ceil(n / cols);
  const cellW = area.w / cols;
  const cellH = area.h / rows;
  keys.forEach((key, i) => {
    const row = Math.floor(i / cols);
    const inRow = row === rows - 1 ? n - row * cols : cols;
    // A short last row is centred rather than left-aligned.
    const offset = ((cols - inRow) * cellW) / 2;
    const col = i - row * cols;
    out.set(key, {
      x: Math.round(area.x + offset + col * cellW + gap / 2),
      y: Math.round(area.y + row * cellH + gap / 2),
      w: Math.round(cellW - gap),
      h: Math.round(cellH - gap),
    });
  });
  return out;
}

/** Stage on the left; on the right, thumbnails in the column count that makes them largest. */
function stageAndStrip(stageKey: string, others: string[], w: number, h: number, gap: number): Map<string, Rect> {
  const out = new Map<string, Rect>();
  if (others.length === 0) {
    out.set(stageKey, { x: 0, y: 0, w, h });
    return out;
  }
  const stripW = Math.round(w * STRIP_SHARE);
  out.set(stageKey, { x: 0, y: 0, w: w - stripW, h });
  let cols = 1;
  // The column count that gives the largest thumbnails (a 16:9 cell, shrunk to the height if
  // the rows do not fit): a viewport a pixel short of 720 must not halve every thumbnail of a
  // column of five that nearly fits.
  const heightFor = (c: number): number => Math.min(stripW / c / ASPECT, h / Math.ceil(others.length / c));
  for (let c = 2; c <= others.length; c++) if (heightFor(c) > heightFor(cols) * 1.01) cols = c;
  const thumbW = stripW / cols;
  const thumbH = heightFor(cols);
  const rows = Math.ceil(others.length / cols);
  const top = (h - rows * thumbH) / 2;
  others.forEach((key, i) => {
    const row = Math.floor(i / cols);
    const col = i % cols;
    out.set(key, {
      x: Math.round(w - stripW + col * thumbW + gap / 2),
      y: Math.round(top + row * thumbH + gap / 2),
      w: Math.round(thumbW - gap),
      h: Math.round(thumbH - gap),
    });
  });
  return out;
}

/**
 * Rectangles for the tiles that are shown; a tile missing from the result is hidden.
 * A screen share always takes the stage; otherwise the speaker layouts stage `speakerId`
 * (or the first participant while nobody has spoken).
 */
export function computeLayout(base: LayoutBase, tiles: TileInfo[], speakerId: string | undefined, w: number, h: number): Map<string, Rect> {
  const gap = gapFor(w, h);
  if (tiles.length === 0) return new Map();
  const screen = tiles.find((t) => t.screen && t.participantId === speakerId) ?? tiles.find((t) => t.screen);
  const cameras = tiles.filter((t) => !t.screen);
  const speakerTile = cameras.find((t) => t.participantId === speakerId) ?? cameras[0];

  if (base === 'grid' && !screen) return grid(cameras.map((t) => t.key), { x: 0, y: 0, w, h }, gap);

  const stage = screen ?? speakerTile;
  if (!stage) return new Map();
  if (base === 'single-speaker') return new Map([[stage.key, { x: 0, y: 0, w, h }]]);
  // Other screen shares are not thumbnailed: a tiny screen is unreadable and crowds out faces.
  const others = cameras.filter((t) => t.key !== stage.key).map((t) => t.key);
  return stageAndStrip(stage.key, others, w, h, gap);
}

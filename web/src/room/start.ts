/**
 * When to say START_RECORDING, as LiveKit's default template does: as soon as the first remote
 * video frame is on screen, or 2 s after joining when there is no video to wait for (audio only,
 * or an empty room), so a recording never begins on a half-built picture.
 */

import type { RoomAdapter } from './adapter';
import { recordingStarted, startRecording } from './contract';
import type { LayoutView } from './layouts';

const NO_VIDEO_MS = 2_000;
/** Announced video that never shows (a feed that left, media that cannot flow) must not stall the egress. */
const GIVE_UP_MS = 10_000;

export function armStart(adapter: RoomAdapter, view: LayoutView): void {
  view.onFirstFrame(() => startRecording());
  window.setTimeout(() => {
    if (recordingStarted()) return;
    if (!view.hasVideo() && !adapter.videoPending()) {
      startRecording();
      return;
    }
    window.setTimeout(() => {
      if (recordingStarted()) return;
      console.warn(`roomcast: no video frame ${GIVE_UP_MS / 1000} s after joining; starting anyway`);
      startRecording();
    }, GIVE_UP_MS - NO_VIDEO_MS);
  }, NO_VIDEO_MS);
}

// Drives egress through livekit-server (not roomcast) with LiveKit's official Node SDK, as an
// application in a LiveKit deployment does: livekit-server dispatches to its egress workers
// over psrpc, and what it reports back comes from the worker's IOInfo updates.
// Usage: node lk_dispatch.mjs <livekit-http-url> <api-key> <api-secret> <page-url>
// Prints one JSON line: {egressId, dispatchMs (start call → ACTIVE seen through livekit-server)}.
import assert from 'node:assert/strict';
import { waitForEgress } from './lk_wait.mjs';
import { EgressClient, EgressStatus, SegmentedFileOutput } from 'livekit-server-sdk';

const [host, key, secret, pageUrl] = process.argv.slice(2);
const client = new EgressClient(host, key, secret);

const waitFor = (id, pred, what, seconds) => waitForEgress(client, id, pred, what, { seconds });

const t0 = Date.now();
const started = await client.startWebEgress(pageUrl, {
  segments: new SegmentedFileOutput({ filenamePrefix: 'lk', playlistName: 'lk.m3u8', livePlaylistName: 'lk-live.m3u8', segmentDuration: 2 }),
});
const id = started.egressId;
assert.match(id, /^EG_/);
assert.equal(started.request.case, 'web');
assert.equal(started.request.value.url, pageUrl);

const active = await waitFor(id, (i) => i.status === EgressStatus.EGRESS_ACTIVE, 'ACTIVE', 30);
const dispatchMs = Date.now() - t0;
const withSegment = await waitFor(id, (i) => i.segmentResults[0]?.segmentCount >= 1n, 'a segment', 30);
const live = await (await fetch(withSegment.segmentResults[0].livePlaylistLocation)).text();
assert.match(live, /#EXTINF/, 'the live playlist (served by roomcast) has segments');
assert.ok(active.startedAt > 0n);

const listed = await client.listEgress({ active: true });
assert.ok(listed.some((i) => i.egressId === id), 'ListEgress(active) through livekit-server lists it');

const stopping = await client.stopEgress(id);
assert.equal(stopping.egressId, id);
const done = await waitFor(id, (i) => i.status === EgressStatus.EGRESS_COMPLETE, 'COMPLETE', 30);
assert.ok(done.endedAt > 0n);
assert.ok(done.segmentResults[0].segmentCount >= 1n);

// Stopping it again: livekit-server answers from its store, the egress is over.
await assert.rejects(client.stopEgress(id), 'a second StopEgress is refused');
console.log(JSON.stringify({ egressId: id, dispatchMs }));

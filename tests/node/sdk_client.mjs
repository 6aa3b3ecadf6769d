// Drives roomcast with LiveKit's official Node server SDK (EgressClient), exactly as an
// application would drive LiveKit Egress. Exits non-zero on the first broken expectation.
// Usage: node sdk_client.mjs <roomcast-url> <api-key> <api-secret> <page-url>
import assert from 'node:assert/strict';
import { waitForEgress } from './lk_wait.mjs';
import { EgressClient, EgressStatus, EncodingOptionsPreset, SegmentedFileOutput } from 'livekit-server-sdk';

const [host, key, secret, pageUrl] = process.argv.slice(2);
const client = new EgressClient(host, key, secret);

const waitFor = (id, pred, what, seconds) => waitForEgress(client, id, pred, what, { seconds, pollMs: 250, listed: true });

const started = await client.startWebEgress(
  pageUrl,
  { segments: new SegmentedFileOutput({ filenamePrefix: 'sdk', playlistName: 'sdk.m3u8', livePlaylistName: 'sdk-live.m3u8', segmentDuration: 2 }) },
  { encodingOptions: EncodingOptionsPreset.H264_720P_30 },
);
const id = started.egressId;
assert.match(id, /^EG_/);
assert.equal(started.status, EgressStatus.EGRESS_STARTING);
assert.equal(started.request.case, 'web');
assert.equal(started.request.value.url, pageUrl);

const active = await waitFor(id, (i) => i.status === EgressStatus.EGRESS_ACTIVE && i.segmentResults[0]?.segmentCount >= 1n, 'ACTIVE with a segment', 30);
const seg = active.segmentResults[0];
assert.equal(seg.playlistLocation, `${host}/hls/${id}/sdk.m3u8`);
assert.equal(seg.livePlaylistLocation, `${host}/hls/${id}/sdk-live.m3u8`);
assert.ok(active.startedAt > 0n);

const live = await (await fetch(seg.livePlaylistLocation)).text();
assert.match(live, /#EXT-X-MAP:URI="init.mp4"/);
assert.match(live, /sdk_00001\.m4s/);

const actives = await client.listEgress({ active: true });
assert.ok(actives.some((i) => i.egressId === id), 'active listing includes the egress');

const stopping = await client.stopEgress(id);
assert.ok([EgressStatus.EGRESS_ENDING, EgressStatus.EGRESS_COMPLETE].includes(stopping.status));
const done = await waitFor(id, (i) => i.status === EgressStatus.EGRESS_COMPLETE, 'COMPLETE', 30);
assert.ok(done.endedAt >= done.startedAt);
const full = await (await fetch(done.segmentResults[0].playlistLocation)).text();
assert.match(full, /#EXT-X-ENDLIST/);

await assert.rejects(client.stopEgress(id), /cannot be stopped|failed_precondition/i);
await assert.rejects(client.stopEgress('EG_doesnotexist'), /not found/i);
const stillActive = await client.listEgress({ active: true });
assert.ok(!stillActive.some((i) => i.egressId === id), 'ended egress is not listed as active');

console.log(JSON.stringify({ ok: true, egressId: id, segments: Number(done.segmentResults[0].segmentCount) }));

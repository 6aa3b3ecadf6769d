// The v2 Egress API (StartEgress with a StartEgressRequest) through LiveKit's official Node SDK,
// against roomcast itself or against livekit-server dispatching to roomcast: one web source
// with four outputs (segments, an MP4 file, an RTMP stream, images), then the refusals of what
// roomcast does not do yet. Exits non-zero on the first broken expectation.
// Usage: node sdk_v2.mjs <egress-api-url> <api-key> <api-secret> <page-url> <rtmp-url>
import assert from 'node:assert/strict';
import { waitForEgress } from './lk_wait.mjs';
import { EgressClient, EgressStatus } from 'livekit-server-sdk';
import {
  EncodedFileType,
  EncodingOptionsPreset,
  FileOutput,
  ImageOutput,
  MediaSource,
  Output,
  S3Upload,
  SegmentedFileOutput,
  StartEgressRequest,
  StorageConfig,
  StreamOutput,
  StreamProtocol,
  WebhookConfig,
  WebSource,
} from '@livekit/protocol';

const [host, key, secret, pageUrl, rtmpUrl] = process.argv.slice(2);
const client = new EgressClient(host, key, secret);
const waitFor = (id, pred, what, seconds) => waitForEgress(client, id, pred, what, { seconds });

const outputs = [
  new Output({ config: { case: 'segments', value: new SegmentedFileOutput({ filenamePrefix: 'v2', playlistName: 'v2.m3u8', livePlaylistName: 'v2-live.m3u8', segmentDuration: 2 }) } }),
  new Output({ config: { case: 'file', value: new FileOutput({ fileType: EncodedFileType.MP4, filepath: 'v2.mp4' }) } }),
  new Output({ config: { case: 'stream', value: new StreamOutput({ protocol: StreamProtocol.RTMP, urls: [rtmpUrl] }) } }),
  new Output({ config: { case: 'images', value: new ImageOutput({ captureInterval: 1, filenamePrefix: 'v2-image' }) } }),
];
const request = (fields) =>
  new StartEgressRequest({ source: { case: 'web', value: new WebSource({ url: pageUrl }) }, outputs, encoding: { case: 'preset', value: EncodingOptionsPreset.H264_720P_30 }, ...fields });

const started = await client.startEgress(request({}));
const id = started.egressId;
assert.match(id, /^EG_/);
assert.equal(started.request.case, 'egress', 'EgressInfo.request is the v2 request');
const asked = started.request.value;
assert.equal(asked.source.case, 'web');
assert.equal(asked.source.value.url, pageUrl);
assert.equal(asked.outputs.length, 4);
const shownStream = asked.outputs.find((o) => o.config.case === 'stream').config.value.urls[0];
assert.ok(!shownStream.endsWith(rtmpUrl.split('/').pop()), `the stream key is redacted in EgressInfo.request: ${shownStream}`);
assert.ok(started.updatedAt > 0n, 'updated_at is set');

const active = await waitFor(id, (i) => i.status === EgressStatus.EGRESS_ACTIVE && i.segmentResults[0]?.segmentCount >= 1n, 'ACTIVE with a segment', 30);
assert.ok(active.updatedAt >= started.updatedAt);
assert.equal(active.streamResults.length, 1);
const live = await (await fetch(active.segmentResults[0].livePlaylistLocation)).text();
assert.match(live, /v2_00001\.m4s/);
const listed = await client.listEgress({ active: true });
assert.ok(listed.some((i) => i.egressId === id && i.request.case === 'egress'), 'ListEgress shows the v2 request');

await client.stopEgress(id);
const done = await waitFor(id, (i) => i.status === EgressStatus.EGRESS_COMPLETE, 'COMPLETE', 30);
assert.ok(done.fileResults[0]?.size > 0n, `an MP4 was written: ${JSON.stringify(done.fileResults)}`);
assert.equal(done.fileResults[0].filename, 'v2.mp4');
assert.ok(done.imageResults[0]?.imageCount >= 1n, 'images were written');
assert.ok(done.segmentResults[0].segmentCount >= 1n);
assert.ok(done.streamResults[0].status !== undefined);

// What roomcast does not do yet is refused with Twirp's `unimplemented`, naming the field.
const refusals = [
  ['media source', request({ source: { case: 'media', value: new MediaSource({}) } }), 'unimplemented', /source\.media/],
  ['request storage', request({ storage: new StorageConfig({ provider: { case: 's3', value: new S3Upload({ bucket: 'b' }) } }) }), 'unimplemented', /storage/],
  ['request webhooks', request({ webhooks: [new WebhookConfig({ url: 'http://127.0.0.1:9/hook', signingKey: key })] }), 'unimplemented', /webhooks/],
  ['no outputs', request({ outputs: [] }), 'invalid_argument', /at least one output/],
];
const codes = {};
for (const [what, req, code, message] of refusals) {
  const err = await client.startEgress(req).then(
    (info) => assert.fail(`${what}: accepted as ${info.egressId}`),
    (e) => e,
  );
  codes[what] = err.code;
  assert.match(String(err.message), message, `${what}: ${err.message}`);
  assert.equal(err.code, code, `${what}: ${err.code} ${err.message}`);
}
console.log(JSON.stringify({ ok: true, egressId: id, codes }));

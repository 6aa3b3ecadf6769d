// A room composite driven through livekit-server (not roomcast) with LiveKit's official Node
// SDK, and livekit-server's own egress webhooks received and verified with the SDK's
// WebhookReceiver. Usage:
//   node lk_room.mjs <livekit-http-url> <api-key> <api-secret> <room> <webhook-host> <webhook-port>
// Prints one JSON line: {egressId, dispatchMs, events: [event names for this egress, in order]}.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { waitForEgress } from './lk_wait.mjs';
import { EgressClient, EgressStatus, RoomServiceClient, SegmentedFileOutput, WebhookReceiver } from 'livekit-server-sdk';

const [host, key, secret, room, hookHost, hookPort] = process.argv.slice(2);
const egress = new EgressClient(host, key, secret);
const rooms = new RoomServiceClient(host, key, secret);
const receiver = new WebhookReceiver(key, secret);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const events = [];
const hooks = createServer((req, res) => {
  let body = '';
  req.on('data', (c) => (body += c));
  req.on('end', async () => {
    try {
      // Throws unless the body's hash and signature check out.
      const ev = await receiver.receive(body, req.headers.authorization);
      events.push(ev);
    } catch (e) {
      events.push({ event: 'INVALID', error: String(e) });
    }
    res.end('ok');
  });
});
await new Promise((r) => hooks.listen(Number(hookPort), hookHost, r));

const waitFor = (id, pred, what, seconds) => waitForEgress(egress, id, pred, what, { seconds });

await rooms.createRoom({ name: room, emptyTimeout: 120 });
const t0 = Date.now();
const started = await egress.startRoomCompositeEgress(
  room,
  { segments: new SegmentedFileOutput({ filenamePrefix: 'rc', playlistName: 'rc.m3u8', livePlaylistName: 'rc-live.m3u8' }) },
  { layout: 'grid' },
);
const id = started.egressId;
assert.equal(started.roomName, room);
await waitFor(id, (i) => i.status === EgressStatus.EGRESS_ACTIVE, 'ACTIVE', 40);
const dispatchMs = Date.now() - t0;

// UpdateLayout never reaches the worker: livekit-server sets the metadata of the participant
// whose identity is the egress id, which is how roomcast's recorder joined.
await egress.updateLayout(id, 'speaker');
const recorder = await rooms.getParticipant(room, id);
assert.deepEqual(JSON.parse(recorder.metadata), { layout: 'speaker' });

// The room ends: the template's END_RECORDING completes the egress.
await rooms.deleteRoom(room);
const done = await waitFor(id, (i) => i.status === EgressStatus.EGRESS_COMPLETE, 'COMPLETE', 40);
assert.ok(done.endedAt > 0n);

// Webhooks arrive asynchronously: wait for the last one.
const deadline = Date.now() + 15000;
const mine = () => events.filter((e) => e.event === 'INVALID' || e.egressInfo?.egressId === id);
while (!mine().some((e) => e.event === 'egress_ended') && Date.now() < deadline) await sleep(100);
hooks.close();
const names = mine().map((e) => e.event);
assert.ok(!names.includes('INVALID'), `a webhook failed verification: ${JSON.stringify(mine())}`);
const ended = mine().find((e) => e.event === 'egress_ended');
assert.ok(ended, `no egress_ended webhook; got ${names}`);
assert.equal(ended.egressInfo.status, EgressStatus.EGRESS_COMPLETE);
console.log(JSON.stringify({ egressId: id, dispatchMs, events: names }));

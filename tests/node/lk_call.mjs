// One call to livekit-server with LiveKit's official Node SDK, for tests that orchestrate
// several workers from Rust. Prints the answer as one JSON line, or {"error", "code"}.
//   node lk_call.mjs <livekit-http-url> <key> <secret> startWeb <page-url>
//   node lk_call.mjs <livekit-http-url> <key> <secret> stop <egress-id>
//   node lk_call.mjs <livekit-http-url> <key> <secret> list [<room>]
//   node lk_call.mjs <livekit-http-url> <key> <secret> autoRoom <room>   (CreateRoom with egress.room)
import { EgressClient, RoomServiceClient, SegmentedFileOutput } from 'livekit-server-sdk';
import { RoomCompositeEgressRequest, RoomEgress, SegmentedFileOutput as ProtoSegments } from '@livekit/protocol';

const [host, key, secret, what, arg] = process.argv.slice(2);
const egress = new EgressClient(host, key, secret);
const rooms = new RoomServiceClient(host, key, secret);
const json = (v) => JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x));
const segments = () => new SegmentedFileOutput({ filenamePrefix: 'lk', playlistName: 'lk.m3u8', livePlaylistName: 'lk-live.m3u8' });

try {
  let out;
  if (what === 'startWeb') out = await egress.startWebEgress(arg, { segments: segments() });
  else if (what === 'stop') out = await egress.stopEgress(arg);
  else if (what === 'list') out = await egress.listEgress(arg ? { roomName: arg } : {});
  else if (what === 'autoRoom') {
    const room = new RoomCompositeEgressRequest({ layout: 'grid', segmentOutputs: [new ProtoSegments({ filenamePrefix: 'auto', playlistName: 'auto.m3u8' })] });
    out = await rooms.createRoom({ name: arg, emptyTimeout: 120, egress: new RoomEgress({ room }) });
  } else throw new Error(`unknown call ${what}`);
  console.log(json(out));
} catch (e) {
  console.log(json({ error: String(e?.message ?? e), code: e?.code ?? null }));
}

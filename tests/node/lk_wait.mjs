// Polling ListEgress until an egress satisfies a predicate, shared by the scripts that drive
// egress with LiveKit's Node SDK (against roomcast or against livekit-server).
import assert from 'node:assert/strict';
import { EgressStatus } from 'livekit-server-sdk';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Resolves with the EgressInfo once `pred(info)` holds; fails on FAILED or after `seconds`.
 * `listed`: the egress must be listed from the first poll (roomcast lists it at once;
 * livekit-server only after the worker's CreateEgress).
 */
export async function waitForEgress(client, id, pred, what, { seconds, pollMs = 100, listed = false }) {
  const end = Date.now() + seconds * 1000;
  for (;;) {
    const [info] = await client.listEgress({ egressId: id });
    if (listed) assert.ok(info, `ListEgress lost ${id}`);
    if (info && pred(info)) return info;
    if (info) assert.notEqual(info.status, EgressStatus.EGRESS_FAILED, `egress failed: ${info.error}`);
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; last status ${info ? EgressStatus[info.status] : 'not listed'}`);
    await sleep(pollMs);
  }
}

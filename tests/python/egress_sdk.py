"""LiveKit's official Python server SDK (livekit-api, pinned in requirements.txt) driving the
Egress API, against roomcast itself (`standalone`) or against livekit-server dispatching to
roomcast (`livekit`): v1 web egress with an RTMP stream, UpdateStream adding and removing a
URL, the v2 StartEgress, ListEgress, StopEgress, and the refusal of a media source. In `livekit`
mode also a room composite (v1 and v2 template source) in a room made with RoomService, and
UpdateLayout; in `standalone` mode ListEgress's page_token.
Exits non-zero (an AssertionError) on the first broken expectation; prints one JSON line.

Usage: egress_sdk.py <api-url> <key> <secret> <page-url> <rtmp-url> <rtmp-url-2> standalone|livekit
"""

import asyncio
import json
import sys
import time

from livekit import api
from livekit.protocol import egress as eg
from livekit.protocol import room as rm

S = eg.EgressStatus


async def wait_for(lk, egress_id, pred, what, seconds=30.0):
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        items = (await lk.egress.list_egress(api.ListEgressRequest(egress_id=egress_id))).items
        if items:
            last = items[0]
            if pred(last):
                return last
        await asyncio.sleep(0.25)
    raise AssertionError(f"{egress_id}: no {what} within {seconds} s; last: {last}")


def segments(prefix):
    return eg.SegmentedFileOutput(filename_prefix=prefix, playlist_name=f"{prefix}.m3u8", segment_duration=2)


async def stop_and_complete(lk, egress_id):
    await lk.egress.stop_egress(api.StopEgressRequest(egress_id=egress_id))
    return await wait_for(lk, egress_id, lambda i: i.status == S.EGRESS_COMPLETE, "COMPLETE")


async def web_with_streams(lk, page, rtmp, rtmp2):
    """v1 web egress pushing RTMP; UpdateStream adds a second URL, then removes the first."""
    started = await lk.egress.start_web_egress(
        api.WebEgressRequest(url=page, segment_outputs=[segments("py")], stream_outputs=[eg.StreamOutput(protocol=eg.RTMP, urls=[rtmp])])
    )
    eid = started.egress_id
    assert started.WhichOneof("request") == "web", started
    await wait_for(lk, eid, lambda i: i.status == S.EGRESS_ACTIVE, "ACTIVE")
    await lk.egress.update_stream(api.UpdateStreamRequest(egress_id=eid, add_output_urls=[rtmp2]))
    both = await wait_for(lk, eid, lambda i: len(i.stream_results) == 2, "two stream results")
    await lk.egress.update_stream(api.UpdateStreamRequest(egress_id=eid, remove_output_urls=[rtmp]))
    removed = await wait_for(lk, eid, lambda i: any(s.status == eg.StreamInfo.FINISHED for s in i.stream_results), "a finished stream")
    done = await stop_and_complete(lk, eid)
    assert all(s.status != eg.StreamInfo.FAILED for s in done.stream_results), done.stream_results
    assert len(both.stream_results) == 2 and removed.ended_at == 0
    return eid


async def v2_web(lk, page):
    req = eg.StartEgressRequest(web=eg.WebSource(url=page), outputs=[eg.Output(segments=segments("pyv2"))])
    started = await lk.egress.start_egress(req)
    assert started.WhichOneof("request") == "egress" and started.egress.web.url == page, started
    assert started.updated_at > 0
    await wait_for(lk, started.egress_id, lambda i: i.status == S.EGRESS_ACTIVE, "ACTIVE")
    listed = (await lk.egress.list_egress(api.ListEgressRequest(active=True))).items
    assert any(i.egress_id == started.egress_id and i.WhichOneof("request") == "egress" for i in listed), listed
    await stop_and_complete(lk, started.egress_id)
    return started.egress_id


async def refusals(lk, page):
    try:
        info = await lk.egress.start_egress(eg.StartEgressRequest(media=eg.MediaSource(), outputs=[eg.Output(segments=segments("m"))]))
        raise AssertionError(f"a media source was accepted: {info.egress_id}")
    except api.TwirpError as e:
        assert e.code == "unimplemented" and "source.media" in e.message, (e.code, e.message)
        return e.code


async def rooms(lk):
    """Room composites in a room made with RoomService: v1 (with UpdateLayout) and v2 template."""
    await lk.room.create_room(rm.CreateRoomRequest(name="py-room", empty_timeout=120))
    v1 = await lk.egress.start_room_composite_egress(api.RoomCompositeEgressRequest(room_name="py-room", layout="grid", segment_outputs=[segments("pyroom")]))
    await wait_for(lk, v1.egress_id, lambda i: i.status == S.EGRESS_ACTIVE, "ACTIVE")
    updated = await lk.egress.update_layout(api.UpdateLayoutRequest(egress_id=v1.egress_id, layout="speaker"))
    assert updated.egress_id == v1.egress_id
    await stop_and_complete(lk, v1.egress_id)
    v2 = await lk.egress.start_egress(
        eg.StartEgressRequest(room_name="py-room", template=eg.TemplateSource(layout="speaker"), outputs=[eg.Output(segments=segments("pytpl"))])
    )
    assert v2.room_name == "py-room" and v2.egress.template.layout == "speaker", v2
    await wait_for(lk, v2.egress_id, lambda i: i.status == S.EGRESS_ACTIVE, "ACTIVE")
    await stop_and_complete(lk, v2.egress_id)
    await lk.room.delete_room(rm.DeleteRoomRequest(room="py-room"))
    return [v1.egress_id, v2.egress_id]


async def paging(lk):
    """ListEgress in egress-id order; a page_token lists the egresses after that id."""
    everything = (await lk.egress.list_egress(api.ListEgressRequest())).items
    ids = sorted(i.egress_id for i in everything)
    assert len(ids) >= 2, ids
    after = await lk.egress.list_egress(api.ListEgressRequest(page_token=api.TokenPagination(token=ids[0])))
    assert sorted(i.egress_id for i in after.items) == ids[1:], (ids, [i.egress_id for i in after.items])
    return len(ids)


async def main():
    url, key, secret, page, rtmp, rtmp2, mode = sys.argv[1:8]
    async with api.LiveKitAPI(url, key, secret) as lk:
        out = {"web": await web_with_streams(lk, page, rtmp, rtmp2), "v2": await v2_web(lk, page), "refused": await refusals(lk, page)}
        if mode == "livekit":
            out["rooms"] = await rooms(lk)
        else:
            out["listed"] = await paging(lk)
    print(json.dumps({"ok": True, **out}))


if __name__ == "__main__":
    asyncio.run(main())

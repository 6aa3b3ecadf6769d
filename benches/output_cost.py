#!/usr/bin/env python3
"""What outputs cost on top of an egress: one animated 720p30 web egress with HLS alone, then
with RTMP push (to a local nginx with its RTMP module), two RTMP pushes, an MP4 file, and JPEG
snapshots. Prints the egress's cores (worker, Chromium, Xvfb, sound server), the outputs'
processes (`roomcast push`), and the supervisor's (`serve`) own cores, over the same seconds.

    python3 benches/output_cost.py target/release/roomcast [--seconds 15] [--repeat 1]

Everything it starts is ended by PID.
"""
import argparse, os, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(__file__))
from egress_cost import CLK, cpu_ticks, free_port, procs_with_env, pss_kb, start_serve, stop_serve, twirp  # noqa: E402

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def is_push(pid):
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[1:2] == [b"push"]
    except OSError:
        return False


def run(binary, outputs, seconds, warmup):
    tmp = tempfile.mkdtemp(prefix="roomcast-outbench-")
    rtmp_port = free_port()
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;\ndaemon off;\nmaster_process off;\npid {tmp}/nginx.pid;\n"
                f"error_log {tmp}/nginx.log;\nevents {{ worker_connections 64; }}\n"
                f"rtmp {{ server {{ listen 127.0.0.1:{rtmp_port}; application live {{ live on; record off; }} }} }}\n")
    nginx = subprocess.Popen(["nginx", "-c", conf, "-p", tmp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port = free_port(); url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, TMPDIR=tmp, ROOMCAST_NETWORK_ALLOW="127.0.0.1", ROOMCAST_OUTPUT_DIR=f"{tmp}/out", ROOMCAST_TEMPLATES_DIR=os.path.join(REPO, "templates"),
               LIVEKIT_API_KEY="bench", LIVEKIT_API_SECRET="bench-secret-bench-secret", RUST_LOG="warn")
    server, token = start_serve(binary, env, port, tmp)
    try:
        req = {"url": f"{url}/templates/demo/animated.html", "segment_outputs": [{}]}
        rtmps = [f"rtmp://127.0.0.1:{rtmp_port}/live/k{i}" for i in range(outputs.count("rtmp"))]
        if rtmps:
            req["stream_outputs"] = [{"urls": rtmps}]
        if "mp4" in outputs:
            req["file_outputs"] = [{"filepath": "rec.mp4"}]
        if "images" in outputs:
            req["image_outputs"] = [{"capture_interval": 10, "width": 320, "height": 180}]
        eid = twirp(url, "StartWebEgress", req, token)["egressId"]
        for _ in range(300):
            if twirp(url, "ListEgress", {"egress_id": eid}, token)["items"][0].get("status") == "EGRESS_ACTIVE":
                break
            time.sleep(0.1)
        time.sleep(warmup)
        pids = procs_with_env(f"TMPDIR={tmp}", {server.pid, nginx.pid})
        groups = {"egress": [p for p in pids if not is_push(p)], "outputs": [p for p in pids if is_push(p)], "serve": [server.pid]}
        before = {p: cpu_ticks(p) for ps in groups.values() for p in ps}
        t0 = time.monotonic(); time.sleep(seconds); wall = time.monotonic() - t0
        res = {}
        for g, ps in groups.items():
            ticks = sum((cpu_ticks(p) or before[p] or 0) - (before[p] or 0) for p in ps)
            res[g] = ticks / CLK / wall
        info = twirp(url, "ListEgress", {"egress_id": eid}, token)["items"][0]
        res["outputs_pss"] = sum(pss_kb(p) for p in groups["outputs"]) / 1024
        res["streams_started"] = sum(1 for s in info.get("streamResults", []) if s.get("startedAt"))
        twirp(url, "StopEgress", {"egress_id": eid}, token)
        for _ in range(150):
            if twirp(url, "ListEgress", {"egress_id": eid}, token)["items"][0].get("status") in ("EGRESS_COMPLETE", "EGRESS_FAILED"):
                break
            time.sleep(0.2)
        return res
    finally:
        stop_serve(server, tmp)
        nginx.kill(); nginx.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary"); ap.add_argument("--seconds", type=int, default=15); ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    print("| outputs | egress cores | output processes: cores, PSS | serve (cores) | streams started |")
    print("|---|---|---|---|---|")
    for outputs in (["hls"], ["hls", "rtmp"], ["hls", "rtmp", "rtmp"], ["hls", "mp4"], ["hls", "images"]):
        runs = [run(a.binary, outputs, a.seconds, a.warmup) for _ in range(a.repeat)]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"| {' + '.join(outputs)} | {med['egress']:.2f} | {med['outputs']:.3f}, {med['outputs_pss']:.0f} MB | {med['serve']:.3f} | {med['streams_started']:.0f} |", flush=True)


if __name__ == "__main__":
    main()

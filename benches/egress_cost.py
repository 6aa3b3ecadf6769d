#!/usr/bin/env python3
"""Per-egress cost of roomcast web egress: CPU cores and PSS of every process of the egress
(worker + Chromium tree), delivered fps, and start latency (API call to ACTIVE, to the first
LL-HLS part and to the first segment in the live playlist). Runs the real binary on loopback; prints a Markdown table.

Usage: benches/egress_cost.py BINARY [--seconds 20] [--warmup 5]
"""
import json, os, socket, subprocess, sys, tempfile, threading, time, urllib.request, statistics, argparse, signal

ANCHOR_CORES, ANCHOR_MB = 1.8, 1600
CLK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def procs_with_env(needle, exclude):
    """Processes with `needle` (TMPDIR=dir) in their environment or the dir in their command
    line, and every descendant of those: Chromium's processes overwrite their environment with
    their title, and not all of them name their profile (which lives under that dir)."""
    path = needle.split("=", 1)[1].encode()
    found, parent = set(), {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            parent[int(d)] = int(open(f"/proc/{d}/stat").read().rsplit(") ", 1)[1].split()[1])
            env = open(f"/proc/{d}/environ", "rb").read().split(b"\0")
            cmd = open(f"/proc/{d}/cmdline", "rb").read()
            if needle.encode() in env or path in cmd:
                found.add(int(d))
        except OSError:
            pass
    changed = True
    while changed:
        more = {p for p, pp in parent.items() if pp in found and p not in found}
        found |= more
        changed = bool(more)
    return sorted(found - set(exclude))


def cpu_ticks(pid):
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(") ", 1)[1].split()
        return sum(int(x) for x in f[11:15])  # utime stime cutime cstime
    except OSError:
        return None


def pss_kb(pid):
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def twirp(url, method, body, token):
    req = urllib.request.Request(f"{url}/twirp/livekit.Egress/{method}", data=json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=30))


def scenario(binary, page, n, seconds, warmup, width=1280, height=720, only=None):
    tmp = tempfile.mkdtemp(prefix="roomcast-bench-")
    port = free_port(); url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, TMPDIR=tmp, ROOMCAST_OUTPUT_DIR=f"{tmp}/out",
               ROOMCAST_TEMPLATES_DIR=os.path.join(os.path.dirname(__file__), "..", "templates"),
               LIVEKIT_API_KEY="bench", LIVEKIT_API_SECRET="bench-secret-bench-secret", RUST_LOG="warn")
    log = open(f"{tmp}/serve.log", "w")
    server = subprocess.Popen([binary, "serve", "--bind", f"127.0.0.1:{port}"], env=env, stderr=log)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=1); break
            except OSError:
                time.sleep(0.1)
        token = subprocess.check_output([binary, "token"], env=env).decode().strip()
        ids, t_active, t_first, t_part = [], [], [], []
        for _ in range(n):
            t0 = time.monotonic()
            info = twirp(url, "StartWebEgress", {"url": f"{url}/templates/demo/{page}", "segment_outputs": [{}],
                                                 "video_only": only == "video", "audio_only": only == "audio",
                                                 "advanced": {"width": width, "height": height, "framerate": 30}}, token)
            eid = info["egressId"]; ids.append(eid)
            # The origin holds a plain playlist request until the stream's first (short)
            # segment is complete: its answer is when a player can start.
            part_at = []
            def first_part(eid=eid, t0=t0, part_at=part_at):
                while time.monotonic() - t0 < 30:
                    try:
                        urllib.request.urlopen(f"{url}/hls/{eid}/live.m3u8", timeout=10).read()
                        part_at.append(time.monotonic() - t0); return
                    except OSError:
                        time.sleep(0.02)
            waiter = threading.Thread(target=first_part); waiter.start()
            active = first = None
            while first is None and time.monotonic() - t0 < 30:
                i = twirp(url, "ListEgress", {"egress_id": eid}, token)["items"][0]
                if active is None and i.get("status") == "EGRESS_ACTIVE":
                    active = time.monotonic() - t0
                if i.get("status") == "EGRESS_FAILED":
                    raise SystemExit(f"egress failed: {i.get('error')}")
                if int(i["segmentResults"][0].get("segmentCount", "0")) >= 1:
                    first = time.monotonic() - t0
                time.sleep(0.02)
            waiter.join()
            t_active.append(active); t_first.append(first); t_part.append(part_at[0] if part_at else float("nan"))
        time.sleep(warmup)
        needle = f"TMPDIR={tmp}"
        pids = procs_with_env(needle, {server.pid})
        before = {p: cpu_ticks(p) for p in pids}
        t0 = time.monotonic(); pss_samples = []
        while time.monotonic() - t0 < seconds:
            pss_samples.append(sum(pss_kb(p) for p in procs_with_env(needle, {server.pid})) / 1024)
            time.sleep(1)
        wall = time.monotonic() - t0
        after = {p: cpu_ticks(p) for p in pids}
        ticks = sum(after[p] - before[p] for p in pids if before[p] is not None and after[p] is not None)
        cores = ticks / CLK / wall / n
        pss = statistics.median(pss_samples) / n
        for eid in ids:
            twirp(url, "StopEgress", {"egress_id": eid}, token)
        fps = []
        for eid in ids:
            for _ in range(150):
                i = twirp(url, "ListEgress", {"egress_id": eid}, token)["items"][0]
                if i.get("status") in ("EGRESS_COMPLETE", "EGRESS_FAILED"):
                    break
                time.sleep(0.2)
            pl = f"{tmp}/out/{eid}/playlist.m3u8"
            if only == "audio":
                fps.append(float("nan")); continue
            pr = json.loads(subprocess.check_output(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v",
                                                     "-show_entries", "stream=nb_read_frames:format=duration", "-of", "json", pl]))
            fps.append(int(pr["streams"][0]["nb_read_frames"]) / float(pr["format"]["duration"]))
        return dict(cores=cores, pss=pss, fps=statistics.median(fps), active=statistics.median(t_active),
                    first=statistics.median(t_first), part=statistics.median(t_part))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
        for p in procs_with_env(f"TMPDIR={tmp}", set()):
            os.kill(p, signal.SIGKILL)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary"); ap.add_argument("--seconds", type=int, default=20); ap.add_argument("--warmup", type=int, default=5)
    a = ap.parse_args()
    # (name, page, egresses, only). The video_only rows give audio's extra cost: the same page
    # with and without its sound server, capture and AAC encoder.
    rows = [("animated 4-tile page, 1 egress", "animated.html", 1, None),
            ("animated 4-tile page, 1 egress, video_only", "animated.html", 1, "video"),
            ("animated 4-tile page, 1 egress, audio_only", "animated.html", 1, "audio"),
            ("static page, 1 egress", "static.html", 1, None),
            ("static page, 1 egress, video_only", "static.html", 1, "video"),
            ("animated 4-tile page, 2 concurrent", "animated.html", 2, None)]
    print("| scenario (1280×720/30, CDP screencast, x264 veryfast; audio AAC 128 kbps unless video_only; audio_only: no capture) | CPU cores / egress | PSS MB / egress | delivered fps | start → ACTIVE s | start → first playlist answer s | start → first segment s | cores vs anchor | PSS vs anchor |")
    print("|---|---|---|---|---|---|---|---|---|")
    results = {}
    for name, page, n, only in rows:
        r = scenario(a.binary, page, n, a.seconds, a.warmup, only=only)
        results[(page, n, only)] = r
        fps = "–" if only == "audio" else f"{r['fps']:.1f}"
        print(f"| {name} | {r['cores']:.2f} | {r['pss']:.0f} | {fps} | {r['active']:.2f} | {r['part']:.2f} | {r['first']:.2f} | "
              f"{r['cores'] / ANCHOR_CORES:.2f}× | {r['pss'] / ANCHOR_MB:.2f}× |", flush=True)
    print()
    for page in ("animated.html", "static.html"):
        w, wo = results[(page, 1, None)], results[(page, 1, "video")]
        print(f"audio's extra per egress on {page}: {w['cores'] - wo['cores']:+.3f} cores, {w['pss'] - wo['pss']:+.0f} MB PSS")


if __name__ == "__main__":
    main()

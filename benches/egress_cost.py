#!/usr/bin/env python3
"""Per-egress cost of roomcast web egress, per capture backend: CPU cores and PSS of every
process of the egress (worker, sound server, Chromium and all its children), delivered fps,
the share of output frames that repeat a picture (duplicated) and of captured frames never
shown (dropped), from the egress's own counts in /metrics; start latency (API call to
ACTIVE, to the first playlist answer, i.e. the first playable part, and to the first
segment); then glass-to-glass latency per backend (benches/glass_to_glass.py). Scenarios:
static and animated 4-tile pages, 1, 2 and 3 concurrent egresses, 720p30 and 1080p30, and
the audio's own cost. Runs the real binary on loopback; prints Markdown tables.

Usage: benches/egress_cost.py BINARY [--seconds 15] [--warmup 4] [--backends x11,begin_frame,screencast]
       [--g2g-seconds 20] [--quick] [--repeat 3] [--warm-only] [--split]
"""
import json, os, re, shutil, socket, subprocess, sys, tempfile, threading, time, urllib.request, statistics, argparse, signal

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


def kind(pid):
    """What a process is, for --split: Chromium's by its --type, others by name."""
    try:
        # Chromium's children rewrite their command line as one space-separated title.
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").split()
        comm = open(f"/proc/{pid}/comm").read().strip()
    except OSError:
        return "gone"
    types = [c.split(b"=", 1)[1].decode() for c in cmd if c.startswith(b"--type=")]
    if cmd and b"chrom" in cmd[0]:
        return f"chromium {types[0] if types else 'browser'}"
    return "roomcast" if comm.startswith("roomcast") else comm


def thread_ticks(pid):
    """{thread name: cpu ticks} of one process's threads (GStreamer names its streaming
    threads after their element's pad, x264 its own)."""
    out = {}
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tasks:
        try:
            f = open(f"/proc/{pid}/task/{t}/stat").read()
        except OSError:
            continue
        name = re.sub(r"\d+$", "", f[f.index("(") + 1:f.rindex(")")])
        out[name] = out.get(name, 0) + sum(int(x) for x in f.rsplit(") ", 1)[1].split()[11:13])
    return out


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


def new_picture_share(playlist):
    """Share of the decoded output's frames that show a new picture: ffmpeg's mpdecimate drops
    each frame that differs from the last kept one only by noise. Backend-neutral, unlike the
    egress's own counts (an X screen read shows whatever is there, new or not)."""
    def frames(vf):
        out = subprocess.run(["ffmpeg", "-v", "error", "-i", playlist, "-map", "0:v", "-vf", vf, "-fps_mode", "passthrough",
                              "-f", "framemd5", "-"], capture_output=True).stdout.decode()
        return sum(1 for l in out.splitlines() if l and not l.startswith("#"))
    total = frames("null")
    return frames("mpdecimate") / total if total else float("nan")


def frame_counts(metrics_url, ids):
    """Summed roomcast_video_frames_total by kind over the egresses `ids`."""
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    counts = {}
    for m in re.finditer(r'roomcast_video_frames_total\{egress_id="([^"]+)",kind="([^"]+)"\} (\d+)', text):
        if m.group(1) in ids:
            counts[m.group(2)] = counts.get(m.group(2), 0) + int(m.group(3))
    return counts


def page_url(page):
    """The URL of `page`: a test page (tests/pages/, which production does not serve) from a
    static server of the bench's own on loopback, started once; else production's /templates/
    (None: the caller prefixes its server's URL)."""
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "pages")
    if not os.path.isfile(os.path.join(root, page.split("?")[0])):
        return None
    global _PAGES
    if _PAGES is None:
        import functools, http.server

        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=root))
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        _PAGES = f"http://127.0.0.1:{srv.server_address[1]}"
    return f"{_PAGES}/{page}"


_PAGES = None


def start_serve(binary, env, port, tmp):
    """`roomcast serve` on 127.0.0.1:`port` with `env` (its log in `tmp`), once it answers; and
    an API token for it."""
    server = subprocess.Popen([binary, "serve", "--bind", f"127.0.0.1:{port}"], env=env, stderr=open(f"{tmp}/serve.log", "w"))
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1); break
        except OSError:
            time.sleep(0.1)
    return server, subprocess.check_output([binary, "token"], env=env).decode().strip()


def stop_serve(server, tmp):
    """SIGTERM to `serve` (it stops its egresses), then SIGKILL to anything of `tmp`'s left."""
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
    for p in procs_with_env(f"TMPDIR={tmp}", set()):
        os.kill(p, signal.SIGKILL)
    # Each scenario's folder holds its recordings: kept only when asked (to read serve.log).
    if os.environ.get("ROOMCAST_BENCH_KEEP"):
        print(f"egress_cost: kept {tmp}", file=sys.stderr)
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def first_part_waiter(url, eid, t0, limit):
    """A started thread that records (in the returned list) when the egress's first playable
    part is there: the origin holds a plain playlist request until the stream's first (short)
    segment is complete, so its answer is when a player can start."""
    part_at = []

    def wait():
        while time.monotonic() - t0 < limit:
            try:
                urllib.request.urlopen(f"{url}/hls/{eid}/live.m3u8", timeout=10).read()
                part_at.append(time.monotonic() - t0); return
            except OSError:
                time.sleep(0.02)
    waiter = threading.Thread(target=wait); waiter.start()
    return waiter, part_at


def scenario(binary, page, n, seconds, warmup, width=1280, height=720, only=None, backend=None, pool=0, split=False):
    tmp = tempfile.mkdtemp(prefix="roomcast-bench-")
    port = free_port(); url = f"http://127.0.0.1:{port}"
    metrics_port = free_port(); metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    env = dict(os.environ, TMPDIR=tmp, ROOMCAST_NETWORK_ALLOW="127.0.0.1", ROOMCAST_OUTPUT_DIR=f"{tmp}/out", ROOMCAST_METRICS_BIND=f"127.0.0.1:{metrics_port}",
               LIVEKIT_API_KEY="bench", LIVEKIT_API_SECRET="bench-secret-bench-secret", RUST_LOG=os.environ.get("RUST_LOG", "warn"))
    if backend:
        env.update(backend_env(backend))
    if pool:
        env["ROOMCAST_POOL_SIZE"] = str(pool)
    server, token = start_serve(binary, env, port, tmp)
    try:
        idle = None
        if pool:
            # The warm workers are up once their browsers are; then what they cost idle.
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and len([p for p in procs_with_env(f"TMPDIR={tmp}", {server.pid})
                                                       if b"--remote-debugging-port" in open(f"/proc/{p}/cmdline", "rb").read()
                                                       and b"--type=" not in open(f"/proc/{p}/cmdline", "rb").read()]) < pool:
                time.sleep(0.1)
            time.sleep(2)
            warm = procs_with_env(f"TMPDIR={tmp}", {server.pid})
            b0 = {p: cpu_ticks(p) for p in warm}; t0 = time.monotonic(); time.sleep(5)
            ticks = sum((cpu_ticks(p) or 0) - (b0[p] or 0) for p in warm)
            idle = dict(cores=ticks / CLK / (time.monotonic() - t0) / pool, pss=sum(pss_kb(p) for p in warm) / 1024 / pool)
        ids, t_active, t_first, t_part = [], [], [], []
        for _ in range(n):
            t0 = time.monotonic()
            info = twirp(url, "StartWebEgress", {"url": page_url(f"demo/{page}") or f"{url}/templates/demo/{page}", "segment_outputs": [{}],
                                                 "video_only": only == "video", "audio_only": only == "audio",
                                                 "advanced": {"width": width, "height": height, "framerate": 30}}, token)
            eid = info["egressId"]; ids.append(eid)
            waiter, part_at = first_part_waiter(url, eid, t0, 30)
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
        threads_before = {p: thread_ticks(p) for p in pids} if split else {}
        t0 = time.monotonic(); pss_samples = []
        while time.monotonic() - t0 < seconds:
            pss_samples.append(sum(pss_kb(p) for p in procs_with_env(needle, {server.pid})) / 1024)
            time.sleep(1)
        wall = time.monotonic() - t0
        after = {p: cpu_ticks(p) for p in pids}
        counts = frame_counts(metrics_url, ids)
        ticks = sum(after[p] - before[p] for p in pids if before[p] is not None and after[p] is not None)
        cores = ticks / CLK / wall / n
        if split:
            by_kind, by_thread = {}, {}
            for p in pids:
                if before[p] is None or after[p] is None:
                    continue
                k = kind(p)
                by_kind[k] = by_kind.get(k, 0) + after[p] - before[p]
                if k == "roomcast":
                    for name, t in thread_ticks(p).items():
                        by_thread[name] = by_thread.get(name, 0) + t - threads_before[p].get(name, 0)
            fmt = lambda d: ", ".join(f"{k} {v / CLK / wall / n:.3f}" for k, v in sorted(d.items(), key=lambda kv: -kv[1]) if v > 0)
            print(f"egress_cost: cores by process: {fmt(by_kind)}", file=sys.stderr)
            print(f"egress_cost: cores by worker thread: {fmt(by_thread)}", file=sys.stderr)
        pss = statistics.median(pss_samples) / n
        for eid in ids:
            twirp(url, "StopEgress", {"egress_id": eid}, token)
        fps, fresh = [], []
        for eid in ids:
            for _ in range(150):
                i = twirp(url, "ListEgress", {"egress_id": eid}, token)["items"][0]
                if i.get("status") in ("EGRESS_COMPLETE", "EGRESS_FAILED"):
                    break
                time.sleep(0.2)
            pl = f"{tmp}/out/{eid}/playlist.m3u8"
            if only == "audio":
                fps.append(float("nan")); continue
            pr = json.loads(subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v",
                                            "-show_entries", "stream=nb_read_frames:format=duration", "-of", "json", pl],
                                           capture_output=True).stdout or b"{}")
            if not pr.get("streams"):
                # Say why rather than stop the whole benchmark.
                print(f"egress_cost: {eid} has no video to count ({i.get('status')}: {i.get('error', '')})", file=sys.stderr)
                fps.append(float("nan")); continue
            fps.append(int(pr["streams"][0]["nb_read_frames"]) / float(pr["format"]["duration"]))
            fresh.append(new_picture_share(pl))
        # Output frames that show no new picture (a repeat from the source or from videorate),
        # and captured frames never shown.
        shown = counts.get("encoded", 0)
        taken = counts.get("captured", 0) + counts.get("repeated", 0)
        new_shown = max(0, counts.get("captured", 0) - counts.get("dropped", 0))
        dup = max(0, shown - new_shown) / shown if shown else float("nan")
        drop = counts.get("dropped", 0) / taken if taken else float("nan")
        return dict(cores=cores, pss=pss, fps=statistics.median(fps), active=statistics.median(t_active),
                    first=statistics.median(t_first), part=statistics.median(t_part), dup=dup, drop=drop, idle=idle,
                    fresh=statistics.median(fresh) if fresh else float("nan"))
    finally:
        stop_serve(server, tmp)


def backend_env(backend):
    """The environment that selects `backend`: a capture backend, or `x11-xvfb` (the x11
    backend on Xvfb instead of Xorg)."""
    capture, _, x_server = backend.partition("-")
    return dict(ROOMCAST_CAPTURE=capture, **({"ROOMCAST_X_SERVER": x_server} if x_server else {}))


def glass_to_glass(binary, backend, seconds):
    """Median glass-to-glass p50 (ms) of one run of benches/glass_to_glass.py with `backend`."""
    out = tempfile.mktemp(prefix="roomcast-g2g-", suffix=".json")
    env = dict(os.environ, **backend_env(backend))
    done = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "glass_to_glass.py"), binary, "--runs", "1",
                           "--seconds", str(seconds), "--json-out", out], env=env, stdout=subprocess.DEVNULL)
    if not os.path.exists(out):
        print(f"egress_cost: glass_to_glass with {backend} failed (exit {done.returncode})", file=sys.stderr)
        return float("nan")
    runs = json.load(open(out))
    os.unlink(out)
    p50s = [r["g2g_ms"]["p50"] for r in runs if (r.get("g2g_ms") or {}).get("p50") is not None]
    return statistics.median(p50s) if p50s else float("nan")


def pct(x):
    return "–" if x != x else f"{100 * x:.1f}%"


def main():
    # SIGTERM unwinds like Ctrl-C, so every scenario's finally ends what it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser()
    ap.add_argument("binary"); ap.add_argument("--seconds", type=int, default=15); ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--backends", default="x11,x11-xvfb,begin_frame,screencast",
                    help="the first also gets the sound's rows; x11-xvfb is the x11 backend on Xvfb")
    ap.add_argument("--g2g-seconds", type=int, default=20, help="glass-to-glass run per backend; 0 skips it")
    ap.add_argument("--quick", action="store_true", help="only 1 animated 720p egress per backend")
    ap.add_argument("--repeat", type=int, default=3, help="runs of the 1-egress animated 720p row, median shown (default 3)")
    ap.add_argument("--warm-only", action="store_true", help="only the cold/warm start table")
    ap.add_argument("--split", action="store_true", help="also print (stderr) each scenario's cores by process kind and by worker thread")
    a = ap.parse_args()
    backends = a.backends.split(",")
    # (name, page, egresses, width, height, only)
    rows = [("animated 4-tile, 1 egress, 720p30", "animated.html", 1, 1280, 720, None)]
    if not a.quick:
        rows += [("static page, 1 egress, 720p30", "static.html", 1, 1280, 720, None),
                 ("animated 4-tile, 2 concurrent, 720p30", "animated.html", 2, 1280, 720, None),
                 ("animated 4-tile, 3 concurrent, 720p30", "animated.html", 3, 1280, 720, None),
                 ("animated 4-tile, 1 egress, 1080p30", "animated.html", 1, 1920, 1080, None)]
    results = {}
    if not a.warm_only:
        print("| backend | scenario (x264 veryfast; AAC 128 kbps) | CPU cores / egress | PSS MB / egress | delivered fps | new pictures (decoded) "
              "| duplicated (egress counts) | dropped (egress counts) "
              "| start → ACTIVE s | start → first playable part s | start → first segment s | cores vs anchor | PSS vs anchor |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for backend in backends:
            for i, (name, page, n, w, h, only) in enumerate(rows):
                runs = [scenario(a.binary, page, n, a.seconds, a.warmup, width=w, height=h, only=only, backend=backend, split=a.split)
                        for _ in range(a.repeat if i == 0 else 1)]
                # Each column's median over the runs (the machine is noisy).
                r = {k: statistics.median(x[k] for x in runs) for k in runs[0] if k != "idle"}
                if len(runs) > 1:
                    each = ", ".join(f"{x['cores']:.2f}" for x in runs)
                    name = f"{name} (median of {len(runs)}; cores {each})"
                results[(backend, rows[i][0])] = r
                print(f"| {backend} | {name} | {r['cores']:.2f} | {r['pss']:.0f} | {r['fps']:.1f} | {pct(r['fresh'])} | {pct(r['dup'])} | {pct(r['drop'])} | "
                      f"{r['active']:.2f} | {r['part']:.2f} | {r['first']:.2f} | {r['cores'] / ANCHOR_CORES:.2f}× | {r['pss'] / ANCHOR_MB:.2f}× |", flush=True)
    if not a.quick and not a.warm_only:
        # The sound's own cost: the first backend's animated egress without it, and the sound alone.
        print()
        print(f"| the sound's cost ({backends[0]}, animated 720p30) | CPU cores | PSS MB | start → first playable part s |")
        print("|---|---|---|---|")
        base = results[(backends[0], rows[0][0])]
        for name, only in (("video_only", "video"), ("audio_only (no capture)", "audio")):
            r = scenario(a.binary, "animated.html", 1, a.seconds, a.warmup, only=only, backend=backends[0])
            print(f"| {name} | {r['cores']:.2f} | {r['pss']:.0f} | {r['part']:.2f} |", flush=True)
            if only == "video":
                print(f"| audio's extra (with − video_only) | {base['cores'] - r['cores']:+.2f} | {base['pss'] - r['pss']:+.0f} | |", flush=True)
    if not a.quick or a.warm_only:
        # Cold and warm starts (pool.size 1), and what a warm worker costs idle.
        print()
        print("| backend | start | start → ACTIVE s | start → first playable part s | idle warm worker: cores | idle warm worker: PSS MB |")
        print("|---|---|---|---|---|---|")
        for backend in backends:
            cold = results.get((backend, rows[0][0])) or scenario(a.binary, "animated.html", 1, a.seconds, a.warmup, backend=backend)
            print(f"| {backend} | cold (pool empty) | {cold['active']:.2f} | {cold['part']:.2f} | | |")
            warm = [scenario(a.binary, "animated.html", 1, 5, 2, backend=backend, pool=1) for _ in range(a.repeat)]
            med = lambda k: statistics.median(x[k] for x in warm)
            idle_c = statistics.median(x["idle"]["cores"] for x in warm); idle_p = statistics.median(x["idle"]["pss"] for x in warm)
            print(f"| {backend} | warm (pool.size 1; median of {len(warm)}) | {med('active'):.2f} | {med('part'):.2f} | {idle_c:.3f} | {idle_p:.0f} |", flush=True)
    if a.g2g_seconds > 0 and not a.warm_only:
        print()
        print("| backend | glass-to-glass p50 ms (clock page → hls.js, one run) |")
        print("|---|---|")
        for backend in backends:
            print(f"| {backend} | {glass_to_glass(a.binary, backend, a.g2g_seconds):.0f} |", flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""serve's memory while clients download a long recording: a file of `--mb` MB is put in an
egress folder, then `--clients` downloads of it run in parallel (each reading as fast as it
can); serve's resident memory is sampled every 20 ms. Prints serve's RSS before, its peak
during the downloads, and the bytes delivered, per run, and the medians. Files are streamed
from disk, so the peak should stay near the idle RSS whatever the file's size (reading each
file whole, as the origin once did, would hold clients × size).

    python3 benches/download_rss.py target/release/roomcast [--mb 400] [--clients 50] [--repeat 3]

Everything it starts is ended by PID.
"""
import argparse, os, shutil, statistics, sys, tempfile, threading, time, urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from egress_cost import free_port, start_serve, stop_serve  # noqa: E402


def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def run(binary, mb, clients):
    tmp = tempfile.mkdtemp(prefix="roomcast-dlbench-")
    out = os.path.join(tmp, "out")
    folder = os.path.join(out, "EG_download")
    os.makedirs(folder)
    chunk = os.urandom(1 << 20)
    with open(os.path.join(folder, "long.mp4"), "wb") as f:
        for _ in range(mb):
            f.write(chunk)
    port = free_port()
    env = dict(os.environ, TMPDIR=tmp, ROOMCAST_OUTPUT_DIR=out, ROOMCAST_METRICS_BIND="off",
               LIVEKIT_API_KEY="bench", LIVEKIT_API_SECRET="bench-secret-bench-secret", RUST_LOG="warn")
    server, _ = start_serve(binary, env, port, tmp)
    try:
        time.sleep(0.5)
        idle = rss_kb(server.pid)
        got, errors = [0] * clients, []

        def download(i):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/hls/EG_download/long.mp4", timeout=120) as r:
                    while True:
                        b = r.read(1 << 16)
                        if not b:
                            break
                        got[i] += len(b)
            except OSError as e:
                errors.append(str(e))

        threads = [threading.Thread(target=download, args=(i,)) for i in range(clients)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        peak = idle
        while any(t.is_alive() for t in threads):
            peak = max(peak, rss_kb(server.pid))
            time.sleep(0.02)
        took = time.monotonic() - t0
        complete = sum(1 for g in got if g == mb << 20)
        return {"idle_mb": idle / 1024, "peak_mb": peak / 1024, "complete": complete, "errors": len(errors),
                "gb": sum(got) / 1e9, "secs": took}
    finally:
        stop_serve(server, tmp)
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--mb", type=int, default=400)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    runs = []
    for i in range(a.repeat):
        r = run(a.binary, a.mb, a.clients)
        runs.append(r)
        print(f"run {i + 1}: idle {r['idle_mb']:.1f} MB, peak {r['peak_mb']:.1f} MB, {r['complete']}/{a.clients} complete, "
              f"{r['errors']} errors, {r['gb']:.1f} GB in {r['secs']:.1f} s", flush=True)
    med = lambda k: statistics.median(r[k] for r in runs)
    print(f"\n{a.clients} parallel downloads of a {a.mb} MB file, median of {a.repeat}: serve idle {med('idle_mb'):.1f} MB, "
          f"peak {med('peak_mb'):.1f} MB (+{med('peak_mb') - med('idle_mb'):.1f} MB); reading whole would hold "
          f"{a.clients * a.mb / 1024:.1f} GB")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Soak benchmark (issue 17.10): what a long-lived `roomcast serve` accumulates. Phase 1: CYCLES
web egresses started and stopped one after another (API call → ACTIVE → StopEgress → ended);
phase 2: MINUTES of two concurrent web egresses (segments and an MP4 each). Reports, over time,
serve's RSS and open fds, the processes left under serve (workers, Chromium, X and sound
servers) once the egresses ended, failures, and the disk written per egress minute. Runs the
real binary on loopback; prints Markdown tables.

Usage: benches/soak.py BINARY [--cycles 200] [--minutes 30] [--backend x11]
"""
import argparse, os, shutil, signal, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import egress_cost as ec  # noqa: E402  (the shared serve/twirp/process helpers)


def rss_mb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def du_mb(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total / 1e6


def status(url, token, eid):
    items = ec.twirp(url, "ListEgress", {"egress_id": eid}, token).get("items", [])
    return items[0].get("status", "EGRESS_STARTING") if items else "?"


def wait_for(url, token, eid, wanted, limit):
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        s = status(url, token, eid)
        if s in wanted:
            return s
        time.sleep(0.1)
    return status(url, token, eid)


def leftovers(tmp, server_pid, settle=10):
    """Processes of serve's still there `settle` s after its egresses ended."""
    t0 = time.monotonic()
    while True:
        left = ec.procs_with_env(f"TMPDIR={tmp}", {server_pid})
        if not left or time.monotonic() - t0 > settle:
            return left
        time.sleep(0.5)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--cycles", type=int, default=200)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--backend", default="x11")
    a = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="roomcast-soak-")
    port = ec.free_port(); url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, TMPDIR=tmp, ROOMCAST_NETWORK_ALLOW="127.0.0.1", ROOMCAST_OUTPUT_DIR=f"{tmp}/out",
               ROOMCAST_METRICS_BIND="off", ROOMCAST_CAPTURE=a.backend, ROOMCAST_MAX_CONCURRENT="4",
               LIVEKIT_API_KEY="bench", LIVEKIT_API_SECRET="bench-secret-bench-secret", RUST_LOG=os.environ.get("RUST_LOG", "warn"))
    server, token = ec.start_serve(a.binary, env, port, tmp)
    page = f"{url}/templates/demo/animated.html"
    print(f"soak: {os.path.basename(a.binary)}, backend {a.backend}, {a.cycles} cycles, {a.minutes:g} min of 2 egresses\n")
    try:
        base_rss, base_fds = rss_mb(server.pid), fds(server.pid)
        print("| after cycle | serve RSS (MB) | serve fds | processes left | failed so far | cycle median (s) |")
        print("|---|---|---|---|---|---|")
        print(f"| 0 | {base_rss:.0f} | {base_fds} | 0 | 0 | |")
        failed, times = 0, []
        for i in range(1, a.cycles + 1):
            t0 = time.monotonic()
            eid = ec.twirp(url, "StartWebEgress", {"url": page, "segment_outputs": [{}], "video_only": True}, token)["egressId"]
            if wait_for(url, token, eid, {"EGRESS_ACTIVE"}, 30) != "EGRESS_ACTIVE":
                failed += 1
            ec.twirp(url, "StopEgress", {"egress_id": eid}, token)
            if wait_for(url, token, eid, {"EGRESS_COMPLETE", "EGRESS_FAILED", "EGRESS_ABORTED"}, 60) != "EGRESS_COMPLETE":
                failed += 1
            times.append(time.monotonic() - t0)
            if i % max(1, a.cycles // 4) == 0 or i == a.cycles:
                left = leftovers(tmp, server.pid)
                med = sorted(times)[len(times) // 2]
                print(f"| {i} | {rss_mb(server.pid):.0f} | {fds(server.pid)} | {len(left)} | {failed} | {med:.2f} |", flush=True)
        shutil.rmtree(f"{tmp}/out", ignore_errors=True)

        print(f"\n| minute | serve RSS (MB) | serve fds | processes | disk (MB) |")
        print("|---|---|---|---|---|")
        ids = [ec.twirp(url, "StartWebEgress", {"url": page, "segment_outputs": [{}], "file_outputs": [{"filepath": "rec.mp4"}]}, token)["egressId"]
               for _ in range(2)]
        active = [wait_for(url, token, e, {"EGRESS_ACTIVE"}, 30) for e in ids]
        t0 = time.monotonic(); minute = 0
        while time.monotonic() - t0 < a.minutes * 60:
            time.sleep(min(60, a.minutes * 60 - (time.monotonic() - t0)))
            minute += 1
            procs = len(ec.procs_with_env(f"TMPDIR={tmp}", {server.pid}))
            print(f"| {minute} | {rss_mb(server.pid):.0f} | {fds(server.pid)} | {procs} | {du_mb(f'{tmp}/out'):.0f} |", flush=True)
        ran = (time.monotonic() - t0) / 60
        ends = []
        for e in ids:
            ec.twirp(url, "StopEgress", {"egress_id": e}, token)
        for e in ids:
            ends.append(wait_for(url, token, e, {"EGRESS_COMPLETE", "EGRESS_FAILED"}, 60))
        left = leftovers(tmp, server.pid)
        disk = du_mb(f"{tmp}/out")
        print(f"\n2 egresses for {ran:.1f} min: started {active}, ended {ends}; disk {disk:.0f} MB = "
              f"{disk / (2 * ran):.1f} MB per egress minute (HLS segments + MP4); processes left after the stop: {len(left)}; "
              f"serve RSS {rss_mb(server.pid):.0f} MB, fds {fds(server.pid)}")
    finally:
        ec.stop_serve(server, tmp)


if __name__ == "__main__":
    main()

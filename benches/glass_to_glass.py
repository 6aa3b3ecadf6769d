#!/usr/bin/env python3
"""Glass-to-glass latency of roomcast web egress: a page that shows the wall clock as blocks
(tests/pages/bench/clock.html) is egressed by the real binary, played back by the real player page
(/play/{id}/{playlist}, hls.js) in a second Chromium (tests/node/play.mjs --clock), and each frame
the player presents is decoded: latency = when the frame is expected on the player's glass minus
the time the page drew into it. Everything runs on loopback; prints a Markdown table.

Each run is its own egress (new Chromium, encoder and playlist) with its own player, because
start-up and how the segment/part boundaries fall relative to the player's join differ per egress;
that is the variance worth sampling. Each player then watches for --seconds. The player's browser
is launched before the API call and opens the page as soon as the playlist answers (or
--join-after seconds after the API call, to join a running stream instead), so "start" (API call
-> first frame on the player's glass) excludes the player's browser launch.

Usage: benches/glass_to_glass.py BINARY [--seconds 30] [--runs 3] [--playlist live.m3u8]
       [--join-after 0] [--width 1280 --height 720 --framerate 30] [--json-out FILE] [--keep]
"""
import argparse, json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time, urllib.error, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from egress_cost import page_url  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
PLAY = os.path.join(ROOT, "tests", "node", "play.mjs")


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def twirp(url, method, body, token):
    req = urllib.request.Request(f"{url}/twirp/livekit.Egress/{method}", data=json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        return json.load(urllib.request.urlopen(req, timeout=30))
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{method}: HTTP {e.code}: {e.read().decode(errors='replace')}") from None


def procs_under(path, exclude=()):
    """Processes whose command line or TMPDIR names `path` (Chromium names its profile there)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) in exclude or int(d) == os.getpid():
            continue
        try:
            cmd = open(f"/proc/{d}/cmdline", "rb").read()
            env = open(f"/proc/{d}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if path.encode() in cmd or f"TMPDIR={path}".encode() in env:
            out.append(int(d))
    return out


def kill_left_under(path, what):
    """SIGKILL, by PID, whatever is still running under `path` after an orderly end."""
    left = procs_under(path)
    if left:
        print(f"glass_to_glass: {what} left behind, killing: {left}", file=sys.stderr)
        for p in left:
            try: os.kill(p, signal.SIGKILL)
            except OSError: pass


def end_process(p, timeout, name):
    """SIGTERM by PID, then SIGKILL after `timeout` seconds."""
    if p is None or p.poll() is not None:
        return
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"glass_to_glass: {name} (pid {p.pid}) ignored SIGTERM for {timeout} s; killing it", file=sys.stderr)
        p.kill(); p.wait()


def egress_info(url, token, eid):
    items = twirp(url, "ListEgress", {"egress_id": eid}, token).get("items", [])
    return items[0] if items else {}


def one_run(a, url, token, tmp, run):
    """One egress of the clock page watched by one player. Returns a dict for the table."""
    player_tmp = os.path.join(tmp, f"player{run}"); os.makedirs(player_tmp)
    ready = os.path.join(player_tmp, "ready")
    cmd = ["node", PLAY, "--url", "-", "--seconds", str(a.seconds), "--clock", "--json",
           "--wait-playlist", "60", "--start-timeout", "30", "--ready-file", ready]
    player_err = open(os.path.join(player_tmp, "play.stderr"), "w")
    player = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=player_err,
                              env=dict(os.environ, TMPDIR=player_tmp), start_new_session=True)
    eid = None
    try:
        t_end = time.monotonic() + 60
        while not os.path.exists(ready):
            if player.poll() is not None or time.monotonic() > t_end:
                raise RuntimeError(f"player did not come up: {open(player_err.name).read().strip()}")
            time.sleep(0.05)

        body = {"url": page_url("bench/clock.html"),
                "segmentOutputs": [{"playlistName": "playlist.m3u8", "livePlaylistName": "live.m3u8"}],
                "advanced": {"width": a.width, "height": a.height, "framerate": a.framerate}}
        t_api = time.time()
        info = twirp(url, "StartWebEgress", body, token)
        eid = info["egressId"]

        t_active, joined = None, False
        while player.poll() is None:
            if not joined and time.time() >= t_api + a.join_after:
                player.stdin.write(f"{url}/play/{eid}/{a.playlist}\n".encode()); player.stdin.close()
                joined = True
            if t_active is None:
                i = egress_info(url, token, eid)
                if i.get("status") == "EGRESS_ACTIVE":
                    t_active = time.time() - t_api
                elif i.get("status") in ("EGRESS_FAILED", "EGRESS_ABORTED", "EGRESS_COMPLETE"):
                    raise RuntimeError(f"egress {eid} ended early: {i.get('status')} {i.get('error', '')}")
                if t_active is None and time.time() - t_api > 60:
                    raise RuntimeError(f"egress {eid} not ACTIVE after 60 s")
                time.sleep(0.02)
            else:
                time.sleep(0.2)
            if time.time() - t_api > a.join_after + a.seconds + 150:
                raise RuntimeError("player did not finish in time")
        out = player.stdout.read().decode()
        try:
            res = json.loads(out)
        except ValueError:
            raise RuntimeError(f"player printed no JSON (exit {player.returncode}): {out[:500]} "
                               f"{open(player_err.name).read()[-2000:]}") from None
        if player.returncode != 0:
            print(f"glass_to_glass: run {run}: player failed: {res.get('error')}", file=sys.stderr)
        res["egress_id"] = eid
        res["api_to_active_s"] = t_active
        ff = res.get("first_frame_epoch_ms")
        res["api_to_first_frame_s"] = (ff / 1000 - t_api) if ff else None
        return res
    finally:
        end_process(player, 20, "player")
        player_err.close()
        if eid is not None:
            try:
                twirp(url, "StopEgress", {"egress_id": eid}, token)
                t_end = time.monotonic() + 60
                while time.monotonic() < t_end:
                    if egress_info(url, token, eid).get("status") in ("EGRESS_COMPLETE", "EGRESS_FAILED", "EGRESS_ABORTED"):
                        break
                    time.sleep(0.2)
                else:
                    print(f"glass_to_glass: egress {eid} did not complete within 60 s of StopEgress", file=sys.stderr)
            except Exception as e:  # the server may already be gone on Ctrl-C
                print(f"glass_to_glass: stopping {eid}: {e}", file=sys.stderr)
        kill_left_under(player_tmp, "player processes")


def fmt(x, spec):
    return "–" if x is None else format(x, spec)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("binary")
    ap.add_argument("--seconds", type=int, default=30, help="how long each player watches (default 30)")
    ap.add_argument("--runs", type=int, default=3, help="egress runs, one player each (default 3)")
    ap.add_argument("--playlist", default="live.m3u8", help="playlist the player opens: /play/{id}/PLAYLIST (default live.m3u8)")
    ap.add_argument("--join-after", type=float, default=0,
                    help="open the player this many seconds after the API call, i.e. join a running stream "
                         "(default 0: as soon as the playlist exists; 'start' then includes the wait)")
    ap.add_argument("--width", type=int, default=1280); ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--framerate", type=int, default=30)
    ap.add_argument("--json-out", help="also write every run's play.mjs JSON (plus egress_id, api_to_*) to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (outputs, logs)")
    a = ap.parse_args()
    binary = os.path.abspath(a.binary)
    if not os.access(binary, os.X_OK):
        sys.exit(f"glass_to_glass: {binary} is not an executable")
    if not os.path.isdir(os.path.join(ROOT, "tests", "node", "node_modules", "playwright-core")):
        sys.exit("glass_to_glass: tests/node/node_modules/playwright-core missing: run bash scripts/install-deps.sh")

    # SIGTERM/SIGHUP clean up like Ctrl-C; the children run in their own sessions so a Ctrl-C
    # reaches only this script, which then ends them in order.
    def on_signal(sig, _):
        raise KeyboardInterrupt(f"signal {sig}")
    signal.signal(signal.SIGTERM, on_signal); signal.signal(signal.SIGHUP, on_signal)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored

    tmp = tempfile.mkdtemp(prefix="roomcast-g2g-")
    port = free_port(); url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, TMPDIR=tmp, ROOMCAST_BIND=f"127.0.0.1:{port}", ROOMCAST_OUTPUT_DIR=f"{tmp}/out",
               ROOMCAST_TEMPLATES_DIR=os.path.join(ROOT, "templates"), RUST_LOG=os.environ.get("RUST_LOG", "warn"))
    log = open(f"{tmp}/serve.log", "w")
    server = None
    results = []
    try:
        server = subprocess.Popen([binary, "serve"], env=env, stdout=log, stderr=log, start_new_session=True)
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=1); break
            except OSError:
                if server.poll() is not None:
                    raise RuntimeError(f"server exited with {server.returncode}: {open(log.name).read()[-2000:]}")
                time.sleep(0.05)
        else:
            raise RuntimeError("server did not answer /healthz within 10 s")
        token = subprocess.check_output([binary, "token"], env=env).decode().strip()

        print(f"glass-to-glass: {os.path.basename(binary)}, page tests/pages/bench/clock.html at "
              f"{a.width}x{a.height}/{a.framerate}, player /play/{{id}}/{a.playlist} (hls.js) joining "
              f"{f'{a.join_after:g} s after the API call' if a.join_after else 'as soon as the playlist exists'}, "
              f"{a.runs} run(s) x {a.seconds} s, loopback\n", flush=True)
        print("| run | g2g p50 ms | g2g p95 ms | g2g min–max ms | frames decoded / misread | hls.latency p50 s | stalls (ms) | fps | start: API → first frame s | API → ACTIVE s |")
        print("|---|---|---|---|---|---|---|---|---|---|", flush=True)
        for run in range(1, a.runs + 1):
            r = one_run(a, url, token, tmp, run)
            results.append(r)
            g = r.get("g2g_ms") or {}
            lat = (r.get("latency_s") or {}).get("p50")
            bad = "" if r.get("ok") else f" ⚠ {r.get('error')}"
            print(f"| {run}{bad} | {fmt(g.get('p50'), '.0f')} | {fmt(g.get('p95'), '.0f')} | "
                  f"{fmt(g.get('min'), '.0f')}–{fmt(g.get('max'), '.0f')} | {g.get('n', 0)} / {g.get('misreads', 0)} | "
                  f"{fmt(lat, '.2f')} | {r.get('stalls', '–')} ({r.get('stall_ms', '–')}) | {fmt(r.get('fps_presented'), '.1f')} | "
                  f"{fmt(r.get('api_to_first_frame_s'), '.2f')} | {fmt(r.get('api_to_active_s'), '.2f')} |", flush=True)
        p50s = [r["g2g_ms"]["p50"] for r in results if r.get("g2g_ms") and r["g2g_ms"].get("p50") is not None]
        print()
        print(f"median of g2g p50s: {statistics.median(p50s):.0f} ms over {len(p50s)} run(s)" if p50s
              else "median of g2g p50s: – (no decoded frames)")
        if a.json_out:
            with open(a.json_out, "w") as f:
                json.dump(results, f, indent=2)
        failed = [r for r in results if not r.get("ok")]
        return 1 if failed or not p50s else 0
    except KeyboardInterrupt:
        print("glass_to_glass: interrupted; cleaning up", file=sys.stderr)
        return 130
    except RuntimeError as e:
        print(f"glass_to_glass: {e}", file=sys.stderr)
        return 1
    finally:
        # Ignore further Ctrl-C while cleaning up, so nothing is left running.
        signal.signal(signal.SIGINT, signal.SIG_IGN); signal.signal(signal.SIGTERM, signal.SIG_IGN)
        end_process(server, 60, "server")
        log.close()
        kill_left_under(tmp, "processes of the server")
        if a.keep:
            print(f"glass_to_glass: kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

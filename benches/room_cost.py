#!/usr/bin/env python3
"""Cost of one room composite egress: a real SFU room (Janus, or livekit-server built by
scripts/install-deps.sh; in a network namespace of its own, as in tests/room_sfu.rs) with N
publishers (tests/node/publishers.mjs: one Chromium, a solid colour and a tone each), and one
roomcast room-composite egress of it to LL-HLS through our template's adapter for that SFU.
Prints one table row per run: the egress's cores and PSS (worker, Chromium and its children, the
X server, sound server; not the publishers or the SFU, whose cost is shown beside),
start → ACTIVE / first playable part, delivered fps.

    sudo python3 benches/room_cost.py target/release/roomcast [--sfu janus|livekit] [--participants 4] [--seconds 20]

Needs root (ip netns). Everything it starts is ended by PID, the namespace deleted.
"""
import argparse, json, os, signal, statistics, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(__file__))
from egress_cost import CLK, cpu_ticks, first_part_waiter, free_port, procs_with_env, pss_kb, start_serve, stop_serve, twirp  # noqa: E402

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
ROOM = "bench-room"
COLOURS = ["#e62828", "#28c83c", "#2850e6", "#e6c828", "#e628c8", "#28e6e6", "#ffffff", "#808080", "#ff8000"]
LIB = "/usr/lib/x86_64-linux-gnu/janus"


def sh(*args):
    subprocess.run(args, check=True, capture_output=True)


class Netns:
    """A network namespace rcb<pid>x<n>-ns joined to the host by a veth (SFUs ignore loopback for ICE)."""

    runs = 0

    def __init__(self):
        Netns.runs += 1
        tag = f"rcb{os.getpid() % 10000}x{Netns.runs}"
        self.ns, self.ns_if, host_if = f"{tag}-ns", f"{tag}n", f"{tag}h"
        self.host_if = host_if
        net = f"10.199.{(os.getpid() + Netns.runs) % 250}"
        self.host_ip, self.ip = f"{net}.1", f"{net}.2"
        sh("ip", "netns", "add", self.ns)
        try:
            sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", self.ns_if)
            sh("ip", "link", "set", self.ns_if, "netns", self.ns)
            sh("ip", "addr", "add", f"{self.host_ip}/24", "dev", host_if)
            sh("ip", "link", "set", host_if, "up")
            for cmd in (["ip", "addr", "add", f"{self.ip}/24", "dev", self.ns_if], ["ip", "link", "set", self.ns_if, "up"],
                        ["ip", "link", "set", "lo", "up"], ["ip", "route", "add", "default", "via", self.host_ip]):
                sh("ip", "netns", "exec", self.ns, *cmd)
        except subprocess.CalledProcessError:
            self.close()
            raise

    def close(self):
        subprocess.run(["ip", "netns", "del", self.ns])
        # The pair goes with the namespace, but not always at once: make sure.
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)


def wait_port(host, port, what, log):
    import socket
    for _ in range(150):
        try:
            socket.create_connection((host, port), timeout=0.2).close(); return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"room_cost: {what} did not start (log in {log})")


def end(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill(); proc.wait()


class Janus:
    """Janus in a namespace of its own, VideoRoom room ROOM, WebSockets on the namespace's IP."""

    sfu = "janus"

    def __init__(self, tmp):
        self.net = net = Netns()
        self.ip, self.ns, self.ns_if = net.ip, net.ns, net.ns_if
        conf = os.path.join(tmp, "janus-conf")
        os.makedirs(conf)
        with open(f"{conf}/janus.jcfg", "w") as f:
            f.write(f'''general: {{ configs_folder = "{conf}"
 plugins_folder = "{LIB}/plugins"
 transports_folder = "{LIB}/transports"
 events_folder = "{LIB}/events"
 loggers_folder = "{LIB}/loggers"
 debug_level = 3
 debug_colors = false }}
media: {{ rtp_port_range = "20000-40000" }}
nat: {{ ignore_mdns = true
 ice_enforce_list = "{self.ns_if}" }}
plugins: {{ disable = "libjanus_audiobridge.so,libjanus_duktape.so,libjanus_echotest.so,libjanus_lua.so,libjanus_nosip.so,libjanus_recordplay.so,libjanus_sip.so,libjanus_streaming.so,libjanus_textroom.so,libjanus_videocall.so,libjanus_voicemail.so" }}
transports: {{ disable = "libjanus_http.so,libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_pfunix.so,libjanus_rabbitmq.so" }}
loggers: {{ disable = "libjanus_jsonlog.so" }}
events: {{ broadcast = false }}
''')
        with open(f"{conf}/janus.plugin.videoroom.jcfg", "w") as f:
            f.write(f'general: {{ string_ids = true }}\nroom-{ROOM}: {{ description = "{ROOM}"\n publishers = 16\n'
                    f' bitrate = 512000\n fir_freq = 10\n audiocodec = "opus"\n videocodec = "vp8" }}\n')
        with open(f"{conf}/janus.transport.websockets.jcfg", "w") as f:
            f.write(f'general: {{ json = "plain"\n ws = true\n ws_port = 8188\n ws_ip = "{self.ip}"\n wss = false }}\n'
                    'admin: { admin_ws = false\n admin_wss = false }\n')
        self.log = open(os.path.join(tmp, "janus.log"), "w")
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns, "janus", "-o", "-F", conf, "-C", f"{conf}/janus.jcfg"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"ws://{self.ip}:8188"
        self.pids = [self.proc.pid]
        wait_port(self.ip, 8188, "janus", self.log.name)

    def env(self):
        return dict(ROOMCAST_SFU="janus", ROOMCAST_SFU_URL=self.url)

    def token(self, identity):
        return None

    def close(self):
        end(self.proc)
        self.net.close()


LK_KEY, LK_SECRET = "roomcast-bench-key", "roomcast-bench-secret-at-least-32-characters"


def jwt(claims, secret):
    import base64, hashlib, hmac
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode())
    return head + "." + b64(hmac.new(secret.encode(), head.encode(), hashlib.sha256).digest())


class LiveKitServer:
    """livekit-server (.deps/bin/livekit-server, from its Go module) in a namespace of its own, as
    tests/common/livekit.rs runs it; the room is made by the first publisher's join."""

    sfu = "livekit"

    def __init__(self, tmp):
        binary = os.path.join(REPO, ".deps/bin/livekit-server")
        if not os.path.exists(binary):
            raise SystemExit(f"room_cost: {binary} is missing: run scripts/install-deps.sh")
        self.net = net = Netns()
        self.ip = net.ip
        conf = os.path.join(tmp, "livekit.yaml")
        with open(conf, "w") as f:
            f.write(f"port: 7880\nbind_addresses: [\"{net.ip}\"]\nrtc:\n  tcp_port: 7881\n  port_range_start: 50000\n"
                    f"  port_range_end: 50400\n  use_external_ip: false\n  node_ip: {net.ip}\n  interfaces:\n"
                    f"    includes: [\"{net.ns_if}\"]\nkeys:\n  {LK_KEY}: {LK_SECRET}\nlogging:\n  level: warn\n")
        self.log = open(os.path.join(tmp, "livekit.log"), "w")
        self.proc = subprocess.Popen(["ip", "netns", "exec", net.ns, binary, "--config", conf], stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"ws://{net.ip}:7880"
        self.pids = [self.proc.pid]
        wait_port(net.ip, 7880, "livekit-server", self.log.name)
        # `ip netns exec` runs livekit-server as its child: measure the server itself.
        kids = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout.split()
        self.pids += [int(k) for k in kids]

    def env(self):
        return dict(ROOMCAST_SFU="livekit", ROOMCAST_SFU_URL=self.url, ROOMCAST_SFU_API_KEY=LK_KEY, ROOMCAST_SFU_API_SECRET=LK_SECRET)

    def token(self, identity):
        now = int(time.time())
        return jwt({"iss": LK_KEY, "sub": identity, "nbf": now - 10, "exp": now + 3600, "name": identity,
                    "video": {"room": ROOM, "roomJoin": True, "canPublish": True, "canSubscribe": True}}, LK_SECRET)

    def close(self):
        end(self.proc)
        self.net.close()


def cost(pids, seconds):
    before = {p: cpu_ticks(p) for p in pids}
    t0 = time.monotonic(); pss = []
    while time.monotonic() - t0 < seconds:
        pss.append(sum(pss_kb(p) for p in pids) / 1024); time.sleep(1)
    wall = time.monotonic() - t0
    ticks = sum(cpu_ticks(p) - before[p] for p in pids if before[p] is not None and cpu_ticks(p) is not None)
    return ticks / CLK / wall, statistics.median(pss)


def run(binary, sfu_kind, participants, seconds, warmup):
    tmp = tempfile.mkdtemp(prefix="roomcast-roombench-")
    pub_tmp = tempfile.mkdtemp(prefix="roomcast-roombench-pub-")
    sfu = (LiveKitServer if sfu_kind == "livekit" else Janus)(tmp)
    server = publishers = None
    try:
        port = free_port(); url = f"http://127.0.0.1:{port}"
        env = dict(os.environ, TMPDIR=tmp, ROOMCAST_OUTPUT_DIR=f"{tmp}/out", ROOMCAST_TEMPLATES_DIR=os.path.join(REPO, "templates"),
                   LIVEKIT_API_KEY="bench", LIVEKIT_API_SECRET="bench-secret-bench-secret", RUST_LOG="warn", **sfu.env())
        server, token = start_serve(binary, env, port, tmp)
        pubs = [{"name": f"P{i + 1}", "color": COLOURS[i % len(COLOURS)], "freq": 300 + 110 * i} for i in range(participants)]
        for p in pubs:
            if sfu.token(p["name"]):
                p["token"] = sfu.token(p["name"])
        cfg = {"templates": f"{url}/templates", "sfu": sfu.sfu, "url": sfu.url, "room": ROOM, "exclude": [sfu.ip], "publishers": pubs}
        publishers = subprocess.Popen(["node", os.path.join(REPO, "tests/node/publishers.mjs"), json.dumps(cfg)],
                                      cwd=os.path.join(REPO, "tests/node"), env=dict(os.environ, TMPDIR=pub_tmp),
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        published = 0
        for line in publishers.stdout:
            ev = json.loads(line)
            if ev["event"] == "error":
                raise SystemExit(f"room_cost: publisher failed: {ev}")
            if ev["event"] == "published":
                published += 1
            if ev["event"] == "ready":
                break
        assert published == participants, f"{published} of {participants} published"
        t0 = time.monotonic()
        info = twirp(url, "StartRoomCompositeEgress", {"room_name": ROOM, "layout": "grid", "segment_outputs": [{}]}, token)
        eid = info["egressId"]
        waiter, part_at = first_part_waiter(url, eid, t0, 40)
        active = None
        while active is None and time.monotonic() - t0 < 40:
            i = twirp(url, "ListEgress", {"egress_id": eid}, token)["items"][0]
            if i.get("status") == "EGRESS_ACTIVE":
                active = time.monotonic() - t0
            if i.get("status") == "EGRESS_FAILED":
                raise SystemExit(f"room_cost: egress failed: {i.get('error')}")
            time.sleep(0.02)
        waiter.join()
        time.sleep(warmup)
        egress = procs_with_env(f"TMPDIR={tmp}", {server.pid})
        others = procs_with_env(f"TMPDIR={pub_tmp}", set()) + sfu.pids
        # Both measured over the same seconds.
        res = {}
        t = threading.Thread(target=lambda: res.update(others=cost(others, seconds))); t.start()
        cores, pss = cost(egress, seconds)
        t.join()
        twirp(url, "StopEgress", {"egress_id": eid}, token)
        for _ in range(150):
            if twirp(url, "ListEgress", {"egress_id": eid}, token)["items"][0].get("status") in ("EGRESS_COMPLETE", "EGRESS_FAILED"):
                break
            time.sleep(0.2)
        pr = json.loads(subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v", "-show_entries",
                                        "stream=nb_read_frames:format=duration", "-of", "json", f"{tmp}/out/{eid}/playlist.m3u8"],
                                       capture_output=True).stdout or b"{}")
        fps = int(pr["streams"][0]["nb_read_frames"]) / float(pr["format"]["duration"]) if pr.get("streams") else float("nan")
        return dict(cores=cores, pss=pss, active=active, part=part_at[0] if part_at else float("nan"), fps=fps,
                    others=res["others"])
    finally:
        if publishers:
            try:
                publishers.stdin.close(); publishers.wait(timeout=15)
            except (subprocess.TimeoutExpired, BrokenPipeError):
                publishers.kill()
        if server:
            stop_serve(server, tmp)
        for p in procs_with_env(f"TMPDIR={pub_tmp}", set()):
            os.kill(p, signal.SIGKILL)
        sfu.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary"); ap.add_argument("--participants", default="4", help="comma-separated, e.g. 4,9")
    ap.add_argument("--sfu", choices=["janus", "livekit"], default="janus")
    ap.add_argument("--seconds", type=int, default=20); ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    print(f"| participants | egress cores | egress PSS (MB) | fps | start → ACTIVE (s) | start → first part (s) | publishers + {a.sfu} cores, PSS (MB) |")
    print("|---|---|---|---|---|---|---|")
    for n in [int(x) for x in a.participants.split(",")]:
        for _ in range(a.repeat):
            r = run(a.binary, a.sfu, n, a.seconds, a.warmup)
            oc, op = r["others"]
            print(f"| {n} | {r['cores']:.2f} | {r['pss']:.0f} | {r['fps']:.1f} | {r['active']:.2f} | {r['part']:.2f} | {oc:.2f}, {op:.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()

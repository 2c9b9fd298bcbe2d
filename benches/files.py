#!/usr/bin/env python3
"""Files benchmark: 32 MiB round trips (base64 routes; raw routes with curl and with the
Python SDK), small-file read round trip, and watch event delivery latency, each beside a
baseline measured in the same run.

Usage: sudo benches/files.py
Builds the release binary unless AI2IN_BIN is set.
"""
import base64
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from functools import partial

from harness import REPO, Node, machine, percentile, release_binary, report, timed

MIB = 1 << 20


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def raw_round_trips(node, sid, data, bodies):
    """32 MiB PUT + GET through the raw routes with curl, against `cp` of the file between two
    tmpfs directories plus its transfer over loopback from a plain HTTP server (Python's);
    then the same round trip with the Python SDK against curl's."""
    src = f"{bodies}/raw.bin"
    with open(src, "wb") as f:
        f.write(data)
    url = f"{node.url}/v1/sandboxes/{sid}/files?path=raw.bin"
    auth = ["-H", "Authorization: Bearer " + node.key]

    def curl(*args):
        run = subprocess.run(["curl", "-sSf", "-o", f"{bodies}/back.bin", "-w", "%{time_total}", *auth, *args],
                             check=True, capture_output=True, text=True)
        return float(run.stdout) * 1000

    def round_trip():
        return curl("-T", src, url) + curl(url)

    round_trip()
    with open(f"{bodies}/back.bin", "rb") as f:
        assert f.read() == data
    ours = [round_trip() for _ in range(10)]

    other = tempfile.mkdtemp(dir="/dev/shm")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=bodies))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    plain = f"http://127.0.0.1:{server.server_address[1]}/raw.bin"

    def baseline():
        t = time.perf_counter()
        subprocess.run(["cp", src, f"{other}/copy.bin"], check=True)
        copied = (time.perf_counter() - t) * 1000
        run = subprocess.run(["curl", "-sSf", "-o", f"{other}/got.bin", "-w", "%{time_total}", plain],
                             check=True, capture_output=True, text=True)
        return copied + float(run.stdout) * 1000

    baseline()
    base = [baseline() for _ in range(10)]
    server.shutdown()
    shutil.rmtree(other)
    report("32 MiB PUT+GET raw, curl", ours, "cp tmpfs→tmpfs + loopback GET", base)
    print(f"{'':<28} (goal: ≤ 2x)")

    sys.path.insert(0, os.path.join(REPO, "sdk", "python"))
    from ai2in import Sandbox

    sandbox = Sandbox.connect(sid, api_key=node.key, base_url=node.url)

    def sdk_round_trip():
        sandbox.files.write("raw.bin", data)
        assert len(sandbox.files.read_bytes("raw.bin")) == len(data)

    sdk_round_trip()
    report("32 MiB write+read_bytes, Python SDK", timed(sdk_round_trip, 10), "the same raw round trip, curl", ours)
    print(f"{'':<28} (goal: ≤ 1.5x)")


def main():
    node = Node(release_binary())
    print(machine())
    try:
        sid = node.call("POST", "/v1/sandboxes", {})["id"]
        fs = lambda route, **body: node.call("POST", f"/v1/sandboxes/{sid}/fs/{route}", body)

        # 32 MiB round trip, as curl times its transfers (the body ready in a file, so the
        # client's own JSON and base64 work is not counted); baseline: the same bytes through
        # base64 and a host tmpfs file, in-process.
        data = os.urandom(32 * MIB)
        b64 = base64.b64encode(data).decode()
        bodies = tempfile.mkdtemp(dir="/dev/shm")
        with open(f"{bodies}/write.json", "w") as f:
            json.dump({"path": "big.bin", "content_b64": b64}, f)
        with open(f"{bodies}/read.json", "w") as f:
            json.dump({"path": "big.bin"}, f)

        def curl(route, body, out="/dev/null"):
            run = subprocess.run(
                ["curl", "-sSf", "-o", out, "-w", "%{time_total}", "-H", "Authorization: Bearer " + node.key,
                 "-H", "Content-Type: application/json", "--data-binary", f"@{bodies}/{body}",
                 f"{node.url}/v1/sandboxes/{sid}/fs/{route}"], check=True, capture_output=True, text=True)
            return float(run.stdout) * 1000

        def round_trip():
            return curl("write_bytes", "write.json") + curl("read_bytes", "read.json")

        def local_round_trip():
            with tempfile.NamedTemporaryFile(dir="/dev/shm") as f:
                f.write(base64.b64decode(b64))
                f.flush()
                f.seek(0)
                assert base64.b64encode(f.read()).decode() == b64

        round_trip()
        curl("read_bytes", "read.json", f"{bodies}/answer.json")
        with open(f"{bodies}/answer.json") as f:
            assert base64.b64decode(json.load(f)["content_b64"]) == data
        report("32 MiB write+read_bytes", [round_trip() for _ in range(10)],
               "base64 + host tmpfs file, in-process", timed(local_round_trip, 10))
        raw_round_trips(node, sid, data, bodies)
        shutil.rmtree(bodies)

        # Small read; baseline: an HTTP round trip that does no work.
        fs("write", path="small.txt", content="x" * 100)
        health = lambda: urllib.request.urlopen(node.url + "/healthz").read()
        report("small fs/read round trip", timed(lambda: fs("read", path="small.txt"), 300), "GET /healthz round trip", timed(health, 300))

        # Watch delivery: agent's event timestamp (ms) to the client's receipt, over SSE.
        wid = fs("watch", path="/home/user")["watch_id"]
        req = urllib.request.Request(f"{node.url}/v1/sandboxes/{sid}/fs/watch/{wid}/events", headers={"Authorization": "Bearer " + node.key})
        latencies = []
        stream = urllib.request.urlopen(req, timeout=30)

        def reader():
            for raw in stream:
                line = raw.decode().strip()
                if line.startswith("data:"):
                    ev = json.loads(line[5:])
                    if ev["type"] == "create":
                        sent = time.mktime(time.strptime(ev["timestamp"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
                        sent += int(ev["timestamp"][20:23]) / 1000
                        latencies.append((time.time() - sent) * 1000)
                        if len(latencies) >= 50:
                            return

        t = threading.Thread(target=reader)
        t.start()
        for i in range(50):
            fs("write", path=f"w{i}", content="x")
            time.sleep(0.02)
        t.join(30)
        print(f"{'watch event delivery':<28} p50 {percentile(latencies, 50):8.2f} ms  p99 {percentile(latencies, 99):8.2f} ms "
              f"(agent timestamp, ms resolution, to client receipt over SSE)")
    finally:
        node.stop()


if __name__ == "__main__":
    sys.exit(main())

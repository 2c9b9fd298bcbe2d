#!/usr/bin/env python3
"""Files benchmark: 32 MiB write_bytes + read_bytes round trip, small-file read round trip,
and watch event delivery latency, each beside a baseline measured in the same run.

Usage: sudo benches/files.py
Builds the release binary unless AI2IN_BIN is set.
"""
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from harness import Node, machine, percentile, release_binary, report, timed

MIB = 1 << 20


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

#!/usr/bin/env python3
"""Node benchmark: create→ready, shell round trip and idle memory per sandbox, side by side
with baselines measured in the same run (bubblewrap, a bare fork+exec).

Usage: sudo benches/node.py [--sandboxes N] [--idle N]
Builds the release binary unless AI2IN_BIN is set. Prints each figure, its baseline, and
the ratio. Installs bubblewrap with apt-get when it is missing.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    def __init__(self, binary):
        self.dir = tempfile.mkdtemp(prefix="ai2in-bench-")
        self.url = f"http://127.0.0.1:{free_port()}"
        config = os.path.join(self.dir, "config.toml")
        with open(config, "w") as f:
            f.write("[quotas]\nsandboxes = 5000\n[capacity]\nsandboxes = 5000\n")
        self.log = open(os.path.join(self.dir, "node.log"), "w")
        self.proc = subprocess.Popen(
            [binary, "serve", "--state-dir", self.dir, "--listen", self.url[7:], "--config", config],
            stdout=self.log, stderr=self.log)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        self.key = open(os.path.join(self.dir, "admin.key")).read().strip()

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": "Bearer " + self.key, "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            raw = r.read()
            return json.loads(raw) if raw else None

    def stop(self):
        for s in self.call("GET", "/v1/sandboxes")["sandboxes"]:
            self.call("DELETE", f"/v1/sandboxes/{s['id']}")
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def timed(fn, n):
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def mem_available():
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024


def report(name, ours, base_name, base):
    p50, p99, b50 = percentile(ours, 50), percentile(ours, 99), percentile(base, 50)
    print(f"{name:<28} p50 {p50:8.2f} ms  p99 {p99:8.2f} ms | {base_name:<34} p50 {b50:8.2f} ms | ratio {p50 / b50:5.2f}x")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sandboxes", type=int, default=50, help="creates to time")
    ap.add_argument("--idle", type=int, default=100, help="idle sandboxes for the memory figure")
    args = ap.parse_args()
    binary = os.environ.get("AI2IN_BIN")
    if not binary:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "ai2in"], cwd=REPO, check=True)
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
        binary = os.path.join(target, "x86_64-unknown-linux-gnu", "release", "ai2in")
    if not shutil.which("bwrap"):
        subprocess.run(["apt-get", "install", "-y", "-q", "bubblewrap"], check=True, stdout=subprocess.DEVNULL)

    print(f"machine: {os.cpu_count()} cores, {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') >> 30} GiB, kernel {os.uname().release}")
    node = Node(binary)
    try:
        bwrap = ["bwrap", "--unshare-all", "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin",
                 "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64", "--proc", "/proc",
                 "--dev", "/dev", "--tmpfs", "/tmp", "true"]
        fork_exec = timed(lambda: subprocess.run(["/bin/true"], check=True), args.sandboxes)
        bwrap_times = timed(lambda: subprocess.run(bwrap, check=True), args.sandboxes)

        ids = []
        creates = timed(lambda: ids.append(node.call("POST", "/v1/sandboxes", {})["id"]), args.sandboxes)
        report("create→ready", creates, "bwrap --unshare-all true", bwrap_times)
        sid = ids[0]
        shell = timed(lambda: node.call("POST", f"/v1/sandboxes/{sid}/shell", {"cmd": "true"}), 200)
        report("shell `true` round trip", shell, "fork+exec /bin/true", fork_exec)
        deletes = timed(lambda: node.call("DELETE", f"/v1/sandboxes/{ids.pop()}"), len(ids))
        print(f"{'delete':<28} p50 {percentile(deletes, 50):8.2f} ms  p99 {percentile(deletes, 99):8.2f} ms")

        time.sleep(1)
        before = mem_available()
        idle = [node.call("POST", "/v1/sandboxes", {})["id"] for _ in range(args.idle)]
        time.sleep(2)
        after = mem_available()
        cgroup = []
        for i in idle:
            with open(f"/sys/fs/cgroup/memory/ai2in/{i}/memory.usage_in_bytes") as f:
                cgroup.append(int(f.read()))
        per = (before - after) / len(idle) / 2**20
        print(f"{'idle memory per sandbox':<28} {per:6.2f} MiB host (MemAvailable drop over {len(idle)}), "
              f"{statistics.mean(cgroup) / 2**20:.2f} MiB in its cgroup")
    finally:
        node.stop()


if __name__ == "__main__":
    sys.exit(main())

"""Shared parts of the ai2in benchmarks: a real node on a temporary state dir, timing,
percentiles, and the side-by-side report line (figure, baseline, ratio)."""
import json
import os
import shutil
import signal
import socket
import subprocess
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
    def __init__(self, binary, extra_config=""):
        self.dir = tempfile.mkdtemp(prefix="ai2in-bench-")
        self.url = f"http://127.0.0.1:{free_port()}"
        config = os.path.join(self.dir, "config.toml")
        with open(config, "w") as f:
            f.write("[quotas]\nsandboxes = 5000\nmemory_bytes = 10995116277760\ndatabases = 5000\n[capacity]\nsandboxes = 5000\ncpu = 100000.0\n" + extra_config)
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

    def call(self, method, path, body=None, timeout=60):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": "Bearer " + self.key, "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return json.loads(raw) if raw else None

    def stop(self):
        for s in self.call("GET", "/v1/sandboxes")["sandboxes"]:
            self.call("DELETE", f"/v1/sandboxes/{s['id']}")
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def ensure_tool(command, package):
    """Installs Debian's `package` when `command` is missing."""
    if not shutil.which(command):
        subprocess.run(["apt-get", "install", "-y", "-q", package], check=True, stdout=subprocess.DEVNULL)


def timed(fn, n):
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def release_binary():
    """The binary to measure: $AI2IN_BIN, else a fresh release build."""
    binary = os.environ.get("AI2IN_BIN")
    if binary:
        return binary
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "ai2in"], cwd=REPO, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
    return os.path.join(target, "x86_64-unknown-linux-gnu", "release", "ai2in")


def machine():
    mem = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") >> 30
    return f"machine: {os.cpu_count()} cores, {mem} GiB, kernel {os.uname().release}"


def mem_available():
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024


def report(name, ours, base_name, base, high=99):
    """One line: p50 and p`high` of `ours`, p50 of `base`, and the ratio of the p50s."""
    p50, ph, b50 = percentile(ours, 50), percentile(ours, high), percentile(base, 50)
    print(f"{name:<28} p50 {p50:8.2f} ms  p{high} {ph:8.2f} ms | {base_name:<34} p50 {b50:8.2f} ms | ratio {p50 / b50:5.2f}x")


def wait_pool(node, count, timeout=120):
    """Waits until `node` holds `count` sandboxes (its warm pool filled), then a second more
    for the pool's last starts to settle."""
    deadline = time.time() + timeout
    while len(os.listdir(os.path.join(node.dir, "sandboxes"))) < count and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1)


def cgroup_memory(node, sandbox_id):
    """The memory a sandbox's cgroup holds now (v1 or v2), in bytes; 0 when it has none."""
    for path in (f"/sys/fs/cgroup/memory/ai2in/{sandbox_id}/memory.usage_in_bytes",
                 f"/sys/fs/cgroup/ai2in/{sandbox_id}/memory.current"):
        if os.path.exists(path):
            with open(path) as f:
                return int(f.read())
    return 0

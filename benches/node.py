#!/usr/bin/env python3
"""Node benchmark: create→ready (cold, at 8 and 32 at once, and claimed from the warm pool),
create→first print(1), creates/s sustained with deletes, shell round trip and idle memory
per sandbox at 100 and 1,000 sandboxes, side by side with baselines measured in the same run
(bubblewrap, crun, a bare fork+exec).

Usage: sudo benches/node.py [--sandboxes N] [--idle N,N]
Builds the release binary unless AI2IN_BIN is set. Prints each figure, its baseline, and
the ratio. Installs bubblewrap and crun with apt-get when they are missing.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from harness import Node, ensure_tool, machine, mem_available, percentile, release_binary, report, timed


def concurrent_creates(node, threads, total):
    """Create latencies with `threads` clients at once (each sandbox deleted afterwards)."""
    latencies, ids, lock = [], [], threading.Lock()

    def client(n):
        for _ in range(n):
            t = time.perf_counter()
            sid = node.call("POST", "/v1/sandboxes", {})["id"]
            with lock:
                latencies.append((time.perf_counter() - t) * 1000)
                ids.append(sid)

    workers = [threading.Thread(target=client, args=(total // threads,)) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for sid in ids:
        node.call("DELETE", f"/v1/sandboxes/{sid}")
    return latencies


def sustained_rate(node, threads, seconds):
    """Creates per second while `threads` clients each create and delete in a loop."""
    count, lock, end = [0], threading.Lock(), time.time() + seconds

    def client():
        while time.time() < end:
            sid = node.call("POST", "/v1/sandboxes", {})["id"]
            node.call("DELETE", f"/v1/sandboxes/{sid}")
            with lock:
                count[0] += 1

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return count[0] / seconds


def pty_first_output(node, sid, n) -> list[float]:
    """A terminal started and its first output read through the WebSocket."""
    import websocket

    out = []
    for _ in range(n):
        t = time.perf_counter()
        pid = node.call("POST", f"/v1/sandboxes/{sid}/pty", {"cmd": "echo ready"})["pid"]
        ws = websocket.create_connection(f"{node.url.replace('http', 'ws')}/v1/sandboxes/{sid}/pty/{pid}/ws",
                                         header=[f"Authorization: Bearer {node.key}"], timeout=10)
        seen = b""
        while b"ready" not in seen:
            seen += ws.recv() or b""
        out.append((time.perf_counter() - t) * 1000)
        ws.close()
    return out


def local_pty_first_output(n) -> list[float]:
    """The same without ai2in: `sh -c 'echo ready'` started behind a PTY on this host."""
    out = []
    for _ in range(n):
        t = time.perf_counter()
        master, slave = os.openpty()
        sh = subprocess.Popen(["sh", "-c", "echo ready"], stdin=slave, stdout=slave, stderr=slave,
                              start_new_session=True)
        os.close(slave)
        seen = b""
        while b"ready" not in seen:
            seen += os.read(master, 4096)
        out.append((time.perf_counter() - t) * 1000)
        sh.wait()
        os.close(master)
    return out


def crun_bundle() -> str:
    """An OCI bundle running /bin/true that sees the host's /usr read-only, as a sandbox does,
    with the same namespaces (user, pid, mount, network, ipc, uts, cgroup)."""
    bundle = tempfile.mkdtemp(prefix="ai2in-bench-crun-")
    os.chmod(bundle, 0o755)  # the container's root is an unprivileged host uid
    rootfs = os.path.join(bundle, "rootfs")
    for d in ("usr", "proc", "sys", "dev", "tmp"):
        os.makedirs(os.path.join(rootfs, d))
    for link in ("bin", "lib", "lib64"):
        os.symlink(f"usr/{link}", os.path.join(rootfs, link))
    subprocess.run(["crun", "spec"], cwd=bundle, check=True)
    with open(os.path.join(bundle, "config.json")) as f:
        config = json.load(f)
    config["process"].update(args=["/bin/true"], terminal=False)
    config["root"]["readonly"] = True
    config["mounts"].append({"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro"]})
    config["linux"]["namespaces"] += [{"type": "user"}, {"type": "cgroup"}]
    ids = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    config["linux"].update(uidMappings=ids, gidMappings=ids)
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f)
    return bundle


def crun_times(n) -> list[float]:
    """`crun run` (create, start, wait, delete) of the bundle, n times. On a cgroup v1 hybrid
    host crun refuses to start while the controller-less v2 mount is visible: the runs happen
    in a private mount namespace without it."""
    bundle = crun_bundle()
    script = f"""
import json, os, subprocess, time
if os.path.ismount("/sys/fs/cgroup/unified"):
    subprocess.run(["umount", "/sys/fs/cgroup/unified"], check=True)
out = []
for i in range({n}):
    t = time.perf_counter()
    subprocess.run(["crun", "run", "-b", {bundle!r}, f"ai2in-bench-{{os.getpid()}}-{{i}}"], check=True)
    out.append((time.perf_counter() - t) * 1000)
print(json.dumps(out))
"""
    try:
        done = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, "-c", script],
                              check=True, capture_output=True, text=True)
        return json.loads(done.stdout)
    finally:
        shutil.rmtree(bundle)


def idle_memory(node, count):
    """Host memory per idle sandbox: the drop of MemAvailable over `count` new sandboxes."""
    time.sleep(1)
    before = mem_available()
    idle = [node.call("POST", "/v1/sandboxes", {})["id"] for _ in range(count)]
    time.sleep(2)
    after = mem_available()
    cgroup = []
    for i in idle:
        with open(f"/sys/fs/cgroup/memory/ai2in/{i}/memory.usage_in_bytes") as f:
            cgroup.append(int(f.read()))
    per = (before - after) / len(idle) / 2**20
    print(f"{f'idle memory, {count} sandboxes':<28} {per:6.2f} MiB host per sandbox (MemAvailable drop), "
          f"{statistics.mean(cgroup) / 2**20:.2f} MiB in its cgroup")
    for i in idle:
        node.call("DELETE", f"/v1/sandboxes/{i}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sandboxes", type=int, default=50, help="creates to time")
    ap.add_argument("--idle", default="100,1000", help="counts of idle sandboxes for the memory figures")
    args = ap.parse_args()
    binary = release_binary()
    ensure_tool("bwrap", "bubblewrap")
    ensure_tool("crun", "crun")

    print(machine())
    # The warm pool is measured on its own below; here every create starts a sandbox.
    node = Node(binary, "[pool]\nsize = 0\n")
    try:
        bwrap = ["bwrap", "--unshare-all", "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin",
                 "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64", "--proc", "/proc",
                 "--dev", "/dev", "--tmpfs", "/tmp", "true"]
        fork_exec = timed(lambda: subprocess.run(["/bin/true"], check=True), args.sandboxes)
        bwrap_times = timed(lambda: subprocess.run(bwrap, check=True), args.sandboxes)
        crun_run = crun_times(args.sandboxes)

        ids = []
        creates = timed(lambda: ids.append(node.call("POST", "/v1/sandboxes", {})["id"]), args.sandboxes)
        report("create→ready", creates, "bwrap --unshare-all true", bwrap_times)
        report("create→ready", creates, "crun run of true, same /usr", crun_run)
        sid = ids[0]
        shell = timed(lambda: node.call("POST", f"/v1/sandboxes/{sid}/shell", {"cmd": "true"}), 200)
        report("shell `true` round trip", shell, "fork+exec /bin/true", fork_exec)
        # The goal of a spawn: at most a plain authenticated GET + 1.5 × a local `sh -c true`.
        get = timed(lambda: node.call("GET", f"/v1/sandboxes/{sid}"), 200)
        sh_true = timed(lambda: subprocess.run(["/bin/sh", "-c", "true"], check=True), 200)
        goal = percentile(get, 50) + 1.5 * percentile(sh_true, 50)
        report("shell `true` round trip", shell, "GET + 1.5 × fork+exec sh -c true", [goal])
        starts = timed(lambda: node.call("POST", f"/v1/sandboxes/{sid}/commands", {"cmd": "true"}), 100)
        report("command start", starts, "GET + 1.5 × fork+exec sh -c true", [goal])
        report("terminal create→output", pty_first_output(node, sid, 50), "local PTY: spawn→output",
               local_pty_first_output(50))
        deletes = timed(lambda: node.call("DELETE", f"/v1/sandboxes/{ids.pop()}"), len(ids))
        print(f"{'delete':<28} p50 {percentile(deletes, 50):8.2f} ms  p99 {percentile(deletes, 99):8.2f} ms")

        def first_print():
            sid = node.call("POST", "/v1/sandboxes", {})["id"]
            out = node.call("POST", f"/v1/sandboxes/{sid}/run", {"code": "print(1)"})
            assert out["logs"]["stdout"] == ["1\n"], out
            ids.append(sid)
        report("create→first print(1)", timed(first_print, 10), "bwrap --unshare-all true", bwrap_times)
        for sid in ids:
            node.call("DELETE", f"/v1/sandboxes/{sid}")
        ids.clear()

        for threads in (8, 32):
            latencies = concurrent_creates(node, threads, max(args.sandboxes, threads * 2))
            report(f"create→ready, {threads} at once", latencies, "bwrap --unshare-all true", bwrap_times)
        rate = sustained_rate(node, threads=4, seconds=10)
        print(f"{'creates/s with deletes':<28} {rate:8.1f} per second sustained over 10 s (4 clients, each "
              f"creating then deleting)")

        for count in map(int, args.idle.split(",")):
            idle_memory(node, count)
    finally:
        node.stop()

    # The warm pool: creates claim sandboxes started ahead (the pool holds all of them).
    pooled = Node(binary, f"[pool]\nsize = {args.sandboxes}\n")
    try:
        deadline = time.time() + 120
        while len(os.listdir(os.path.join(pooled.dir, "sandboxes"))) < args.sandboxes and time.time() < deadline:
            time.sleep(0.2)
        claims = timed(lambda: pooled.call("POST", "/v1/sandboxes", {}), args.sandboxes)
        report("create→ready from the pool", claims, "bwrap --unshare-all true", bwrap_times)
        print(f"{'':<28} the same creates without the pool: p50 {percentile(creates, 50):8.2f} ms "
              f"(ratio {percentile(claims, 50) / percentile(creates, 50):5.2f}x)")
    finally:
        pooled.stop()


if __name__ == "__main__":
    sys.exit(main())

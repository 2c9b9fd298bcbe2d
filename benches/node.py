#!/usr/bin/env python3
"""Node benchmark: create→ready (cold, and claimed from the warm pool), shell round trip and
idle memory per sandbox, side by side with baselines measured in the same run (bubblewrap, a
bare fork+exec).

Usage: sudo benches/node.py [--sandboxes N] [--idle N]
Builds the release binary unless AI2IN_BIN is set. Prints each figure, its baseline, and
the ratio. Installs bubblewrap with apt-get when it is missing.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

from harness import Node, machine, mem_available, percentile, release_binary, report, timed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sandboxes", type=int, default=50, help="creates to time")
    ap.add_argument("--idle", type=int, default=100, help="idle sandboxes for the memory figure")
    args = ap.parse_args()
    binary = release_binary()
    if not shutil.which("bwrap"):
        subprocess.run(["apt-get", "install", "-y", "-q", "bubblewrap"], check=True, stdout=subprocess.DEVNULL)

    print(machine())
    # The warm pool is measured on its own below; here every create starts a sandbox.
    node = Node(binary, "[pool]\nsize = 0\n")
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
        for i in idle:
            node.call("DELETE", f"/v1/sandboxes/{i}")
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

#!/usr/bin/env python3
"""Storage benchmark: what sandboxes' own disks, volumes and snapshots cost, side by side with
baselines measured in the same run.

- create→ready (p50, p95) with the writable layer on a disk of the sandbox's own, against a
  node with `[storage] writable_layer = "tmpfs"` (the memory-backed layer of earlier
  versions); the two nodes run one after the other;
- warm-pool claims, likewise;
- a sequential write of 1 GiB with `dd conv=fsync` inside a sandbox (a fresh one per run, on
  its disk) against the same `dd` on the host's disk (the filesystem of the node's state
  directory, where the disks' files are), through the page cache and with `oflag=direct`
  (a sandbox's disk writes to its file with direct I/O, which some disks take much faster);
- a volume's creation against `mkfs.ext4` of a file of the same size by hand;
- create with one volume mounted against create without (alternated);
- a snapshot of a sandbox holding 100 MiB in 1,000 files against `cp -a` of the same tree on
  the host (page caches warm on both sides);
- create from that snapshot against create from `host` (alternated).

Usage: sudo benches/storage.py [--creates N] [--pooled N] [--pairs N] [--runs N] [--snapshots N]
Builds the release binary unless AI2IN_BIN is set. Needs loop devices and mkfs.ext4, like the
node's disks; takes about 3 GiB of the state directory's filesystem while it runs.
"""
import argparse
import os
import shutil
import subprocess
import sys
import time
import urllib.error

from harness import Node, machine, percentile, release_binary, report, wait_pool

MIB = 1 << 20
GIB = 1 << 30


def call(node, method, path, body=None, timeout=600):
    """`node.call`, with the answer's body in the error when it fails."""
    try:
        return node.call(method, path, body, timeout=timeout)
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{method} {path} → {e.code} {e.read().decode(errors='replace')}") from None


def node_with(binary, layer, pool=0):
    return Node(binary, f"[pool]\nsize = {pool}\n[storage]\nwritable_layer = \"{layer}\"\n")


def create(node, body=None):
    return call(node, "POST", "/v1/sandboxes", body or {})["id"]


def delete(node, sid):
    call(node, "DELETE", f"/v1/sandboxes/{sid}")


def sh(node, sid, cmd, timeout_ms=600_000):
    """Runs `cmd` in the sandbox; it must succeed. Its stdout."""
    out = call(node, "POST", f"/v1/sandboxes/{sid}/shell", {"cmd": cmd, "timeout_ms": timeout_ms},
               timeout=timeout_ms / 1000 + 30)
    if out["exit_code"] != 0:
        raise RuntimeError(f"{cmd!r} in {sid}: exit {out['exit_code']}: {out['stderr'][-2000:]}")
    return out["stdout"]


def create_latencies(node, n, body=None):
    """create→ready of `n` sandboxes, each deleted (untimed) before the next; three creates
    first, untimed, so that templates and spare disks of the size exist."""
    for _ in range(3):
        delete(node, create(node, body))
    out = []
    for _ in range(n):
        t = time.perf_counter()
        sid = create(node, body)
        out.append((time.perf_counter() - t) * 1000)
        delete(node, sid)
    return out


def pool_claims(binary, layer, n):
    """Claims of `n` sandboxes of the default shape from a pool of `n`, back to back."""
    node = node_with(binary, layer, pool=n)
    try:
        wait_pool(node, n)
        ids, out = [], []
        for _ in range(n):
            t = time.perf_counter()
            ids.append(create(node))
            out.append((time.perf_counter() - t) * 1000)
        for sid in ids:
            delete(node, sid)
        return out
    finally:
        node.stop()


def alternated_creates(node, first, second, pairs):
    """create→ready with the bodies `first` and `second` in turns, `pairs` times each, each
    sandbox deleted (untimed) before the next: (first's ms, second's ms)."""
    out = ([], [])
    for _ in range(pairs):
        for times, body in zip(out, (first, second)):
            t = time.perf_counter()
            sid = create(node, body)
            times.append((time.perf_counter() - t) * 1000)
            delete(node, sid)
    return out


def dd_command(path, mib, flags=""):
    return f"dd if=/dev/zero of={path} bs=1M count={mib} conv=fsync {flags} status=none"


def settle():
    """Lets the host's disk finish what the last run left (writeback, the freeing of a deleted
    file's blocks) before the next timed write."""
    os.sync()
    time.sleep(1)


def dd_runs(node, runs, mib):
    """`dd` of `mib` MiB inside a fresh sandbox (default disk) per run, and the same on the
    host's disk, through the page cache as in the sandbox, and with `oflag=direct` (the
    sandbox's disk writes to its file with direct I/O), in turns: (ms in the sandbox, ms on
    the host, ms on the host with direct I/O)."""
    inside, host, direct = [], [], []
    host_file = os.path.join(node.dir, "dd.bin")
    for _ in range(runs):
        sid = create(node)
        settle()
        try:
            t = time.perf_counter()
            sh(node, sid, dd_command("/home/user/dd.bin", mib))
            inside.append((time.perf_counter() - t) * 1000)
        finally:
            delete(node, sid)
        for times, flags in ((host, ""), (direct, "oflag=direct")):
            settle()
            t = time.perf_counter()
            subprocess.run(dd_command(host_file, mib, flags), shell=True, check=True)
            times.append((time.perf_counter() - t) * 1000)
            os.unlink(host_file)
        settle()
    return inside, host, direct


def volume_creates(node, runs, size):
    """POST /v1/volumes of `size` bytes against mkfs.ext4 of a sparse file of that size with
    the options the node uses."""
    ours, base = [], []
    scratch = os.path.join(node.dir, "mkfs.img")
    for i in range(runs):
        t = time.perf_counter()
        vid = call(node, "POST", "/v1/volumes", {"name": f"bench-create-{i}", "size_bytes": size})["id"]
        ours.append((time.perf_counter() - t) * 1000)
        call(node, "DELETE", f"/v1/volumes/{vid}")

        t = time.perf_counter()
        with open(scratch, "wb") as f:
            f.truncate(size)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", "-T", "default", "-E",
                        "lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0,nodiscard", scratch],
                       check=True)
        with open(scratch, "rb") as f:
            os.fsync(f.fileno())
        base.append((time.perf_counter() - t) * 1000)
        os.unlink(scratch)
    return ours, base


def fill_tree_in_sandbox(node, sid, files, size):
    sh(node, sid, f"mkdir -p /home/user/tree && cd /home/user/tree && i=0; "
                  f"while [ $i -lt {files} ]; do head -c {size} /dev/urandom > f$i; i=$((i+1)); done")
    return int(sh(node, sid, "du -sb /home/user/tree").split()[0])


def fill_tree_on_host(root, files, size):
    os.makedirs(root)
    for i in range(files):
        with open(os.path.join(root, f"f{i}"), "wb") as f:
            f.write(os.urandom(size))


def snapshots(node, sid, runs):
    """`runs` snapshots of the sandbox, timed: (ms, image ids)."""
    out, images = [], []
    for _ in range(runs):
        t = time.perf_counter()
        images.append(call(node, "POST", f"/v1/sandboxes/{sid}/snapshot", {})["id"])
        out.append((time.perf_counter() - t) * 1000)
    return out, images


def cp_runs(root, runs):
    out = []
    for i in range(runs):
        dst = f"{root}.copy{i}"
        t = time.perf_counter()
        subprocess.run(["cp", "-a", root, dst], check=True)
        out.append((time.perf_counter() - t) * 1000)
        shutil.rmtree(dst)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--creates", type=int, default=40, help="creates to time per node")
    ap.add_argument("--pooled", type=int, default=20, help="sandboxes pooled, then claimed back to back")
    ap.add_argument("--pairs", type=int, default=20, help="alternated creates: with/without a volume, "
                                                         "from a snapshot/from host")
    ap.add_argument("--runs", type=int, default=5, help="dd runs and volume creates")
    ap.add_argument("--snapshots", type=int, default=5, help="snapshots (and cp -a runs) to time")
    ap.add_argument("--dd-mib", type=int, default=1024, help="MiB each dd writes")
    ap.add_argument("--files", type=int, default=1000, help="files of the snapshotted tree")
    ap.add_argument("--tree-mib", type=int, default=100, help="MiB of the snapshotted tree")
    args = ap.parse_args()
    binary = release_binary()
    print(machine())

    node = node_with(binary, "tmpfs")
    try:
        tmpfs_creates = create_latencies(node, args.creates)
    finally:
        node.stop()

    node = node_with(binary, "disk")
    try:
        disk_creates = create_latencies(node, args.creates)
        report("create→ready, disk layer", disk_creates, "the same, tmpfs layer", tmpfs_creates, high=95)
        print(f"{'':<28} tmpfs layer p95 {percentile(tmpfs_creates, 95):8.2f} ms")

        inside, host, direct = dd_runs(node, args.runs, args.dd_mib)
        report(f"dd {args.dd_mib} MiB fsync, sandbox", inside, "the same dd on the host's disk", host)
        report(f"dd {args.dd_mib} MiB fsync, sandbox", inside, "the same dd, oflag=direct, host", direct)
        rate = lambda ms: args.dd_mib / (percentile(ms, 50) / 1000)  # noqa: E731
        print(f"{'':<28} {rate(inside):8.1f} MiB/s in the sandbox, {rate(host):8.1f} MiB/s on the host, "
              f"{rate(direct):8.1f} MiB/s with direct I/O")

        ours, base = volume_creates(node, args.runs, GIB)
        report("volume create, 1 GiB", ours, "mkfs.ext4 of a 1 GiB file", base)

        volume = call(node, "POST", "/v1/volumes", {"name": "bench", "size_bytes": GIB})["id"]
        body = {"volumes": [{"volume_id": volume, "path": "/data"}]}
        with_volume, without = alternated_creates(node, body, {}, args.pairs)
        report("create with 1 volume", with_volume, "create without", without, high=95)

        size = args.tree_mib * MIB // args.files
        sid = create(node)
        written = fill_tree_in_sandbox(node, sid, args.files, size)
        tree = os.path.join(node.dir, "tree")
        fill_tree_on_host(tree, args.files, size)
        print(f"(tree: {args.files} files, {written / MIB:.0f} MiB in the sandbox)")
        snaps, images = snapshots(node, sid, args.snapshots)
        report(f"snapshot, {args.tree_mib} MiB/{args.files} files", snaps, "cp -a of the same tree on the host",
               cp_runs(tree, args.snapshots))
        shutil.rmtree(tree)
        delete(node, sid)
        for image in images[1:]:
            call(node, "DELETE", f"/v1/images/{image}")

        from_snapshot, from_host = alternated_creates(node, {"image": images[0]}, {}, args.pairs)
        report("create from the snapshot", from_snapshot, "create from host", from_host, high=95)
        call(node, "DELETE", f"/v1/images/{images[0]}")
        call(node, "DELETE", f"/v1/volumes/{volume}")
    finally:
        node.stop()

    claims = {layer: pool_claims(binary, layer, args.pooled) for layer in ("tmpfs", "disk")}
    report("pool claim, disk layer", claims["disk"], "pool claim, tmpfs layer", claims["tmpfs"], high=95)
    print(f"{'':<28} tmpfs layer p95 {percentile(claims['tmpfs'], 95):8.2f} ms")


if __name__ == "__main__":
    sys.exit(main())

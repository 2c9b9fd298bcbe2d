#!/usr/bin/env python3
"""Images benchmark: pull + unpack of the mmdebstrap python image from a local registry
against `skopeo copy` to an OCI dir + `umoci unpack` of the same image; create→ready from a
cached image of 1, 4 and 32 layers against a `host` create; claims of an image's sandboxes
from the warm pool; idle host memory per sandbox of an image.

Usage: sudo benches/images.py [--creates N] [--idle N]
Builds the release binary unless AI2IN_BIN is set. The registry (Debian's docker-registry)
and the images (built with mmdebstrap, umoci and skopeo, cached on disk) come from the e2e
suite's fixtures.
"""
import argparse
import gzip
import os
import shutil
import subprocess
import sys
import tempfile
import time

from harness import REPO, Node, mem_available, percentile, release_binary, report

sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
import image_fixtures  # noqa: E402
import registry as reg  # noqa: E402


def pull_once(binary, ref):
    node = Node(binary, "[pool]\nsize = 0\n")
    try:
        t = time.perf_counter()
        image = node.call("POST", "/v1/images", {"ref": ref})
        return (time.perf_counter() - t) * 1000, image
    finally:
        node.stop()


def skopeo_umoci_once(host, name):
    work = tempfile.mkdtemp(prefix="ai2in-bench-oci-")
    try:
        t = time.perf_counter()
        subprocess.run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{host}/{name}:1",
                        f"oci:{work}/layout:1"], check=True)
        subprocess.run(["umoci", "unpack", "--image", f"{work}/layout:1", f"{work}/bundle"], check=True,
                       stdout=subprocess.DEVNULL)
        return (time.perf_counter() - t) * 1000
    finally:
        shutil.rmtree(work, ignore_errors=True)


def layered_image(host, count):
    """An image of `count` small layers, pushed to the registry: its ref."""
    base = image_fixtures.busybox()
    manifest = base.manifest()
    layers = [reg.tar_layer([reg.File(f"layer{i}/file", f"layer {i}\n".encode())]) for i in range(count - 1)]
    # The busybox layer (for a shell) at the bottom, then the small ones.
    busybox_tar = gzip.decompress(base._blob(manifest["layers"][0]["digest"]))
    reg.push_layers(host, f"layers{count}", "1", [busybox_tar] + layers)
    return f"{host}/layers{count}:1"


def create_latency(node, image, n):
    out = []
    for _ in range(n):
        t = time.perf_counter()
        sid = node.call("POST", "/v1/sandboxes", {"image": image})["id"]
        out.append((time.perf_counter() - t) * 1000)
        node.call("DELETE", f"/v1/sandboxes/{sid}")
    return out


def pool_claims(node, image, n):
    """Claims of `n` pooled sandboxes of `image`, back to back, as benches/node.py measures
    the pool: a first create records the demand, then the pool fills with `n` of them."""
    node.call("DELETE", "/v1/sandboxes/" + node.call("POST", "/v1/sandboxes", {"image": image})["id"])
    deadline = time.time() + 120
    while len(os.listdir(os.path.join(node.dir, "sandboxes"))) < n and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1)
    out, ids = [], []
    for _ in range(n):
        t = time.perf_counter()
        ids.append(node.call("POST", "/v1/sandboxes", {"image": image})["id"])
        out.append((time.perf_counter() - t) * 1000)
    for sid in ids:
        node.call("DELETE", f"/v1/sandboxes/{sid}")
    return out


def idle_memory(node, image, count):
    before = mem_available()
    ids = [node.call("POST", "/v1/sandboxes", {"image": image})["id"] for _ in range(count)]
    time.sleep(2)
    after = mem_available()
    for sid in ids:
        node.call("DELETE", f"/v1/sandboxes/{sid}")
    return (before - after) / count / 2**20


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--creates", type=int, default=40)
    ap.add_argument("--idle", type=int, default=100)
    ap.add_argument("--pooled", type=int, default=30, help="sandboxes pooled, then claimed back to back")
    args = ap.parse_args()
    binary = release_binary()
    with reg.Registry() as registry:
        refs = image_fixtures.push_all(registry, names=["busybox", "multilayer", "python"])

        ours, base = [], []
        for _ in range(3):
            ms, image = pull_once(binary, refs["python"])
            ours.append(ms)
            base.append(skopeo_umoci_once(registry.host, "python"))
        print(f"(python image: {image['layers']} layer(s), {image['size_bytes'] / 2**20:.0f} MiB unpacked)")
        report("pull+unpack python image", ours, "skopeo copy + umoci unpack", base)

        node = Node(binary, "[pool]\nsize = 0\n")
        try:
            images = {1: refs["busybox"], 4: refs["multilayer"], 32: layered_image(registry.host, 32)}
            for image in images.values():
                node.call("POST", "/v1/images", {"ref": image})
            host = create_latency(node, "host", args.creates)
            for layers, image in images.items():
                report(f"create, cached {layers}-layer image", create_latency(node, image, args.creates),
                       "create, host image", host)
            per = idle_memory(node, refs["python"], args.idle)
            per_host = idle_memory(node, "host", args.idle)
            print(f"{f'idle memory, {args.idle} sandboxes':<28} {per:6.2f} MiB host per python-image sandbox | "
                  f"host image {per_host:6.2f} MiB | ratio {per / per_host:5.2f}x")
        finally:
            node.stop()

        claims = {}
        for image in (refs["multilayer"], "host"):
            # One node per image, so that the pool holds sandboxes of that image alone.
            node = Node(binary, f"[pool]\nsize = {args.pooled}\n")
            try:
                node.call("POST", "/v1/images", {"ref": refs["multilayer"]})
                claims[image] = pool_claims(node, image, args.pooled)
            finally:
                node.stop()
        report("pool claim, 4-layer image", claims[refs["multilayer"]], "pool claim, host image", claims["host"])
        print(f"{'':<28} p90 {percentile(claims[refs['multilayer']], 90):8.2f} ms (target: ≤ 3 ms)")


if __name__ == "__main__":
    main()

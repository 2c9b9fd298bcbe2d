#!/usr/bin/env python3
"""Desktop benchmark: what a desktop sandbox costs, side by side with baselines measured in
the same run.

- create → display ready (the create answers once Xvfb accepts clients and openbox manages
  windows) against a plain create, both from the warm pool of the default shape and both
  cold (pool off);
- screenshot round trip at 1280×800 (GET …/desktop/screenshot: the agent's GetImage and PNG
  encoding, the node, HTTP) against the usual tools run inside the same sandbox on the same
  display, timed inside (no API round trip in them): ImageMagick's `import -window root`
  and `scrot`, each writing a PNG;
- mouse move and key press round trips (POST …/desktop/mouse, …/keyboard: 204 once the X
  server has processed the events) against a plain authenticated GET of the sandbox, and
  `xdotool mousemove` / `xdotool key` run inside, timed inside;
- idle host memory of a desktop sandbox: the drop of MemAvailable over 10 desktop sandboxes
  left idle, with their cgroups' memory, against 10 plain sandboxes.

Usage: sudo benches/desktop.py [--runs N]
Builds the release binary unless AI2IN_BIN is set. Installs xvfb, openbox, imagemagick,
scrot and xdotool with apt-get when missing.
"""
import argparse
import json
import sys
import time
import urllib.request

from harness import (Node, cgroup_memory, ensure_tool, machine, mem_available, percentile, release_binary, report,
                     timed, wait_pool)


def raw(node, method, path, body=None):
    """The status and body of a call (binary answers too)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(node.url + path, data=data, method=method, headers={
        "Authorization": "Bearer " + node.key, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.status, r.read()


def idle_memory(node, body, count):
    """MemAvailable drop per sandbox over `count` idle sandboxes made with `body`, and the
    mean memory of their cgroups (MiB)."""
    time.sleep(1)
    before = mem_available()
    ids = [node.call("POST", "/v1/sandboxes", body)["id"] for _ in range(count)]
    time.sleep(3)
    after = mem_available()
    cgroups = [cgroup_memory(node, i) for i in ids]
    for i in ids:
        node.call("DELETE", f"/v1/sandboxes/{i}")
    return (before - after) / count / (1 << 20), sum(cgroups) / len(cgroups) / (1 << 20)


def creates(node, body, runs):
    """Create → answer times of `runs` creates of `body`, each deleted (untimed) after."""
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        sbx = node.call("POST", "/v1/sandboxes", body)
        out.append((time.perf_counter() - t) * 1000)
        node.call("DELETE", f"/v1/sandboxes/{sbx['id']}")
    return out


def inside_ms(node, sid, cmd, runs):
    """How long `cmd` takes inside the sandbox, timed there (ms), `runs` times."""
    script = (f"for i in $(seq {runs}); do s=$(date +%s%N); {cmd} > /dev/null 2>&1; e=$(date +%s%N); "
              f"echo $(( (e - s) / 1000 )); done")
    res = node.call("POST", f"/v1/sandboxes/{sid}/shell", {"cmd": script, "timeout_ms": 300_000})
    values = [int(v) / 1000 for v in res["stdout"].split()]
    if len(values) != runs:
        raise RuntimeError(f"{cmd}: {res}")
    return values


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30, help="timed runs of each figure")
    args = ap.parse_args()
    binary = release_binary()
    for command, package in [("Xvfb", "xvfb"), ("openbox", "openbox"), ("import", "imagemagick"),
                             ("scrot", "scrot"), ("xdotool", "xdotool"), ("xterm", "xterm")]:
        ensure_tool(command, package)
    print(machine())

    # Creates: from the warm pool (the default shape; a desktop starts its display in the
    # claimed sandbox), then cold.
    pooled = Node(binary, "[pool]\nsize = 4\n")
    try:
        wait_pool(pooled, 4)
        creates(pooled, {"desktop": True}, 2)
        plain = creates(pooled, {}, args.runs)
        desktop = creates(pooled, {"desktop": True}, args.runs)
        report("desktop create, pool", desktop, "plain create, pool", plain, high=95)
        print(f"{'':<28} the display adds p50 {percentile(desktop, 50) - percentile(plain, 50):8.2f} ms "
              f"(goal: ≤ 300 ms)")
    finally:
        pooled.stop()

    node = Node(binary, "[pool]\nsize = 0\n")
    try:
        creates(node, {"desktop": True}, 2)
        plain = creates(node, {}, args.runs)
        desktop = creates(node, {"desktop": True}, args.runs)
        report("desktop create, cold", desktop, "plain create, cold", plain, high=95)
        print(f"{'':<28} the display adds p50 {percentile(desktop, 50) - percentile(plain, 50):8.2f} ms "
              f"(goal: ≤ 300 ms)")

        sbx = node.call("POST", "/v1/sandboxes", {"desktop": True, "memory_bytes": 1 << 30})
        sid, base = sbx["id"], f"/v1/sandboxes/{sbx['id']}"
        node.call("POST", f"{base}/desktop/launch", {"cmd": "xterm -geometry 100x30+50+50"})
        deadline = time.time() + 30
        while not node.call("GET", f"{base}/desktop/windows")["windows"] and time.time() < deadline:
            time.sleep(0.05)
        # Something on the screen that changes: a clock in the terminal.
        node.call("POST", f"{base}/desktop/keyboard", {"text": "while :; do date +%T.%N; sleep 0.1; done\n"})

        timed(lambda: raw(node, "GET", f"{base}/desktop/screenshot"), 3)
        shots = timed(lambda: raw(node, "GET", f"{base}/desktop/screenshot"), args.runs)
        size = len(raw(node, "GET", f"{base}/desktop/screenshot")[1])
        report("screenshot 1280x800, API", shots, "import -window root, inside",
               inside_ms(node, sid, "import -window root /tmp/shot.png", args.runs), high=95)
        report("", shots, "scrot, inside", inside_ms(node, sid, "scrot -o /tmp/shot.png", args.runs), high=95)
        print(f"{'':<28} PNG of {size / 1024:.0f} KiB (goal: ≤ 30 ms p50)")

        positions = iter(range(10**6))

        def move():
            i = next(positions)
            raw(node, "POST", f"{base}/desktop/mouse", {"action": "move", "x": 100 + i % 500, "y": 100 + i % 300})

        timed(move, 5)
        moves = timed(move, args.runs * 3)
        gets = timed(lambda: raw(node, "GET", base), args.runs * 3)
        report("mouse move, API", moves, "GET the sandbox", gets, high=95)
        report("", moves, "xdotool mousemove, inside",
               inside_ms(node, sid, "xdotool mousemove 300 300", args.runs), high=95)
        keys = timed(lambda: raw(node, "POST", f"{base}/desktop/keyboard", {"keys": ["shift"]}), args.runs * 3)
        report("key press, API", keys, "GET the sandbox", gets, high=95)
        report("", keys, "xdotool key shift, inside", inside_ms(node, sid, "xdotool key shift", args.runs), high=95)
        print(f"{'':<28} (goal: a mouse or key event ≤ 3 ms p50)")
        cursors = timed(lambda: raw(node, "GET", f"{base}/desktop/cursor"), args.runs * 3)
        report("cursor, API", cursors, "GET the sandbox", gets, high=95)
        node.call("DELETE", base)
        desktop_mem, cgroup = idle_memory(node, {"desktop": True}, 10)
        plain_mem, _ = idle_memory(node, {}, 10)
        print(f"{'idle memory, 10 desktops':<28} {desktop_mem:6.2f} MiB host per sandbox (MemAvailable drop; "
              f"goal ≤ 40 MiB), {cgroup:.2f} MiB in its cgroup | a plain sandbox {plain_mem:6.2f} MiB")
    finally:
        node.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

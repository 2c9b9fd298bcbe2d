#!/usr/bin/env python3
"""Network benchmark: what the network adds to create→ready (a node with the network off
as the baseline), the proxy against a direct connection to the same Node.js server (wrk,
same run: latency with one connection, throughput with eight),
and many sandboxes with network at once.

Usage: sudo benches/network.py [--creates N] [--concurrent N]
Builds the release binary unless AI2IN_BIN is set. Installs wrk with apt-get when missing.
"""
import argparse
import re
import subprocess
import sys
import time

from harness import Node, ensure_tool, machine, percentile, release_binary, report, timed

SERVER = """
require('http').createServer((req, res) => { res.end('hello from the sandbox\\n'); }).listen(8000, '0.0.0.0');
"""


def wrk(url, host=None, connections=8):
    """(latency p50 ms, requests/s) of a 5 s wrk run."""
    args = ["wrk", "-t1", f"-c{connections}", "-d5s", "--latency", url]
    if host:
        args[1:1] = ["-H", f"Host: {host}"]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    value, unit = re.search(r"50%\s+([\d.]+)(us|ms|s)", out).groups()
    p50 = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return p50, rps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--creates", type=int, default=50, help="creates to time")
    ap.add_argument("--concurrent", type=int, default=1000, help="sandboxes with network at once")
    args = ap.parse_args()
    binary = release_binary()
    ensure_tool("wrk", "wrk")
    print(machine())

    # No warm pool: every create here starts a sandbox.
    plain = Node(binary, "[network]\nenabled = false\n[pool]\nsize = 0\n")
    try:
        timed(lambda: plain.call("DELETE", f"/v1/sandboxes/{plain.call('POST', '/v1/sandboxes', {})['id']}"), 3)
        without = timed(lambda: plain.call("POST", "/v1/sandboxes", {}), args.creates)
    finally:
        plain.stop()

    node = Node(binary, "[pool]\nsize = 0\n")
    try:
        timed(lambda: node.call("DELETE", f"/v1/sandboxes/{node.call('POST', '/v1/sandboxes', {})['id']}"), 3)
        ids = []
        with_net = timed(lambda: ids.append(node.call("POST", "/v1/sandboxes", {})["id"]), args.creates)
        report("create→ready with network", with_net, "the same, network off", without)
        print(f"{'network set-up adds':<28} {percentile(with_net, 50) - percentile(without, 50):8.2f} ms at p50")
        for i in ids[1:]:
            node.call("DELETE", f"/v1/sandboxes/{i}")

        sid = ids[0]
        node.call("POST", f"/v1/sandboxes/{sid}/fs/write", {"path": "server.js", "content": SERVER})
        node.call("POST", f"/v1/sandboxes/{sid}/commands", {"cmd": "exec node /home/user/server.js"})
        url = node.call("POST", f"/v1/sandboxes/{sid}/expose", {"port": 8000})["url"]
        addr = node.call("POST", f"/v1/sandboxes/{sid}/shell", {"cmd": "ip -4 -o addr show dev eth0"})["stdout"]
        addr = re.search(r"inet (\S+)/", addr).group(1)
        time.sleep(1)
        host = url.split("//")[1].split(":")[0]
        # Latency with one connection (the proxy's own cost, no queueing); throughput with 8.
        for connections in (1, 8):
            direct = wrk(f"http://{addr}:8000/", connections=connections)
            proxied = wrk(f"{node.url}/", host=host, connections=connections)
            print(f"{f'proxy, {connections} connection(s)':<28} p50 {proxied[0]:6.3f} ms, {proxied[1]:6.0f} req/s | "
                  f"direct to the sandbox's address p50 {direct[0]:6.3f} ms, {direct[1]:6.0f} req/s | "
                  f"latency {proxied[0] / direct[0]:4.2f}x, throughput {100 * proxied[1] / direct[1]:4.1f}%")
        node.call("DELETE", f"/v1/sandboxes/{sid}")

        started = time.perf_counter()
        many = [node.call("POST", "/v1/sandboxes", {})["id"] for _ in range(args.concurrent)]
        took = time.perf_counter() - started
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout.count(" ai2-")
        probe = node.call("POST", f"/v1/sandboxes/{many[-1]}/shell", {"cmd": "ip -4 -o addr show dev eth0"})["stdout"]
        print(f"{'sandboxes with network':<28} {len(many)} running ({links} links on the host), created in {took:.1f} s; "
              f"the last one has {probe.split()[3] if probe else 'no address'}")
    finally:
        node.stop()


if __name__ == "__main__":
    sys.exit(main())

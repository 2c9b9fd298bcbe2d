#!/usr/bin/env python3
"""Hosting benchmark: what a service costs over the same server run by hand, side by side with
baselines measured in the same run.

- deploy → first 200 through the service's URL for `python3 -m http.server 8000` on the
  `host` image (the POST, the instance's sandbox, the server's own start, readiness, the
  route) against the server's own start time measured alone in a plain sandbox: a process
  in the sandbox starts the same server and requests its port in a tight loop until it
  answers 200, timing itself (no API round trip in the figure); the server's start on the
  host is printed too, for scale;
- requests through the service's URL (the node's proxy, with the service's Host header)
  against a direct connection to the same server run on the host (`python3 -m http.server`
  on a free port, same content, same run): wrk, latency (p50) with 1 connection and
  throughput with 8: `python3 -m http.server` as it is (HTTP/1.0: a connection per request,
  a log line per request, which the service's log takes in), then the same handler over
  HTTP/1.1 with connections kept alive, TCP_NODELAY and no request log (the proxy's cost
  alone; http.server's HTTP/1.1 without TCP_NODELAY waits on delayed ACKs, 40 ms a request);
- redeploy: time from the call until the new version answers through the URL, and how long
  the call itself takes, while a loop of requests runs through the URL the whole time,
  counting the requests that failed (the goal is 0); a fresh deploy's first 200 (above) is
  the reference.

Usage: sudo benches/hosting.py [--deploys N] [--redeploys N] [--seconds S]
Builds the release binary unless AI2IN_BIN is set. Installs wrk with apt-get when missing.
"""
import argparse
import http.client
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from harness import Node, ensure_tool, free_port, machine, percentile, release_binary, report

SERVICES = "/v1/hosting/services"
PAGE = "hello from the service"

# Started in a plain sandbox (and on the host): starts the server, requests its port until
# it answers 200, prints the milliseconds that took, and ends the server.
START_PROBE = r"""
import subprocess, sys, time, urllib.request
argv = [sys.executable, "-m", "http.server", "%(port)d", "--bind", "127.0.0.1"]
t = time.perf_counter()
server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
while True:
    try:
        if urllib.request.urlopen("http://127.0.0.1:%(port)d/", timeout=5).status == 200:
            break
    except OSError:
        time.sleep(0.001)
print((time.perf_counter() - t) * 1000)
server.terminate()
server.wait()
"""


def call(node, method, path, body=None, timeout=600):
    """`node.call`, with the answer's body in the error when it fails."""
    try:
        return node.call(method, path, body, timeout=timeout)
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{method} {path} → {e.code} {e.read().decode(errors='replace')}") from None


class Target:
    """Where to send requests for a URL: the node's address, with the URL's host as Host."""

    def __init__(self, node, url):
        node_addr = urlsplit(node.url)
        self.host, self.port = node_addr.hostname, node_addr.port
        self.host_header = urlsplit(url).netloc

    def get(self, timeout=5):
        """(status, body) of one GET / on a new connection."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request("GET", "/", headers={"Host": self.host_header})
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()


def deploy(node, name, cmd, **fields):
    body = {"name": name, "image": "host", "internal_port": 8000, "start_cmd": cmd, **fields}
    return call(node, "POST", SERVICES, body)


def delete_service(node, name):
    call(node, "DELETE", f"{SERVICES}/{name}")


def wait_for_200(target, deadline_s=120):
    deadline = time.perf_counter() + deadline_s
    while time.perf_counter() < deadline:
        try:
            if target.get()[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.001)
    raise RuntimeError(f"{target.host_header} did not answer 200 within {deadline_s} s")


def deploy_to_first_200(node, runs):
    """Deploy → first 200 through the URL, `runs` times, each service deleted (untimed) before
    the next; one untimed deploy first."""
    out = []
    for i in range(runs + 1):
        name = f"bench-start-{i}"
        t = time.perf_counter()
        svc = deploy(node, name, "exec python3 -m http.server 8000")
        wait_for_200(Target(node, svc["url"]))
        if i:
            out.append((time.perf_counter() - t) * 1000)
        delete_service(node, name)
    return out


def start_in_sandbox(node, runs):
    """The server's own start time, measured by a process in a plain sandbox (one sandbox,
    `runs` starts; one untimed start first)."""
    sid = call(node, "POST", "/v1/sandboxes", {})["id"]
    try:
        call(node, "POST", f"/v1/sandboxes/{sid}/fs/write",
             {"path": "/home/user/probe.py", "content": START_PROBE % {"port": 8000}})
        out = []
        for i in range(runs + 1):
            r = call(node, "POST", f"/v1/sandboxes/{sid}/shell",
                     {"cmd": "python3 /home/user/probe.py", "timeout_ms": 120_000})
            if r["exit_code"] != 0:
                raise RuntimeError(f"probe in the sandbox: exit {r['exit_code']}: {r['stderr'][-2000:]}")
            if i:
                out.append(float(r["stdout"].strip()))
        return out
    finally:
        call(node, "DELETE", f"/v1/sandboxes/{sid}")


def start_on_host(runs):
    probe = START_PROBE % {"port": free_port()}
    out = []
    for _ in range(runs):
        r = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True,
                           cwd=tempfile.gettempdir())
        out.append(float(r.stdout.strip()))
    return out


# The same handler, kept alive: argv port, directory = the working directory.
KEEPALIVE_SERVER = """
import http.server, sys
class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def wrk(url, host=None, connections=1, seconds=5):
    """(latency p50 ms, requests/s, errors) of a wrk run."""
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if host:
        args[1:1] = ["-H", f"Host: {host}"]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    value, unit = re.search(r"50%\s+([\d.]+)(us|ms|s)", out).groups()
    p50 = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Socket errors: (.*)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    notes = ", ".join(x for x in (errors and f"socket errors {errors.group(1)}",
                                  non2xx and f"{non2xx.group(1)} non-2xx") if x)
    return p50, rps, notes


def proxied_vs_direct(node, seconds):
    """wrk through the service's URL against wrk to the same server on the host, for each
    kind of server and 1 and 8 connections."""
    root = tempfile.mkdtemp(prefix="ai2in-bench-www-")
    with open(os.path.join(root, "index.html"), "w") as f:
        f.write(PAGE + "\n")
    with open(os.path.join(root, "server.py"), "w") as f:
        f.write(KEEPALIVE_SERVER)
    cpu = float(os.cpu_count())  # as the host's server: no quota below the host's cores
    kinds = [
        ("python3 -m http.server (HTTP/1.0: a connection per request, a log line per request)",
         "exec python3 -m http.server 8000",
         lambda port: [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]),
        ("the same handler, HTTP/1.1 kept alive, TCP_NODELAY, no request log",
         f"cat > /tmp/server.py <<'EOF'\n{KEEPALIVE_SERVER}\nEOF\nexec python3 /tmp/server.py 8000",
         lambda port: [sys.executable, os.path.join(root, "server.py"), str(port)]),
    ]
    try:
        for i, (kind, cmd, host_argv) in enumerate(kinds):
            name = f"bench-wrk-{i}"
            svc = deploy(node, name, f"echo '{PAGE}' > index.html && {cmd}", cpu=cpu)
            target = Target(node, svc["url"])
            wait_for_200(target)
            port = free_port()
            server = subprocess.Popen(host_argv(port), cwd=root, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
            try:
                direct_url = f"http://127.0.0.1:{port}/"
                deadline = time.time() + 10
                while True:
                    try:
                        urllib.request.urlopen(direct_url, timeout=1).read()
                        break
                    except OSError:
                        if time.time() > deadline:
                            raise
                        time.sleep(0.01)
                print(f"({kind})")
                for connections in (1, 8):
                    direct = wrk(direct_url, connections=connections, seconds=seconds)
                    proxied = wrk(f"{node.url}/", host=target.host_header, connections=connections,
                                  seconds=seconds)
                    label = f"service URL, {connections} conn."
                    print(f"{label:<28} p50 {proxied[0]:6.3f} ms, {proxied[1]:6.0f} req/s | "
                          f"direct to the server on the host p50 {direct[0]:6.3f} ms, {direct[1]:6.0f} req/s | "
                          f"latency {proxied[0] / direct[0]:4.2f}x, throughput {100 * proxied[1] / direct[1]:5.1f}%")
                    for side, figures in (("service URL", proxied), ("direct", direct)):
                        if figures[2]:
                            print(f"{'':<28} {side}: {figures[2]}")
            finally:
                server.terminate()
                server.wait()
                delete_service(node, name)
    finally:
        shutil.rmtree(root, ignore_errors=True)


class Loop(threading.Thread):
    """Requests through a URL back to back, each on a new connection, until stopped: counts
    them and their failures, and notes when each answer was first seen."""

    def __init__(self, target):
        super().__init__(daemon=True)
        self.target, self.stopping = target, threading.Event()
        self.requests, self.failures, self.first_seen, self.errors = 0, 0, {}, []
        self.lock = threading.Lock()

    def run(self):
        while not self.stopping.is_set():
            try:
                status, body = self.target.get(timeout=30)
                ok = status == 200
                error = None if ok else f"HTTP {status}: {body[:200]!r}"
            except OSError as e:
                ok, body, error = False, b"", repr(e)
            now = time.perf_counter()
            with self.lock:
                self.requests += 1
                if ok:
                    self.first_seen.setdefault(body.strip().decode(errors="replace"), now)
                else:
                    self.failures += 1
                    self.errors.append(error)

    def seen(self, body):
        with self.lock:
            return self.first_seen.get(body)


def redeploys(node, runs):
    """`runs` redeploys with a new version each, under a request loop: (ms until the new
    version answered, ms the call took, the loop)."""
    name = "bench-redeploy"
    cmd = 'echo "$VERSION" > index.html && exec python3 -m http.server 8000'
    svc = deploy(node, name, cmd, env={"VERSION": "v0"})
    target = Target(node, svc["url"])
    wait_for_200(target)
    loop = Loop(target)
    loop.start()
    to_new, calls = [], []
    try:
        time.sleep(0.5)
        for i in range(1, runs + 1):
            version = f"v{i}"
            t = time.perf_counter()
            call(node, "POST", f"{SERVICES}/{name}/redeploy", {"env": {"VERSION": version}}, timeout=120)
            calls.append((time.perf_counter() - t) * 1000)
            deadline = time.perf_counter() + 30
            while loop.seen(version) is None:
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"{version} never answered after its redeploy")
                time.sleep(0.001)
            to_new.append((loop.seen(version) - t) * 1000)
            time.sleep(0.5)  # the old instance's stop, under the loop too
    finally:
        loop.stopping.set()
        loop.join()
        delete_service(node, name)
    return to_new, calls, loop


def stop(node):
    """Deletes the services left (their instances outlive the node), then stops the node."""
    try:
        for s in call(node, "GET", SERVICES)["services"]:
            delete_service(node, s["id"])
    finally:
        node.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--deploys", type=int, default=20, help="deploys (and server starts) to time")
    ap.add_argument("--redeploys", type=int, default=5, help="redeploys under the request loop")
    ap.add_argument("--seconds", type=int, default=5, help="length of each wrk run")
    args = ap.parse_args()
    binary = release_binary()
    ensure_tool("wrk", "wrk")
    print(machine())

    # No warm pool: a service's instance never comes from it, and the plain sandbox of the
    # baseline is made once, untimed.
    node = Node(binary, "[pool]\nsize = 0\n")
    try:
        in_sandbox = start_in_sandbox(node, args.deploys)
        first_200 = deploy_to_first_200(node, args.deploys)
        report("deploy → first 200, URL", first_200, "http.server's start, in a sandbox", in_sandbox, high=95)
        on_host = start_on_host(args.deploys)
        print(f"{'':<28} the service adds {percentile(first_200, 50) - percentile(in_sandbox, 50):8.2f} ms at p50 "
              f"(target: ≤ 50 ms); http.server's start on the host p50 {percentile(on_host, 50):8.2f} ms")

        proxied_vs_direct(node, args.seconds)

        to_new, calls, loop = redeploys(node, args.redeploys)
        report("redeploy → new version", to_new, "deploy → first 200 (above)", first_200, high=95)
        print(f"{'':<28} the call answered after p50 {percentile(calls, 50):8.2f} ms; "
              f"{loop.requests} requests during {args.redeploys} redeploys, {loop.failures} failed (target: 0)")
        for error in loop.errors[:5]:
            print(f"{'':<28} failed: {error}")
    finally:
        stop(node)
    return 1 if loop.failures else 0


if __name__ == "__main__":
    sys.exit(main())

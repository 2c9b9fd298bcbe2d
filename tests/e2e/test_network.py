"""Sandbox network: egress through NAT (or none), the isolation rules the kernel enforces,
address reuse without leaks, and live metrics (issue 5).

The "outside" is a network namespace the test makes behind a veth on the host: a host on
the node's non-loopback side, with an HTTP server and a UDP listener."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from e2e_util import MIB, random_token, wait_until


def sh(cmd: str) -> str:
    return subprocess.run(cmd, shell=True, check=True, capture_output=True, text=True).stdout


# http.server's own start looks up the host's name, which waits for DNS that the test
# namespace cannot reach: a plain TCPServer serves the directory without it.
HTTP = "import functools, http.server, socketserver, sys; socketserver.TCPServer.allow_reuse_address = True; " \
       "socketserver.ThreadingTCPServer((sys.argv[1], int(sys.argv[2])), functools.partial(" \
       "http.server.SimpleHTTPRequestHandler, directory=sys.argv[3])).serve_forever()"


class Outside:
    """A network namespace behind a veth, with an HTTP server on :8080 and a UDP listener
    on :9999 that logs `source data` lines."""

    def __init__(self):
        self.procs: list[subprocess.Popen] = []
        self.routes: list[str] = []
        self.name = "ai2t" + random_token(6).lower()
        try:
            self.start()
        except BaseException:
            self.close()
            raise

    def start(self):
        n = random.randint(1, 250)
        self.host_if, self.ns_if = self.name + "h", self.name + "n"
        self.host_ip, self.ip = f"198.18.{n}.1", f"198.18.{n}.2"
        self.dir = tempfile.mkdtemp(prefix="ai2in-outside-")
        Path(self.dir, "marker.txt").write_text("reached the outside\n")
        self.udp_log = Path(self.dir, "udp.log")
        sh(f"ip netns add {self.name}")
        sh(f"ip link add {self.host_if} type veth peer name {self.ns_if} netns {self.name}")
        sh(f"ip addr add {self.host_ip}/30 dev {self.host_if} && ip link set {self.host_if} up")
        ns = f"ip netns exec {self.name}"
        sh(f"{ns} ip link set lo up && {ns} ip addr add {self.ip}/30 dev {self.ns_if} && "
           f"{ns} ip link set {self.ns_if} up && {ns} ip route add default via {self.host_ip}")
        self.spawn(f"{ns} python3 -c '{HTTP}' {self.ip} 8080 {self.dir}")
        udp = (f"import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',9999))\n"
               f"while True:\n d,a=s.recvfrom(2048)\n open('{self.udp_log}','a').write(a[0]+' '+d.decode(errors='replace')+'\\n')\n")
        self.spawn(f"{ns} python3 -c \"{udp}\"")
        wait_until(lambda: self.reachable(self.ip, 8080), 10, "the outside HTTP server did not start")

    def spawn(self, cmd: str):
        self.procs.append(subprocess.Popen(cmd, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                           start_new_session=True))

    def reachable(self, ip, port) -> bool:
        r = subprocess.run(["ip", "netns", "exec", self.name, "python3", "-c",
                            f"import socket; socket.create_connection(('{ip}', {port}), 1)"], capture_output=True)
        return r.returncode == 0

    def add_service(self, ip: str, port: int):
        """Serves HTTP at `ip:port` too, routed from the host through this namespace."""
        sh(f"ip netns exec {self.name} ip addr add {ip}/32 dev {self.ns_if}")
        sh(f"ip route add {ip}/32 via {self.ip}")
        self.routes.append(ip)
        self.spawn(f"ip netns exec {self.name} python3 -c '{HTTP}' {ip} {port} {self.dir}")
        wait_until(lambda: self.reachable(ip, port), 10, f"no server at {ip}:{port}")

    def close(self):
        for p in self.procs:
            try:
                os.killpg(p.pid, 9)
            except ProcessLookupError:
                pass
            p.wait()
        for ip in self.routes:
            subprocess.run(["ip", "route", "del", f"{ip}/32"], capture_output=True)
        subprocess.run(["ip", "link", "del", self.name + "h"], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        if getattr(self, "dir", None):
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def outside():
    o = Outside()
    yield o
    o.close()


def py(node, sid, code: str, user="user", timeout_ms=20000) -> dict:
    """Runs Python code in the sandbox; returns the shell result."""
    return node.sh(sid, "python3 -", stdin=code, user=user, timeout_ms=timeout_ms)


def fetch(node, sid, url) -> str:
    """GETs `url` from inside the sandbox: the body, or `ERROR <exception>`."""
    code = ("import urllib.request\n"
            "try:\n"
            f"    print(urllib.request.urlopen({url!r}, timeout=3).read().decode(), end='')\n"
            "except Exception as e:\n"
            "    print('ERROR', repr(e))\n")
    return py(node, sid, code)["stdout"]


def connect(node, sid, host, port) -> str:
    """Opens a TCP connection from inside the sandbox: `connected` or `ERROR <exception>`."""
    code = ("import socket\n"
            "try:\n"
            f"    socket.create_connection(({host!r}, {port}), 3).close(); print('connected')\n"
            "except Exception as e:\n"
            "    print('ERROR', repr(e))\n")
    return py(node, sid, code)["stdout"].strip()


def sandbox_addr(node, sid) -> tuple[str, str]:
    """(the sandbox's address, its gateway) as routed inside."""
    out = node.run(sid, "ip -4 -o addr show dev eth0; ip -4 route show default")
    addr = re.search(r"inet (\S+)/31", out).group(1)
    gateway = re.search(r"default via (\S+)", out).group(1)
    return addr, gateway


def host_addr() -> str:
    """The host's own global IPv4 address (its uplink)."""
    out = sh("ip -4 -o addr show scope global")
    for line in out.splitlines():
        name, addr = line.split()[1], line.split()[3].split("/")[0]
        if not name.startswith(("ai2", "ai2t")):
            return addr
    pytest.skip("the host has no global IPv4 address")


class Listener:
    """A TCP listener on the host that counts the connections it accepts."""

    def __init__(self, bind: str):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((bind, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            c.close()

    def close(self):
        self.sock.close()


# -- egress -----------------------------------------------------------------------------------


def test_egress_is_allowed_by_default_and_denied_on_request(node, outside):
    allowed = node.create_sandbox()
    assert allowed["network"] == {"egress": "allow"}
    denied = node.create_sandbox(network={"egress": "deny"})
    assert denied["network"] == {"egress": "deny"}
    try:
        url = f"http://{outside.ip}:8080/marker.txt"
        assert fetch(node, allowed["id"], url) == "reached the outside\n"
        started = time.monotonic()
        assert fetch(node, denied["id"], url).startswith("ERROR")
        # Refused at once by the kernel, not left to time out.
        assert time.monotonic() - started < 2.5
        assert node.get(f"/v1/sandboxes/{denied['id']}").json()["network"] == {"egress": "deny"}
    finally:
        node.delete_sandbox(allowed["id"])
        node.delete_sandbox(denied["id"])


def test_a_bad_network_setting_is_400(node):
    r = node.post("/v1/sandboxes", json={"network": {"egress": "sometimes"}})
    assert r.status_code == 400 and "egress" in r.json()["error"]


def test_sandboxes_resolve_names_with_the_hosts_name_servers(node, sandbox):
    resolv = node.run(sandbox["id"], "cat /etc/resolv.conf")
    for line in open("/etc/resolv.conf"):
        words = line.split()
        if words[:1] == ["nameserver"] and not words[1].startswith("127."):
            assert f"nameserver {words[1]}" in resolv


# -- isolation rules ----------------------------------------------------------------------------


def test_a_sandbox_cannot_reach_another_sandbox_nor_be_reached_from_outside(node, outside):
    a, b = node.create_sandbox(), node.create_sandbox()
    try:
        b_addr, _ = sandbox_addr(node, b["id"])
        r = node.post(f"/v1/sandboxes/{b['id']}/commands", json={"cmd": "exec python3 -m http.server 8000"})
        assert r.status_code == 200
        wait_until(lambda: connect(node, b["id"], "127.0.0.1", 8000) == "connected", 10, "b's server")
        # a has a working network (control), but nothing of b.
        assert fetch(node, a["id"], f"http://{outside.ip}:8080/marker.txt") == "reached the outside\n"
        assert connect(node, a["id"], b_addr, 8000).startswith("ERROR")
        # Nor can a host outside open a connection into b.
        assert not outside.reachable(b_addr, 8000)
    finally:
        node.delete_sandbox(a["id"])
        node.delete_sandbox(b["id"])


def test_a_sandbox_cannot_reach_the_host_its_addresses_or_its_loopback_services(node, sandbox, outside):
    sid = sandbox["id"]
    _, gateway = sandbox_addr(node, sid)
    public, local = Listener("0.0.0.0"), Listener("127.0.0.1")
    try:
        # Control: a host outside reaches the host's service.
        assert outside.reachable(outside.host_ip, public.port)
        for target in (host_addr(), gateway, outside.host_ip):
            assert connect(node, sid, target, public.port).startswith("ERROR"), target
        # The node's API listens on the host's loopback: out of reach, as every loopback service.
        assert connect(node, sid, "127.0.0.1", local.port).startswith("ERROR")
        assert connect(node, sid, gateway, node.port).startswith("ERROR")
        assert public.accepted == 1 and local.accepted == 0
    finally:
        public.close()
        local.close()


def test_a_sandbox_cannot_reach_cloud_metadata_addresses(node, sandbox, outside):
    outside.add_service("169.254.169.254", 80)
    # Control: the host itself reaches it, so only the rule stands in the sandbox's way.
    assert outside.reachable("169.254.169.254", 80)
    out = fetch(node, sandbox["id"], "http://169.254.169.254/marker.txt")
    assert out.startswith("ERROR"), out


SEND_UDP = r'''
import socket, struct, sys
def checksum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
def send(src, dst, payload):
    udp = struct.pack("!HHHH", 40000, 9999, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, socket.inet_aton(src), socket.inet_aton(dst))
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.sendto(ip + udp, (dst, 0))
'''


def test_a_sandbox_cannot_spoof_its_source_address(node, sandbox, outside):
    sid = sandbox["id"]
    addr, _ = sandbox_addr(node, sid)
    code = SEND_UDP + (f"for i in range(3):\n"
                       f"    send({addr!r}, {outside.ip!r}, b'honest')\n"
                       f"    send('192.0.2.77', {outside.ip!r}, b'spoofed')\n"
                       f"    send({outside.host_ip!r}, {outside.ip!r}, b'spoofed-host')\n")
    res = py(node, sid, code, user="root")
    assert res["exit_code"] == 0, res
    wait_until(lambda: outside.udp_log.exists() and "honest" in outside.udp_log.read_text(), 5,
               "the honest datagram did not arrive")
    time.sleep(0.5)
    log = outside.udp_log.read_text()
    assert "spoofed" not in log, log
    # The honest ones left with the address of the host's interface they left by (NAT).
    assert f"{outside.host_ip} honest" in log.splitlines(), log


# -- addresses and leaks ----------------------------------------------------------------------


def links_of(pool: str) -> list[str]:
    return re.findall(rf"^\d+: (ai2-{pool}-\d+)[@:]", sh("ip -o link"), re.M)


def settled_links(pool: str) -> list[str]:
    """The pool's links once the removals running in the background are done: unchanged for
    half a second (a slot is reused only after the kernel has acknowledged its removal)."""
    seen: list[list[str]] = []

    def stable():
        seen.append(links_of(pool))
        return len(seen) > 1 and seen[-1] == seen[-2]
    wait_until(stable, 15, lambda: f"links still changing: {seen[-2:]}", interval=0.5)
    return seen[-1]


def test_addresses_are_reused_after_many_cycles_without_leaks(node):
    pool = Path(node.state_dir, "network-pool").read_text().strip()
    links_before = settled_links(pool)
    rules_before = sh(f"nft -a list table inet ai2in-{pool}").count("handle")
    first = node.create_sandbox()
    first_addr, _ = sandbox_addr(node, first["id"])
    node.delete_sandbox(first["id"])
    for _ in range(1000):
        sid = node.create_sandbox()["id"]
        node.delete_sandbox(sid)
    assert settled_links(pool) == links_before
    assert sh(f"nft -a list table inet ai2in-{pool}").count("handle") == rules_before
    again = node.create_sandbox()
    try:
        assert sandbox_addr(node, again["id"])[0] == first_addr
    finally:
        node.delete_sandbox(again["id"])


def test_a_node_without_network_runs_sandboxes_with_loopback_only(node_factory):
    n = node_factory(config="[network]\nenabled = false\n")
    sbx = n.create_sandbox()
    out = n.run(sbx["id"], "ip -o link")
    assert "eth0" not in out and "lo" in out


# -- metrics ----------------------------------------------------------------------------------


def metrics(node, sid) -> dict:
    r = node.get(f"/v1/sandboxes/{sid}/metrics")
    assert r.status_code == 200, r.text
    return r.json()


def test_metrics_rise_under_load(node, outside):
    sid = node.create_sandbox(cpu=1.0, memory_bytes=512 * MIB)["id"]
    try:
        idle = metrics(node, sid)
        assert set(idle) == {"timestamp", "cpu_count", "cpu_used_pct", "mem_used_bytes", "mem_limit_bytes",
                             "disk_used_bytes", "disk_limit_bytes", "pids", "net_rx_bytes", "net_tx_bytes"}
        assert idle["cpu_count"] == 1 and idle["mem_limit_bytes"] == 512 * MIB
        assert idle["cpu_used_pct"] < 50
        load = ("import time\nx = bytearray(150 * 1024 * 1024)\nfor i in range(0, len(x), 4096): x[i] = 1\n"
                "end = time.time() + 60\nwhile time.time() < end: pass\n")
        node.post(f"/v1/sandboxes/{sid}/fs/write", json={"path": "load.py", "content": load})
        node.post(f"/v1/sandboxes/{sid}/commands", json={"cmd": "exec python3 /home/user/load.py"})
        node.run(sid, "head -c 20000000 /dev/urandom > /home/user/blob")
        assert fetch(node, sid, f"http://{outside.ip}:8080/marker.txt") == "reached the outside\n"

        def loaded():
            m = metrics(node, sid)
            return m["cpu_used_pct"] > 50 and m["mem_used_bytes"] > idle["mem_used_bytes"] + 140 * MIB
        wait_until(loaded, 20, lambda: f"metrics did not rise: {metrics(node, sid)}")
        busy = metrics(node, sid)
        assert busy["pids"] > idle["pids"]
        assert busy["disk_used_bytes"] >= idle["disk_used_bytes"] + 19_000_000
        assert busy["net_rx_bytes"] > idle["net_rx_bytes"] and busy["net_tx_bytes"] > idle["net_tx_bytes"]
    finally:
        node.delete_sandbox(sid)


def test_node_metrics_in_prometheus_format_for_admins_only(node, sandbox):
    r = node.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    running = int(re.search(r'^ai2in_sandboxes\{status="running"\} (\d+)$', text, re.M).group(1))
    assert running >= 1
    assert int(re.search(r"^ai2in_sandbox_create_seconds_count (\d+)$", text, re.M).group(1)) >= 1
    assert re.search(r'^ai2in_http_requests_total\{method="POST",route="/v1/sandboxes",status="201"\} \d+$', text, re.M)
    reader = node.create_key(["sandboxes:read"])
    assert node.get("/metrics", key=reader["key"]).status_code == 403

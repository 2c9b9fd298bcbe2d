"""Exposed ports through the node's proxy: HTTP/1.1 and HTTP/2, streaming, Server-Sent
Events, WebSocket, large uploads, a real browser, and clear errors (issue 5)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import zlib
from pathlib import Path

import pytest
import requests
import websocket

from conftest import serve_refused
from e2e_util import MIB, wait_until

# A WebSocket echo server on the Python standard library only (the sandbox sees the host's
# /usr, which has no WebSocket package) on the sandbox's loopback, port 8765: handshake, then
# text/binary frames echoed back; a connection that closes early (a readiness probe) ends.
WS_ECHO = r'''
import base64, hashlib, socket, struct, threading
def serve(c):
    req = b""
    while b"\r\n\r\n" not in req:
        chunk = c.recv(4096)
        if not chunk:
            c.close(); return
        req += chunk
    key = [l.split(b":", 1)[1].strip() for l in req.split(b"\r\n") if l.lower().startswith(b"sec-websocket-key")][0]
    accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    f = c.makefile("rb")
    while True:
        head = f.read(2)
        if len(head) < 2:
            return
        b0, b1 = head
        n = b1 & 127
        if n == 126: n = struct.unpack(">H", f.read(2))[0]
        elif n == 127: n = struct.unpack(">Q", f.read(8))[0]
        mask = f.read(4)
        data = bytes(x ^ mask[i % 4] for i, x in enumerate(f.read(n)))
        if b0 & 15 == 8:
            return
        out = bytes([0x80 | (b0 & 15)]) + (bytes([n]) if n < 126 else bytes([126]) + struct.pack(">H", n))
        c.sendall(out + data)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 8765)); s.listen()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
'''

# Server-Sent Events: five events 300 ms apart; and an upload endpoint that answers the
# SHA-256 of what it received.
APP = r'''
import hashlib, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        for i in range(5):
            self.wfile.write(f"data: tick {i}\n\n".encode())
            self.wfile.flush()
            time.sleep(0.3)
        self.close_connection = True
    def do_POST(self):
        n = int(self.headers["Content-Length"])
        h = hashlib.sha256()
        while n:
            chunk = self.rfile.read(min(n, 1 << 20))
            h.update(chunk)
            n -= len(chunk)
        body = (h.hexdigest() + " " + self.headers.get("Host", "") + " " + self.headers.get("X-Forwarded-Proto", "")).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
ThreadingHTTPServer(("0.0.0.0", 9000), H).serve_forever()
'''


def start(node, sid, cmd, port) -> str:
    """Starts `cmd` in the background, waits until something listens on `port`; returns the
    command's id."""
    r = node.post(f"/v1/sandboxes/{sid}/commands", json={"cmd": cmd})
    assert r.status_code == 200, r.text
    probe = f"python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}), 1)'"
    wait_until(lambda: node.sh(sid, probe)["exit_code"] == 0, 15, f"nothing listens on {port}")
    return r.json()["command_id"]


def expose(node, sid, port) -> str:
    r = node.post(f"/v1/sandboxes/{sid}/expose", json={"port": port})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["port"] == port
    # The id without its `sbx_` (underscores are not valid in DNS names).
    assert body["url"] == f"http://{port}-{sid.removeprefix('sbx_')}.localhost:{node.port}/"
    return f"{port}-{sid.removeprefix('sbx_')}.localhost"


def get(node, host, path="/", **kw):
    return requests.get(node.url + path, headers={"Host": host, **kw.pop("headers", {})}, timeout=30, **kw)


def curl(node, host, path="/", *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "20", "--resolve", f"{host}:{node.port}:127.0.0.1", *args, f"http://{host}:{node.port}{path}"],
        capture_output=True, text=True)


def test_http_server_is_served_over_http1_and_http2_also_on_loopback_only(node, sandbox):
    sid = sandbox["id"]
    node.run(sid, "mkdir -p /home/user/site && echo 'hello from the sandbox' > /home/user/site/index.html")
    start(node, sid, "cd /home/user/site && exec python3 -m http.server 8000", 8000)
    start(node, sid, "cd /home/user/site && exec python3 -m http.server 8001 --bind 127.0.0.1", 8001)
    for port in (8000, 8001):
        host = expose(node, sid, port)
        r = curl(node, host)
        assert r.returncode == 0 and r.stdout == "hello from the sandbox\n", r
        r = curl(node, host, "/", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_version} %{http_code}")
        assert r.stdout == "2 200", r
    # Host names are case-insensitive: browsers lowercase them anyway.
    assert get(node, f"8000-{sid}.LOCALHOST:{node.port}").text == "hello from the sandbox\n"
    # The older form, with the full id, keeps working.
    assert get(node, f"8000-{sid}.localhost").text == "hello from the sandbox\n"


def test_unknown_unexposed_silent_and_paused_ports_answer_clearly(node, sandbox):
    sid = sandbox["id"]
    r = get(node, f"8000-{sid}.localhost")
    assert r.status_code == 404 and "expose" in r.json()["error"]
    r = get(node, "8000-sbx_doesnotexist0000000.localhost")
    assert r.status_code == 404
    host = expose(node, sid, 8002)
    r = get(node, host)
    assert r.status_code == 502 and "nothing listens on port 8002" in r.json()["error"]
    start(node, sid, "exec python3 -m http.server --protocol HTTP/1.1 8002", 8002)
    assert get(node, host).status_code == 200
    # A kept-alive connection is cut by the pause: its next request gets the 409 too.
    session = requests.Session()
    assert session.get(node.url + "/", headers={"Host": host}, timeout=10).status_code == 200
    assert node.post(f"/v1/sandboxes/{sid}/pause").status_code == 200
    try:
        r = get(node, host)
        assert r.status_code == 409 and "paused" in r.json()["error"]
        r = session.get(node.url + "/", headers={"Host": host}, timeout=10)
        assert r.status_code == 409, r.text
    finally:
        assert node.post(f"/v1/sandboxes/{sid}/resume").status_code == 200
    assert get(node, host).status_code == 200
    assert session.get(node.url + "/", headers={"Host": host}, timeout=10).status_code == 200
    # Not a proxy host: the API answers (and wants a key).
    assert requests.get(node.url + "/v1/sandboxes", headers={"Host": "example.com"}).status_code == 401


def test_bad_expose_requests_are_400(node, sandbox):
    sid = sandbox["id"]
    for body in ({"port": 0}, {"port": 70000}, {"port": "http"}, {}):
        r = node.post(f"/v1/sandboxes/{sid}/expose", json=body)
        assert r.status_code == 400 and "port" in r.json()["error"], (body, r.text)


def test_server_sent_events_arrive_as_they_are_sent(node, sandbox):
    sid = sandbox["id"]
    node.post(f"/v1/sandboxes/{sid}/fs/write", json={"path": "app.py", "content": APP})
    start(node, sid, "exec python3 /home/user/app.py", 9000)
    host = expose(node, sid, 9000)
    arrivals = []
    with get(node, host, "/events", stream=True) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
        # Byte by byte, so that the client's own buffering cannot hide the proxy's.
        for line in r.iter_lines(chunk_size=1):
            if line.startswith(b"data:"):
                arrivals.append((line.decode(), time.monotonic()))
    assert [a[0] for a in arrivals] == [f"data: tick {i}" for i in range(5)]
    # Buffered until the end, they would all arrive at once.
    assert arrivals[-1][1] - arrivals[0][1] > 0.8, arrivals


def test_large_upload_reaches_the_sandbox_whole(node, sandbox):
    sid = sandbox["id"]
    node.post(f"/v1/sandboxes/{sid}/fs/write", json={"path": "app.py", "content": APP})
    start(node, sid, "exec python3 /home/user/app.py", 9000)
    host = expose(node, sid, 9000)
    data = os.urandom(24 * MIB)
    # As a TLS front in front of the node would send it: its header passes through.
    r = requests.post(node.url + "/upload", data=data, headers={"Host": host, "X-Forwarded-Proto": "https"}, timeout=60)
    assert r.status_code == 200, r.text
    digest, seen_host, proto = r.text.split(" ")
    assert digest == hashlib.sha256(data).hexdigest()
    assert seen_host == host and proto == "https"


def test_websocket_echo_through_the_proxy(node, sandbox):
    sid = sandbox["id"]
    node.post(f"/v1/sandboxes/{sid}/fs/write", json={"path": "ws.py", "content": WS_ECHO})
    start(node, sid, "exec python3 /home/user/ws.py", 8765)
    host = expose(node, sid, 8765)
    ws = websocket.create_connection(f"ws://127.0.0.1:{node.port}/socket", host=host, timeout=10)
    try:
        for message in ["hello", "x" * 5000, "ünïcode ✓"]:
            ws.send(message)
            assert ws.recv() == message
    finally:
        ws.close()
    # The same upgrade on a connection whose first request went to the API (served request
    # by request rather than joined): a raw client, one masked text frame.
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as c:
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert b'"ok"' in read_until(c, b'"ok"}')
        key = base64.b64encode(os.urandom(16))
        c.sendall(b"GET /socket HTTP/1.1\r\nHost: " + host.encode() + b"\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n\r\n")
        assert read_until(c, b"\r\n\r\n").startswith(b"HTTP/1.1 101")
        mask, payload = os.urandom(4), b"over the slow path"
        c.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        assert read_until(c, payload) == bytes([0x81, len(payload)]) + payload


def read_until(conn, end: bytes) -> bytes:
    data = b""
    while not data.endswith(end):
        chunk = conn.recv(4096)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return data


def png_is_blank(path) -> bool:
    """Whether a PNG's decoded scanlines hold a single repeated value (a blank page)."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    pixels = zlib.decompress(idat)
    return len(set(pixels)) <= 2


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is installed by .ci/run")
def test_headless_chromium_renders_a_page_served_from_the_sandbox(node, sandbox):
    sid = sandbox["id"]
    page = ("<html><body style='background:#1565c0;color:#ffeb3b;font:64px sans-serif'>"
            "<h1>served from a sandbox</h1><div style='background:#e53935;width:300px;height:200px'></div>"
            "</body></html>")
    node.run(sid, "mkdir -p /home/user/site")
    node.post(f"/v1/sandboxes/{sid}/fs/write", json={"path": "site/index.html", "content": page})
    server = start(node, sid, "cd /home/user/site && exec python3 -m http.server 8000", 8000)
    host = expose(node, sid, 8000)
    out = tempfile.mkdtemp(prefix="ai2in-chromium-")
    try:
        shot = os.path.join(out, "shot.png")
        subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={out}/profile", "--window-size=800,600", f"--screenshot={shot}",
             f"http://{host}:{node.port}/"],
            capture_output=True, timeout=90)
        assert os.path.exists(shot), "chromium wrote no screenshot"
        assert not png_is_blank(shot)
        # The page came through the proxy: the sandbox's server logged the browser's request.
        logs = node.post(f"/v1/sandboxes/{sid}/commands/{server}/logs").json()
        assert '"GET / HTTP/1.1" 200' in logs["stderr"], logs
    finally:
        shutil.rmtree(out, ignore_errors=True)


# Answers each request with its headers as JSON (keep-alive).
HEADERS_APP = r'''
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("0.0.0.0", 8100), H).serve_forever()
'''


def raw_get(conn: socket.socket, host: str, path: str = "/", extra: str = "") -> bytes:
    """One keep-alive GET on `conn` (answers with a Content-Length); the answer's body."""
    conn.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        more = conn.recv(65536)
        assert more, f"the connection closed; got {data!r}"
        data += more
    head, body = data.split(b"\r\n\r\n", 1)
    length = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
    while len(body) < length:
        body += conn.recv(65536)
    return body


def seen_headers(conn: socket.socket, host: str, extra: str = "") -> dict:
    """The headers HEADERS_APP saw for one GET on `conn`."""
    return json.loads(raw_get(conn, host, extra=extra))


def test_exposed_ports_get_x_forwarded_headers_on_both_paths(node, sandbox):
    sid = sandbox["id"]
    node.post(f"/v1/sandboxes/{sid}/fs/write", json={"path": "h.py", "content": HEADERS_APP})
    start(node, sid, "exec python3 /home/user/h.py", 8100)
    host = expose(node, sid, 8100)
    # The fast path: a connection whose first request names the port, every request of it.
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as conn:
        for _ in range(3):
            seen = seen_headers(conn, host)
            assert seen["x-forwarded-for"] == "127.0.0.1", seen
            assert seen["x-forwarded-proto"] == "http" and seen["x-forwarded-host"] == host, seen
            assert seen["host"] == host
        # A client's own X-Forwarded-For is kept, the client appended: it cannot hide.
        seen = seen_headers(conn, host, extra="X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\n")
        assert seen["x-forwarded-for"] == "203.0.113.7, 127.0.0.1" and seen["x-forwarded-proto"] == "https", seen
    # The HTTP server's path: a connection that began with an API call.
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as conn:
        raw_get(conn, "api", "/healthz")
        seen = seen_headers(conn, host)
        assert seen["x-forwarded-for"] == "127.0.0.1" and seen["x-forwarded-host"] == host, seen


def test_the_fast_path_runs_on_every_core(node):
    names = [Path(f"/proc/{node.proc.pid}/task/{t}/comm").read_text().strip()
             for t in os.listdir(f"/proc/{node.proc.pid}/task")]
    assert sum(n.startswith("ai2in-proxy") for n in names) == os.cpu_count(), names


def test_a_joined_connection_idle_past_the_timeout_is_cut(node_factory):
    node = node_factory("[proxy]\nidle_timeout_ms = 1500\n")
    sid = node.create_sandbox()["id"]
    node.post(f"/v1/sandboxes/{sid}/fs/write", json={"path": "h.py", "content": HEADERS_APP})
    start(node, sid, "exec python3 /home/user/h.py", 8100)
    host = expose(node, sid, 8100)
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as busy, \
            socket.create_connection(("127.0.0.1", node.port), timeout=10) as quiet:
        seen_headers(busy, host)
        seen_headers(quiet, host)
        # Requests every 0.5 s keep one alive past three timeouts; the other says nothing.
        for _ in range(9):
            time.sleep(0.5)
            assert seen_headers(busy, host)["host"] == host
        assert quiet.recv(1) == b"", "the idle connection is still open"


def test_an_idle_timeout_under_a_second_stops_the_node(tmp_path):
    stderr = serve_refused("[proxy]\nidle_timeout_ms = 10\n", tmp_path)
    assert "[proxy] idle_timeout_ms" in stderr, stderr

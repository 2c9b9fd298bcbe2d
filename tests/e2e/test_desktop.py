"""Desktop sandboxes end to end (issue 16): a real X server (Xvfb) and window manager (openbox)
in the sandbox, driven through the API the way a computer-use agent drives it — real programs
(xterm) launched on the display, clicked, typed into and dragged around; screenshots checked
as PNGs (header, size, colours, pixels decoded by ImageMagick) and read back by OCR
(`tesseract`); the live view opened in a real browser (headless Chromium driven over the
DevTools protocol, noVNC's own page) and spoken to as a raw RFB client over its websocket
(VNC authentication, key and pointer events), view-only or not; pause, resume, delete, the
warm pool, metrics; the API's errors, scopes and tenants.

What is checked is what a user of the desktop observes: a file written by a command that was
*typed* into xterm (read back through `/shell`), what the screen shows (pixels, OCR), where
the pointer is, the window list against what the window manager did. Nothing is mocked; an
assertion fails when the display, the input or the view does not work.

Tests that need a clean screen get a fresh desktop sandbox each (`desktop`, created in a
fraction of a second); checks that do not touch the screen share one per module (`shared`).
Everything a test creates is deleted at its end.

The contract: /tmp/brief/desktop.md; wire types in crates/api/src/desktop.rs.
test_desktop_security.py attacks the display's isolation.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import signal
import struct
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
import zlib

import pytest
import requests
import websocket  # websocket-client

from e2e_util import (
    MIB,
    assert_gone_from_host,
    processes_in_sandbox_cgroup,
    random_token,
    wait_until,
)
from test_pool import pooled_ids, wait_for_pool
from test_pty import create as create_pty, read_until as pty_read_until
from test_storage import error_of

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Letters that OCR of xterm's 10x20 font does not confuse with digits or with each other (no
# I/L/1, O/D/Q/0, S/5, Z/2, B/8, G/6, U/V, W/H, M/N).
OCR_SAFE = "ACEFHKPRTXY"
# xterm with a big bitmap font (needs no fontconfig), its title fixed.
XTERM = "xterm -fn 10x20 -xrm 'XTerm*allowTitleOps: false'"
# xterm's inner border and the cell of its 10x20 font.
BORDER, CELL_W, CELL_H = 2, 10, 20
# (method, route after …/desktop, body) of every desktop route.
DESKTOP_ROUTES = [
    ("GET", "", None),
    ("GET", "/screenshot", None),
    ("GET", "/cursor", None),
    ("GET", "/windows", None),
    ("POST", "/mouse", {"action": "move", "x": 10, "y": 10}),
    ("POST", "/keyboard", {"keys": ["Return"]}),
    ("POST", "/launch", {"cmd": "true"}),
    ("POST", "/stream", {}),
    ("DELETE", "/stream", None),
]
WRITE_ROUTES = [r for r in DESKTOP_ROUTES if r[0] != "GET"]
READ_ROUTES = [r for r in DESKTOP_ROUTES if r[0] == "GET"]

needs_chromium = pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is installed by .ci/run")


# ---------------------------------------------------------------------------------------------
# the API (test_desktop_security.py uses these too)


def path(sid: str, route: str = "") -> str:
    return f"/v1/sandboxes/{sid}/desktop{route}"


def call(node, method: str, sid: str, route: str, body=None, key=None) -> requests.Response:
    return node.request(method, path(sid, route), key=key, **({"json": body} if body is not None else {}))


def create_desktop(node, desktop=True, key=None, **body) -> dict:
    sbx = node.create_sandbox(key=key, desktop=desktop, **body)
    assert sbx["desktop"] is True, f"a desktop create answered desktop={sbx['desktop']!r}: {sbx}"
    return sbx


def info(node, sid: str, key=None) -> dict:
    r = call(node, "GET", sid, "", key=key)
    assert r.status_code == 200, f"GET {path(sid)} → {r.status_code} {r.text}"
    return r.json()


def screenshot(node, sid: str, key=None) -> bytes:
    r = call(node, "GET", sid, "/screenshot", key=key)
    assert r.status_code == 200, f"GET {path(sid, '/screenshot')} → {r.status_code} {r.text[:300]}"
    assert r.headers.get("content-type", "").startswith("image/png"), (
        f"a screenshot came as {r.headers.get('content-type')!r}, not image/png")
    assert r.content[:8] == PNG_MAGIC, f"a screenshot is not a PNG: {r.content[:16]!r}"
    return r.content


def windows(node, sid: str, key=None) -> list[dict]:
    r = call(node, "GET", sid, "/windows", key=key)
    assert r.status_code == 200, f"GET {path(sid, '/windows')} → {r.status_code} {r.text}"
    ws = r.json()["windows"]
    for w in ws:
        assert set(w) == {"id", "title", "class", "x", "y", "width", "height", "focused"}, w
    return ws


def cursor(node, sid: str, key=None) -> tuple[int, int]:
    r = call(node, "GET", sid, "/cursor", key=key)
    assert r.status_code == 200, f"GET {path(sid, '/cursor')} → {r.status_code} {r.text}"
    c = r.json()
    return c["x"], c["y"]


def mouse(node, sid: str, key=None, **body) -> None:
    r = call(node, "POST", sid, "/mouse", body, key=key)
    assert r.status_code == 204, f"POST {path(sid, '/mouse')} {body} → {r.status_code} {r.text}"


def click(node, sid: str, x: int, y: int, **extra) -> None:
    mouse(node, sid, action="click", x=x, y=y, **extra)


def type_text(node, sid: str, text: str, key=None) -> None:
    r = call(node, "POST", sid, "/keyboard", {"text": text}, key=key)
    assert r.status_code == 204, f"typing {text!r} → {r.status_code} {r.text}"


def press(node, sid: str, *keys: str, key=None) -> None:
    r = call(node, "POST", sid, "/keyboard", {"keys": list(keys)}, key=key)
    assert r.status_code == 204, f"pressing {list(keys)} → {r.status_code} {r.text}"


def launch(node, sid: str, cmd: str, key=None, **extra) -> dict:
    r = call(node, "POST", sid, "/launch", {"cmd": cmd, **extra}, key=key)
    assert r.status_code == 201, f"POST {path(sid, '/launch')} {cmd!r} → {r.status_code} {r.text}"
    out = r.json()
    assert re.fullmatch(r"cmd_[0-9a-z]+", out["command_id"]) and out["pid"] > 1, out
    return out


def start_stream(node, sid: str, view_only: bool | None = None, key=None) -> dict:
    body = {} if view_only is None else {"view_only": view_only}
    r = call(node, "POST", sid, "/stream", body, key=key)
    assert r.status_code == 201, f"POST {path(sid, '/stream')} {body} → {r.status_code} {r.text}"
    s = r.json()
    assert set(s) == {"url", "password", "view_only"}, s
    assert s["view_only"] is bool(view_only), s
    assert re.fullmatch(r"[A-Za-z0-9]{8}", s["password"]), f"not an 8-character password: {s}"
    body_id = sid.removeprefix("sbx_")
    assert s["url"] == (f"http://6080-{body_id}.localhost:{node.port}/vnc.html?autoconnect=true&resize=scale"), (
        f"the stream's url is not the noVNC page on the sandbox's 6080 host: {s['url']}")
    return s


def window_titled(node, sid: str, title: str) -> dict | None:
    return next((w for w in windows(node, sid) if w["title"] == title), None)


def wait_window(node, sid: str, title: str, timeout: float = 20.0, **expect) -> dict:
    """Waits until a window titled `title` is listed (with the `expect`ed fields); returns it."""
    def found():
        w = window_titled(node, sid, title)
        return w if w and all(w[k] == v for k, v in expect.items()) else None

    return wait_until(found, timeout, lambda: f"no window {title!r} with {expect} on {sid}: {windows(node, sid)}")


def open_xterm(node, sid: str, title: str, geometry: str = "80x24+40+40", run: str | None = None,
               extra: str = "") -> dict:
    """Launches an xterm (10x20 font) titled `title` at `geometry` (running `run` before its
    shell, if given), waits for its window; returns the window."""
    cmd = f"{XTERM} {extra} -geometry {geometry} -T {title}"
    if run:
        cmd += f" -e bash -c '{run}; exec bash'"
    launch(node, sid, cmd)
    return wait_window(node, sid, title)


def center(w: dict) -> tuple[int, int]:
    return w["x"] + w["width"] // 2, w["y"] + w["height"] // 2


def cell(w: dict, col: int, row: int) -> tuple[int, int]:
    """The middle of character cell (`col`, `row`) of an xterm window of the 10x20 font."""
    return w["x"] + BORDER + col * CELL_W + CELL_W // 2, w["y"] + BORDER + row * CELL_H + CELL_H // 2


def file_text(node, sid: str, file: str) -> str | None:
    res = node.sh(sid, f"cat {file}")
    return res["stdout"] if res["exit_code"] == 0 else None


def wait_file(node, sid: str, file: str, content: str, timeout: float = 15.0) -> None:
    wait_until(lambda: file_text(node, sid, file) == content, timeout,
               lambda: f"{file} in {sid} does not hold {content!r}: {file_text(node, sid, file)!r}")


def cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def x_servers(sid: str) -> list[int]:
    """Host pids of the X servers in the sandbox's cgroup."""
    return [p for p in processes_in_sandbox_cgroup(sid) if cmdline(p).startswith(b"Xvfb\0")]


def ocr_word(n: int = 9) -> str:
    return "".join(secrets.choice(OCR_SAFE) for _ in range(n))


# ---------------------------------------------------------------------------------------------
# images: the PNG's header by hand, pixels by ImageMagick, text by tesseract


def png_header(png: bytes) -> dict:
    """IHDR of a PNG: width, height, bit depth, colour type (2 = RGB, 6 = RGBA)."""
    assert png[:8] == PNG_MAGIC, f"not a PNG: {png[:16]!r}"
    length, kind = struct.unpack(">I4s", png[8:16])
    assert kind == b"IHDR" and length == 13, f"the PNG does not start with IHDR: {png[8:40]!r}"
    width, height, depth, color = struct.unpack(">IIBB", png[16:26])
    crc = struct.unpack(">I", png[29:33])[0]
    assert crc == zlib.crc32(png[12:29]), "the PNG's IHDR has a bad CRC"
    return {"width": width, "height": height, "depth": depth, "color_type": color}


def rgb(png: bytes) -> bytes:
    """The pixels, 3 bytes each, rows top to bottom (decoded by ImageMagick)."""
    out = subprocess.run(["convert", "png:-", "-depth", "8", "rgb:-"], input=png, capture_output=True, timeout=60)
    assert out.returncode == 0, f"ImageMagick cannot decode the PNG: {out.stderr.decode()[:300]}"
    h = png_header(png)
    assert len(out.stdout) == h["width"] * h["height"] * 3, "the decoded PNG has a wrong number of pixels"
    return out.stdout


def colors(png: bytes) -> int:
    """The number of distinct colours (ImageMagick)."""
    out = subprocess.run(["identify", "-format", "%k", "png:-"], input=png, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()[:300]
    return int(out.stdout)


def region(png: bytes, w: dict) -> bytes:
    """The pixels of window `w` (its client area) in a screenshot."""
    width = png_header(png)["width"]
    pixels = rgb(png)
    rows = []
    for y in range(w["y"], w["y"] + w["height"]):
        start = (y * width + w["x"]) * 3
        rows.append(pixels[start:start + w["width"] * 3])
    return b"".join(rows)


def ocr(png: bytes, w: dict | None = None, scale: int = 1) -> str:
    """What tesseract reads in an image (in window `w` only, when given: cut out and framed
    in white, which tesseract reads best; enlarged `scale` times, which helps it with small
    terminal fonts)."""
    with tempfile.TemporaryDirectory(prefix="ai2in-ocr-") as d:
        file = os.path.join(d, "screen.png")
        with open(file, "wb") as f:
            f.write(png)
        if w is not None:
            cut = subprocess.run(["convert", file, "-crop", f"{w['width']}x{w['height']}+{w['x']}+{w['y']}",
                                  "+repage", "-bordercolor", "white", "-border", "20", file],
                                 capture_output=True, timeout=60)
            assert cut.returncode == 0, cut.stderr.decode()[:300]
        if scale > 1:
            big = subprocess.run(["convert", file, "-resize", f"{scale * 100}%", file],
                                 capture_output=True, timeout=60)
            assert big.returncode == 0, big.stderr.decode()[:300]
        out = subprocess.run(["tesseract", file, "-"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"tesseract failed: {out.stderr[-500:]}"
    return out.stdout


def squeezed(text: str) -> str:
    return re.sub(r"\s+", "", text).upper()


def shows(png: bytes, word: str) -> bool:
    """Whether OCR reads `word` in the image, but for at most one character misread (spaces
    OCR inserts are ignored), reading it again enlarged twice when it does not at first
    (tesseract misses lines of small fonts now and then). The words are random, 9 letters:
    another text on the screen does not come that close by chance."""
    word = word.upper()

    def found(text: str) -> bool:
        return any(sum(a != b for a, b in zip(word, text[i:i + len(word)])) <= 1
                   for i in range(len(text) - len(word) + 1))

    return found(squeezed(ocr(png))) or found(squeezed(ocr(png, scale=2)))


def wait_shown(node, sid: str, word: str, timeout: float = 20.0) -> bytes:
    """Waits until a screenshot shows `word` (OCR); returns that screenshot."""
    last = {}

    def seen():
        last["png"] = screenshot(node, sid)
        return shows(last["png"], word) and last["png"]

    return wait_until(seen, timeout,
                      lambda: f"the screen of {sid} never showed {word!r}; OCR read: "
                              f"{ocr(last['png'])[:600]!r}" if "png" in last else "no screenshot", interval=0.3)


def settled(node, sid: str, w: dict, timeout: float = 10.0) -> bytes:
    """Waits until window `w`'s pixels stay the same over two screenshots; returns them."""
    last = {"px": None}

    def same():
        px = region(screenshot(node, sid), w)
        stable, last["px"] = px == last["px"], px
        return stable and px

    return wait_until(same, timeout, f"window {w['title']} of {sid} never stopped changing", interval=0.2)


def wait_region(node, sid: str, w: dict, predicate, timeout: float, message: str) -> bytes:
    def check():
        px = region(screenshot(node, sid), w)
        return predicate(px) and px

    return wait_until(check, timeout, message, interval=0.2)


# ---------------------------------------------------------------------------------------------
# the live view: a raw RFB client over the stream's websocket, and headless Chromium


def vnc_response(password: str, challenge: bytes) -> bytes:
    """VNC authentication: DES (ECB) of the challenge under the password, 8 bytes, each byte's
    bits reversed (RFB 3.8, 7.2.2)."""
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    key = bytes(int(f"{b:08b}"[::-1], 2) for b in password.encode("latin-1")[:8].ljust(8, b"\0"))
    enc = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()  # K1 = K2 = K3: single DES
    return enc.update(challenge) + enc.finalize()


class RFB:
    """An RFB 3.8 client on the stream's websocket (websockify's /websockify through the
    node's proxy)."""

    def __init__(self, node, stream: dict, timeout: float = 10.0):
        host = urllib.parse.urlsplit(stream["url"]).netloc
        self.ws = websocket.create_connection(f"ws://127.0.0.1:{node.port}/websockify", host=host,
                                              subprotocols=["binary"], timeout=timeout)
        self.buf = b""
        self.security_types: list[int] = []
        self.size = (0, 0)
        self.bpp = 32

    def recv(self, n: int) -> bytes:
        while len(self.buf) < n:
            data = self.ws.recv()
            if not data:
                raise ConnectionError("the stream's websocket closed")
            self.buf += data if isinstance(data, bytes) else data.encode()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, data: bytes) -> None:
        self.ws.send_binary(data)

    def handshake(self, password: str) -> str | None:
        """Logs in with VNC authentication; None when the server accepts, else its reason."""
        version = self.recv(12)
        assert re.fullmatch(rb"RFB 003\.\d{3}\n", version), f"not an RFB server: {version!r}"
        self.send(b"RFB 003.008\n")
        n = self.recv(1)[0]
        if n == 0:
            return self.recv(struct.unpack(">I", self.recv(4))[0]).decode(errors="replace") or "refused"
        self.security_types = list(self.recv(n))
        if 2 not in self.security_types:
            return f"no VNC authentication offered: {self.security_types}"
        self.send(b"\x02")
        self.send(vnc_response(password, self.recv(16)))
        if struct.unpack(">I", self.recv(4))[0] != 0:
            reason = self.recv(struct.unpack(">I", self.recv(4))[0]).decode(errors="replace")
            return reason or "authentication failed"
        self.send(b"\x01")  # ClientInit: shared
        self.size = struct.unpack(">HH", self.recv(4))
        pixel_format = self.recv(16)
        self.bpp = pixel_format[0]
        self.name = self.recv(struct.unpack(">I", self.recv(4))[0]).decode(errors="replace")
        return None

    def key(self, keysym: int) -> None:
        self.send(struct.pack(">BBxxI", 4, 1, keysym) + struct.pack(">BBxxI", 4, 0, keysym))

    def type(self, text: str) -> None:
        for ch in text:
            self.key(0xFF0D if ch == "\n" else ord(ch))

    def pointer(self, x: int, y: int, buttons: int = 0) -> None:
        self.send(struct.pack(">BBHH", 5, buttons, x, y))

    def sync(self) -> None:
        """Asks for one pixel and reads the answer: the server has handled every message this
        client sent before (it reads them in order)."""
        self.send(struct.pack(">BBHHHH", 3, 0, 0, 0, 1, 1))
        while True:
            kind = self.recv(1)[0]
            if kind == 0:  # FramebufferUpdate
                self.recv(1)
                for _ in range(struct.unpack(">H", self.recv(2))[0]):
                    _x, _y, w, h, encoding = struct.unpack(">HHHHi", self.recv(12))
                    assert encoding == 0, f"unexpected encoding {encoding} (none was asked for)"
                    self.recv(w * h * self.bpp // 8)
                return
            if kind == 2:  # Bell
                continue
            if kind == 3:  # ServerCutText
                self.recv(3)
                self.recv(struct.unpack(">I", self.recv(4))[0])
                continue
            raise AssertionError(f"unexpected RFB server message {kind}")

    def closed_within(self, timeout: float) -> bool:
        """Whether the server closes the connection within `timeout` seconds (reading and
        dropping what it sends until then)."""
        self.ws.settimeout(timeout)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self.ws.settimeout(max(0.05, deadline - time.monotonic()))
                op, data = self.ws.recv_data(control_frame=True)
                if op == websocket.ABNF.OPCODE_CLOSE:
                    return True
        except websocket.WebSocketTimeoutException:
            return False
        except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
            return True
        return False

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001 - it may be gone
            pass


def rfb_login(node, stream: dict, password: str | None = None) -> RFB:
    client = RFB(node, stream)
    refused = client.handshake(password if password is not None else stream["password"])
    assert refused is None, f"the stream refused its own password: {refused}"
    return client


def page(node, url: str) -> tuple[int, str]:
    """GET through the node's proxy at `url`'s host: (status, body)."""
    parts = urllib.parse.urlsplit(url)
    r = requests.get(f"http://127.0.0.1:{node.port}{parts.path}?{parts.query}", headers={"Host": parts.netloc},
                     timeout=20)
    return r.status_code, r.text


class Browser:
    """Headless Chromium driven over the DevTools protocol (websocket-client)."""

    def __init__(self, width: int = 1280, height: int = 800):
        self.dir = tempfile.mkdtemp(prefix="ai2in-chromium-")
        self.proc = subprocess.Popen(
            ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-quic",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={self.dir}/profile", f"--window-size={width},{height}",
             "--remote-debugging-port=0", "--remote-allow-origins=*", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.ws = None
        try:
            port_file = os.path.join(self.dir, "profile", "DevToolsActivePort")

            def port():
                assert self.proc.poll() is None, f"chromium exited with {self.proc.returncode}"
                return int(open(port_file).read().split()[0])

            p = wait_until(port, 60, "chromium did not open its DevTools port")
            pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{p}/json/list", timeout=10))
            target = next(t for t in pages if t["type"] == "page")
            self.ws = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
            self.seq = 0
            self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                      mobile=False)
        except BaseException:
            self.close()
            raise

    def call(self, method: str, **params) -> dict:
        self.seq += 1
        self.ws.send(json.dumps({"id": self.seq, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.seq:
                assert "error" not in msg, f"DevTools {method}: {msg['error']}"
                return msg["result"]

    def eval(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def open_novnc(self, url: str, attempts: int = 3) -> None:
        """Opens noVNC's page and waits until its scripts ran (it left `noVNC_loading`).
        Chromium aborts requests in flight with ERR_NETWORK_CHANGED whenever a network
        interface of the host comes or goes — every sandbox created or deleted on the host
        adds or removes one — and a page whose module failed that way stays loading: it is
        loaded again then (a property of the browser on a busy host, not of the node)."""
        loaded = ("(() => { const s = document.getElementById('noVNC_status');"
                  " return !!s && !document.documentElement.classList.contains('noVNC_loading'); })()")
        for attempt in range(attempts):
            self.open(url)
            try:
                wait_until(lambda: self.eval(loaded) is True, 15, "noVNC's page did not load", interval=0.1)
                return
            except AssertionError:
                if attempt == attempts - 1:
                    raise

    def novnc_state(self) -> str:
        """noVNC's connection state (its class on <html>) and status text."""
        return str(self.eval("document.documentElement.className + ' | ' + "
                             "(document.getElementById('noVNC_status') || {}).textContent"))

    def wait_connected(self, timeout: float = 30.0) -> None:
        wait_until(lambda: "noVNC_connected" in self.novnc_state(), timeout,
                   lambda: f"noVNC did not connect: {self.novnc_state()}", interval=0.1)

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])

    def canvas(self) -> dict:
        """Where noVNC's canvas is on the page and its size in desktop pixels."""
        return json.loads(self.eval(
            "JSON.stringify((c => { const r = c.getBoundingClientRect();"
            " return {x: r.x, y: r.y, w: r.width, h: r.height, cw: c.width, ch: c.height}; })"
            "(document.querySelector('#noVNC_container canvas')))"))

    def click(self, x: float, y: float) -> None:
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y,
                      button="none" if kind == "mouseMoved" else "left", clickCount=1)

    def type(self, text: str) -> None:
        for ch in text:
            if ch == "\n":
                common = {"key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13}
                self.call("Input.dispatchKeyEvent", type="keyDown", text="\r", **common)
                self.call("Input.dispatchKeyEvent", type="keyUp", **common)
            else:
                self.call("Input.dispatchKeyEvent", type="keyDown", key=ch, text=ch)
                self.call("Input.dispatchKeyEvent", type="keyUp", key=ch)

    def close(self) -> None:
        if self.ws is not None:
            try:
                self.ws.close()
            except Exception:  # noqa: BLE001
                pass
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: chromium and its helpers
            except OSError:
                pass
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def shared(node):
    """One desktop sandbox for the tests that do not change its screen."""
    sbx = create_desktop(node, timeout_ms=1_800_000)
    yield sbx
    node.delete(f"/v1/sandboxes/{sbx['id']}")


@pytest.fixture
def desktop(node):
    """A fresh desktop sandbox (1280×800), deleted after the test."""
    sbx = create_desktop(node)
    yield sbx
    node.delete(f"/v1/sandboxes/{sbx['id']}")


@pytest.fixture
def browser():
    b = Browser()
    yield b
    b.close()


# ---------------------------------------------------------------------------------------------
# create: the display, its size, DISPLAY everywhere


def test_create_answers_once_the_display_serves_and_display_is_set_everywhere(node, desktop):
    sid = desktop["id"]
    # The create answered: the display accepts clients at once, the window manager manages it.
    out = node.sh(sid, "xdotool getdisplaygeometry && xprop -root _NET_SUPPORTING_WM_CHECK")
    assert out["exit_code"] == 0, f"the display does not serve right after the create: {out}"
    assert out["stdout"].splitlines()[0] == "1280 800", out
    assert "window id #" in out["stdout"], f"no window manager marks the root window: {out}"
    assert info(node, sid) == {"display": ":0", "width": 1280, "height": 800, "dpi": 96, "stream": None}
    got = node.get(f"/v1/sandboxes/{sid}").json()
    assert got["desktop"] is True, f"GET of a desktop sandbox says desktop={got.get('desktop')!r}"
    assert windows(node, sid) == [], "a fresh desktop already has windows"
    # DISPLAY=:0 in the shell, background commands, code runs and terminals.
    assert node.run(sid, "echo $DISPLAY") == ":0\n"
    r = node.post(f"/v1/sandboxes/{sid}/commands", json={"cmd": "echo command-display=$DISPLAY"})
    assert r.status_code in (200, 201), r.text
    cid = r.json()["command_id"]

    def command_out():
        return node.post(f"/v1/sandboxes/{sid}/commands/{cid}/logs").json()["stdout"]

    wait_until(lambda: "command-display=:0" in command_out(), 10,
               lambda: f"a background command's DISPLAY: {command_out()!r}")
    r = node.post(f"/v1/sandboxes/{sid}/run", json={"code": "import os; os.environ.get('DISPLAY')"})
    assert r.status_code == 200, r.text
    main = [x for x in r.json()["results"] if x["is_main_result"]]
    assert main and main[0]["data"]["text/plain"] == "':0'", f"DISPLAY in /run: {r.text}"
    pid = create_pty(node, sid, cmd="echo pty-display=$DISPLAY; sleep 5")
    pty_read_until(node, sid, pid, b"pty-display=:0")
    # A plain sandbox has none.
    plain = node.create_sandbox()
    assert plain["desktop"] is False, plain
    assert node.run(plain["id"], "echo \"[$DISPLAY]\"") == "[]\n"
    node.delete_sandbox(plain["id"])


def test_the_first_window_opens_at_once_after_the_create(node, desktop):
    """The create answers once the display serves: that includes the window manager, which
    every new window waits for. (A window manager still starting makes xterm wait 5 s, its
    timeout for the manager's answer, before it shows.)"""
    sid = desktop["id"]
    started = time.monotonic()
    r = node.sh(sid, f"{XTERM} -geometry 20x2+10+10 -e true")
    took = time.monotonic() - started
    assert r["exit_code"] == 0, f"xterm failed: {r}"
    assert took < 2.5, f"the first xterm right after the create took {took:.1f} s to map its window and exit"
    started = time.monotonic()
    node.sh(sid, f"{XTERM} -geometry 20x2+10+10 -e true")
    assert time.monotonic() - started < 2.5, "control: a second xterm is slow too"


def test_a_screen_of_another_size_and_dpi(node):
    sbx = create_desktop(node, {"width": 1024, "height": 768, "dpi": 144})
    sid = sbx["id"]
    try:
        assert info(node, sid) == {"display": ":0", "width": 1024, "height": 768, "dpi": 144, "stream": None}
        png = screenshot(node, sid)
        h = png_header(png)
        assert (h["width"], h["height"]) == (1024, 768), f"screenshot of a 1024×768 desktop is {h}"
        out = node.run(sid, "xdotool getdisplaygeometry; xdpyinfo | grep resolution")
        assert out.splitlines()[0] == "1024 768", out
        assert "144x144 dots per inch" in out, f"the X server does not run at 144 dpi: {out}"
        # Points must lie inside this screen.
        err = error_of(call(node, "POST", sid, "/mouse", {"action": "move", "x": 1024, "y": 0}), 400)
        assert "x 1024 is outside the screen (0 to 1023)" in err, err
        mouse(node, sid, action="move", x=1023, y=767)
        assert cursor(node, sid) == (1023, 767)
    finally:
        node.delete_sandbox(sid)


@pytest.mark.parametrize("desktop_body, field", [
    ({"width": 100}, "desktop.width"),
    ({"width": 3841}, "desktop.width"),
    ({"height": 239}, "desktop.height"),
    ({"height": 2161}, "desktop.height"),
    ({"dpi": 47}, "desktop.dpi"),
    ({"dpi": 385}, "desktop.dpi"),
    ({"width": -5}, "desktop.width"),
    ({"width": 70000}, "desktop.width"),
    ({"width": 1280, "depth": 24}, "desktop"),
    ("yes", "desktop"),
])
def test_bad_screens_answer_400_naming_the_field_and_create_nothing(node, desktop_body, field):
    before = set(os.listdir(os.path.join(node.state_dir, "sandboxes")))
    r = node.post("/v1/sandboxes", json={"desktop": desktop_body})
    err = error_of(r, 400, "invalid_request")
    assert field in err, f"create with desktop={desktop_body!r}: the error does not name {field}: {err}"
    assert set(os.listdir(os.path.join(node.state_dir, "sandboxes"))) <= before, "a rejected create left a sandbox"


# ---------------------------------------------------------------------------------------------
# typing into a real program


def test_typing_a_command_into_xterm_runs_it(node, desktop):
    sid = desktop["id"]
    out = launch(node, sid, f"{XTERM} -geometry 80x24+40+40")
    w = wait_until(lambda: next((w for w in windows(node, sid) if w["class"] == "XTerm"), None), 20,
                   lambda: f"xterm's window never appeared: {windows(node, sid)}")
    assert w["title"] == "xterm" and w["width"] == 80 * CELL_W + 2 * BORDER, f"unexpected xterm window {w}"
    # It is a background command of the sandbox: the command routes see it.
    listed = node.get(f"/v1/sandboxes/{sid}/commands").json()["commands"]
    assert out["command_id"] in json.dumps(listed), f"the launched command is not listed: {listed}"
    click(node, sid, *center(w))
    type_text(node, sid, "echo typed-by-the-agent > /tmp/f")
    assert file_text(node, sid, "/tmp/f") is None, "the command ran before Return was pressed"
    press(node, sid, "Return")
    wait_file(node, sid, "/tmp/f", "typed-by-the-agent\n")
    # A newline in text is the Return key too; characters of the shifted level come typed.
    type_text(node, sid, "echo 'A~B!C@D#E$F%G^H&I*J(K)L_M+N{O}P|Q:R\"S<T>U?' > /tmp/g\n")
    wait_file(node, sid, "/tmp/g", "A~B!C@D#E$F%G^H&I*J(K)L_M+N{O}P|Q:R\"S<T>U?\n")


def test_unicode_text_arrives_byte_exact(node, desktop):
    sid = desktop["id"]
    w = open_xterm(node, sid, "unicode")
    click(node, sid, *center(w))
    text = "héllo ✓ 中文 Ωμέγα Ĳ€"
    type_text(node, sid, f"printf %s '{text}' > /tmp/u")
    press(node, sid, "Return")
    wait_until(lambda: node.sh(sid, "test -f /tmp/u")["exit_code"] == 0, 15, "the typed printf never ran")
    got = node.sh(sid, "base64 -w0 /tmp/u")["stdout"]
    assert base64.b64decode(got) == text.encode(), (
        f"typed {text!r}, the file holds {base64.b64decode(got).decode(errors='replace')!r}")
    # The same characters again (their keys are mapped now), and a long text in one call.
    long_text = "ünïcödé→" * 200
    type_text(node, sid, f"printf %s '{text}{long_text}' > /tmp/v")
    press(node, sid, "Return")
    wait_until(lambda: node.sh(sid, "test -s /tmp/v")["exit_code"] == 0, 30, "the second printf never ran")
    got = base64.b64decode(node.sh(sid, "base64 -w0 /tmp/v")["stdout"])
    assert got == (text + long_text).encode(), f"typed {len(text + long_text)} characters, got {got[:200]!r}…"


# ---------------------------------------------------------------------------------------------
# screenshots


def test_screenshot_is_a_png_of_the_screen_that_shows_what_was_typed(node, desktop):
    sid = desktop["id"]
    blank = screenshot(node, sid)
    h = png_header(blank)
    assert (h["width"], h["height"], h["depth"]) == (1280, 800, 8) and h["color_type"] in (2, 6), (
        f"the screenshot's header is {h}, want 1280×800, 8 bits, RGB")
    w = open_xterm(node, sid, "ocr", "60x10+100+200")
    click(node, sid, *center(w))
    word = ocr_word()
    type_text(node, sid, f"echo {word[:4]}''{word[4:]}")  # the echo's output is the word whole
    press(node, sid, "Return")
    png = wait_shown(node, sid, word)
    assert colors(png) > 2, "the screenshot of a desktop with an xterm is (nearly) one colour"
    # The screen shows the window where the window list says it is: white xterm background
    # inside, the root window's black outside.
    pixels, width = rgb(png), 1280
    at = lambda x, y: pixels[(y * width + x) * 3:(y * width + x) * 3 + 3]  # noqa: E731
    assert at(w["x"] + w["width"] - 5, w["y"] + w["height"] - 5) == b"\xff\xff\xff", "xterm's inside is not white"
    assert at(1270, 790) == b"\x00\x00\x00", "the root window is not black where no window is"
    assert png != blank and colors(blank) <= 2, "an empty desktop is not a single colour"


# ---------------------------------------------------------------------------------------------
# the mouse


def test_a_click_focuses_the_window_under_it_and_keys_go_there(node, desktop):
    sid = desktop["id"]
    a = open_xterm(node, sid, "left-a", "40x8+40+100")
    b = open_xterm(node, sid, "right-b", "40x8+640+100")
    # The newest window has the focus.
    wait_window(node, sid, "right-b", focused=True)
    assert window_titled(node, sid, "left-a")["focused"] is False
    click(node, sid, *center(a))
    wait_window(node, sid, "left-a", focused=True)
    assert window_titled(node, sid, "right-b")["focused"] is False, f"two windows focused: {windows(node, sid)}"
    # Keys go to the focused window: its pixels change, the other's do not.
    before_a, before_b = settled(node, sid, a), settled(node, sid, b)
    type_text(node, sid, "echo focus")
    wait_region(node, sid, a, lambda px: px != before_a, 10, "typing into the focused window changed nothing")
    assert region(screenshot(node, sid), b) == before_b, "keys reached the window without the focus"
    click(node, sid, *center(b))
    wait_window(node, sid, "right-b", focused=True)
    assert window_titled(node, sid, "left-a")["focused"] is False


def test_dragging_the_title_bar_moves_the_window(node, desktop):
    sid = desktop["id"]
    w = open_xterm(node, sid, "dragged", "40x8+400+300")
    # The title bar is just above the client area.
    grab = (w["x"] + w["width"] // 2, w["y"] - 8)
    dx, dy = -250, -180
    mouse(node, sid, action="drag", x=grab[0], y=grab[1], to_x=grab[0] + dx, to_y=grab[1] + dy)
    assert cursor(node, sid) == (grab[0] + dx, grab[1] + dy), "the drag did not end where asked"

    def moved():
        now = window_titled(node, sid, "dragged")
        return abs(now["x"] - (w["x"] + dx)) <= 3 and abs(now["y"] - (w["y"] + dy)) <= 3 and now

    now = wait_until(moved, 10, lambda: f"dragging {w} by ({dx}, {dy}) left it at {window_titled(node, sid, 'dragged')}")
    assert (now["width"], now["height"]) == (w["width"], w["height"]), f"the drag resized the window: {now}"
    # The screen agrees: the window's pixels are now at its new place.
    png = screenshot(node, sid)
    pixels = rgb(png)
    inside = now["x"] + now["width"] - 4, now["y"] + now["height"] - 4
    old_corner = w["x"] + w["width"] - 4, w["y"] + w["height"] - 4
    px = lambda p: pixels[(p[1] * 1280 + p[0]) * 3:(p[1] * 1280 + p[0]) * 3 + 3]  # noqa: E731
    assert px(inside) == b"\xff\xff\xff", "no xterm pixels where the window list says it moved"
    assert px(old_corner) == b"\x00\x00\x00", "the window still shows at its old place"


def test_scrolling_up_in_xterm_shows_its_history_and_down_comes_back(node, desktop):
    sid = desktop["id"]
    w = open_xterm(node, sid, "scroller", "60x20+40+40")
    click(node, sid, *center(w))
    type_text(node, sid, "clear; seq 1 500; touch /tmp/seq-done\n")
    wait_until(lambda: node.sh(sid, "test -f /tmp/seq-done")["exit_code"] == 0, 15, "seq never ran")
    bottom = settled(node, sid, w)
    numbers = lambda png: [int(n) for n in re.findall(r"\b(\d{3})\b", ocr(png, w))]  # noqa: E731
    shown = numbers(screenshot(node, sid))
    assert 500 in shown, f"xterm does not show the end of seq's output: {shown}"
    mouse(node, sid, action="scroll", direction="up", amount=10, x=center(w)[0], y=center(w)[1])
    assert cursor(node, sid) == center(w), "scroll with x, y did not move the pointer there first"
    scrolled = wait_region(node, sid, w, lambda px: px != bottom, 10, "scrolling up did not change xterm's view")
    # The view shows earlier lines only (xterm scrolls 5 lines a wheel click).
    shown = numbers(screenshot(node, sid))
    assert shown and max(shown) < 500 - 20, f"scrolled up 10 clicks, OCR reads {shown}, not earlier lines"
    # Down again, where the pointer is (no x, y): back to the end.
    mouse(node, sid, action="scroll", amount=10)
    wait_region(node, sid, w, lambda px: px == bottom, 10, "scrolling down did not return to the end")
    assert scrolled != bottom


def test_move_puts_the_pointer_exactly_there(node, shared):
    sid = shared["id"]
    for x, y in [(0, 0), (1279, 799), (640, 400), (17, 733), (1279, 0), (0, 799)]:
        mouse(node, sid, action="move", x=x, y=y)
        assert cursor(node, sid) == (x, y), f"after a move to ({x}, {y}) the pointer is at {cursor(node, sid)}"


def test_buttons_select_extend_and_paste_in_xterm(node, desktop):
    """xterm's own mouse bindings make each button observable: a double click selects a word,
    the right button extends the selection, a press-move-release selects a line, the middle
    button pastes the selection where the text cursor is."""
    sid = desktop["id"]
    one, two = ocr_word(7), ocr_word(7)
    w = open_xterm(node, sid, "buttons", "70x8+40+40", run=f"echo {one} {two}; echo third-line-and-more")
    wait_shown(node, sid, two)
    # (No click to focus it, the new window has the focus. Between gestures, a pause longer
    # than xterm's multiClickTime (250 ms), else it counts clicks of two gestures as one
    # multiple click.)
    wait_window(node, sid, "buttons", focused=True)
    gesture_pause = lambda: time.sleep(0.3)  # noqa: E731

    def paste(at: tuple[int, int] | None) -> None:
        """Middle click (at the pointer when `at` is None); waits until the pasted text shows
        (xterm gets the selection asynchronously, from the X server)."""
        before = settled(node, sid, w)
        gesture_pause()
        if at is None:
            mouse(node, sid, action="click", button="middle")
        else:
            mouse(node, sid, action="click", x=at[0], y=at[1], button="middle")
        wait_region(node, sid, w, lambda px: px != before, 10, "the middle button pasted nothing")
        settled(node, sid, w)

    # Double click on the first word, right click on the second: both are selected.
    mouse(node, sid, action="double_click", x=cell(w, 2, 0)[0], y=cell(w, 2, 0)[1])
    gesture_pause()
    click(node, sid, *cell(w, 8 + 3, 0), button="right")
    type_text(node, sid, "echo ")
    mouse(node, sid, action="move", x=center(w)[0], y=center(w)[1] + 40)
    paste(None)
    type_text(node, sid, " > /tmp/extended\n")
    wait_file(node, sid, "/tmp/extended", f"{one} {two}\n")
    # Press, move, release over the second line selects from the press to the character
    # before the release; the middle button pastes it.
    start, end = cell(w, 0, 1), cell(w, 10, 1)
    gesture_pause()
    mouse(node, sid, action="down", x=start[0], y=start[1])
    mouse(node, sid, action="move", x=end[0] - 50, y=end[1])
    mouse(node, sid, action="up", x=end[0], y=end[1])
    type_text(node, sid, "echo ")
    paste(center(w))
    type_text(node, sid, " > /tmp/line\n")
    wait_file(node, sid, "/tmp/line", "third-line\n")


# ---------------------------------------------------------------------------------------------
# keys


def test_ctrl_l_clears_xterm(node, desktop):
    sid = desktop["id"]
    w = open_xterm(node, sid, "clearing", "60x10+100+100")
    click(node, sid, *center(w))
    word = ocr_word()
    type_text(node, sid, f"echo {word[:4]}''{word[4:]}\n")
    full = wait_shown(node, sid, word)
    before = region(full, w)
    press(node, sid, "ctrl+l")
    wait_region(node, sid, w, lambda px: px != before, 10, "ctrl+l did not change xterm's screen")
    png = screenshot(node, sid)
    assert not shows(png, word), f"after ctrl+l the screen still shows {word}: {ocr(png)!r}"
    # Several combinations in one call, pressed in order: a letter typed and erased with
    # BackSpace, a shifted one, punctuation by its keysym name.
    press(node, sid, "e", "c", "h", "o", "space", "X", "BackSpace", "Y", "shift+z", "space", "greater", "space",
          "slash", "t", "m", "p", "slash", "k", "Return")
    wait_file(node, sid, "/tmp/k", "YZ\n")


def test_keyboard_errors_name_what_is_wrong(node, shared):
    sid = shared["id"]
    cases = [
        ({"keys": ["Return", "Foo"]}, "keys[1]"),
        ({"keys": ["ctrl+Nope"]}, "keys[0]"),
        ({"keys": ["Return", "ctrl+"]}, "keys[1]"),
        ({"keys": ["hyper+a"]}, "keys[0]"),
        ({"keys": []}, "keys"),
        ({"keys": ["a"] * 101}, "keys"),
        ({"text": "a", "keys": ["a"]}, "text"),
        ({}, "text"),
        ({"text": "a" * 10_001}, "text"),
        ({"text": "a", "speed": 3}, "speed"),
        ({"keys": "Return"}, "keys"),
    ]
    for body, named in cases:
        err = error_of(call(node, "POST", sid, "/keyboard", body), 400, "invalid_request")
        assert named in err, f"keyboard {json.dumps(body)[:80]}: the error does not name {named}: {err}"
    # The limits themselves are fine (typed on the bare root window, which ignores them).
    press(node, sid, "control+shift+Escape", "Escape")
    type_text(node, sid, "a" * 10_000)


def test_mouse_errors_name_what_is_wrong(node, shared):
    sid = shared["id"]
    cases = [
        ({"action": "click", "x": 1280, "y": 0}, "x 1280 is outside the screen (0 to 1279)"),
        ({"action": "move", "x": 0, "y": 800}, "y 800 is outside the screen (0 to 799)"),
        ({"action": "drag", "x": 1, "y": 1, "to_x": 2000, "to_y": 1}, "to_x 2000"),
        ({"action": "drag", "x": 1, "y": 1, "to_x": 1, "to_y": 5000}, "to_y 5000"),
        ({"action": "click", "x": 5}, "y"),
        ({"action": "scroll", "y": 5}, "x"),
        ({"action": "drag", "x": 1, "y": 1, "to_x": 3}, "to_y"),
        ({"action": "move"}, "x"),
        ({"action": "drag", "x": 1, "y": 1}, "to_x"),
        ({"action": "scroll", "amount": 0}, "amount"),
        ({"action": "scroll", "amount": 101}, "amount"),
        ({"action": "click", "x": 1, "y": 1, "bogus": 1}, "bogus"),
        ({"action": "fly"}, "action"),
        ({"x": 1, "y": 1}, "action"),
        ({"action": "click", "button": "fourth"}, "button"),
        ({"action": "click", "x": -1, "y": 1}, "x"),
        ({"action": "click", "x": 1.5, "y": 1}, "x"),
        ({"action": "scroll", "direction": "sideways"}, "direction"),
        ({"action": "click", "direction": "up"}, "direction"),
        ({"action": "move", "x": 1, "y": 1, "button": "left"}, "button"),
        ({"action": "click", "to_x": 1, "to_y": 1}, "to_x"),
    ]
    mouse(node, sid, action="move", x=321, y=123)
    for body, named in cases:
        err = error_of(call(node, "POST", sid, "/mouse", body), 400, "invalid_request")
        assert named in err, f"mouse {body}: the error does not name {named!r}: {err}"
    assert cursor(node, sid) == (321, 123), "a rejected mouse request moved the pointer"
    # The bounds themselves are fine.
    mouse(node, sid, action="scroll", amount=100, direction="down", x=1279, y=799)
    mouse(node, sid, action="scroll", amount=1)


def test_launch_runs_a_background_command_with_its_cwd_and_env(node, desktop):
    sid = desktop["id"]
    title = "launched-" + random_token(6).lower()
    out = launch(node, sid, f'{XTERM} -geometry 40x8+100+100 -T "$TITLE"', env={"TITLE": title})
    w = wait_window(node, sid, title)
    assert w["class"] == "XTerm"
    launch(node, sid, "pwd > /tmp/launch-cwd; echo $DISPLAY >> /tmp/launch-cwd", cwd="/tmp")
    wait_file(node, sid, "/tmp/launch-cwd", "/tmp\n:0\n")
    # Killing the command closes its window.
    r = node.post(f"/v1/sandboxes/{sid}/commands/{out['command_id']}/kill")
    assert r.status_code in (200, 204), r.text
    wait_until(lambda: window_titled(node, sid, title) is None, 10,
               lambda: f"the killed command's window is still listed: {windows(node, sid)}")
    for body, named in [({}, "cmd"), ({"cmd": "true", "bogus": 1}, "bogus"), ({"cmd": "true", "cwd": "/no/such/dir"}, "/no/such/dir")]:
        err = error_of(call(node, "POST", sid, "/launch", body), 400)
        assert named in err, f"launch {body}: the error does not name {named}: {err}"


# ---------------------------------------------------------------------------------------------
# the live view


@needs_chromium
def test_live_view_in_chromium_shows_the_desktop_and_takes_its_input(node, desktop, browser):
    sid = desktop["id"]
    w = open_xterm(node, sid, "viewed", "50x6+200+300")
    click(node, sid, *center(w))
    word = ocr_word()
    type_text(node, sid, f"echo {word[:4]}''{word[4:]}\n")
    wait_shown(node, sid, word)
    s = start_stream(node, sid)
    assert info(node, sid)["stream"] == {"url": s["url"], "view_only": False}
    status, body = page(node, s["url"])
    assert status == 200 and "noVNC" in body, f"the stream url does not serve noVNC's page: {status} {body[:200]!r}"
    browser.open_novnc(f"{s['url']}&password={s['password']}")
    browser.wait_connected()
    # Chromium's own screenshot shows the desktop (the word typed into xterm), not noVNC's
    # password or error page.
    last = {}

    def browser_shows():
        last["png"] = browser.screenshot()
        return shows(last["png"], word)

    wait_until(browser_shows, 30, lambda: f"Chromium's view never showed {word}: {ocr(last['png'])[:500]!r}",
               interval=0.5)
    # Input from the browser reaches the desktop: a click moves the pointer there, keys type.
    c = browser.canvas()
    assert (c["cw"], c["ch"]) == (1280, 800), f"noVNC's canvas is not the desktop's size: {c}"
    target = (center(w)[0], center(w)[1] + 10)
    scale = c["w"] / c["cw"]
    browser.click(c["x"] + target[0] * scale, c["y"] + target[1] * scale)

    def pointer_near():
        x, y = cursor(node, sid)
        return abs(x - target[0]) <= 2 and abs(y - target[1]) <= 2

    wait_until(pointer_near, 10, lambda: f"a click in the browser at {target} left the pointer at {cursor(node, sid)}")
    browser.type("echo from-the-browser > /tmp/b\n")
    wait_file(node, sid, "/tmp/b", "from-the-browser\n")


@needs_chromium
def test_a_view_only_stream_shows_the_desktop_but_ignores_input(node, desktop, browser):
    sid = desktop["id"]
    w = open_xterm(node, sid, "watched", "50x6+200+300")
    click(node, sid, *center(w))
    word = ocr_word()
    type_text(node, sid, f"echo {word[:4]}''{word[4:]}\n")
    wait_shown(node, sid, word)
    s = start_stream(node, sid, view_only=True)
    assert info(node, sid)["stream"] == {"url": s["url"], "view_only": True}
    browser.open_novnc(f"{s['url']}&password={s['password']}")
    browser.wait_connected()
    last = {}

    def browser_shows():
        last["png"] = browser.screenshot()
        return shows(last["png"], word)

    wait_until(browser_shows, 30, lambda: f"Chromium's view never showed {word}: {ocr(last['png'])[:500]!r}",
               interval=0.5)
    # The browser's clicks and keys do nothing.
    mouse(node, sid, action="move", x=5, y=5)
    c = browser.canvas()
    browser.click(c["x"] + center(w)[0] * c["w"] / c["cw"], c["y"] + center(w)[1] * c["h"] / c["ch"])
    browser.type("echo from-a-viewer > /tmp/viewer\n")
    # A raw RFB client of the same stream: its events are handled (in order) before it gets
    # the pixel it asks for after them.
    viewer = rfb_login(node, s)
    try:
        viewer.pointer(700, 500)
        viewer.type("echo from-rfb > /tmp/rfb\n")
        viewer.sync()
    finally:
        viewer.close()
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        assert cursor(node, sid) == (5, 5), f"a view-only viewer moved the pointer to {cursor(node, sid)}"
        out = node.sh(sid, "ls /tmp/viewer /tmp/rfb 2>/dev/null")["stdout"]
        assert out == "", f"a view-only viewer typed a command: {out!r}"
        time.sleep(0.2)


def test_rfb_input_of_a_full_stream_moves_the_pointer_and_types(node, desktop):
    """The counterpart of the view-only check, by the same raw client: without view_only its
    events act."""
    sid = desktop["id"]
    w = open_xterm(node, sid, "rfb-input", "50x6+200+300")
    click(node, sid, *center(w))
    s = start_stream(node, sid)
    viewer = rfb_login(node, s)
    try:
        assert viewer.size == (1280, 800), f"the VNC server serves a {viewer.size} framebuffer"
        viewer.pointer(700, 500)
        viewer.type("echo from-rfb > /tmp/rfb\n")
        viewer.sync()
    finally:
        viewer.close()
    wait_until(lambda: cursor(node, sid) == (700, 500), 5, lambda: f"the RFB pointer event left {cursor(node, sid)}")
    wait_file(node, sid, "/tmp/rfb", "from-rfb\n")


def test_stopping_and_replacing_the_stream(node, desktop):
    sid = desktop["id"]
    first = start_stream(node, sid)
    old_viewer = rfb_login(node, first)
    # A second POST replaces the stream: a new password, the old viewers cut, the old
    # password refused.
    second = start_stream(node, sid, view_only=True)
    assert second["password"] != first["password"], "the new stream kept the old password"
    assert old_viewer.closed_within(10), "a viewer of the replaced stream is still connected"
    old_viewer.close()
    stale = RFB(node, second)
    try:
        assert stale.handshake(first["password"]) is not None, "the new stream accepts the old password"
    finally:
        stale.close()
    viewer = rfb_login(node, second)
    assert info(node, sid)["stream"] == {"url": second["url"], "view_only": True}
    # DELETE ends it: 204, viewers cut, the url serves no page, nothing runs any more.
    r = call(node, "DELETE", sid, "/stream")
    assert r.status_code == 204, f"DELETE {path(sid, '/stream')} → {r.status_code} {r.text}"
    assert viewer.closed_within(10), "a viewer is still connected after DELETE …/desktop/stream"
    viewer.close()
    try:
        status, body = page(node, second["url"])
    except requests.RequestException as e:
        raise AssertionError(f"right after DELETE …/desktop/stream the stream's url dropped the request without an "
                             f"answer (the stream's programs were still dying): {e!r}") from None
    assert status != 200 and "noVNC" not in body, f"the stopped stream's url still serves: {status} {body[:200]!r}"
    assert info(node, sid)["stream"] is None
    left = node.sh(sid, "pgrep -x x11vnc; pgrep -f '[w]ebsockify'")["stdout"]
    assert left == "", f"the stream's programs still run after DELETE: {left!r}"
    err = error_of(call(node, "DELETE", sid, "/stream"), 404)
    assert "no live view" in err or "stream" in err, err
    # The desktop itself is untouched.
    assert png_header(screenshot(node, sid))["width"] == 1280
    # Again, a few times, with a viewer: the url fails with an answer at once after each 204.
    for attempt in range(3):
        s = start_stream(node, sid)
        viewer = rfb_login(node, s)
        assert call(node, "DELETE", sid, "/stream").status_code == 204
        try:
            status, body = page(node, s["url"])
        except requests.RequestException as e:
            raise AssertionError(f"stop {attempt + 2}: right after DELETE …/desktop/stream the url dropped the "
                                 f"request without an answer (the stream's programs were still dying): {e!r}") from None
        finally:
            viewer.close()
        assert status != 200, f"stop {attempt + 2}: the stopped stream's url still serves: {status} {body[:200]!r}"


def test_a_replacing_stream_serves_as_soon_as_it_is_answered(node):
    """A second POST ends the first stream's programs and starts new ones on the same ports;
    its 201 must mean the new ones serve, with the new password (an old x11vnc still on the
    port would refuse it). A busy loop in the sandbox (its CPU quota used up) makes the old
    programs take a moment to die and the new ones a moment to start."""
    sid = create_desktop(node, cpu=0.5)["id"]
    try:
        r = node.post(f"/v1/sandboxes/{sid}/commands", json={"cmd": "while :; do :; done"})
        assert r.status_code in (200, 201), r.text
        start_stream(node, sid)
        failures = []
        for attempt in range(4):
            s = start_stream(node, sid)
            try:
                status, body = page(node, s["url"])
                outcome = None if status == 200 and "noVNC" in body else f"{status} {body[:120]!r}"
            except requests.RequestException as e:
                outcome = repr(e)[:160]
            if outcome is None:
                viewer = RFB(node, s)
                try:
                    refused = viewer.handshake(s["password"])
                    outcome = None if refused is None else f"RFB login refused: {refused}"
                except Exception as e:  # noqa: BLE001 - recorded
                    outcome = f"RFB: {e!r}"[:160]
                finally:
                    viewer.close()
            if outcome is not None:
                failures.append(f"replacement {attempt + 1}: {outcome}")
        assert not failures, ("right after a replacing POST …/desktop/stream answered 201, its url did not serve:\n"
                              + "\n".join(failures))
    finally:
        node.delete_sandbox(sid)


# ---------------------------------------------------------------------------------------------
# lifecycle


def test_pause_freezes_the_display_and_cuts_viewers_resume_continues(node, desktop):
    sid = desktop["id"]
    w = open_xterm(node, sid, "paused", "50x6+200+300")
    click(node, sid, *center(w))
    word = ocr_word()
    type_text(node, sid, f"echo {word[:4]}''{word[4:]}\n")
    wait_shown(node, sid, word)
    s = start_stream(node, sid)
    viewer = rfb_login(node, s)
    r = node.post(f"/v1/sandboxes/{sid}/pause")
    assert r.status_code == 200, f"pause → {r.status_code} {r.text}"
    try:
        assert viewer.closed_within(10), "a viewer's websocket stays open while the sandbox is paused"
        viewer.close()
        for method, route, body in DESKTOP_ROUTES:
            if route == "":
                continue
            error_of(call(node, method, sid, route, body), 409, "sandbox_paused")
        # GET …/desktop reads the node's record, not the display (as GET of the sandbox does):
        # it still answers, with the stream it will continue.
        assert info(node, sid) == {"display": ":0", "width": 1280, "height": 800, "dpi": 96,
                                   "stream": {"url": s["url"], "view_only": False}}
    finally:
        r = node.post(f"/v1/sandboxes/{sid}/resume")
        assert r.status_code == 200, f"resume → {r.status_code} {r.text}"
    # The same display continues: the same window, the same text, a live view again.
    again = window_titled(node, sid, "paused")
    assert again is not None and again["id"] == w["id"], f"after resume the window is gone: {windows(node, sid)}"
    wait_shown(node, sid, word)
    assert info(node, sid)["stream"] == {"url": s["url"], "view_only": False}
    viewer = wait_until(lambda: rfb_login(node, s), 10, "no viewer can connect after resume")
    viewer.close()
    type_text(node, sid, "echo after-resume > /tmp/r\n")
    wait_file(node, sid, "/tmp/r", "after-resume\n")


def test_metrics_count_the_x_server(node, desktop):
    plain = node.create_sandbox()
    try:
        def metrics(sid):
            r = node.get(f"/v1/sandboxes/{sid}/metrics")
            assert r.status_code == 200, r.text
            return r.json()

        d, p = metrics(desktop["id"]), metrics(plain["id"])
        assert d["mem_used_bytes"] > p["mem_used_bytes"] + 10 * MIB, (
            f"the desktop sandbox uses {d['mem_used_bytes']} bytes, a plain one {p['mem_used_bytes']}: "
            f"the X server's memory is not counted")
        assert d["pids"] >= p["pids"] + 2, f"the X server and window manager are not among the pids: {d} vs {p}"
    finally:
        node.delete_sandbox(plain["id"])


def test_delete_ends_the_display_and_leaves_nothing(node):
    sbx = create_desktop(node)
    sid = sbx["id"]
    open_xterm(node, sid, "doomed", "40x8+10+10")
    start_stream(node, sid)
    xservers = x_servers(sid)
    assert len(xservers) == 1, f"sandbox {sid} runs {len(xservers)} X servers"
    node.delete_sandbox(sid)
    assert_gone_from_host(node.state_dir, [sid])
    assert not cmdline(xservers[0]).startswith(b"Xvfb\0"), "the X server outlived its sandbox"
    assert call(node, "GET", sid, "/screenshot").status_code in (404, 410)


def test_desktop_creates_claim_pooled_sandboxes_and_start_their_display(node_factory):
    n = node_factory(config="[pool]\nsize = 2\n")
    wait_for_pool(n, 2)
    warm = pooled_ids(n)
    # Pooled sandboxes run no display: it starts after the claim.
    for sid in warm:
        assert not x_servers(sid), f"pooled sandbox {sid} runs an X server before any claim"
    a = n.create_sandbox(desktop=True)
    assert a["id"] in warm, "the desktop create did not claim a pooled sandbox"
    assert a["desktop"] is True
    b = n.create_sandbox(desktop={"width": 1024, "height": 768})
    for sbx, size in ((a, (1280, 800)), (b, (1024, 768))):
        sid = sbx["id"]
        assert n.run(sid, "xdotool getdisplaygeometry") == f"{size[0]} {size[1]}\n"
        h = png_header(screenshot(n, sid))
        assert (h["width"], h["height"]) == size, f"pooled desktop {sid}: screenshot {h}, want {size}"
        w = open_xterm(n, sid, "pooled", "40x8+10+10")
        click(n, sid, *center(w))
        type_text(n, sid, "echo from-the-pool > /tmp/p\n")
        wait_file(n, sid, "/tmp/p", "from-the-pool\n")
    # A plain create from the same pool has no display.
    c = n.create_sandbox()
    assert c["desktop"] is False
    assert "has no desktop" in error_of(call(n, "GET", c["id"], "/screenshot"), 400)


# ---------------------------------------------------------------------------------------------
# errors: no desktop, tenants, scopes


def test_every_desktop_route_of_a_plain_sandbox_answers_400(node, sandbox):
    sid = sandbox["id"]
    for method, route, body in DESKTOP_ROUTES:
        err = error_of(call(node, method, sid, route, body), 400)
        assert f"sandbox {sid} has no desktop" in err and "desktop: true" in err, (
            f"{method} {route} of a plain sandbox: {err}")


def test_another_tenant_gets_404_on_every_route(node, shared):
    sid = shared["id"]
    other = node.create_key(["sandboxes:read", "sandboxes:write"], tenant="desk-" + random_token(8).lower())["key"]
    mouse(node, sid, action="move", x=77, y=88)
    for method, route, body in DESKTOP_ROUTES:
        error_of(call(node, method, sid, route, body, key=other), 404)
    error_of(call(node, "GET", "sbx_doesnotexist00000000", "/screenshot"), 404)
    assert cursor(node, sid) == (77, 88), "another tenant's request moved the pointer"
    assert info(node, sid)["stream"] is None, "another tenant's request started a stream"


def test_scopes_read_routes_need_read_and_input_needs_write(node, shared):
    sid = shared["id"]
    reader = node.create_key(["sandboxes:read"])["key"]
    neither = node.create_key(["hosting:read"])["key"]
    mouse(node, sid, action="move", x=55, y=66)
    for method, route, body in WRITE_ROUTES:
        err = error_of(call(node, method, sid, route, body, key=reader), 403)
        assert "sandboxes:write" in err, f"{method} {route} with a read-only key: {err}"
    for method, route, body in READ_ROUTES:
        r = call(node, method, sid, route, key=reader)
        assert r.status_code == 200, f"{method} {route} with sandboxes:read → {r.status_code} {r.text[:200]}"
        err = error_of(call(node, method, sid, route, key=neither), 403)
        assert "sandboxes:read" in err, f"{method} {route} without sandboxes scopes: {err}"
    assert cursor(node, sid, key=reader) == (55, 66), "a read-only key moved the pointer"
    assert info(node, sid)["stream"] is None, "a read-only key started a stream"

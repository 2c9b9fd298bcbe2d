"""Terminals: create, input, output, resize, kill, and the WebSocket attachment (issue 3)."""

from __future__ import annotations

import base64
import json
import time

import pytest
import websocket  # websocket-client

from e2e_util import wait_until


def create(node, sid, **body) -> int:
    r = node.post(f"/v1/sandboxes/{sid}/pty", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["pty_id"].startswith("pty_") and out["pid"] > 1
    return out["pid"]


def type_in(node, sid, pid, data: bytes):
    r = node.post(f"/v1/sandboxes/{sid}/pty/{pid}/input", json={"data_b64": base64.b64encode(data).decode()})
    assert r.status_code == 204, r.text


def drain(node, sid, pid) -> dict:
    r = node.post(f"/v1/sandboxes/{sid}/pty/{pid}/output")
    assert r.status_code == 200, r.text
    out = r.json()
    out["data"] = base64.b64decode(out["data_b64"])
    return out


def read_until(node, sid, pid, needle: bytes, timeout=10.0) -> bytes:
    seen = b""

    def found():
        nonlocal seen
        seen += drain(node, sid, pid)["data"]
        return needle in seen

    wait_until(found, timeout, lambda: f"{needle!r} never appeared; got {seen[-500:]!r}")
    return seen


def test_terminal_has_the_requested_size_and_takes_input(node, sandbox):
    sid = sandbox["id"]
    pid = create(node, sid, cmd="stty size; read line; echo got-$line", cols=100, rows=30)
    read_until(node, sid, pid, b"30 100")
    type_in(node, sid, pid, b"hello\n")
    read_until(node, sid, pid, b"got-hello")
    end = wait_until(lambda: (o := drain(node, sid, pid)) and not o["alive"] and o, 10, "program did not end")
    assert end["exit_code"] == 0


def test_default_terminal_is_a_login_shell_with_a_tty(node, sandbox):
    sid = sandbox["id"]
    pid = create(node, sid)
    type_in(node, sid, pid, b"tty; echo $TERM; echo $((40+2))\n")
    out = read_until(node, sid, pid, b"42")
    assert b"/dev/pts/" in out and b"xterm" in out


def test_resize_reaches_the_program_as_sigwinch(node, sandbox):
    sid = sandbox["id"]
    pid = create(node, sid, cmd="trap 'stty size' WINCH; echo ready; while true; do sleep 0.05; done", cols=80, rows=24)
    read_until(node, sid, pid, b"ready")
    r = node.post(f"/v1/sandboxes/{sid}/pty/{pid}/resize", json={"cols": 132, "rows": 43})
    assert r.status_code == 204, r.text
    read_until(node, sid, pid, b"43 132")
    assert node.post(f"/v1/sandboxes/{sid}/pty/{pid}/kill").status_code == 204
    end = wait_until(lambda: (o := drain(node, sid, pid)) and not o["alive"] and o, 10, "kill did not end it")
    assert end["exit_code"] == 128 + 9


def test_terminal_errors_are_clear(node, sandbox):
    sid = sandbox["id"]
    assert node.post(f"/v1/sandboxes/{sid}/pty/99999/output").status_code == 404
    # A pid that is not a number names nothing: 404, as JSON like every error.
    r = node.post(f"/v1/sandboxes/{sid}/pty/abc/output")
    assert r.status_code == 404 and "error" in r.json()
    r = node.get(f"/v1/sandboxes/{sid}/pty/99999/ws")  # not a WebSocket handshake
    assert r.status_code == 400 and "WebSocket" in r.json()["error"]
    r = node.post(f"/v1/sandboxes/{sid}/pty", json={"cols": 0})
    assert r.status_code == 400 and "cols" in r.json()["error"]
    pid = create(node, sid, cmd="sleep 30")
    r = node.post(f"/v1/sandboxes/{sid}/pty/{pid}/input", json={"data_b64": "%%%"})
    assert r.status_code == 400 and "base64" in r.json()["error"]
    node.post(f"/v1/sandboxes/{sid}/pty/{pid}/kill")


def test_websocket_carries_bytes_both_ways_and_resizes(node, sandbox):
    sid = sandbox["id"]
    pid = create(node, sid)
    url = node.url.replace("http://", "ws://") + f"/v1/sandboxes/{sid}/pty/{pid}/ws"
    ws = websocket.create_connection(url, header=[f"Authorization: Bearer {node.admin_key}"], timeout=10)
    try:
        ws.send(json.dumps({"resize": {"cols": 120, "rows": 40}}))
        time.sleep(0.1)
        ws.send_binary(b"stty size; echo $((6*7)); exit 3\n")
        received = b""
        close_reason = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            opcode, data = ws.recv_data()
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                close_reason = data[2:].decode()
                break
            received += data
        assert b"40 120" in received, received[-500:]
        assert b"42" in received
        assert close_reason == "exit 3"
    finally:
        ws.close()


def test_websocket_needs_a_key(node, sandbox):
    sid = sandbox["id"]
    pid = create(node, sid, cmd="sleep 5")
    url = node.url.replace("http://", "ws://") + f"/v1/sandboxes/{sid}/pty/{pid}/ws"
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        websocket.create_connection(url, timeout=5)
    assert e.value.status_code == 401

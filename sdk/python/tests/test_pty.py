"""Terminals: type, read, resize, kill."""

from __future__ import annotations

import time

from ai2in import PtyHandle, Sandbox


def _read_until(pty: PtyHandle, needle: bytes, timeout: float = 10) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen and time.monotonic() < deadline:
        seen += pty.read().data
        time.sleep(0.05)
    assert needle in seen, seen
    return seen


def test_pty_round_trip_resize_and_kill(sbx: Sandbox) -> None:
    pty = sbx.pty.create(cols=100, rows=30, cwd="/tmp", env={"GREETING": "hello-pty"})
    assert pty.id.startswith("pty_") and pty.pid > 0
    pty.send_input("echo $GREETING; pwd; stty size\n")
    out = _read_until(pty, b"30 100")
    assert b"hello-pty" in out and b"/tmp" in out
    pty.resize(120, 40)
    pty.send_input(b"stty size\n")
    _read_until(pty, b"40 120")
    pty.kill()
    deadline = time.monotonic() + 10
    while (end := pty.read()).alive and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not end.alive and end.exit_code == 137


def test_pty_command_exits(sbx: Sandbox) -> None:
    pty = sbx.pty.create("printf done; exit 4")
    out = b""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        chunk = pty.read()
        out += chunk.data
        if not chunk.alive:
            break
        time.sleep(0.05)
    assert out == b"done" and chunk.exit_code == 4

"""Files: text and bytes round trips, listing, existence, errors, and watches."""

from __future__ import annotations

import os
import threading
import time

import pytest

import ai2in
from ai2in import Sandbox


def test_text_round_trip(sbx: Sandbox) -> None:
    text = "héllo\nwörld ✓\n"
    info = sbx.files.write("deep/er/notes.txt", text)
    assert info.path == "/home/user/deep/er/notes.txt" and info.size_bytes == len(text.encode())
    assert sbx.files.read("deep/er/notes.txt") == text
    assert sbx.files.read("/home/user/deep/er/notes.txt") == text


def test_bytes_round_trip(sbx: Sandbox) -> None:
    data = os.urandom(300_000) + b"\x00\xff"
    info = sbx.files.write("/tmp/blob.bin", data)
    assert info.size_bytes == len(data)
    assert sbx.files.read_bytes("/tmp/blob.bin") == data
    assert sbx.commands.run("stat -c %s /tmp/blob.bin").stdout.strip() == str(len(data))


def test_root_reads_and_writes_where_user_may_not(sbx: Sandbox) -> None:
    with pytest.raises(ai2in.PermissionDeniedError):
        sbx.files.write("/root/secret.txt", "x")
    info = sbx.files.write("/root/secret.txt", "only root", user="root")
    assert info.path == "/root/secret.txt"
    assert sbx.files.read("/root/secret.txt", user="root") == "only root"
    assert sbx.files.read_bytes("/root/secret.txt", user="root") == b"only root"
    assert sbx.files.exists("/root/secret.txt", user="root")
    assert [e.name for e in sbx.files.list("/root", user="root")] == ["secret.txt"]
    with pytest.raises(ai2in.PermissionDeniedError):
        sbx.files.read("/root/secret.txt")
    assert sbx.commands.run("stat -c %U /root/secret.txt").stdout.strip() == "root"


def test_list_and_exists(sbx: Sandbox) -> None:
    sbx.files.write("listing/a.txt", "abc")
    sbx.commands.run("mkdir -p /home/user/listing/sub && ln -sf a.txt /home/user/listing/l")
    entries = {e.name: e for e in sbx.files.list("listing")}
    assert set(entries) == {"a.txt", "sub", "l"}
    assert entries["a.txt"].type == "file" and entries["a.txt"].size_bytes == 3
    assert entries["a.txt"].path == "/home/user/listing/a.txt"
    assert entries["sub"].type == "dir" and entries["l"].type == "symlink"
    assert "listing" in [e.name for e in sbx.files.list()]
    assert sbx.files.exists("listing/a.txt") and sbx.files.exists("/home/user/listing/sub")
    assert not sbx.files.exists("listing/missing") and not sbx.files.exists("/no/such/dir/x")


def test_errors(sbx: Sandbox) -> None:
    sbx.files.write("bin.dat", b"\xff\xfe\x00binary")
    with pytest.raises(ai2in.UnsupportedMediaTypeError) as e:
        sbx.files.read("bin.dat")
    assert e.value.status == 415 and "read_bytes" in e.value.message
    with pytest.raises(ai2in.NotFoundError):
        sbx.files.read("no-such-file")
    with pytest.raises(ai2in.BadRequestError):
        sbx.files.read_bytes("/tmp")  # a directory


def test_over_32_mib_is_413(sbx: Sandbox) -> None:
    with pytest.raises(ai2in.PayloadTooLargeError) as e:
        sbx.files.write("/tmp/too-big", bytes((32 << 20) + 1))
    assert e.value.status == 413 and "32 MiB" in e.value.message


def test_watch_poll(sbx: Sandbox) -> None:
    sbx.commands.run("mkdir -p /home/user/watched")
    with sbx.files.watch("watched") as w:
        assert w.id.startswith("wch_")
        sbx.commands.run("echo x > /home/user/watched/new.txt; rm /home/user/watched/new.txt")
        seen: set[tuple[str, str]] = set()
        deadline = time.monotonic() + 10
        while {"create", "delete"} - {t for t, _ in seen} and time.monotonic() < deadline:
            seen |= {(e.type, e.path) for e in w.poll()}
            time.sleep(0.05)
    assert ("create", "/home/user/watched/new.txt") in seen
    assert ("delete", "/home/user/watched/new.txt") in seen
    with pytest.raises(ai2in.NotFoundError):
        w.poll()  # stopped


def test_watch_iterates_live_events_until_stopped(sbx: Sandbox) -> None:
    sbx.commands.run("mkdir -p /home/user/live/sub")
    w = sbx.files.watch("live", recursive=True)
    timer = threading.Timer(0.3, lambda: sbx.commands.run("touch /home/user/live/sub/f"))
    timer.start()
    paths = []
    for event in w:  # the SSE stream
        paths.append(event.path)
        if event.path == "/home/user/live/sub/f":
            threading.Timer(0.2, w.stop).start()  # ends the iteration
    timer.join()
    assert "/home/user/live/sub/f" in paths

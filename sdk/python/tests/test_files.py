"""Files: text and bytes round trips, streamed uploads and downloads of any size, range
reads, listing, existence, errors, and watches; with the sync and the async client."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

import ai2in
from ai2in import AsyncSandbox, Sandbox

from conftest import RssGrowth

MIB = 1 << 20


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 120))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_in(sbx: Sandbox, path: str) -> str:
    """The SHA-256 of a file of the sandbox, as the sandbox computes it."""
    r = sbx.commands.run(f"sha256sum '{path}'")
    assert r.exit_code == 0, r.stderr
    return r.stdout.split()[0]


def sha256_of_file(path: Path) -> str:
    """The SHA-256 of a local file, read a piece at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while piece := f.read(MIB):
            digest.update(piece)
    return digest.hexdigest()


def test_text_round_trip(sbx: Sandbox) -> None:
    text = "héllo\nwörld ✓\n"
    info = sbx.files.write("deep/er/notes.txt", text)
    assert info.path == "/home/user/deep/er/notes.txt" and info.size_bytes == len(text.encode())
    assert sbx.files.read("deep/er/notes.txt") == text
    assert sbx.files.read("/home/user/deep/er/notes.txt") == text


@pytest.mark.parametrize("size", [0, 1, 300_000, 40 * MIB])  # 40 MiB: over the JSON limit
def test_bytes_round_trip(sbx: Sandbox, size: int) -> None:
    data = os.urandom(size)
    info = sbx.files.write("blob.bin", data)
    assert info.path == "/home/user/blob.bin" and info.size_bytes == size
    assert sha256_in(sbx, "/home/user/blob.bin") == sha256(data)
    assert sbx.files.read_bytes("blob.bin") == data


def test_root_reads_and_writes_where_user_may_not(sbx: Sandbox) -> None:
    with pytest.raises(ai2in.PermissionDeniedError):
        sbx.files.write("/root/secret.txt", "x")
    info = sbx.files.write("/root/secret.txt", "only root", user="root")
    assert info.path == "/root/secret.txt"
    assert sbx.files.read("/root/secret.txt", user="root") == "only root"
    assert sbx.files.read_bytes("/root/secret.txt", user="root") == b"only root"
    assert sbx.files.upload("/root/up.bin", iter([b"root's"]), user="root").size_bytes == 6
    assert b"".join(sbx.files.iter_bytes("/root/up.bin", user="root")) == b"root's"
    with pytest.raises(ai2in.PermissionDeniedError):
        sbx.files.upload("/root/up.bin", b"x")
    with pytest.raises(ai2in.PermissionDeniedError):
        sbx.files.read_bytes("/root/up.bin")
    assert sbx.files.exists("/root/secret.txt", user="root")
    assert [e.name for e in sbx.files.list("/root", user="root")] == ["secret.txt", "up.bin"]
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


def test_text_over_32_mib_is_413(sbx: Sandbox) -> None:
    with pytest.raises(ai2in.PayloadTooLargeError) as e:
        sbx.files.write("/tmp/too-big", "x" * (32 * MIB + 1))
    assert e.value.status == 413 and "32 MiB" in e.value.message
    assert not sbx.files.exists("/tmp/too-big")


def test_upload_from_a_file_object_a_path_and_chunks(sbx: Sandbox, tmp_path: Path) -> None:
    data = os.urandom(3 * MIB + 5)
    local = tmp_path / "local.bin"
    local.write_bytes(data)
    with open(local, "rb") as f:
        assert sbx.files.upload("up/file.bin", f).size_bytes == len(data)
    assert sbx.files.upload("up/path.bin", local).size_bytes == len(data)
    assert sbx.files.upload("up/str-path.bin", str(local)).size_bytes == len(data)
    assert sbx.files.upload("up/view.bin", memoryview(data)).size_bytes == len(data)

    def pieces() -> Iterator[bytes]:  # no length known: sent chunked
        yield data[:1]
        yield b""
        yield data[1:MIB]
        yield data[MIB:]

    info = sbx.files.upload("up/chunks.bin", pieces())
    assert info.path == "/home/user/up/chunks.bin" and info.size_bytes == len(data)
    for name in ("file", "path", "str-path", "view", "chunks"):
        assert sha256_in(sbx, f"/home/user/up/{name}.bin") == sha256(data), name

    # A pipe (its size unknown) and an empty generator.
    r, w = os.pipe()

    def feed() -> None:
        with os.fdopen(w, "wb") as pipe:
            pipe.write(data[:MIB])

    writer = threading.Thread(target=feed)
    writer.start()
    with os.fdopen(r, "rb") as pipe:
        assert sbx.files.upload("up/pipe.bin", pipe).size_bytes == MIB
    writer.join()
    assert sha256_in(sbx, "/home/user/up/pipe.bin") == sha256(data[:MIB])
    assert sbx.files.upload("up/empty.bin", iter([])).size_bytes == 0
    assert sbx.files.read_bytes("up/empty.bin") == b""


def test_download_to_a_file_object_and_a_path(sbx: Sandbox, tmp_path: Path) -> None:
    data = os.urandom(3 * MIB + 5)
    sbx.files.write("/tmp/down.bin", data)
    buf = io.BytesIO(b"kept:")
    buf.seek(5)  # written from its position
    assert sbx.files.download("/tmp/down.bin", buf) == len(data)
    assert buf.getvalue() == b"kept:" + data
    dest = tmp_path / "down.bin"
    dest.write_bytes(b"an older and longer local file" * MIB)
    assert sbx.files.download("/tmp/down.bin", dest) == len(data)
    assert dest.read_bytes() == data
    assert sbx.files.download("/tmp/down.bin", str(tmp_path / "str.bin")) == len(data)
    assert (tmp_path / "str.bin").read_bytes() == data
    sbx.files.write("/tmp/empty.bin", b"")
    assert sbx.files.download("/tmp/empty.bin", tmp_path / "empty.bin") == 0
    assert (tmp_path / "empty.bin").read_bytes() == b""


def test_iter_bytes(sbx: Sandbox) -> None:
    data = os.urandom(2 * MIB + 7)
    sbx.files.write("/tmp/iter.bin", data)
    chunks = list(sbx.files.iter_bytes("/tmp/iter.bin", chunk_size=MIB // 2))
    assert [len(c) for c in chunks] == [MIB // 2] * 4 + [7]
    assert b"".join(chunks) == data
    assert b"".join(sbx.files.iter_bytes("/tmp/iter.bin")) == data
    # A file whose size the kernel does not know is read to its end.
    assert b"\nPid:" in b"".join(sbx.files.iter_bytes("/proc/self/status"))
    # Leaving early ends the transfer; the client goes on.
    early = sbx.files.iter_bytes("/tmp/iter.bin", chunk_size=1000)
    assert next(early) == data[:1000]
    early.close()
    assert sbx.files.read_bytes("/tmp/iter.bin", length=4) == data[:4]
    with pytest.raises(ValueError):
        sbx.files.iter_bytes("/tmp/iter.bin", chunk_size=0)


def test_range_reads(sbx: Sandbox) -> None:
    data = bytes(range(256)) * 4  # 1024 bytes
    sbx.files.write("r.bin", data)
    assert sbx.files.read_bytes("r.bin", offset=10, length=5) == data[10:15]
    assert sbx.files.read_bytes("r.bin", length=3) == data[:3]
    assert sbx.files.read_bytes("r.bin", offset=1000) == data[1000:]
    assert sbx.files.read_bytes("r.bin", offset=1020, length=100) == data[1020:]  # fewer
    assert sbx.files.read_bytes("r.bin", offset=7, length=0) == b""
    with pytest.raises(ai2in.ApiError) as e:
        sbx.files.read_bytes("r.bin", offset=1024)
    assert type(e.value) is ai2in.ApiError and e.value.status == 416
    assert "1024 bytes" in e.value.message  # the node's sentence says the file's size
    with pytest.raises(ValueError):
        sbx.files.read_bytes("r.bin", offset=-1)


def test_transfer_errors(sbx: Sandbox, tmp_path: Path) -> None:
    with pytest.raises(ai2in.NotFoundError) as e:
        sbx.files.read_bytes("no/such/file")
    assert e.value.status == 404 and "does not exist" in e.value.message
    with pytest.raises(ai2in.NotFoundError):
        list(sbx.files.iter_bytes("no/such/file"))
    dest = tmp_path / "never.bin"
    with pytest.raises(ai2in.NotFoundError):
        sbx.files.download("no/such/file", dest)
    assert not dest.exists()  # not created for an error answer
    with pytest.raises(ai2in.BadRequestError, match="directory"):
        sbx.files.upload("/tmp", b"x")
    with pytest.raises(ai2in.PermissionDeniedError):
        sbx.files.upload("/etc/passwd", b"x")
    local = tmp_path / "local.txt"
    local.write_text("text")
    with pytest.raises(TypeError, match="binary mode"):
        with open(local) as text:  # text mode
            sbx.files.upload("x.txt", text)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="binary mode"):
        sbx.files.download("/etc/hostname", io.StringIO())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        sbx.files.upload("x.txt", 42)  # type: ignore[arg-type]


def test_a_full_disk_is_507_and_keeps_the_old_file() -> None:
    with Sandbox.create(disk_bytes=8 * MIB) as small:
        small.files.write("keep.bin", b"original")
        for source in (os.urandom(12 * MIB), iter([os.urandom(MIB)] * 12)):
            # Each refused upload on a connection of its own: the node may end it after
            # answering (the rest of the body is still on it) without a `Connection: close`.
            writer = Sandbox.connect(small.id)
            try:
                with pytest.raises(ai2in.InsufficientStorageError) as e:
                    writer.files.upload("keep.bin", source)
            finally:
                writer.close()
            assert e.value.status == 507 and "full" in e.value.message
            assert small.files.read_bytes("keep.bin") == b"original"


def test_large_transfers_are_streamed_not_held_in_memory(
    sbx: Sandbox, tmp_path: Path, rss_growth: RssGrowth
) -> None:
    size = 256 * MIB
    local, back = tmp_path / "big.bin", tmp_path / "back.bin"
    with open(local, "wb") as f:
        f.write(os.urandom(MIB))
        f.truncate(size)  # the rest sparse zeros
    with rss_growth() as grown:
        assert sbx.files.upload("big.bin", local).size_bytes == size
        assert sbx.files.download("big.bin", back) == size
    assert grown[0] < size // 4, f"RSS grew by {grown[0] >> 20} MiB"
    assert sha256_of_file(back) == sha256_of_file(local) == sha256_in(sbx, "/home/user/big.bin")

    async def main() -> None:
        asbx = await AsyncSandbox.connect(sbx.id)
        try:
            with open(local, "rb") as f:
                assert (await asbx.files.upload("big2.bin", f)).size_bytes == size
            assert await asbx.files.download("big2.bin", back) == size
        finally:
            await asbx.close()

    with rss_growth() as grown:
        run(main)
    assert grown[0] < size // 4, f"RSS grew by {grown[0] >> 20} MiB"
    assert sha256_of_file(back) == sha256_of_file(local)
    sbx.commands.run("rm -f /home/user/big.bin /home/user/big2.bin")


def test_async_files(sbx: Sandbox, tmp_path: Path) -> None:
    big = os.urandom(40 * MIB)
    data = os.urandom(3 * MIB + 5)
    local = tmp_path / "local.bin"
    local.write_bytes(data)

    async def chunks() -> AsyncIterator[bytes]:
        yield data[:MIB]
        await asyncio.sleep(0)
        yield data[MIB:]

    async def main() -> None:
        asbx = await AsyncSandbox.connect(sbx.id)  # the session's sandbox, left running
        files = asbx.files
        try:
            for payload in (b"", b"x", big):
                info = await files.write("async/blob.bin", payload)
                assert info.path == "/home/user/async/blob.bin"
                assert info.size_bytes == len(payload)
                assert await files.read_bytes("async/blob.bin") == payload
            assert await files.read_bytes("async/blob.bin", offset=5, length=3) == big[5:8]

            assert (await files.upload("async/achunks.bin", chunks())).size_bytes == len(data)
            assert (await files.upload("async/chunks.bin", iter([data]))).size_bytes == len(data)
            assert (await files.upload("async/path.bin", local)).size_bytes == len(data)
            with open(local, "rb") as f:
                assert (await files.upload("async/file.bin", f)).size_bytes == len(data)

            buf = io.BytesIO()
            assert await files.download("async/achunks.bin", buf) == len(data)
            assert buf.getvalue() == data
            assert await files.download("async/path.bin", tmp_path / "back.bin") == len(data)
            got = [c async for c in files.iter_bytes("async/file.bin", chunk_size=MIB)]
            assert [len(c) for c in got] == [MIB] * 3 + [5] and b"".join(got) == data

            with pytest.raises(ai2in.NotFoundError):
                await files.read_bytes("async/missing")
            with pytest.raises(ai2in.NotFoundError):
                [c async for c in files.iter_bytes("async/missing")]
            with pytest.raises(ai2in.NotFoundError):
                await files.download("async/missing", tmp_path / "never.bin")
            with pytest.raises(ai2in.ApiError) as e:
                await files.read_bytes("async/file.bin", offset=len(data))
            assert e.value.status == 416
        finally:
            await asbx.close()

    run(main)
    assert sha256_in(sbx, "/home/user/async/blob.bin") == sha256(big)
    for name in ("achunks", "chunks", "path", "file"):
        assert sha256_in(sbx, f"/home/user/async/{name}.bin") == sha256(data), name
    assert (tmp_path / "back.bin").read_bytes() == data
    assert not (tmp_path / "never.bin").exists()


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

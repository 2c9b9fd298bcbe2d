"""Raw file transfers: `GET|PUT /v1/sandboxes/:id/files?path=`, streamed both ways with
bounded memory, `Range` on GET, atomic replace on PUT, the confinement and errors of the fs
routes (issue 17)."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time

import pytest
import requests

from e2e_util import GIB, MIB, random_token, vm_hwm_bytes, wait_until


def url(node, sid):
    return f"/v1/sandboxes/{sid}/files"


def put(node, sid, path, data, **params):
    return node.request("PUT", url(node, sid), params={"path": path, **params}, data=data)


def get(node, sid, path, headers=None, **params):
    return node.request("GET", url(node, sid), params={"path": path, **params}, headers=headers)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("size", [0, 1, 100 * MIB])
def test_bytes_round_trip_exactly(node, sandbox, size):
    sid = sandbox["id"]
    data = os.urandom(size)
    r = put(node, sid, "dir/sub/blob.bin", data)
    assert r.status_code == 200, r.text
    assert r.json() == {"path": "/home/user/dir/sub/blob.bin", "size_bytes": size}
    assert node.run(sid, "sha256sum /home/user/dir/sub/blob.bin").split()[0] == sha(data)
    r = get(node, sid, "dir/sub/blob.bin")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["accept-ranges"] == "bytes"
    assert r.content == data
    assert r.headers["content-length"] == str(size)


def test_a_chunked_upload_ends_with_its_body(node, sandbox):
    sid = sandbox["id"]
    pieces = [os.urandom(n) for n in (1, 70_000, 3 * MIB + 5, 0, 17)]
    r = put(node, sid, "/tmp/chunked", iter(pieces))  # requests sends it chunked
    assert r.status_code == 200, r.text
    whole = b"".join(pieces)
    assert r.json()["size_bytes"] == len(whole)
    assert get(node, sid, "/tmp/chunked").content == whole
    # An empty chunked body makes an empty file.
    r = put(node, sid, "/tmp/empty", iter([]))
    assert r.status_code == 200, r.text
    assert node.run(sid, "stat -c %s /tmp/empty").strip() == "0"


def test_files_the_kernel_gives_no_size_are_read_to_their_end(node, sandbox):
    r = get(node, sandbox["id"], "/proc/self/status")
    assert r.status_code == 200, r.text
    assert "content-length" not in r.headers
    assert b"\nPid:" in r.content


def test_ranges_answer_206_with_content_range_or_416(node, sandbox):
    sid = sandbox["id"]
    data = bytes(range(256)) * 4  # 1024 bytes
    assert put(node, sid, "r.bin", data).status_code == 200
    for header, part, content_range in [
        ("bytes=0-9", data[:10], "bytes 0-9/1024"),
        ("bytes=1000-", data[1000:], "bytes 1000-1023/1024"),
        ("bytes=-5", data[-5:], "bytes 1019-1023/1024"),
        ("bytes=1020-5000", data[1020:], "bytes 1020-1023/1024"),
        ("bytes=-5000", data, "bytes 0-1023/1024"),
    ]:
        r = get(node, sid, "r.bin", headers={"Range": header})
        assert r.status_code == 206, f"{header}: {r.status_code} {r.text[:200]}"
        assert r.content == part, header
        assert r.headers["content-range"] == content_range
        assert r.headers["content-length"] == str(len(part))
    for header in ["bytes=1024-", "bytes=5000-6000", "bytes=-0"]:
        r = get(node, sid, "r.bin", headers={"Range": header})
        assert r.status_code == 416, f"{header}: {r.status_code}"
        assert r.headers["content-range"] == "bytes */1024"
        assert r.json()["code"] == "range_not_satisfiable"
        assert "1024 bytes" in r.json()["error"]
    # Several ranges, other units and nonsense are ignored: the whole file.
    for header in ["bytes=0-1,5-6", "lines=1-2", "bytes=9-3", "garbage"]:
        r = get(node, sid, "r.bin", headers={"Range": header})
        assert (r.status_code, r.content) == (200, data), header


def test_a_replace_is_atomic_for_readers(node, sandbox):
    sid = sandbox["id"]
    old, new = b"o" * (4 * MIB), b"n" * (4 * MIB + 1)
    assert put(node, sid, "atomic.bin", old).status_code == 200
    seen = set()
    stop = threading.Event()

    def read():
        while not stop.is_set():
            r = get(node, sid, "atomic.bin")
            assert r.status_code == 200
            seen.add(sha(r.content))

    t = threading.Thread(target=read)
    t.start()
    try:
        for _ in range(5):
            assert put(node, sid, "atomic.bin", new).status_code == 200
            assert put(node, sid, "atomic.bin", old).status_code == 200
    finally:
        stop.set()
        t.join(60)
    assert seen <= {sha(old), sha(new)}, "a reader saw a half-written file"


def test_a_cut_upload_writes_nothing_and_leaves_no_debris(node, sandbox):
    sid = sandbox["id"]
    assert put(node, sid, "keep.bin", b"original").status_code == 200
    path = f"{url(node, sid)}?path=keep.bin"
    with socket.create_connection(("127.0.0.1", node.port)) as s:
        s.sendall(
            f"PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {node.admin_key}\r\n"
            f"Content-Length: {10 * MIB}\r\n\r\n".encode() + os.urandom(MIB)
        )
        time.sleep(0.3)
    wait_until(lambda: ".ai2in-" not in node.run(sid, "ls -A /home/user"), 10,
               "the cut upload left its temporary file")
    assert get(node, sid, "keep.bin").content == b"original"


def test_errors_name_the_problem(node, sandbox):
    sid = sandbox["id"]
    node.run(sid, "mkfifo /tmp/fifo; mkdir -p /tmp/dir; echo x > /tmp/file")
    cases = [
        (get(node, sid, "/nope/missing"), 404, "does not exist"),
        (get(node, sid, "/tmp/dir"), 400, "directory"),
        (get(node, sid, "/tmp/fifo"), 400, "not a regular file"),
        (get(node, sid, "/dev/zero"), 400, "not a regular file"),
        (put(node, sid, "/tmp/dir", b"x"), 400, "directory"),
        (put(node, sid, "/tmp/file/below", b"x"), 400, "is a file"),
        (get(node, sid, "/tmp/file", user="nobody"), 400, "user"),
        (node.request("GET", url(node, sid)), 400, "path"),
        (node.request("GET", url(node, sid), params={"path": "x", "colour": "red"}), 400, "colour"),
        (get(node, "sbx_doesnotexist", "/tmp/file"), 404, "sbx_doesnotexist"),
        (put(node, sid, "/etc/passwd", b"x"), 403, "permission"),
    ]
    for r, status, words in cases:
        assert r.status_code == status, f"{r.request.method} {r.request.url}: {r.status_code} {r.text}"
        assert words in r.json()["error"], r.json()["error"]


def test_paused_sandbox_answers_409(node, sandbox):
    sid = sandbox["id"]
    assert put(node, sid, "p.txt", b"x").status_code == 200
    assert node.post(f"/v1/sandboxes/{sid}/pause").status_code == 200
    try:
        for r in (get(node, sid, "p.txt"), put(node, sid, "p.txt", b"y")):
            assert r.status_code == 409, r.text
            assert "paused" in r.json()["error"]
    finally:
        assert node.post(f"/v1/sandboxes/{sid}/resume").status_code == 200
    assert get(node, sid, "p.txt").content == b"x"


def test_disk_full_is_507_and_keeps_the_old_file(node):
    sid = node.create_sandbox(disk_bytes=8 * MIB)["id"]
    try:
        assert put(node, sid, "keep.bin", b"original").status_code == 200
        for chunked in [False, True] * 3:
            body = iter([os.urandom(MIB)] * 12) if chunked else os.urandom(12 * MIB)
            r = put(node, sid, "keep.bin", body)
            assert r.status_code == 507, r.text[:300]
            assert "full" in r.json()["error"]
            # The client's kept-alive connection still works (or was closed cleanly).
            assert get(node, sid, "keep.bin").content == b"original"
            assert ".ai2in-" not in node.run(sid, "ls -A /home/user")
    finally:
        node.delete_sandbox(sid)


def test_other_keys_scopes(node, sandbox):
    sid = sandbox["id"]
    other = node.create_key(["sandboxes:write"], tenant=f"t-{random_token(6)}")["key"]
    reader = node.create_key(["sandboxes:read"])["key"]
    assert node.request("GET", url(node, sid), key=other, params={"path": "/etc/hostname"}).status_code == 404
    assert node.request("PUT", url(node, sid), key=reader, params={"path": "x"}, data=b"x").status_code == 403
    assert node.request("GET", url(node, sid), key=reader, params={"path": "/etc/hostname"}).status_code == 200


# -- confinement -------------------------------------------------------------------------------


def test_no_path_reads_or_writes_a_host_file(node, sandbox, host_secret):
    sid = sandbox["id"]
    path, content = host_secret
    node.run(sid, f"ln -s {path} /home/user/link; ln -s / /home/user/rootlink; ln -s /root /tmp/rootdir")
    attempts = [
        str(path),
        f"../../../..{path}",
        f"/proc/self/root{path}",
        f"/proc/1/root{path}",
        "link",
        f"rootlink{path}",
        f"/tmp/rootdir/{path.name}",
    ]
    for attempt in attempts:
        for user in ("user", "root"):
            r = get(node, sid, attempt, user=user)
            assert content.encode() not in r.content, f"{attempt} leaked the host file"
            assert r.status_code in (403, 404), f"{attempt} as {user}: {r.status_code} {r.text}"
    for attempt in attempts:
        for user in ("user", "root"):
            r = put(node, sid, attempt, b"pwned", user=user)
            assert r.status_code in (200, 403, 404), f"{attempt}: {r.status_code} {r.text}"
            assert path.read_text() == content, f"writing {attempt} changed the host file"
    # What was written landed inside the sandbox.
    assert node.run(sid, f"cat {path}") == "pwned"


# -- memory ------------------------------------------------------------------------------------


def test_two_gib_stream_through_with_the_node_s_memory_flat(node_factory):
    """A 2 GiB file goes up and comes back through a node whose peak RSS grows by a few MiB."""
    node = node_factory()
    sid = node.create_sandbox(disk_bytes=3 * GIB)["id"]
    block = os.urandom(MIB)
    blocks = 2048
    expected = hashlib.sha256()
    for _ in range(blocks):
        expected.update(block)
    # Warm up the paths (allocator arenas, buffers), then take the peak from here.
    assert put(node, sid, "warm.bin", block * 8).status_code == 200
    assert len(get(node, sid, "warm.bin").content) == 8 * MIB
    with open(f"/proc/{node.proc.pid}/clear_refs", "w") as f:
        f.write("5")
    before = vm_hwm_bytes(node.proc.pid)

    r = put(node, sid, "big.bin", (block for _ in range(blocks)))
    assert r.status_code == 200, r.text
    assert r.json()["size_bytes"] == blocks * MIB
    up = vm_hwm_bytes(node.proc.pid) - before

    got = hashlib.sha256()
    size = 0
    with node.session.get(f"{node.url}{url(node, sid)}", params={"path": "big.bin"}, stream=True,
                          headers={"Authorization": f"Bearer {node.admin_key}"}, timeout=600) as r:
        assert r.status_code == 200
        assert r.headers["content-length"] == str(blocks * MIB)
        for piece in r.iter_content(MIB):
            got.update(piece)
            size += len(piece)
    assert size == blocks * MIB and got.hexdigest() == expected.hexdigest()
    down = vm_hwm_bytes(node.proc.pid) - before
    print(f"peak RSS growth: upload {up / MIB:.1f} MiB, download {down / MIB:.1f} MiB")
    assert up < 48 * MIB and down < 48 * MIB, (
        f"the node's peak RSS grew by {up / MIB:.1f} MiB (upload), {down / MIB:.1f} MiB (download)")
    # Ranges seek: the last MiB comes without the rest.
    r = get(node, sid, "big.bin", headers={"Range": f"bytes={(blocks - 1) * MIB}-"})
    assert r.status_code == 206 and r.content == block

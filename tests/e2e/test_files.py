"""Files: list, read, write, bytes and watches, confined to the sandbox (issue 4)."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from pathlib import Path

import pytest

from e2e_util import MIB, random_token, wait_until

MAX_FILE = 32 * MIB


def fs(node, sid, route, **body):
    return node.post(f"/v1/sandboxes/{sid}/fs/{route}", json=body)


def write_bytes(node, sid, path, data: bytes, **extra):
    return fs(node, sid, "write_bytes", path=path, content_b64=base64.b64encode(data).decode(), **extra)


def read_bytes(node, sid, path, **extra) -> bytes:
    r = fs(node, sid, "read_bytes", path=path, **extra)
    assert r.status_code == 200, r.text
    body = r.json()
    data = base64.b64decode(body["content_b64"])
    assert body["size"] == len(data)
    return data


def poll(node, sid, wid) -> list[dict]:
    r = node.post(f"/v1/sandboxes/{sid}/fs/watch/{wid}/poll")
    assert r.status_code == 200, r.text
    return r.json()["events"]


def poll_until(node, sid, wid, wanted, timeout=10.0) -> list[dict]:
    """Polls until every (type, path) in `wanted` has been seen; returns all events."""
    seen: list[dict] = []

    def done():
        seen.extend(poll(node, sid, wid))
        have = {(e["type"], e["path"]) for e in seen}
        return all(w in have for w in wanted)

    wait_until(done, timeout, lambda: f"watch events {wanted} not all seen; got {seen}")
    return seen


# -- round trips -------------------------------------------------------------------------------


def test_write_then_read_text_round_trips_and_creates_parents(node, sandbox):
    sid = sandbox["id"]
    text = "héllo wörld ✓\nline 2\n"
    r = fs(node, sid, "write", path="deep/er/notes.txt", content=text)
    assert r.status_code == 200, r.text
    assert r.json() == {"path": "/home/user/deep/er/notes.txt", "size_bytes": len(text.encode())}
    r = fs(node, sid, "read", path="/home/user/deep/er/notes.txt")
    assert r.status_code == 200 and r.json() == {"content": text}
    assert node.run(sid, "cat /home/user/deep/er/notes.txt") == text


@pytest.mark.parametrize("size", [0, 1, 4096 + 7, MAX_FILE])
def test_random_bytes_round_trip_exactly(node, sandbox, size):
    sid = sandbox["id"]
    data = os.urandom(size)
    r = write_bytes(node, sid, f"blob-{size}.bin", data)
    assert r.status_code == 200, r.text[:300]
    assert r.json()["size_bytes"] == size
    assert read_bytes(node, sid, f"blob-{size}.bin") == data
    assert node.run(sid, f"stat -c %s /home/user/blob-{size}.bin").strip() == str(size)


def test_write_bytes_just_over_32_mib_is_413_and_writes_nothing(node, sandbox):
    sid = sandbox["id"]
    r = write_bytes(node, sid, "too-big.bin", b"\0" * (MAX_FILE + 1))
    assert r.status_code == 413, r.text[:300]
    assert "32 MiB" in r.json()["error"]
    assert node.run(sid, "ls -A /home/user") == ""


def test_read_bytes_of_a_file_over_32_mib_is_413(node, sandbox):
    sid = sandbox["id"]
    node.run(sid, f"head -c {MAX_FILE + 1} /dev/zero > /home/user/huge")
    r = fs(node, sid, "read_bytes", path="huge")
    assert r.status_code == 413, r.text[:300]


def test_read_of_binary_file_is_415_pointing_to_read_bytes(node, sandbox):
    sid = sandbox["id"]
    assert write_bytes(node, sid, "bin", b"\xff\xfe\x00binary").status_code == 200
    r = fs(node, sid, "read", path="bin")
    assert r.status_code == 415, r.text
    assert "read_bytes" in r.json()["error"]


def test_written_files_belong_to_the_sandbox_user(node, sandbox):
    sid = sandbox["id"]
    assert fs(node, sid, "write", path="mine/file.txt", content="x").status_code == 200
    owners = node.run(sid, "stat -c '%u:%g' /home/user/mine /home/user/mine/file.txt").split()
    assert owners == ["1000:1000", "1000:1000"]


def test_user_cannot_write_root_owned_places_but_root_can(node, sandbox):
    sid = sandbox["id"]
    r = fs(node, sid, "write", path="/etc/app.conf", content="x")
    assert r.status_code == 403, r.text
    r = fs(node, sid, "write", path="/etc/app.conf", content="x", user="root")
    assert r.status_code == 200, r.text
    assert node.run(sid, "stat -c %u /etc/app.conf").strip() == "0"


def test_list_reports_entries_with_types_sizes_and_modes(node, sandbox):
    sid = sandbox["id"]
    node.run(sid, "cd /home/user && mkdir d && printf abc > f && chmod 640 f && ln -s f l")
    r = fs(node, sid, "list", path=".")
    assert r.status_code == 200, r.text
    entries = {e["name"]: e for e in r.json()["entries"]}
    assert set(entries) == {"d", "f", "l"}
    assert entries["d"]["type"] == "dir"
    assert entries["f"]["type"] == "file" and entries["f"]["size_bytes"] == 3
    assert entries["f"]["mode"] == 0o640 and entries["f"]["path"] == "/home/user/f"
    assert entries["l"]["type"] == "symlink"


def test_missing_paths_are_404_and_wrong_types_are_400(node, sandbox):
    sid = sandbox["id"]
    node.run(sid, "mkdir -p /home/user/dir && echo x > /home/user/file")
    assert fs(node, sid, "read", path="nope").status_code == 404
    assert fs(node, sid, "list", path="/nope").status_code == 404
    assert fs(node, sid, "read_bytes", path="dir").status_code == 400
    assert fs(node, sid, "write", path="dir", content="x").status_code == 400
    assert fs(node, sid, "list", path="file").status_code == 400
    r = fs(node, sid, "write", path="file/child.txt", content="x")
    assert r.status_code == 400, r.text
    assert node.run(sid, "cat /home/user/file") == "x\n"


def test_bad_bodies_get_clear_errors(node, sandbox):
    sid = sandbox["id"]
    r = fs(node, sid, "write_bytes", path="x", content_b64="not base64!!")
    assert r.status_code == 400 and "base64" in r.json()["error"]
    r = fs(node, sid, "write", path="x", content="x", mode=7)
    assert r.status_code == 400 and "mode" in r.json()["error"]
    r = fs(node, sid, "read", path="x", user="admin")
    assert r.status_code == 400 and "user" in r.json()["error"]


# -- atomicity and disk full ---------------------------------------------------------------------


def test_a_reader_never_sees_half_a_file(node, sandbox):
    sid = sandbox["id"]
    size = 2 * MIB
    versions = [b"a" * size, b"b" * size]
    assert write_bytes(node, sid, "/home/user/atomic.bin", versions[0]).status_code == 200
    reader = (
        "import time\n"
        f"size={size}\nbad=0\nreads=0\nend=time.time()+4\n"
        "while time.time()<end:\n"
        "    d=open('/home/user/atomic.bin','rb').read()\n"
        "    reads+=1\n"
        "    if len(d)!=size or d.count(d[:1])!=size: bad+=1\n"
        "print(reads, bad)\n"
    )
    assert fs(node, sid, "write", path="/home/user/reader.py", content=reader).status_code == 200
    result = {}
    t = threading.Thread(target=lambda: result.update(node.sh(sid, "python3 /home/user/reader.py", timeout_ms=30000)))
    t.start()
    writes = 0
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        assert write_bytes(node, sid, "/home/user/atomic.bin", versions[writes % 2]).status_code == 200
        writes += 1
    t.join(60)
    reads, bad = map(int, result["stdout"].split())
    assert writes >= 4 and reads > 10, (writes, reads)
    assert bad == 0, f"{bad} of {reads} reads saw a partial file"
    assert ".ai2in-" not in node.run(sid, "ls -A /home/user")


def test_base64_broken_past_the_first_piece_is_400_and_leaves_no_debris(node, sandbox):
    # The text goes to the sandbox piece by piece (4 MiB of base64 each): a bad character in
    # a later piece is found after the first pieces were written.
    sid = sandbox["id"]
    assert fs(node, sid, "write", path="keep.bin", content="original").status_code == 200
    text = base64.b64encode(os.urandom(6 * MIB)).decode()
    r = fs(node, sid, "write_bytes", path="keep.bin", content_b64=text[:-8] + "!!!!" + text[-4:])
    assert r.status_code == 400 and "base64" in r.json()["error"], r.text[:300]
    assert fs(node, sid, "read", path="keep.bin").json() == {"content": "original"}
    assert node.run(sid, "ls -A /home/user") == "keep.bin\n"


def test_disk_full_is_507_and_leaves_the_old_file_and_no_debris(node):
    sbx = node.create_sandbox(disk_bytes=8 * MIB)
    sid = sbx["id"]
    try:
        assert fs(node, sid, "write", path="keep.txt", content="original").status_code == 200
        r = write_bytes(node, sid, "keep.txt", os.urandom(12 * MIB))
        assert r.status_code == 507, r.text[:300]
        assert "full" in r.json()["error"]
        assert fs(node, sid, "read", path="keep.txt").json() == {"content": "original"}
        assert ".ai2in-" not in node.run(sid, "ls -A /home/user")
        assert fs(node, sid, "write", path="small.txt", content="still works").status_code == 200
    finally:
        node.delete_sandbox(sid)


def test_paused_sandbox_answers_409_to_every_file_route(node, sandbox):
    sid = sandbox["id"]
    assert node.post(f"/v1/sandboxes/{sid}/pause").status_code == 200
    try:
        for route, body in [
            ("list", {"path": "/"}),
            ("read", {"path": "/etc/hostname"}),
            ("read_bytes", {"path": "/etc/hostname"}),
            ("write", {"path": "x", "content": "x"}),
            ("write_bytes", {"path": "x", "content_b64": ""}),
            ("watch", {"path": "/home/user"}),
        ]:
            r = fs(node, sid, route, **body)
            assert r.status_code == 409, f"{route}: {r.status_code} {r.text}"
            assert "paused" in r.json()["error"]
    finally:
        assert node.post(f"/v1/sandboxes/{sid}/resume").status_code == 200


# -- confinement -------------------------------------------------------------------------------


def test_no_path_reads_a_host_file(node, sandbox, host_secret):
    sid = sandbox["id"]
    path, content = host_secret
    node.run(sid, f"ln -s {path} /home/user/link; ln -s / /home/user/rootlink", user="user")
    state_key = Path(node.state_dir) / "admin.key"
    for attempt in [
        str(path),
        f"../../../..{path}",
        f"/proc/self/root{path}",
        f"/proc/1/root{path}",
        f"/proc/1/cwd/../../..{path}",
        "link",
        f"rootlink{path}",
        str(state_key),
        f"/proc/1/root{state_key}",
    ]:
        for user in ("user", "root"):
            r = fs(node, sid, "read", path=attempt, user=user)
            assert content not in r.text and node.admin_key not in r.text, f"{attempt} leaked the host file"
            assert r.status_code in (403, 404), f"{attempt} as {user}: {r.status_code} {r.text}"


def test_no_path_writes_a_host_file(node, sandbox, host_secret):
    sid = sandbox["id"]
    path, content = host_secret
    node.run(sid, f"ln -s {path} /tmp/wlink; ln -s /root /tmp/rootdir")
    for attempt in [str(path), f"../../../..{path}", f"/proc/1/root{path}", "/tmp/wlink", f"/tmp/rootdir/{path.name}"]:
        r = fs(node, sid, "write", path=attempt, content="pwned", user="root")
        assert r.status_code in (200, 403, 404), f"{attempt}: {r.status_code} {r.text}"
        assert path.read_text() == content, f"writing {attempt} changed the host file"
    # What was written landed inside the sandbox.
    assert node.run(sid, f"cat {path}") == "pwned"


def test_symlink_swapped_during_reads_never_reaches_the_host(node, sandbox, host_secret):
    sid = sandbox["id"]
    path, content = host_secret
    node.run(sid, f"mkdir -p /home/user/safe && echo inside > /home/user/safe/{path.name}")
    swapper = (
        f"end=$(( $(date +%s) + 3 )); while [ $(date +%s) -lt $end ]; do "
        f"ln -sfn /home/user/safe /home/user/sw; ln -sfn /root /home/user/sw; done"
    )
    t = threading.Thread(target=lambda: node.sh(sid, swapper, timeout_ms=20000))
    t.start()
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        r = fs(node, sid, "read", path=f"sw/{path.name}", user="root")
        assert content not in r.text
        assert r.status_code in (200, 404), r.text
        if r.status_code == 200:
            assert r.json()["content"] == "inside\n"
    t.join(30)


def test_sandboxes_cannot_read_each_others_files(node):
    a = node.create_sandbox()["id"]
    b = node.create_sandbox()["id"]
    try:
        secret = random_token()
        assert fs(node, a, "write", path="/tmp/a-secret", content=secret).status_code == 200
        assert fs(node, b, "read", path="/tmp/a-secret").status_code == 404
        pids = node.run(b, "ls /proc | grep -E '^[0-9]+$' | tr '\\n' ' '").split()
        for pid in pids:
            r = fs(node, b, "read", path=f"/proc/{pid}/root/tmp/a-secret", user="root")
            assert secret not in r.text
    finally:
        node.delete_sandbox(a)
        node.delete_sandbox(b)


# -- watches -----------------------------------------------------------------------------------


def test_recursive_watch_reports_create_modify_delete_rename(node, sandbox):
    sid = sandbox["id"]
    node.run(sid, "mkdir -p /home/user/w/sub", user="user")
    r = fs(node, sid, "watch", path="w", recursive=True)
    assert r.status_code == 200, r.text
    wid = r.json()["watch_id"]
    assert wid.startswith("wch_")
    node.run(
        sid,
        "cd /home/user/w && echo 1 > a && echo 2 >> a && mkdir sub/new && echo 3 > sub/new/deep "
        "&& mv a b && rm sub/new/deep",
        user="user",
    )
    events = poll_until(
        node,
        sid,
        wid,
        [
            ("create", "/home/user/w/a"),
            ("modify", "/home/user/w/a"),
            ("create", "/home/user/w/sub/new"),
            ("create", "/home/user/w/sub/new/deep"),
            ("rename", "/home/user/w/b"),
            ("delete", "/home/user/w/sub/new/deep"),
        ],
    )
    for e in events:
        assert set(e) == {"type", "path", "timestamp"} and e["timestamp"].endswith("Z")
    order = [(e["type"], e["path"]) for e in events]
    assert order.index(("create", "/home/user/w/a")) < order.index(("rename", "/home/user/w/b"))
    assert poll(node, sid, wid) == [], "poll drains the queue"
    assert node.post(f"/v1/sandboxes/{sid}/fs/watch/{wid}/stop").status_code == 204
    assert node.post(f"/v1/sandboxes/{sid}/fs/watch/{wid}/poll").status_code == 404


def test_non_recursive_watch_ignores_subdirectories(node, sandbox):
    sid = sandbox["id"]
    node.run(sid, "mkdir -p /home/user/flat/sub", user="user")
    wid = fs(node, sid, "watch", path="flat").json()["watch_id"]
    node.run(sid, "echo x > /home/user/flat/sub/inner; echo y > /home/user/flat/top", user="user")
    events = poll_until(node, sid, wid, [("create", "/home/user/flat/top")])
    assert not any("inner" in e["path"] for e in events), events


def test_watch_queue_overflow_is_reported(node, sandbox):
    sid = sandbox["id"]
    wid = fs(node, sid, "watch", path="/tmp", user="root").json()["watch_id"]
    node.run(sid, "cd /tmp && for i in $(seq 1 5000); do : > f$i; done")
    events = wait_until(lambda: poll(node, sid, wid), 10, "no events after 5000 creates")
    assert events[-1]["type"] == "overflow", events[-3:]
    assert len(events) <= 4097


def test_watch_errors_are_clear(node, sandbox):
    sid = sandbox["id"]
    r = fs(node, sid, "watch", path="not-yet")
    assert r.status_code == 404 and "not-yet" in r.json()["error"]
    assert node.post(f"/v1/sandboxes/{sid}/fs/watch/wch_0000/poll").status_code == 404
    assert node.post(f"/v1/sandboxes/{sid}/fs/watch/../poll").status_code == 404
    node.run(sid, "mkdir /home/user/gone", user="user")
    wid = fs(node, sid, "watch", path="gone").json()["watch_id"]
    node.run(sid, "rmdir /home/user/gone")
    events = poll_until(node, sid, wid, [("delete", "/home/user/gone")])
    assert events


def test_watch_events_stream_as_server_sent_events(node, sandbox):
    sid = sandbox["id"]
    wid = fs(node, sid, "watch", path="/home/user").json()["watch_id"]
    url = f"/v1/sandboxes/{sid}/fs/watch/{wid}/events"
    with node.get(url, stream=True, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        node.run(sid, "echo hi > /home/user/streamed", user="user")
        events = []
        current = None
        for line in r.iter_lines(decode_unicode=True):
            if line.startswith("event:"):
                current = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and current == "fs":
                events.append(json.loads(line.split(":", 1)[1]))
                if any(e["path"] == "/home/user/streamed" and e["type"] == "create" for e in events):
                    break
    assert events[0]["path"] == "/home/user/streamed"
    assert node.post(f"/v1/sandboxes/{sid}/fs/watch/{wid}/stop").status_code == 204


def test_a_watch_stream_says_so_when_its_sandbox_ends(node):
    sid = node.create_sandbox()["id"]
    wid = fs(node, sid, "watch", path="/home/user").json()["watch_id"]
    with node.get(f"/v1/sandboxes/{sid}/fs/watch/{wid}/events", stream=True, timeout=30) as r:
        assert r.status_code == 200
        node.delete_sandbox(sid)
        lines = list(r.iter_lines(decode_unicode=True))  # the stream ends with the sandbox
    errors = [json.loads(line.split(":", 1)[1]) for i, line in enumerate(lines)
              if line.startswith("data:") and lines[i - 1] == "event: error"]
    assert errors and "has ended" in errors[-1]["error"], lines

"""Storage end to end: volumes (`/v1/volumes`, mounts in sandboxes), the sandbox's own disk
(`disk_bytes`: a disk, not memory) and snapshots (`POST /v1/sandboxes/:id/snapshot`).

What is checked is what a user sees (answers, bodies, files, modes and owners inside) and,
where it matters, what the kernel of the host sees (the volume's file on the node's disk, its
mounts). Most tests use the shared node with a tenant of their own (a fresh key), so that what
they list is theirs; tests that need another configuration (limits, quotas, tmpfs layers, a
full disk) or that kill the node run their own.

The contract: /tmp/brief/storage-contract.md and "Volumes and snapshots" in API.md.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path

import pytest

import image_fixtures
from conftest import Node
from e2e_util import (
    GIB,
    IMAGE_ID_RE,
    MIB,
    agent_pid,
    epoch,
    mountinfo_lines,
    per_node,
    pid_alive,
    random_token,
    wait_until,
)

VOLUME_ID_RE = re.compile(r"^vol_[0-9A-Za-z]+$")
ALL_SCOPES = ["sandboxes:read", "sandboxes:write", "volumes:read", "volumes:write",
              "images:read", "images:write"]
NO_SPACE = "No space left on device"
READ_ONLY_FS = "Read-only file system"


# ---------------------------------------------------------------------------------------------
# helpers (test_storage_security.py uses them too)


def tenant_key(node, scopes=ALL_SCOPES, tenant: str | None = None) -> str:
    """The secret of a new key of a new (or the given) tenant."""
    return node.create_key(list(scopes), tenant=tenant or "st-" + random_token(8).lower())["key"]


def error_of(r, status: int, code: str | tuple[str, ...] | None = None) -> str:
    """Asserts an error answer of `status` (and `code`), returns its sentence."""
    where = f"{r.request.method} {urllib.parse.unquote(r.request.path_url)}"
    assert r.status_code == status, f"{where}: expected {status}, got {r.status_code}: {r.text}"
    body = r.json()
    err = body.get("error")
    assert isinstance(err, str) and err.strip(), f"{where}: no error sentence: {r.text}"
    if code is not None:
        codes = (code,) if isinstance(code, str) else code
        assert body.get("code") in codes, f"{where}: expected code {codes}, got {r.text}"
    return err


def mount(volume_id: str, path: str = "/data", read_only: bool | None = None) -> dict:
    """An item of a create's `volumes`."""
    item = {"volume_id": volume_id, "path": path}
    if read_only is not None:
        item["read_only"] = read_only
    return item


def get_volume(node, ref: str, key=None) -> dict:
    r = node.get(f"/v1/volumes/{ref}", key=key)
    assert r.status_code == 200, f"GET /v1/volumes/{ref} → {r.status_code} {r.text}"
    return r.json()


def list_volumes(node, key=None) -> list[dict]:
    r = node.get("/v1/volumes", key=key)
    assert r.status_code == 200, f"GET /v1/volumes → {r.status_code} {r.text}"
    vols = r.json()["volumes"]
    assert isinstance(vols, list), r.text
    return vols


def attached(node, ref: str, key=None) -> list[str]:
    return sorted(get_volume(node, ref, key)["attached_to"])


def wait_attached(node, ref: str, expected, key=None, timeout: float = 10.0) -> None:
    expected = sorted(expected)
    wait_until(lambda: attached(node, ref, key) == expected, timeout,
               lambda: f"attached_to of {ref} is {attached(node, ref, key)}, not {expected}")


def assert_volume_shape(v: dict) -> None:
    assert set(v) >= {"id", "name", "size_bytes", "used_bytes", "created_at", "attached_to"}, v
    assert VOLUME_ID_RE.match(v["id"]), f"bad volume id {v['id']!r}"
    assert isinstance(v["name"], str) and v["name"], v
    assert isinstance(v["size_bytes"], int) and isinstance(v["used_bytes"], int), v
    assert 0 <= v["used_bytes"] <= v["size_bytes"], v
    assert isinstance(v["attached_to"], list), v
    epoch(v["created_at"])  # RFC 3339 UTC


def volume_files(state_dir, volume_id: str) -> list[Path]:
    """Files of the node's state dir named after the volume (its disk image)."""
    out = []
    for root, dirs, files in os.walk(state_dir):
        # The sandboxes' and images' trees are large and never hold a volume's file.
        if root == str(state_dir):
            dirs[:] = [d for d in dirs if d not in ("sandboxes", "images")]
        out += [Path(root, f) for f in files if volume_id in f]
    return out


def loop_backing_files() -> dict[str, str]:
    """/dev/loopN → the file behind it, for every bound loop device of the host."""
    out = {}
    for name in os.listdir("/sys/block"):
        if not name.startswith("loop"):
            continue
        try:
            out[f"/dev/{name}"] = Path(f"/sys/block/{name}/loop/backing_file").read_text().strip()
        except OSError:
            pass
    return out


def snapshot_of(node, sid: str, key=None, ref: str | None = None, expect: int = 201):
    """`POST /v1/sandboxes/:id/snapshot`; the image on 201, else the answer."""
    body = {} if ref is None else {"ref": ref}
    r = node.post(f"/v1/sandboxes/{sid}/snapshot", key=key, json=body)
    if expect != 201:
        return r
    assert r.status_code == 201, f"snapshot of {sid} → {r.status_code} {r.text}"
    img = r.json()
    assert IMAGE_ID_RE.match(img["id"]), img
    assert img["source"] == "snapshot", img
    return img


def list_images(node, key=None) -> list[dict]:
    r = node.get("/v1/images", key=key)
    assert r.status_code == 200, f"GET /v1/images → {r.status_code} {r.text}"
    return r.json()["images"]


def run_code(node, sid: str, code: str, key=None) -> dict:
    r = node.post(f"/v1/sandboxes/{sid}/run", key=key, json={"code": code})
    assert r.status_code == 200, f"run {code!r} → {r.status_code} {r.text}"
    return r.json()


def main_text(execution) -> str | None:
    mains = [r for r in execution["results"] if r["is_main_result"]]
    return mains[0]["data"]["text/plain"] if mains else None


def outputs(res) -> str:
    return res["stdout"] + res["stderr"] + (res.get("error") or "")


class Tracker:
    """What a test made on a node, removed at its end in order: sandboxes, images,
    volumes (best effort: the test may have removed them, or killed the node)."""

    def __init__(self, node):
        self.node = node
        self.sandboxes: list[tuple[str, object]] = []
        self.volumes: list[tuple[str, object]] = []
        self.images: list[tuple[str, object]] = []

    def sandbox(self, key=None, **body) -> dict:
        sbx = self.node.create_sandbox(key=key, **body)
        self.sandboxes.append((sbx["id"], key))
        return sbx

    def sid(self, key=None, **body) -> str:
        return self.sandbox(key, **body)["id"]

    def volume(self, key=None, **body) -> dict:
        r = self.node.post("/v1/volumes", key=key, json=body)
        assert r.status_code == 201, f"POST /v1/volumes {body} → {r.status_code} {r.text}"
        v = r.json()
        assert_volume_shape(v)
        self.volumes.append((v["id"], key))
        return v

    def snapshot(self, sid: str, key=None, ref: str | None = None) -> dict:
        img = snapshot_of(self.node, sid, key, ref)
        self.images.append((img["id"], key))
        return img

    def cleanup(self) -> None:
        if not self.node.running:
            return
        for kind, items in (("sandboxes", self.sandboxes), ("images", self.images),
                            ("volumes", self.volumes)):
            for rid, key in reversed(items):
                # A volume is free once its sandboxes are gone: give that a moment.
                deadline = time.monotonic() + (5 if kind == "volumes" else 0)
                while True:
                    try:
                        r = self.node.delete(f"/v1/{kind}/{rid}", key=key, timeout=60)
                    except Exception:  # noqa: BLE001 - best effort
                        break
                    if r.status_code != 409 or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)


@pytest.fixture
def track(request):
    """`track(node)` → the test's Tracker on that node (one per node)."""
    with per_node(Tracker) as get:
        yield get


@pytest.fixture
def t(node, track) -> Tracker:
    return track(node)


# ---------------------------------------------------------------------------------------------
# volumes: create, list, get, delete


def test_volumes_are_created_listed_got_by_id_or_name_and_deleted(node, t):
    key = tenant_key(node)
    assert list_volumes(node, key) == []
    before = time.time()
    a = t.volume(key, name="data-a", size_bytes=64 * MIB)
    assert a["name"] == "data-a" and a["size_bytes"] == 64 * MIB and a["attached_to"] == [], a
    assert a["used_bytes"] < 32 * MIB, f"a fresh volume uses half its size: {a}"
    assert before - 5 <= epoch(a["created_at"]) <= time.time() + 5, a["created_at"]
    b = t.volume(key, size_bytes=16 * MIB)  # the minimum, no name: the id is its name
    assert b["name"] == b["id"] and b["size_bytes"] == 16 * MIB, b
    c = t.volume(key, name="c.0_z-9", size_bytes=32 * MIB)

    listed = list_volumes(node, key)
    assert [v["id"] for v in listed] == [a["id"], b["id"], c["id"]], f"not oldest first: {listed}"
    for got, made in zip(listed, (a, b, c)):
        assert_volume_shape(got)
        assert {k: got[k] for k in ("id", "name", "size_bytes", "created_at", "attached_to")} == \
            {k: made[k] for k in ("id", "name", "size_bytes", "created_at", "attached_to")}, (got, made)
    for ref in (a["id"], "data-a"):
        got = get_volume(node, ref, key)
        assert got["id"] == a["id"] and got["name"] == "data-a" and got["size_bytes"] == 64 * MIB, got

    # The name is the tenant's: taken twice is 409, and the sentence names it.
    err = error_of(node.post("/v1/volumes", key=key, json={"name": "data-a", "size_bytes": 16 * MIB}),
                   409, "already_exists")
    assert "data-a" in err, err

    # Its file is on the node's disk (sparse: its size, not its blocks) and goes with it.
    files = volume_files(node.state_dir, a["id"])
    assert files, f"no file named after {a['id']} in {node.state_dir}"
    assert any(f.stat().st_size >= 64 * MIB for f in files), [(f, f.stat().st_size) for f in files]

    r = node.delete("/v1/volumes/data-a", key=key)
    assert r.status_code == 204 and r.content == b"", f"DELETE by name → {r.status_code} {r.text}"
    error_of(node.get(f"/v1/volumes/{a['id']}", key=key), 404, "not_found")
    error_of(node.get("/v1/volumes/data-a", key=key), 404, "not_found")
    error_of(node.delete(f"/v1/volumes/{a['id']}", key=key), 404, "not_found")
    wait_until(lambda: not volume_files(node.state_dir, a["id"]), 10,
               lambda: f"the deleted volume's file is still there: {volume_files(node.state_dir, a['id'])}")
    assert [v["id"] for v in list_volumes(node, key)] == [b["id"], c["id"]]

    for v in (b, c):
        r = node.delete(f"/v1/volumes/{v['id']}", key=key)
        assert r.status_code == 204, r.text
    assert list_volumes(node, key) == []
    error_of(node.delete("/v1/volumes/vol_doesnotexist000000", key=key), 404, "not_found")
    error_of(node.get("/v1/volumes/no-such-volume", key=key), 404, "not_found")

    # A deleted name can be used again; it is a new volume.
    again = t.volume(key, name="data-a", size_bytes=16 * MIB)
    assert again["id"] != a["id"] and again["used_bytes"] < 8 * MIB, again


BAD_VOLUME_BODIES = [
    ({"size_bytes": 16 * MIB - 1}, "size_bytes"),
    ({"size_bytes": 256 * GIB + 1}, "size_bytes"),
    ({"size_bytes": 0}, "size_bytes"),
    ({"size_bytes": -1}, "size_bytes"),
    ({"size_bytes": "67108864"}, "size_bytes"),
    ({"size_bytes": 64.5 * MIB}, "size_bytes"),
    ({}, "size_bytes"),
    ({"name": "data"}, "size_bytes"),
    ({"size_bytes": 16 * MIB, "name": ""}, "name"),
    ({"size_bytes": 16 * MIB, "name": "Data"}, "name"),
    ({"size_bytes": 16 * MIB, "name": "-data"}, "name"),
    ({"size_bytes": 16 * MIB, "name": ".data"}, "name"),
    ({"size_bytes": 16 * MIB, "name": "_data"}, "name"),
    ({"size_bytes": 16 * MIB, "name": "a" * 64}, "name"),
    ({"size_bytes": 16 * MIB, "name": "a/b"}, "name"),
    ({"size_bytes": 16 * MIB, "name": "a b"}, "name"),
    ({"size_bytes": 16 * MIB, "name": "donn\u00e9es"}, "name"),
    ({"size_bytes": 16 * MIB, "name": "vol_x:y"}, "name"),
    ({"size_bytes": 16 * MIB, "name": 7}, "name"),
    ({"size_bytes": 16 * MIB, "sizee": 1}, "sizee"),
]


@pytest.mark.parametrize("body,field", BAD_VOLUME_BODIES, ids=lambda x: repr(x)[:40])
def test_a_bad_volume_create_is_400_naming_the_field(node, body, field):
    key = tenant_key(node)
    err = error_of(node.post("/v1/volumes", key=key, json=body), 400, "invalid_request")
    assert field in err, f"the sentence must name {field!r}: {err}"
    assert list_volumes(node, key) == [], "a refused create left a volume"


def test_the_longest_name_and_the_bounds_of_size_are_accepted(node, t):
    key = tenant_key(node)
    v = t.volume(key, name="0" + "a" * 62, size_bytes=16 * MIB)
    assert v["name"] == "0" + "a" * 62
    # A name that looks like an id is just a name; getting by it works.
    w = t.volume(key, name="vol_lookalike", size_bytes=16 * MIB)
    assert w["id"] != "vol_lookalike" and get_volume(node, "vol_lookalike", key)["id"] == w["id"]


# ---------------------------------------------------------------------------------------------
# mounts: attached_to, used_bytes, data that outlives the sandbox


def test_a_mounted_volume_is_attached_fills_and_outlives_its_sandbox(node, t):
    key = tenant_key(node)
    v = t.volume(key, name="work", size_bytes=64 * MIB)
    sbx = t.sandbox(key, volumes=[mount("work", "/data")])  # by name
    sid = sbx["id"]
    expected = [{"volume_id": v["id"], "path": "/data", "read_only": False}]
    assert sbx["volumes"] == expected, f"create answered volumes {sbx['volumes']}"
    assert node.sandbox(sid, key=key).json()["volumes"] == expected
    listed = {s["id"]: s for s in node.get("/v1/sandboxes", key=key).json()["sandboxes"]}
    assert listed[sid]["volumes"] == expected, listed[sid]
    assert attached(node, v["id"], key) == [sid]

    # Nothing of it is mounted on the host.
    assert not mountinfo_lines(v["id"]), mountinfo_lines(v["id"])
    host_mounts = Path("/proc/self/mountinfo").read_text()
    for dev, backing in loop_backing_files().items():
        if v["id"] in backing:
            assert f" {dev} " not in host_mounts, f"the volume's {dev} is mounted on the host"

    used0 = get_volume(node, v["id"], key)["used_bytes"]
    out = node.run(sid, "head -c 8388608 /dev/urandom > /data/blob && sync && sha256sum /data/blob "
                        "&& stat -c '%u:%g %a' /data", key=key)
    digest = out.split()[0]
    assert out.splitlines()[-1] == "0:0 755", f"the volume's root inside: {out}"
    used1 = wait_until(
        lambda: (u := get_volume(node, v["id"], key)["used_bytes"]) >= used0 + 8 * MIB - 256 * 1024 and u,
        10, lambda: f"used_bytes did not grow by 8 MiB from {used0}: {get_volume(node, v['id'], key)}")
    assert used1 <= 64 * MIB

    # In use: not deletable, and the sentence names the sandbox.
    for ref in (v["id"], "work"):
        err = error_of(node.delete(f"/v1/volumes/{ref}", key=key), 409, "in_use")
        assert sid in err, f"409 must name the sandbox that mounts it: {err}"
    assert node.run(sid, "sha256sum < /data/blob", key=key).split()[0] == digest

    node.delete_sandbox(sid, key=key)
    wait_attached(node, v["id"], [], key)
    # A new sandbox sees the data, read-only, elsewhere.
    other = t.sandbox(key, volumes=[mount(v["id"], "/mnt/again", read_only=True)])
    assert other["volumes"] == [{"volume_id": v["id"], "path": "/mnt/again", "read_only": True}]
    assert node.run(other["id"], "sha256sum < /mnt/again/blob", key=key).split()[0] == digest
    assert get_volume(node, v["id"], key)["used_bytes"] >= used0 + 8 * MIB - 256 * 1024
    node.delete_sandbox(other["id"], key=key)
    wait_attached(node, v["id"], [], key)

    files = volume_files(node.state_dir, v["id"])
    r = node.delete(f"/v1/volumes/{v['id']}", key=key)
    assert r.status_code == 204, r.text
    wait_until(lambda: not any(f.exists() for f in files), 10, f"{files} outlived the volume")


def test_a_write_past_size_bytes_fails_with_enospc_inside(node, t):
    key = tenant_key(node)
    v = t.volume(key, size_bytes=16 * MIB)
    sid = t.sid(key, volumes=[mount(v["id"], "/data")])
    res = node.sh(sid, "dd if=/dev/zero of=/data/big bs=1M count=32", key=key, timeout_ms=120_000)
    assert res["exit_code"] != 0, f"32 MiB went into a 16 MiB volume: {res}"
    assert NO_SPACE in res["stderr"], res["stderr"]
    size = int(node.run(sid, "stat -c %s /data/big", key=key))
    assert size <= 16 * MIB, f"/data/big grew to {size} bytes"
    assert get_volume(node, v["id"], key)["used_bytes"] <= 16 * MIB
    # The sandbox works on; space is given back.
    assert node.run(sid, "rm /data/big && head -c 4194304 /dev/zero > /data/small && echo ok",
                    key=key) == "ok\n"
    assert node.run(sid, "echo alive > /home/user/alive && cat /home/user/alive", key=key) == "alive\n"


def test_volume_files_keep_their_owners_across_sandboxes(node, t):
    key = tenant_key(node)
    v = t.volume(key, size_bytes=16 * MIB)
    one = t.sid(key, volumes=[mount(v["id"], "/home/user/vol")])
    assert node.run(one, "stat -c '%u:%g %a' /home/user/vol", key=key) == "0:0 755\n"
    node.run(one, "cd /home/user/vol && echo r > by-root && mkdir u && echo u > u/f && "
                  "chown -R 1000:1000 u && echo odd > odd && chown 4321:8765 odd && chmod 600 odd",
             key=key)
    # user (uid 1000) may not write in root's 0755 directory, but in its own.
    res = node.sh(one, "touch /home/user/vol/by-user", key=key, user="user")
    assert res["exit_code"] != 0 and "Permission denied" in outputs(res), res
    node.run(one, "echo g > /home/user/vol/u/g", key=key, user="user")
    node.delete_sandbox(one, key=key)

    # Another sandbox (another uid range on the host) sees the same owners.
    two = t.sid(key, volumes=[mount(v["id"], "/srv/vol", read_only=True)])
    out = node.run(two, "cd /srv/vol && stat -c '%n %u:%g %a' . by-root u u/f u/g odd", key=key)
    assert out.splitlines() == [
        ". 0:0 755", "by-root 0:0 644", "u 1000:1000 755", "u/f 1000:1000 644",
        "u/g 1000:1000 644", "odd 4321:8765 600"], out
    assert node.run(two, "cat /srv/vol/u/g", key=key, user="user") == "g\n"


@pytest.mark.parametrize("path", ["/etc/passwd", "/etc/hostname", "/bin"])
def test_a_mount_path_where_the_image_has_a_file_or_symlink_is_400(node, t, path):
    # The host image: /etc/passwd and /etc/hostname are files, /bin a symlink to usr/bin.
    key = tenant_key(node)
    v = t.volume(key, size_bytes=16 * MIB)
    err = error_of(node.post("/v1/sandboxes", key=key, json={"volumes": [mount(v["id"], path)]}),
                   400, "invalid_request")
    assert path in err, f"the sentence must name the path: {err}"
    assert node.get("/v1/sandboxes", key=key).json()["sandboxes"] == [], "the refused create left a sandbox"
    assert attached(node, v["id"], key) == []
    # The volume is still usable.
    sid = t.sid(key, volumes=[mount(v["id"], "/data")])
    assert node.run(sid, "touch /data/ok && echo ok", key=key) == "ok\n"


# ---------------------------------------------------------------------------------------------
# bad mounts


@pytest.fixture(scope="module")
def mount_tenant(node):
    """A tenant with two volumes, for the refused creates (which must leave them alone)."""
    key = tenant_key(node)
    vols = []
    for name in ("first", "second"):
        r = node.post("/v1/volumes", key=key, json={"name": name, "size_bytes": 16 * MIB})
        assert r.status_code == 201, r.text
        vols.append(r.json()["id"])
    yield key, vols
    for vid in vols:
        node.delete(f"/v1/volumes/{vid}", key=key)


def _one(path, **kw):
    return lambda v, w: [mount(v, path, **kw)]


BAD_MOUNTS = {
    "relative": (_one("data"), "path"),
    "empty": (_one(""), "path"),
    "root": (_one("/"), "path"),
    "dot": (_one("/data/./x"), "path"),
    "dot-last": (_one("/data/."), "path"),
    "dotdot": (_one("/data/../etc"), "path"),
    "dotdot-first": (_one("/../data"), "path"),
    "double-slash-first": (_one("//data"), "path"),
    "double-slash": (_one("/data//x"), "path"),
    "trailing-slash": (_one("/data/"), "path"),
    "proc": (_one("/proc"), "path"),
    "under-proc": (_one("/proc/x"), "path"),
    "dev": (_one("/dev"), "path"),
    "under-dev": (_one("/dev/shm"), "path"),
    "sys": (_one("/sys"), "path"),
    "under-sys": (_one("/sys/fs/x"), "path"),
    "nul": (_one("/da\u0000ta"), "path"),
    "path-twice": (lambda v, w: [mount(v, "/data"), mount(w, "/data")], "path"),
    "volume-twice": (lambda v, w: [mount(v, "/a"), mount(v, "/b", read_only=True)], "volume"),
    "unknown-field": (lambda v, w: [{"volume_id": v, "path": "/data", "mode": "rw"}], "mode"),
    "missing-path": (lambda v, w: [{"volume_id": v}], "path"),
    "missing-volume-id": (lambda v, w: [{"path": "/data"}], "volume_id"),
    "read-only-not-bool": (_one("/data", read_only="yes"), "read_only"),
    "not-a-list": (lambda v, w: {"volume_id": v, "path": "/data"}, "volumes"),
}


@pytest.mark.parametrize("case", list(BAD_MOUNTS))
def test_a_bad_mount_is_400_naming_the_field(node, mount_tenant, case):
    key, (v, w) = mount_tenant
    make, field = BAD_MOUNTS[case]
    err = error_of(node.post("/v1/sandboxes", key=key, json={"volumes": make(v, w)}),
                   400, "invalid_request")
    assert field in err.lower(), f"the sentence must name {field!r}: {err}"
    assert node.get("/v1/sandboxes", key=key).json()["sandboxes"] == [], "a refused create left a sandbox"
    assert attached(node, v, key) == [] and attached(node, w, key) == []


def test_more_than_16_volumes_is_400(node, t):
    key = tenant_key(node)
    vols = [t.volume(key, size_bytes=16 * MIB)["id"] for _ in range(17)]
    body = {"volumes": [mount(vid, f"/v{i}") for i, vid in enumerate(vols)]}
    err = error_of(node.post("/v1/sandboxes", key=key, json=body), 400, "invalid_request")
    assert "16" in err, f"the sentence must give the limit: {err}"
    assert node.get("/v1/sandboxes", key=key).json()["sandboxes"] == []
    # 16 is fine.
    body["volumes"].pop()
    sid = t.sid(key, **body)
    assert node.run(sid, "ls -d /v0 /v15 | wc -l", key=key) == "2\n"


def test_an_unknown_volume_is_404(node, mount_tenant):
    key, _ = mount_tenant
    for ref in ("vol_doesnotexist000000", "no-such-name"):
        err = error_of(node.post("/v1/sandboxes", key=key, json={"volumes": [mount(ref)]}), 404, "not_found")
        assert ref in err, err


# ---------------------------------------------------------------------------------------------
# tenants and scopes


def test_another_tenant_cannot_see_get_delete_or_mount_a_volume(node, t):
    mine, theirs = tenant_key(node), tenant_key(node)
    v = t.volume(mine, name="private", size_bytes=16 * MIB)
    holder = t.sid(mine, volumes=[mount("private")])
    node.run(holder, "echo mine > /data/secret", key=mine)

    assert list_volumes(node, theirs) == []
    for ref in (v["id"], "private"):
        error_of(node.get(f"/v1/volumes/{ref}", key=theirs), 404, "not_found")
        error_of(node.delete(f"/v1/volumes/{ref}", key=theirs), 404, "not_found")
        for ro in (False, True):
            error_of(node.post("/v1/sandboxes", key=theirs, json={"volumes": [mount(ref, read_only=ro)]}),
                     404, "not_found")
    assert get_volume(node, v["id"], mine)["attached_to"] == [holder]

    # The other tenant may have a volume of that name: its own, empty.
    own = t.volume(theirs, name="private", size_bytes=16 * MIB)
    assert own["id"] != v["id"]
    sbx = t.sandbox(theirs, volumes=[mount("private")])
    assert sbx["volumes"][0]["volume_id"] == own["id"], sbx["volumes"]
    assert node.run(sbx["id"], "ls -A /data | grep -v lost+found; true", key=theirs) == ""
    assert [x["id"] for x in list_volumes(node, theirs)] == [own["id"]]
    assert [x["id"] for x in list_volumes(node, mine)] == [v["id"]]


def test_volume_routes_and_mounts_need_their_scopes(node, t):
    tenant = "st-" + random_token(8).lower()
    full = tenant_key(node, tenant=tenant)
    sandboxes_only = tenant_key(node, ["sandboxes:read", "sandboxes:write"], tenant)
    reader = tenant_key(node, ["sandboxes:read", "sandboxes:write", "volumes:read"], tenant)
    volumes_only = tenant_key(node, ["volumes:write"], tenant)
    v = t.volume(full, name="scoped", size_bytes=16 * MIB)
    writer = t.sid(full, volumes=[mount("scoped")])
    node.run(writer, "echo data > /data/f", key=full)
    node.delete_sandbox(writer, key=full)
    wait_attached(node, v["id"], [], full)

    # sandboxes:* only: nothing of volumes.
    for method, path, body, scope in [
        ("POST", "/v1/volumes", {"size_bytes": 16 * MIB}, "volumes:write"),
        ("GET", "/v1/volumes", None, "volumes:read"),
        ("GET", "/v1/volumes/scoped", None, "volumes:read"),
        ("DELETE", "/v1/volumes/scoped", None, "volumes:write"),
        ("POST", "/v1/sandboxes", {"volumes": [mount("scoped", read_only=True)]}, "volumes:read"),
        ("POST", "/v1/sandboxes", {"volumes": [mount("scoped")]}, "volumes:write"),
    ]:
        err = error_of(node.request(method, path, key=sandboxes_only, json=body), 403, "missing_scope")
        assert scope in err, f"{method} {path}: 403 must name {scope}: {err}"

    # volumes:read: reads, and read-only mounts, but nothing that writes.
    for method, path, body in [
        ("POST", "/v1/volumes", {"size_bytes": 16 * MIB}),
        ("DELETE", "/v1/volumes/scoped", None),
        ("POST", "/v1/sandboxes", {"volumes": [mount("scoped")]}),
        ("POST", "/v1/sandboxes", {"volumes": [mount("scoped", read_only=False)]}),
    ]:
        err = error_of(node.request(method, path, key=reader, json=body), 403, "missing_scope")
        assert "volumes:write" in err, f"{method} {path}: {err}"
    assert [x["id"] for x in list_volumes(node, reader)] == [v["id"]]
    assert get_volume(node, "scoped", reader)["id"] == v["id"]
    assert node.get("/v1/sandboxes", key=reader).json()["sandboxes"] == [], "a refused mount made a sandbox"
    sid = t.sid(reader, volumes=[mount("scoped", read_only=True)])
    assert node.run(sid, "cat /data/f", key=reader) == "data\n"

    # volumes:write implies volumes:read, and is not sandboxes:write.
    assert [x["id"] for x in list_volumes(node, volumes_only)] == [v["id"]]
    extra = t.volume(volumes_only, size_bytes=16 * MIB)
    err = error_of(node.post("/v1/sandboxes", key=volumes_only, json={"volumes": [mount("scoped")]}),
                   403, "missing_scope")
    assert "sandboxes:write" in err, err
    assert node.delete(f"/v1/volumes/{extra['id']}", key=volumes_only).status_code == 204


# ---------------------------------------------------------------------------------------------
# read-write exclusivity, read-only mounts


def test_one_read_write_mount_at_a_time_and_read_only_mounts_coexist(node, t):
    key = tenant_key(node)
    v = t.volume(key, size_bytes=32 * MIB)
    a = t.sid(key, volumes=[mount(v["id"])])
    node.run(a, "echo from-a > /data/from-a && sync", key=key)

    r = node.post("/v1/sandboxes", key=key, json={"volumes": [mount(v["id"], "/elsewhere")]})
    err = error_of(r, 409)
    assert a in err, f"409 must name the sandbox that mounts it read-write: {err}"

    b = t.sandbox(key, volumes=[mount(v["id"], read_only=True)])
    assert b["volumes"] == [{"volume_id": v["id"], "path": "/data", "read_only": True}]
    b = b["id"]
    # /sysdata is not under /sys: the check is by path component.
    c = t.sid(key, volumes=[mount(v["id"], "/sysdata", read_only=True)])
    assert attached(node, v["id"], key) == sorted([a, b, c])
    assert node.run(b, "cat /data/from-a", key=key) == "from-a\n"

    for sid, path in ((b, "/data"), (c, "/sysdata")):
        res = node.sh(sid, f"echo x > {path}/from-ro", key=key)
        assert res["exit_code"] != 0 and READ_ONLY_FS in outputs(res), f"a read-only mount took a write: {res}"
        res = node.sh(sid, f"rm {path}/from-a", key=key)
        assert res["exit_code"] != 0 and READ_ONLY_FS in outputs(res), res
    # The writer's later writes reach the readers (one filesystem).
    node.run(a, "echo later > /data/later && sync", key=key)
    assert node.run(c, "cat /sysdata/later /sysdata/from-a", key=key) == "later\nfrom-a\n"

    node.delete_sandbox(a, key=key)
    wait_attached(node, v["id"], [b, c], key)
    # The read-write slot is free again, with the readers still there.
    d = t.sid(key, volumes=[mount(v["id"])])
    assert node.run(d, "cat /data/from-a && echo from-d > /data/from-d && echo ok", key=key) == "from-a\nok\n"
    err = error_of(node.post("/v1/sandboxes", key=key, json={"volumes": [mount(v["id"])]}), 409)
    assert d in err and a not in err, err
    assert attached(node, v["id"], key) == sorted([b, c, d])


# ---------------------------------------------------------------------------------------------
# node restart (kill -9)


def test_volumes_and_their_mounts_survive_a_kill_9_of_the_node(node_factory, track):
    n = node_factory()
    t = track(n)
    kept = t.volume(name="kept", size_bytes=32 * MIB)
    rest = t.volume(name="at-rest", size_bytes=16 * MIB)
    writer = t.sid(volumes=[mount("at-rest")])
    at_rest = n.run(writer, "head -c 1048576 /dev/urandom > /data/f && sync && sha256sum < /data/f").split()[0]
    n.delete_sandbox(writer)
    live = t.sid(volumes=[mount("kept")])
    before = n.run(live, "head -c 1048576 /dev/urandom > /data/before && sync && sha256sum < /data/before").split()[0]
    agent = agent_pid(live)
    vols_before = {v["id"]: v for v in n.get("/v1/volumes").json()["volumes"]}

    n.kill9()
    assert pid_alive(agent), "the sandbox died with the node"
    n.restart()

    vols = {v["id"]: v for v in n.get("/v1/volumes").json()["volumes"]}
    assert set(vols) == {kept["id"], rest["id"]}, vols
    for vid, v in vols.items():
        for k in ("name", "size_bytes", "created_at"):
            assert v[k] == vols_before[vid][k], (k, v, vols_before[vid])
    assert vols[kept["id"]]["attached_to"] == [live], vols[kept["id"]]
    assert vols[rest["id"]]["attached_to"] == [], vols[rest["id"]]
    assert n.sandbox(live).json()["volumes"] == [{"volume_id": kept["id"], "path": "/data", "read_only": False}]

    # The live sandbox kept its mount, and it still writes.
    assert agent_pid(live) == agent
    out = n.run(live, "sha256sum < /data/before; echo after > /data/after && sync && cat /data/after")
    assert out.split()[0] == before and out.endswith("after\n"), out
    # The data at rest is there.
    reader = t.sid(volumes=[mount("at-rest")])
    assert n.run(reader, "sha256sum < /data/f").split()[0] == at_rest
    # The read-write holder is still known.
    err = error_of(n.post("/v1/sandboxes", json={"volumes": [mount("kept", "/x")]}), 409)
    assert live in err, err
    ro = t.sid(volumes=[mount("kept", read_only=True)])
    assert n.run(ro, "cat /data/after") == "after\n"

    for sid in (live, ro):
        n.delete_sandbox(sid)
    wait_attached(n, "kept", [])
    assert n.delete("/v1/volumes/kept").status_code == 204


# ---------------------------------------------------------------------------------------------
# the sandbox's own disk


def df_size(node, sid, key=None) -> int:
    return int(node.run(sid, "df -B1 --output=size / | tail -n 1", key=key).strip())


def test_the_writable_layer_is_a_disk_not_memory(node, t):
    sid = t.sid(memory_bytes=128 * MIB, disk_bytes=1 * GIB)
    size = df_size(node, sid)
    assert 0.9 * GIB <= size <= GIB, f"df / says {size} bytes for disk_bytes=1 GiB"
    res = node.sh(sid, "dd if=/dev/zero of=/home/user/big bs=1M count=300 conv=fsync 2>&1 && "
                       "stat -c %s /home/user/big", timeout_ms=180_000)
    assert res["exit_code"] == 0, f"a 300 MiB file in a 128 MiB sandbox with a 1 GiB disk failed: {res}"
    assert res["stdout"].splitlines()[-1] == str(300 * MIB), res
    assert node.run(sid, "echo alive") == "alive\n"
    assert node.sandbox(sid).json()["status"] == "running"


def test_the_scratch_disk_asks_the_host_for_no_cache_flushes(node, t):
    # Nothing on it outlives the sandbox: an fsync inside, or its unmount at the end, need
    # not wait for the host's disk to empty its cache.
    sid = t.sid()
    device = (Path(node.state_dir) / "sandboxes" / sid / "disk").read_text().split()[0]
    options = Path("/proc/fs/ext4", Path(device).name, "options").read_text().split()
    assert "nobarrier" in options, options
    assert node.run(sid, "echo x > /home/user/f && sync /home/user/f && cat /home/user/f") == "x\n"


def test_a_write_past_disk_bytes_fails_with_enospc_and_the_sandbox_works_on(node, t):
    sid = t.sid(disk_bytes=64 * MIB)
    size = df_size(node, sid)
    assert 0.85 * 64 * MIB <= size <= 64 * MIB, f"df / says {size} bytes for disk_bytes=64 MiB"
    res = node.sh(sid, "dd if=/dev/zero of=/home/user/big bs=1M count=100", timeout_ms=120_000)
    assert res["exit_code"] != 0, f"100 MiB went onto a 64 MiB disk: {res}"
    assert NO_SPACE in res["stderr"], res["stderr"]
    assert int(node.run(sid, "stat -c %s /home/user/big")) <= 64 * MIB
    assert node.run(sid, "echo alive") == "alive\n"
    assert node.run(sid, "rm /home/user/big && head -c 8388608 /dev/zero > /tmp/small && echo ok") == "ok\n"


def test_the_smallest_disk_is_4_mib(node, t):
    err = error_of(node.post("/v1/sandboxes", json={"disk_bytes": 4 * MIB - 1}), 400, "invalid_request")
    assert "disk_bytes" in err, err
    sid = t.sid(disk_bytes=4 * MIB)
    size = df_size(node, sid)
    assert 0.7 * 4 * MIB <= size <= 4 * MIB, f"df / says {size} bytes for disk_bytes=4 MiB"
    res = node.sh(sid, "dd if=/dev/zero of=/home/user/big bs=1M count=8")
    assert res["exit_code"] != 0 and NO_SPACE in res["stderr"], res
    assert node.run(sid, "rm /home/user/big && echo ok") == "ok\n"


# ---------------------------------------------------------------------------------------------
# OCI images


@pytest.fixture(scope="module")
def busybox_image(node, tmp_path_factory):
    """busybox imported (OCI layout archive) by a tenant of its own: (key, image)."""
    key = tenant_key(node)
    archive = image_fixtures.oci_archive(tmp_path_factory.mktemp("busybox") / "layout.tar")
    name = f"storage-busybox-{random_token(6).lower()}:1"
    with open(archive, "rb") as f:
        r = node.post(f"/v1/images/import?ref={urllib.parse.quote(name)}", key=key, data=f,
                      headers={"Content-Type": "application/x-tar", "Connection": "close"})
    assert r.status_code == 201, f"import of busybox → {r.status_code} {r.text}"
    yield key, r.json()


def test_volumes_and_snapshots_work_with_an_oci_image(node, t, busybox_image):
    key, img = busybox_image
    v = t.volume(key, size_bytes=16 * MIB)
    for path in ("/bin/busybox", "/bin/sh", "/etc/ai2in-test-image"):  # a file, a symlink, a file
        err = error_of(node.post("/v1/sandboxes", key=key,
                                 json={"image": img["id"], "volumes": [mount(v["id"], path)]}), 400)
        assert path in err, err
    sid = t.sid(key, image=img["id"], volumes=[mount(v["id"], "/data")])
    assert node.run(sid, "stat -c '%u:%g %a' /data; cat /etc/ai2in-test-image", key=key) == "0:0 755\nbusybox\n"
    node.run(sid, "echo in-volume > /data/v; echo added > /etc/added; rm /etc/ai2in-test-image; "
                  "mkdir -p /srv/app && echo app > /srv/app/f && chown -R 1000:1000 /srv/app", key=key)

    snap = t.snapshot(sid, key)
    assert snap["layers"] == img["layers"] + 1, (img, snap)
    fork = t.sid(key, image=snap["ref"])
    out = node.run(fork, "cat /etc/added; test -e /etc/ai2in-test-image || echo deleted; "
                         "stat -c '%u:%g' /srv/app/f; cat /srv/app/f; test -e /data/v || echo no-volume-data; "
                         "pwd; echo $AI2IN_TEST_IMAGE", key=key)
    # The image's config (workdir /work, env) carries over.
    assert out == "added\ndeleted\n1000:1000\napp\nno-volume-data\n/work\nbusybox\n", out
    assert node.run(sid, "cat /data/v", key=key) == "in-volume\n"


# ---------------------------------------------------------------------------------------------
# snapshots

# Paths sandbox `origin` writes, compared in the sandboxes made from its snapshot.
ORIGIN_SETUP = r"""
set -e
printf 'hello-x\n' > /home/user/x && chown 1000:1000 /home/user/x && chmod 640 /home/user/x
head -c 100000 /dev/urandom > /opt/y && chmod 600 /opt/y
mkdir -p /opt/dir/sub && printf 'inner\n' > /opt/dir/sub/inner && chown -R 1000:1000 /opt/dir && chmod 750 /opt/dir
printf 'odd\n' > /opt/odd && chown 4321:8765 /opt/odd && chmod 604 /opt/odd
cp /usr/bin/true /opt/suid && chmod 4755 /opt/suid
cp /usr/bin/true /opt/sgid && chown 0:1000 /opt/sgid && chmod 2750 /opt/sgid
ln -s x /home/user/rel-link
ln -s /opt/y /opt/abs-link
ln -s /nonexistent/target /opt/dangling
mkfifo /opt/fifo && chmod 620 /opt/fifo
: > /home/user/empty
printf 'temp\n' > /opt/created-then-deleted && rm /opt/created-then-deleted
rm /etc/debian_version
rm -rf /etc/skel && mkdir /etc/skel && printf 'new\n' > /etc/skel/only-this
"""
MANIFEST = (
    "cd / && stat -c '%n|%F|%a|%u:%g' /home/user/x /opt/y /opt/dir /opt/dir/sub /opt/dir/sub/inner "
    "/opt/odd /opt/suid /opt/sgid /home/user/rel-link /opt/abs-link /opt/dangling /opt/fifo "
    "/home/user/empty /etc/skel && "
    "sha256sum /home/user/x /opt/y /opt/dir/sub/inner /opt/odd /opt/suid /home/user/empty && "
    "readlink /home/user/rel-link /opt/abs-link /opt/dangling && cat /home/user/rel-link && "
    "ls -A /etc/skel && "
    "for p in /etc/debian_version /opt/created-then-deleted; do test -e $p && echo present:$p; done; echo end"
)


@pytest.fixture(scope="module")
def origin(node):
    """A host-image sandbox with files of every kind, a background process and a python
    context, and a snapshot of it: dict(key, sid, manifest, image, taken_ms=(before, after),
    pid)."""
    key = tenant_key(node)
    sid = node.create_sandbox(key=key, timeout_ms=900_000)["id"]
    # The host image has these (copied from the host's /etc); the snapshot must delete them.
    assert node.run(sid, "test -f /etc/debian_version && ls -A /etc/skel", key=key).strip(), \
        "precondition: the host image has /etc/debian_version and a populated /etc/skel"
    node.run(sid, ORIGIN_SETUP, key=key)
    manifest = node.run(sid, MANIFEST, key=key)
    pid = int(node.run(sid, "nohup sh -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/tick; sleep 0.05; "
                            "done' </dev/null >/dev/null 2>&1 & echo $!", key=key))
    run_code(node, sid, "x = 41\nbig = list(range(1000))", key=key)
    wait_until(lambda: node.run(sid, "cat /tmp/tick", key=key).strip() not in ("", "1"), 10, "no tick")
    before = time.time() * 1000
    image = snapshot_of(node, sid, key)
    after = time.time() * 1000
    yield {"key": key, "sid": sid, "manifest": manifest, "image": image, "taken_ms": (before, after),
           "pid": pid}
    node.delete(f"/v1/sandboxes/{sid}", key=key)
    for s in node.get("/v1/sandboxes", key=key).json().get("sandboxes", []):
        node.delete(f"/v1/sandboxes/{s['id']}", key=key)
    for img in list_images(node, key):
        node.delete(f"/v1/images/{img['id']}", key=key)


def test_a_snapshot_is_an_image_and_the_sandbox_keeps_running(node, origin):
    key, sid, img = origin["key"], origin["sid"], origin["image"]
    m = re.match(r"^localhost/snapshots/(sbx_[0-9a-z]+):(\d+)$", img["ref"])
    assert m and m[1] == sid, f"default ref must be localhost/snapshots/{sid}:<unix ms>: {img['ref']}"
    before, after = origin["taken_ms"]
    assert before - 2000 <= int(m[2]) <= after + 2000, f"the ref's time {m[2]} is not the snapshot's"
    assert img["size_bytes"] > 100_000 and img["layers"] >= 1, img
    assert before / 1000 - 5 <= epoch(img["created_at"]) <= after / 1000 + 5, img
    listed = {i["id"]: i for i in list_images(node, key)}
    assert img["id"] in listed and listed[img["id"]]["source"] == "snapshot", listed
    got = node.get(f"/v1/images/{img['id']}", key=key)
    assert got.status_code == 200 and got.json()["ref"] == img["ref"], got.text

    # It kept running: status, its background process (still ticking: thawed), its python
    # context, and its files.
    assert node.sandbox(sid, key=key).json()["status"] == "running"
    assert node.run(sid, f"kill -0 {origin['pid']} && echo alive", key=key) == "alive\n"
    t0 = int(node.run(sid, "cat /tmp/tick", key=key))
    wait_until(lambda: int(node.run(sid, "cat /tmp/tick", key=key)) > t0 + 2, 10,
               "the background process stopped ticking after the snapshot")
    assert main_text(run_code(node, sid, "x + 1, len(big)", key=key)) == "(42, 1000)"
    assert node.run(sid, MANIFEST, key=key) == origin["manifest"]


def test_sandboxes_from_a_snapshot_are_forks_of_its_files(node, t, origin):
    key, img = origin["key"], origin["image"]
    manifest = origin["manifest"]
    assert "present:" not in manifest and manifest.endswith("end\n"), manifest
    by_ref = t.sandbox(key, image=img["ref"])
    assert by_ref["image"] == img["ref"] and by_ref["image_digest"] == img["digest"], by_ref
    by_id = t.sid(key, image=img["id"])
    for sid in (by_ref["id"], by_id):
        got = node.run(sid, MANIFEST, key=key)
        assert got == manifest, f"{sid} from the snapshot differs:\n--- origin\n{manifest}\n--- fork\n{got}"
        assert node.run(sid, "test -p /opt/fifo && echo fifo; cat /tmp/tick >/dev/null && echo tick", key=key) == \
            "fifo\ntick\n"
        assert node.run(sid, "cat /home/user/x", key=key, user="user") == "hello-x\n"
    # Forks: what one writes, no other sees.
    node.run(origin["sid"], "echo a > /opt/after-origin", key=key)
    node.run(by_id, "echo b > /opt/after-fork; rm /home/user/x", key=key)
    assert node.run(by_ref["id"], "ls /opt/after-origin /opt/after-fork 2>&1; cat /home/user/x", key=key) \
        .count("No such file") == 2
    assert node.run(origin["sid"], "cat /home/user/x; test -e /opt/after-fork || echo none", key=key) == \
        "hello-x\nnone\n"
    # The image cannot go while sandboxes run from it.
    r = node.delete(f"/v1/images/{img['id']}", key=key)
    err = error_of(r, 409, "in_use")
    assert by_ref["id"] in err or by_id in err, err


def test_a_snapshot_of_a_snapshot_stacks_its_layers(node, t, origin):
    key, first = origin["key"], origin["image"]
    b = t.sid(key, image=first["id"])
    node.run(b, "set -e; rm /opt/y; rm -r /opt/dir; printf 'changed\\n' > /home/user/x; echo z > /opt/z; "
                "rm /etc/skel/only-this; chmod 4700 /opt/odd", key=key)
    tag = random_token(6).lower()
    second = t.snapshot(b, key, ref=f"localhost/e2e/stack-{tag}:2")
    assert second["ref"] == f"localhost/e2e/stack-{tag}:2", second
    assert second["layers"] == first["layers"] + 1, (first, second)
    c = t.sandbox(key, image=second["ref"])
    assert c["image"] == second["ref"]
    out = node.run(c["id"], "for p in /opt/y /opt/dir /etc/debian_version /etc/skel/only-this; do "
                            "test -e $p && echo present:$p; done; cat /home/user/x /opt/z; "
                            "stat -c '%a %u:%g' /home/user/x /opt/odd /opt/suid; readlink /opt/abs-link; "
                            "ls -A /etc/skel; echo end", key=key)
    assert out == "changed\nz\n640 1000:1000\n4700 4321:8765\n4755 0:0\n/opt/y\nend\n", out
    # The first snapshot is untouched.
    d = t.sid(key, image=first["id"])
    assert node.run(d, MANIFEST, key=key) == origin["manifest"]


def test_a_volumes_content_is_not_in_the_snapshot(node, t):
    key = tenant_key(node)
    v = t.volume(key, size_bytes=16 * MIB)
    a = t.sid(key, volumes=[mount(v["id"], "/data")])
    node.run(a, "echo in-volume > /data/v && echo in-layer > /opt/l", key=key)
    img = t.snapshot(a, key)
    plain = t.sid(key, image=img["id"])
    assert node.run(plain, "cat /opt/l; test -e /data/v || echo absent", key=key) == "in-layer\nabsent\n"
    with_volume = t.sid(key, image=img["id"], volumes=[mount(v["id"], "/data", read_only=True)])
    assert node.run(with_volume, "cat /opt/l /data/v", key=key) == "in-layer\nin-volume\n"


def test_snapshot_errors_scopes_and_a_paused_sandbox(node, t):
    tenant = "st-" + random_token(8).lower()
    key = tenant_key(node, tenant=tenant)
    sid = t.sid(key)
    node.run(sid, "echo p > /opt/p", key=key)

    error_of(node.post("/v1/sandboxes/sbx_doesnotexist000000/snapshot", key=key, json={}), 404, "not_found")
    error_of(node.post(f"/v1/sandboxes/{sid}/snapshot", key=tenant_key(node), json={}), 404, "not_found")
    no_images = tenant_key(node, ["sandboxes:read", "sandboxes:write", "images:read"], tenant)
    err = error_of(node.post(f"/v1/sandboxes/{sid}/snapshot", key=no_images, json={}), 403, "missing_scope")
    assert "images:write" in err, err
    no_sandboxes = tenant_key(node, ["sandboxes:read", "images:read", "images:write"], tenant)
    err = error_of(node.post(f"/v1/sandboxes/{sid}/snapshot", key=no_sandboxes, json={}), 403, "missing_scope")
    assert "sandboxes:write" in err, err
    err = error_of(node.post(f"/v1/sandboxes/{sid}/snapshot", key=key, json={"reff": "a:1"}), 400)
    assert "reff" in err, err
    err = error_of(node.post(f"/v1/sandboxes/{sid}/snapshot", key=key, json={"ref": "Not A Ref"}), 400)
    assert "ref" in err.lower(), err
    assert list_images(node, key) == [], "a refused snapshot left an image"

    # A paused sandbox can be snapshotted, and stays paused.
    assert node.post(f"/v1/sandboxes/{sid}/pause", key=key).status_code == 200
    img = t.snapshot(sid, key)
    assert node.sandbox(sid, key=key).json()["status"] == "paused"
    assert node.post(f"/v1/sandboxes/{sid}/resume", key=key).status_code == 200
    assert node.run(sid, "cat /opt/p", key=key) == "p\n"

    # In use → 409 naming the sandbox; then deletable.
    fork = t.sid(key, image=img["id"])
    assert node.run(fork, "cat /opt/p", key=key) == "p\n"
    err = error_of(node.delete(f"/v1/images/{img['id']}", key=key), 409, "in_use")
    assert fork in err, err
    node.delete_sandbox(fork, key=key)
    r = node.delete(f"/v1/images/{img['id']}", key=key)
    assert r.status_code == 204, r.text
    error_of(node.get(f"/v1/images/{img['id']}", key=key), 404)
    r = node.post("/v1/sandboxes", key=key, json={"image": img["id"]})
    assert r.status_code in (400, 404), f"a sandbox from a deleted image: {r.status_code} {r.text}"


# ---------------------------------------------------------------------------------------------
# node configuration: volume bounds, quota, layer bounds, tmpfs layers, a full disk


LIMITS_CONFIG = f"""
[limits]
min_volume_bytes = {32 * MIB}
max_volume_bytes = {64 * MIB}

[quotas]
volume_bytes = {96 * MIB}

[images]
max_layer_bytes = {24 * MIB}
max_layer_files = 1000
"""


@pytest.fixture(scope="module")
def limits_node(request):
    n = Node(config=LIMITS_CONFIG)
    request.addfinalizer(n.cleanup)
    return n.start()


def test_volume_bounds_and_the_volume_quota_follow_the_node_config(limits_node, track):
    n = limits_node
    t = track(n)
    key = tenant_key(n)
    for size in (32 * MIB - 1, 64 * MIB + 1):
        err = error_of(n.post("/v1/volumes", key=key, json={"size_bytes": size}), 400, "invalid_request")
        assert "size_bytes" in err, err
    t.volume(key, size_bytes=64 * MIB)
    b = t.volume(key, size_bytes=32 * MIB)  # 96 MiB: the quota, reached
    err = error_of(n.post("/v1/volumes", key=key, json={"size_bytes": 32 * MIB}), 429, "quota_exceeded")
    assert "volume" in err.lower(), err
    assert len(list_volumes(n, key)) == 2
    # Another tenant has its own budget.
    t.volume(tenant_key(n), size_bytes=64 * MIB)
    # Deleting gives the room back.
    assert n.delete(f"/v1/volumes/{b['id']}", key=key).status_code == 204
    t.volume(key, size_bytes=32 * MIB)


def test_a_snapshot_over_max_layer_bytes_or_files_is_413_and_the_sandbox_keeps_running(limits_node, track):
    n = limits_node
    t = track(n)
    key = tenant_key(n)
    sid = t.sid(key)
    n.run(sid, "head -c 33554432 /dev/zero > /opt/big", key=key)
    error_of(n.post(f"/v1/sandboxes/{sid}/snapshot", key=key, json={}), 413, "too_large")
    assert list_images(n, key) == [], "the refused snapshot left an image"
    assert n.sandbox(sid, key=key).json()["status"] == "running"
    assert n.run(sid, "rm /opt/big && mkdir /opt/many && cd /opt/many && seq 1500 | xargs touch && echo ok",
                 key=key) == "ok\n"
    error_of(n.post(f"/v1/sandboxes/{sid}/snapshot", key=key, json={}), 413, "too_large")
    assert list_images(n, key) == [], "the refused snapshot left an image"
    assert n.run(sid, "rm -r /opt/many && echo small > /opt/small && echo ok", key=key) == "ok\n"
    img = t.snapshot(sid, key)
    assert n.run(t.sid(key, image=img["id"]), "cat /opt/small; test -e /opt/big || echo gone", key=key) == \
        "small\ngone\n"


def test_a_node_with_tmpfs_layers_refuses_snapshots_but_mounts_volumes(node_factory, track):
    n = node_factory('[storage]\nwritable_layer = "tmpfs"\n')
    t = track(n)
    v = t.volume(size_bytes=16 * MIB)
    sid = t.sid(volumes=[mount(v["id"])])
    assert n.run(sid, "echo v > /data/v && cat /data/v") == "v\n"
    error_of(n.post(f"/v1/sandboxes/{sid}/snapshot", json={}), 409)
    assert list_images(n) == []
    assert n.run(sid, "echo still-running") == "still-running\n"


def test_a_full_node_disk_answers_507_for_volumes_and_snapshots(track):
    state = tempfile.mkdtemp(prefix="ai2in-e2e-full-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", state], check=True)
    n = Node(state_dir=state)
    try:
        n.start()
        t = track(n)
        sid = t.sid(disk_bytes=64 * MIB)
        n.run(sid, "head -c 8388608 /dev/urandom > /opt/big && sync")
        filler = Path(state, "filler")
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M"], capture_output=True)
        assert shutil.disk_usage(state).free < 1 * MIB, "precondition: the node's disk is full"
        error_of(n.post(f"/v1/sandboxes/{sid}/snapshot", json={}), 507, "no_space")
        error_of(n.post("/v1/volumes", json={"size_bytes": 32 * MIB}), 507, "no_space")
        assert n.get("/v1/volumes").json()["volumes"] == [] and list_images(n) == [], \
            "a failed volume or snapshot was kept"
        assert n.healthy()
        filler.unlink()
        v = t.volume(size_bytes=32 * MIB)
        assert v["used_bytes"] < 16 * MIB
        img = t.snapshot(sid)
        assert n.run(t.sid(image=img["id"]), "wc -c < /opt/big") == "8388608\n"
    finally:
        track(n).cleanup()
        n.cleanup(remove_state=False)
        subprocess.run(["umount", "-l", state], check=False)
        os.rmdir(state)

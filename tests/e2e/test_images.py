"""OCI images end to end: pull (JSON and streamed), list, get, delete, import, and sandboxes
started from real images (busybox, a four-layer image with whiteouts, Debian with Python)
served by a real registry (docker-registry, distribution 2.8; see registry.py and
image_fixtures.py), with its auth schemes, mirrors, manifest lists, Docker schema 2, zstd and
plain layers; the errors a user meets (bad references, missing images, private registries,
dead registries, scopes, tenants); and what a crash in the middle of a pull leaves behind.

Most tests use the shared node with a tenant of their own (a fresh key), so that what they
list and pull is theirs whatever ran before. The python image is pulled once, by the first
test that needs it.
"""

from __future__ import annotations

import base64
import concurrent.futures
import gzip
import hashlib
import io
import json
import os
import tarfile
import threading
import urllib.parse
from pathlib import Path

import pytest
import requests

import image_fixtures
from conftest import NO_AUTH, free_port
from e2e_util import (
    DIGEST_RE,
    IMAGE_ID_RE,
    assert_nothing_kept,
    image_refs,
    list_images,
    new_tenant_key,
    parse_rfc3339_utc,
    pull_error,
    pull_events,
    pull_image,
    random_token,
    staging_entries,
    stored_layers,
    wait_until,
)
from registry import (
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    File,
    Registry,
    get_manifest,
    image_config,
    push_blob,
    push_layers,
    push_manifest_raw,
    sha256_digest,
    tar_layer,
)

BUSYBOX_PATH = image_fixtures.BUSYBOX_PATH
BUSYBOX_CONFIG = {
    "env": {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "AI2IN_TEST_IMAGE": "busybox"},
    "workdir": "/work",
    "user": None,
    "entrypoint": [],
    "cmd": ["/bin/sh"],
    "exposed_ports": [8080],
}


# ---------------------------------------------------------------------------------------------
# helpers


def assert_image_shape(img: dict) -> None:
    assert set(img) >= {"id", "ref", "digest", "size_bytes", "layers", "source", "created_at",
                        "last_used_at", "config"}, img
    assert IMAGE_ID_RE.match(img["id"]), f"bad image id {img['id']!r}"
    assert DIGEST_RE.match(img["digest"]), f"bad digest {img['digest']!r}"
    assert isinstance(img["size_bytes"], int) and img["size_bytes"] > 0, img
    assert isinstance(img["layers"], int) and img["layers"] >= 1, img
    assert img["source"] in ("pull", "import", "snapshot"), img
    parse_rfc3339_utc(img["created_at"])
    parse_rfc3339_utc(img["last_used_at"])
    cfg = img["config"]
    assert set(cfg) >= {"env", "workdir", "user", "entrypoint", "cmd", "exposed_ports"}, cfg
    assert isinstance(cfg["env"], dict) and isinstance(cfg["entrypoint"], list), cfg
    assert isinstance(cfg["cmd"], list) and isinstance(cfg["exposed_ports"], list), cfg


def error_of(r: requests.Response, status: int) -> str:
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text}"
    err = r.json().get("error")
    assert isinstance(err, str) and err.strip(), r.text
    return err


def encoded(ref: str) -> str:
    """A reference as a path segment: slashes as %2F (the API's documented form)."""
    return urllib.parse.quote(ref, safe=":@")


def with_entries(base_tar: bytes, entries) -> bytes:
    """`base_tar` re-written with `entries` (registry.tar_layer entries) appended: a layer
    with the base's tree (a shell) and content no other test has, so that its digest is new
    to every node and registry."""
    extra = tarfile.open(fileobj=io.BytesIO(tar_layer(entries)))
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(base_tar)) as src, \
            tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as dst:
        for t in (src, extra):
            for m in t.getmembers():
                dst.addfile(m, t.extractfile(m) if m.isreg() else None)
    return out.getvalue()


def unique_busybox(base_tar: bytes, token: str, label: str | None = None) -> bytes:
    entries = [File(f"etc/ai2in-unique-{token}", token + "\n")]
    if label:
        entries.append(File("etc/ai2in-test-image", label + "\n"))
    return with_entries(base_tar, entries)


def random_file_layer(path: str, size: int) -> tuple[bytes, bytes]:
    """A layer holding one file of `size` random (incompressible) bytes: (tar, content)."""
    content = os.urandom(size)
    return tar_layer([File(path, content)]), content


def layer_digests(host: str, name: str, tag: str) -> list[str]:
    manifest, _, _, _ = get_manifest(host, name, tag)
    return [l["digest"] for l in manifest["layers"]]


def cmd_start(node, sid, cmd, key=None, **extra) -> str:
    r = node.post(f"/v1/sandboxes/{sid}/commands", key=key, json={"cmd": cmd, **extra})
    assert r.status_code == 200, r.text
    return r.json()["command_id"]


def cmd_output(node, sid, cid, key=None, timeout=20.0) -> dict:
    def done():
        r = node.post(f"/v1/sandboxes/{sid}/commands/{cid}/logs", key=key, json={})
        assert r.status_code == 200, r.text
        body = r.json()
        return body["status"] != "running" and body

    return wait_until(done, timeout, f"command {cid} did not finish")


def pty_output(node, sid, key=None, cmd=None, typed: bytes = b"", needle: bytes = b"",
               timeout=15.0) -> bytes:
    """Starts a terminal (`cmd`, or the default shell), types `typed`, reads until `needle`,
    kills it; returns what it printed."""
    body = {"cols": 80, "rows": 24}
    if cmd is not None:
        body["cmd"] = cmd
    r = node.post(f"/v1/sandboxes/{sid}/pty", key=key, json=body)
    assert r.status_code == 200, r.text
    pid = r.json()["pid"]
    if typed:
        r = node.post(f"/v1/sandboxes/{sid}/pty/{pid}/input", key=key,
                      json={"data_b64": base64.b64encode(typed).decode()})
        assert r.status_code == 204, r.text
    seen = b""

    def found():
        nonlocal seen
        r = node.post(f"/v1/sandboxes/{sid}/pty/{pid}/output", key=key)
        assert r.status_code == 200, r.text
        seen += base64.b64decode(r.json()["data_b64"])
        return needle in seen

    wait_until(found, timeout, lambda: f"{needle!r} never appeared in the terminal; got {seen[-500:]!r}")
    node.post(f"/v1/sandboxes/{sid}/pty/{pid}/kill", key=key)
    return seen


def run_code(node, sid, code, key=None, **extra) -> dict:
    r = node.post(f"/v1/sandboxes/{sid}/run", key=key, json={"code": code, **extra})
    assert r.status_code == 200, r.text
    return r.json()


def main_text(execution) -> str | None:
    mains = [r for r in execution["results"] if r["is_main_result"]]
    return mains[0]["data"]["text/plain"] if mains else None


def import_archive(node, path, ref: str | None = None, key=None,
                   content_type="application/x-tar") -> requests.Response:
    query = f"?ref={urllib.parse.quote(ref)}" if ref is not None else ""
    # A refused import is answered before its body is read, and the node then drops the
    # connection: never reuse it for the next request.
    with open(path, "rb") as f:
        return node.post(f"/v1/images/import{query}", key=key, data=f,
                         headers={"Content-Type": content_type, "Connection": "close"})


def gz_blob_image(stub, name: str, tag: str, tars: list[bytes], **config) -> tuple[str, list[str], list[str]]:
    """Puts an image of gzip layers made of `tars` into the stub registry: (ref, layer
    digests, diff ids)."""
    blobs = [gzip.compress(t, compresslevel=1, mtime=0) for t in tars]
    config.setdefault("Env", [BUSYBOX_PATH])
    stub.add_image(name, tag, [(b, OCI_LAYER_GZIP) for b in blobs], image_config(tars, **config))
    return (f"{stub.host}/{name}:{tag}", [sha256_digest(b) for b in blobs],
            [sha256_digest(t) for t in tars])


# ---------------------------------------------------------------------------------------------
# pull, list, get, delete


def test_pull_returns_201_with_the_image_then_200(node, registry):
    key = new_tenant_key(node)
    ref = registry.refs["busybox"]
    r = node.post("/v1/images", key=key, json={"ref": ref})
    assert r.status_code == 201, r.text
    img = r.json()
    assert_image_shape(img)
    assert img["ref"] == ref
    assert img["digest"] == registry.digests["busybox"]
    assert img["layers"] == 1 and img["source"] == "pull"
    assert img["size_bytes"] > 1_000_000, "busybox's layer holds a ~2 MB static binary"
    assert img["config"] == BUSYBOX_CONFIG

    again = node.post("/v1/images", key=key, json={"ref": ref})
    assert again.status_code == 200, again.text
    assert again.json()["id"] == img["id"] and again.json()["digest"] == img["digest"]


def test_pulling_a_moved_tag_gets_the_new_image(node, registry, busybox_layer_tar):
    key = new_tenant_key(node)
    name = f"moving-{random_token(8).lower()}"
    ref = f"{registry.host}/{name}:1"
    versions = []
    for label in ("first", "second"):
        tars = [busybox_layer_tar, tar_layer([File("etc/ai2in-test-image", label + "\n")])]
        versions.append(push_layers(registry.host, name, "1", tars,
                                    config=image_config(tars, Env=[BUSYBOX_PATH])))
        img = pull_image(node, ref, key=key, expect=(201,))
        assert img["digest"] == versions[-1], (label, img)
        sid = node.create_sandbox(key=key, image=ref)["id"]
        assert node.run(sid, "cat /etc/ai2in-test-image", key=key) == label + "\n"
    assert pull_image(node, ref, key=key, expect=(200,))["digest"] == versions[-1]
    assert [i["digest"] for i in list_images(node, key)] == [versions[-1]]


def test_a_streamed_pull_reports_progress_then_done(node, registry):
    key = new_tenant_key(node)
    name = f"progress-{random_token(8).lower()}"
    big, _ = random_file_layer("data/random.bin", 3 << 20)
    push_layers(registry.host, name, "1", [big], compress="none")
    ref = f"{registry.host}/{name}:1"
    manifest, digest, _, _ = get_manifest(registry.host, name, "1")
    sizes = {l["digest"]: l["size"] for l in manifest["layers"]}

    events = pull_events(node, ref, key=key)
    kinds = [e for e, _ in events]
    assert kinds and kinds[-1] == "done", f"the stream must end with done: {kinds}"
    assert set(kinds[:-1]) == {"progress"}, kinds
    per_layer: dict[str, list[int]] = {}
    for _, data in events[:-1]:
        assert data["type"] == "progress", data
        assert data["layer"] in sizes, f"progress of an unknown layer: {data}"
        assert data["total_bytes"] == sizes[data["layer"]], data
        assert 0 <= data["done_bytes"] <= data["total_bytes"], data
        per_layer.setdefault(data["layer"], []).append(data["done_bytes"])
    assert set(per_layer) == set(sizes), f"every layer reports progress: {per_layer}"
    for layer, done in per_layer.items():
        assert done == sorted(done), f"progress of {layer} went backwards: {done}"
        assert done[-1] == sizes[layer], f"progress of {layer} did not reach its size: {done}"
        assert len(set(done)) >= 3, f"a 3 MiB layer reports more than its start and end: {done}"

    done = events[-1][1]
    assert done["type"] == "done"
    img = done["image"]
    assert_image_shape(img)
    assert img["ref"] == ref and img["digest"] == digest
    r = node.get(f"/v1/images/{img['id']}", key=key)
    assert r.status_code == 200 and r.json() == img, r.text

    # The tenant has it now: the stream is just `done`.
    again = pull_events(node, ref, key=key)
    assert again[-1][0] == "done" and again[-1][1]["image"]["id"] == img["id"], again


def test_a_streamed_pull_that_fails_ends_with_an_error_event(node, registry):
    key = new_tenant_key(node)
    missing = f"{registry.host}/no-such-image-{random_token(6).lower()}:1"
    events = pull_events(node, missing, key=key)
    assert events and events[-1][0] == "error", events
    err = events[-1][1]
    assert err["type"] == "error" and err["status"] == 404, err
    assert missing.split("/", 1)[1].split(":")[0] in err["error"], err

    dead = f"127.0.0.1:{free_port()}/nothing:1"
    events = pull_events(node, dead, key=key)
    assert events[-1][0] == "error" and events[-1][1]["status"] == 502, events
    assert image_refs(node, key) == set()


def test_images_are_listed_got_by_id_or_by_reference_and_deleted(node, registry):
    key = new_tenant_key(node)
    assert list_images(node, key) == []
    img = pull_image(node, registry.refs["busybox"], key=key)
    listed = list_images(node, key)
    assert listed == [img], listed

    by_id = node.get(f"/v1/images/{img['id']}", key=key)
    assert by_id.status_code == 200 and by_id.json() == img, by_id.text
    path = f"/v1/images/{encoded(img['ref'])}"
    assert "%2F" in path, path
    by_ref = node.get(path, key=key)
    assert by_ref.status_code == 200 and by_ref.json()["id"] == img["id"], (path, by_ref.text)

    r = node.delete(f"/v1/images/{img['id']}", key=key)
    assert r.status_code == 204, r.text
    error_of(node.get(f"/v1/images/{img['id']}", key=key), 404)
    error_of(node.get(path, key=key), 404)
    assert list_images(node, key) == []
    error_of(node.delete(f"/v1/images/{img['id']}", key=key), 404)
    error_of(node.delete("/v1/images/img_doesnotexist0000", key=key), 404)

    # Deleting by reference works the same way.
    img = pull_image(node, registry.refs["busybox"], key=key)
    assert node.delete(path, key=key).status_code == 204
    assert list_images(node, key) == []


# ---------------------------------------------------------------------------------------------
# sandboxes of real images


def test_a_busybox_sandbox_runs_its_shell_files_commands_and_terminals(node, registry):
    key = new_tenant_key(node)
    ref = registry.refs["busybox"]
    sbx = node.create_sandbox(key=key, image=ref)
    sid = sbx["id"]
    assert sbx["image"] == ref and sbx["image_digest"] == registry.digests["busybox"], sbx
    assert ref in image_refs(node, key), "the create pulled the image for the tenant"
    got = node.sandbox(sid, key=key).json()
    assert got["image"] == ref and got["image_digest"] == registry.digests["busybox"], got

    assert node.run(sid, "id", key=key).startswith("uid=0(root) gid=0(root)")
    assert node.run(sid, "cat /etc/ai2in-test-image", key=key) == "busybox\n"
    assert node.run(sid, "readlink /bin/sh; ls /bin/busybox", key=key) == "/bin/busybox\n/bin/busybox\n"
    # /etc is the image's, but for the node's host name, hosts and resolv.conf.
    passwd = node.run(sid, "cat /etc/passwd", key=key)
    assert "user:x:1000:1000:user:/home/user:/bin/sh" in passwd, passwd
    assert node.run(sid, "cat /etc/hostname", key=key) == sid + "\n"
    assert sid in node.run(sid, "cat /etc/hosts", key=key)
    assert "nameserver" in node.run(sid, "cat /etc/resolv.conf", key=key)
    assert node.run(sid, "test ! -e /usr/bin/python3 && echo no-host-usr", key=key) == "no-host-usr\n"

    # files
    r = node.post(f"/v1/sandboxes/{sid}/fs/write", key=key,
                  json={"path": "/work/notes.txt", "content": "written by the API\n", "user": "root"})
    assert r.status_code == 200, r.text
    r = node.post(f"/v1/sandboxes/{sid}/fs/read", key=key, json={"path": "/work/notes.txt"})
    assert r.status_code == 200 and r.json() == {"content": "written by the API\n"}, r.text
    assert node.run(sid, "cat /work/notes.txt", key=key) == "written by the API\n"
    r = node.post(f"/v1/sandboxes/{sid}/fs/write", key=key,
                  json={"path": "/home/user/mine.txt", "content": "x"})
    assert r.status_code == 200, r.text
    assert node.run(sid, "stat -c %u:%g /home/user/mine.txt", key=key) == "1000:1000\n"
    r = node.post(f"/v1/sandboxes/{sid}/fs/list", key=key, json={"path": "/work"})
    assert r.status_code == 200, r.text
    assert "notes.txt" in {e["name"] for e in r.json()["entries"]}, r.text

    # background commands
    cid = cmd_start(node, sid, 'echo "$AI2IN_TEST_IMAGE"; ls /bin/busybox', key=key)
    out = cmd_output(node, sid, cid, key=key)
    assert out["exit_code"] == 0 and out["stdout"] == "busybox\n/bin/busybox\n", out

    # terminals: a command, and the default shell (busybox has no bash: /bin/sh)
    seen = pty_output(node, sid, key=key, cmd="read line; echo got-$line", typed=b"hello\n",
                      needle=b"got-hello")
    assert b"got-hello" in seen
    seen = pty_output(node, sid, key=key, typed=b"echo $((6*7))-$AI2IN_TEST_IMAGE\n",
                      needle=b"42-busybox")
    assert b"42-busybox" in seen


def test_a_multilayer_sandbox_sees_exactly_its_merged_layers(node, registry):
    sid = node.create_sandbox(image=registry.refs["multilayer"])["id"]
    listing = node.run(sid, "ls -A /data").split()
    assert sorted(listing) == ["added2.txt", "changed.txt", "hard.txt", "keep.txt", "layer4.txt",
                               "link", "owned.txt", "private"], listing
    contents = node.run(sid, "cd /data && for f in changed.txt added2.txt layer4.txt keep.txt "
                             "hard.txt link; do printf '%s=' $f; cat $f; done")
    assert contents == ("changed.txt=v2\nadded2.txt=layer 2\nlayer4.txt=layer 4\n"
                        "keep.txt=keep\nhard.txt=keep\nlink=keep\n"), contents
    assert node.run(sid, "readlink /data/link") == "keep.txt\n"
    # one inode for the tar hard link and its target
    inodes = node.run(sid, "stat -c %i /data/keep.txt /data/hard.txt").split()
    assert len(inodes) == 2 and inodes[0] == inodes[1], inodes
    assert node.run(sid, "stat -c %h /data/keep.txt") == "2\n"
    # owners and modes, idmapped: 0 is root, 1000 is user
    modes = node.run(sid, "stat -c '%n %u:%g %a' /data/keep.txt /data/owned.txt /data/private "
                          "/usr/local/bin/suid-hello /home/user /tmp")
    assert modes.splitlines() == [
        "/data/keep.txt 0:0 644",
        "/data/owned.txt 1000:1000 640",
        "/data/private 1000:1000 700",
        "/usr/local/bin/suid-hello 0:0 4755",
        "/home/user 1000:1000 755",
        "/tmp 0:0 1777",
    ], modes
    assert node.run(sid, "cat /data/owned.txt; touch /data/private/mine && echo wrote",
                    user="user") == "owned by user\nwrote\n"
    denied = node.sh(sid, "cat /data/owned.txt", user="root")
    assert denied["exit_code"] == 0, "root reads a 0640 file of user 1000"
    assert node.run(sid, "/usr/local/bin/suid-hello") == "hello\n"
    # whiteouts: a file, a directory, an opaque directory; none of their markers visible
    res = node.sh(sid, "test -e /data/gone.txt; echo $?; test -e /data/olddir; echo $?")
    assert res["stdout"] == "1\n1\n", res
    assert node.run(sid, "ls -A /opt/replaced") == "new3.txt\n"
    assert node.run(sid, "cat /opt/replaced/new3.txt /opt/kept/k.txt") == "layer 3\nkept\n"
    found = node.sh(sid, "find / -xdev -name '.wh.*'; echo end")
    assert found["stdout"] == "end\n", f"whiteout files are visible: {found}"
    assert node.run(sid, "cat /etc/ai2in-test-image") == "multilayer\n"
    assert node.run(sid, 'echo "$AI2IN_TEST_IMAGE"') == "multilayer\n"


# -- the python image (one pull, shared) ----------------------------------------------------


@pytest.fixture(scope="module")
def python_sbx(node, registry):
    """A sandbox of the Debian python image on the shared node (the create pulls it)."""
    sbx = node.create_sandbox(image=registry.refs["python"], timeout_ms=1_800_000)
    yield sbx
    node.delete(f"/v1/sandboxes/{sbx['id']}")


def test_the_python_image_runs_debians_python_3_11(node, registry, python_sbx):
    sid = python_sbx["id"]
    assert python_sbx["image_digest"] == registry.digests["python"], python_sbx
    version = node.run(sid, "python3 -c 'import sys; print(sys.version)'").strip()
    assert version.startswith("3.11."), version
    packaged = node.run(sid, "dpkg-query -W -f '${Version}' python3.11").strip()
    assert version.split()[0] == packaged.split("-")[0], (version, packaged)
    assert node.run(sid, "python3 -c 'import os, sys; print(os.path.realpath(sys.executable))'") \
        == "/usr/bin/python3.11\n"
    assert "bookworm" in node.run(sid, "cat /etc/os-release")
    assert node.run(sid, 'echo "$LANG"') == "C.UTF-8\n"


def test_run_code_works_in_the_python_image(node, python_sbx):
    sid = python_sbx["id"]
    ex = run_code(node, sid, "import sys; sys.version")
    assert ex["error"] is None, ex
    text = main_text(ex)
    assert text is not None and text.strip("'\"").startswith("3.11."), ex
    ex = run_code(node, sid, "print(sum(range(10)))")
    assert ex["logs"]["stdout"] == ["45\n"], ex


def test_root_installs_a_deb_in_the_python_image_without_apt(node, python_sbx):
    sid = python_sbx["id"]
    deb = image_fixtures.hello_deb().read_bytes()
    r = node.post(f"/v1/sandboxes/{sid}/fs/write_bytes",
                  json={"path": "/tmp/hello.deb", "content_b64": base64.b64encode(deb).decode(),
                        "user": "root"})
    assert r.status_code == 200, r.text
    assert r.json()["size_bytes"] == len(deb)
    res = node.sh(sid, "dpkg -i /tmp/hello.deb", cwd="/")
    assert res["exit_code"] == 0, res
    assert node.run(sid, "hello") == "Hello, world!\n"
    assert node.run(sid, "dpkg-query -W -f '${Status}' hello") == "install ok installed"


# -- image config: Env, WorkingDir, User ------------------------------------------------------


def test_the_image_working_directory_is_the_default_of_shell_commands_terminals_and_run(
        node, registry):
    sid = node.create_sandbox(image=registry.refs["busybox"])["id"]
    assert node.run(sid, "pwd") == "/work\n"
    assert node.run(sid, "pwd", cwd="/tmp") == "/tmp\n"
    out = cmd_output(node, sid, cmd_start(node, sid, "pwd"))
    assert out["stdout"] == "/work\n", out
    assert b"/work" in pty_output(node, sid, cmd="pwd; sleep 5", needle=b"/work")

    # `run` needs a Python: the python image's layer under a config naming /srv.
    manifest, _, _, _ = get_manifest(registry.host, "python", "1")
    config = json.loads(requests.get(f"{registry.url}/v2/python/blobs/{manifest['config']['digest']}",
                                     timeout=60).content)
    config["config"]["WorkingDir"] = "/srv"
    config_bytes = json.dumps(config).encode()
    manifest["config"] = {**manifest["config"], "size": len(config_bytes),
                          "digest": push_blob(registry.host, "python", config_bytes)}
    push_manifest_raw(registry.host, "python", "srv", manifest)
    sid = node.create_sandbox(image=f"{registry.host}/python:srv")["id"]
    assert node.run(sid, "pwd") == "/srv\n"
    assert main_text(run_code(node, sid, "import os; os.getcwd()")) == "'/srv'"


def test_the_image_user_and_env_are_defaults_beneath_the_create(node, registry, busybox_layer_tar):
    name = f"user1000-{random_token(8).lower()}"
    tars = [busybox_layer_tar]
    push_layers(registry.host, name, "1", tars,
                config=image_config(tars, User="1000", WorkingDir="/home/user",
                                    Env=[BUSYBOX_PATH, "FOO=image", "BAR=image"]))
    ref = f"{registry.host}/{name}:1"
    img = pull_image(node, ref)
    assert img["config"]["user"] == "1000" and img["config"]["env"]["FOO"] == "image", img

    sid = node.create_sandbox(image=ref, env={"FOO": "create"})["id"]
    assert node.run(sid, "id -u") == "1000\n", "the image's User is the default user"
    assert node.run(sid, 'echo "$FOO $BAR"') == "create image\n", "the create's env wins"
    assert node.run(sid, "id -u", user="root") == "0\n"
    assert node.run(sid, "id -u", user="user") == "1000\n"
    assert node.run(sid, 'echo "$FOO"', env={"FOO": "request"}) == "request\n"
    out = cmd_output(node, sid, cmd_start(node, sid, 'echo "$(id -u) $FOO $BAR"'))
    assert out["stdout"] == "1000 create image\n", out
    seen = pty_output(node, sid, cmd='echo "u=$(id -u) $FOO $BAR"; sleep 5', needle=b"image")
    assert b"u=1000 create image" in seen, seen

    plain = node.create_sandbox(image=ref)["id"]
    assert node.run(plain, 'echo "$FOO $BAR"') == "image image\n"


def test_the_host_images_usr_shows_as_owned_by_root(node, sandbox):
    assert sandbox["image"] == "host" and sandbox["image_digest"] is None, sandbox
    assert node.run(sandbox["id"], "stat -c '%U %u:%g' /usr /usr/bin/env") == "root 0:0\nroot 0:0\n"


# -- manifest kinds, layer kinds, digests ------------------------------------------------------


@pytest.mark.parametrize("name", ["multi", "multi-docker"])
def test_a_manifest_list_picks_linux_amd64(node, registry, name):
    key = new_tenant_key(node)
    _, amd64, _, _ = get_manifest(registry.host, name, "amd64")
    img = pull_image(node, registry.refs[name], key=key)
    assert img["digest"] == amd64, f"{name} resolved to {img['digest']}, not its amd64 manifest {amd64}"
    sid = node.create_sandbox(key=key, image=registry.refs[name])["id"]
    assert node.run(sid, "cat /etc/ai2in-test-image", key=key) == "busybox\n"


def test_an_index_without_linux_amd64_is_404(node, registry):
    key = new_tenant_key(node)
    ref = registry.refs["arm64-only"]
    err = pull_error(node, ref, 404, key=key)
    assert "amd64" in err, err
    r = node.post("/v1/sandboxes", key=key, json={"image": ref})
    assert "amd64" in error_of(r, 404)
    assert image_refs(node, key) == set()


def test_a_docker_schema_2_image_runs(node, registry):
    key = new_tenant_key(node)
    img = pull_image(node, registry.refs["busybox-docker"], key=key)
    assert img["digest"] == registry.digests["busybox-docker"]
    assert img["config"]["workdir"] == "/work" and img["config"]["cmd"] == ["/bin/sh"], img
    sid = node.create_sandbox(key=key, image=registry.refs["busybox-docker"])["id"]
    assert node.run(sid, "cat /etc/ai2in-test-image", key=key) == "busybox\n"


@pytest.mark.parametrize("compress,media_type", [("zstd", OCI_LAYER_ZSTD), ("none", OCI_LAYER)])
def test_zstd_and_uncompressed_layers(node, registry, busybox_layer_tar, compress, media_type):
    token = random_token(10)
    name = f"layers-{compress}-{token.lower()}"
    tars = [unique_busybox(busybox_layer_tar, token),
            tar_layer([File("etc/ai2in-test-image", f"{compress}\n")])]
    push_layers(registry.host, name, "1", tars, config=image_config(tars, Env=[BUSYBOX_PATH]),
                compress=compress)
    manifest, _, _, _ = get_manifest(registry.host, name, "1")
    assert {l["mediaType"] for l in manifest["layers"]} == {media_type}, manifest
    ref = f"{registry.host}/{name}:1"
    img = pull_image(node, ref)
    assert img["layers"] == 2
    assert {sha256_digest(t) for t in tars} <= stored_layers(node.state_dir)
    sid = node.create_sandbox(image=ref)["id"]
    assert node.run(sid, f"cat /etc/ai2in-test-image /etc/ai2in-unique-{token}") == f"{compress}\n{token}\n"


def test_pull_by_digest(node, registry):
    key = new_tenant_key(node)
    digest = registry.digests["busybox"]
    ref = f"{registry.host}/busybox@{digest}"
    img = pull_image(node, ref, key=key)
    assert img["digest"] == digest and img["ref"] == ref, img
    sbx = node.create_sandbox(key=key, image=ref)
    assert sbx["image_digest"] == digest
    assert node.run(sbx["id"], "cat /etc/ai2in-test-image", key=key) == "busybox\n"
    missing = f"{registry.host}/busybox@sha256:{'0' * 64}"
    pull_error(node, missing, 404, key=key)


# -- registries: auth, mirrors ------------------------------------------------------------------


@pytest.mark.parametrize("which", ["auth_registry", "token_registry"])
def test_a_private_registry_needs_credentials_in_the_node_config(request, node_factory, which):
    reg = request.getfixturevalue(which)
    ref = reg.refs["busybox"]
    user, password = reg.credentials

    bare = node_factory()
    err = pull_error(bare, ref, 404)
    assert "credentials" in err, err
    r = bare.post("/v1/sandboxes", json={"image": ref})
    assert "credentials" in error_of(r, 404)
    assert image_refs(bare) == set()

    wrong = node_factory(config=f'[images.credentials."{reg.host}"]\nusername = "{user}"\n'
                                f'password = "not-{password}"\n')
    assert "credentials" in pull_error(wrong, ref, 404)

    good = node_factory(config=f'[images.credentials."{reg.host}"]\nusername = "{user}"\n'
                               f'password = "{password}"\n')
    img = pull_image(good, ref, expect=(201,))
    assert img["digest"] == reg.digests["busybox"]
    sid = good.create_sandbox(image=ref)["id"]
    assert good.run(sid, "cat /etc/ai2in-test-image") == "busybox\n"
    multi = pull_image(good, reg.refs["multi"], expect=(201,))
    assert multi["digest"] == get_manifest(reg.host, "multi", "amd64", auth=reg.credentials)[1]
    if which == "token_registry":
        assert any(t.user == user and t.status == 200 for t in reg.token_server.requests), \
            "the node got its token from the token server with the credentials"


def test_docker_hub_references_are_pulled_from_the_configured_mirror(node_factory, registry,
                                                                    busybox_layer_tar):
    tars = [busybox_layer_tar]
    push_layers(registry.host, "library/testimg", "1", tars,
                config=image_config(tars, Env=[BUSYBOX_PATH, "AI2IN_TEST_IMAGE=mirrored"]))
    n = node_factory(config=f'[images.mirrors]\n"docker.io" = "{registry.host}"\n')
    img = pull_image(n, "testimg:1", expect=(201,))
    assert img["ref"] == "docker.io/library/testimg:1", img
    for same in ("docker.io/library/testimg:1", "library/testimg:1", "index.docker.io/library/testimg:1"):
        r = n.post("/v1/images", json={"ref": same})
        assert r.status_code == 200 and r.json()["id"] == img["id"], (same, r.text)
    r = n.get(f"/v1/images/{encoded('testimg:1')}")
    assert r.status_code == 200 and r.json()["id"] == img["id"], r.text
    sid = n.create_sandbox(image="testimg:1")["id"]
    assert n.run(sid, 'echo "$AI2IN_TEST_IMAGE"') == "mirrored\n"
    assert any(e.path == "/v2/library/testimg/manifests/1" for e in registry.access_log()), \
        "the mirror served the manifest"


# -- concurrency ----------------------------------------------------------------------------


def test_concurrent_creates_of_an_unpulled_image_fetch_each_blob_once(node, busybox_layer_tar):
    key = new_tenant_key(node)
    token = random_token(10)
    name = f"concurrent-{token.lower()}"
    big, _ = random_file_layer("data/random.bin", 2 << 20)
    tars = [unique_busybox(busybox_layer_tar, token), big]
    with Registry() as reg:
        digest = push_layers(reg.host, name, "1", tars, config=image_config(tars, Env=[BUSYBOX_PATH]))
        manifest, _, _, _ = get_manifest(reg.host, name, "1")
        ref = f"{reg.host}/{name}:1"
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(
                lambda _: node.post("/v1/sandboxes", key=key, json={"image": ref}), range(8)))
        for r in results:
            if r.status_code == 201:
                node.created[r.json()["id"]] = key
        assert [r.status_code for r in results] == [201] * 8, [(r.status_code, r.text[:200]) for r in results]
        assert {r.json()["image_digest"] for r in results} == {digest}
        for blob in [l["digest"] for l in manifest["layers"]] + [manifest["config"]["digest"]]:
            n = reg.blob_requests(blob)
            assert n == 1, f"blob {blob} was fetched {n} times by 8 concurrent creates"
    images = list_images(node, key)
    assert [i["ref"] for i in images] == [ref], images
    for r in results:
        sid = r.json()["id"]
        assert node.run(sid, f"cat /etc/ai2in-unique-{token}", key=key) == token + "\n"


# -- import ------------------------------------------------------------------------------------


def test_import_a_docker_save_archive_then_create_from_it(node, tmp_path):
    key = new_tenant_key(node)
    archive = image_fixtures.docker_save_archive(tmp_path / "app.tar")
    name = f"imported-{random_token(6).lower()}"
    r = import_archive(node, archive, f"{name}:1", key=key)
    assert r.status_code == 201, r.text
    img = r.json()
    assert_image_shape(img)
    assert img["ref"] == f"docker.io/library/{name}:1" and img["source"] == "import", img
    assert img["layers"] == 1 and img["config"]["workdir"] == "/work", img
    sid = node.create_sandbox(key=key, image=img["id"])["id"]
    assert node.run(sid, "cat /etc/ai2in-test-image", key=key) == "busybox\n"
    sid = node.create_sandbox(key=key, image=f"{name}:1")["id"]
    assert node.run(sid, "cat /etc/ai2in-test-image", key=key) == "busybox\n"

    # Without ?ref, the name the archive gives.
    r = import_archive(node, archive, key=key)
    assert r.status_code == 201, r.text
    assert r.json()["ref"] == "docker.io/library/app:1", r.json()


def test_import_an_oci_layout_archive_then_create_from_it(node, registry, tmp_path):
    key = new_tenant_key(node)
    archive = image_fixtures.oci_archive(tmp_path / "layout.tar")
    name = f"oci-imported-{random_token(6).lower()}"
    r = import_archive(node, archive, f"{name}:1", key=key)
    assert r.status_code == 201, r.text
    img = r.json()
    assert img["source"] == "import" and img["digest"] == registry.digests["busybox"], img
    sid = node.create_sandbox(key=key, image=f"{name}:1")["id"]
    assert node.run(sid, "cat /etc/ai2in-test-image", key=key) == "busybox\n"

    # The layout's only name is the bare tag "1": the import must be given one.
    err = error_of(import_archive(node, archive, key=key), 400)
    assert "ref" in err, err


def test_import_refuses_what_is_not_an_image_archive(node, tmp_path):
    key = new_tenant_key(node)
    archive = image_fixtures.docker_save_archive(tmp_path / "app.tar")
    for ctype in ("application/json", "text/plain"):
        error_of(import_archive(node, archive, "x:1", key=key, content_type=ctype), 415)

    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"this is not a tar archive at all\n" * 100)
    error_of(import_archive(node, garbage, "x:1", key=key), 400)

    not_an_image = tmp_path / "plain.tar"
    not_an_image.write_bytes(tar_layer([File("hello.txt", "hi\n")]))
    error_of(import_archive(node, not_an_image, "x:1", key=key), 400)

    broken = tmp_path / "broken.tar"
    broken.write_bytes(tar_layer([File("manifest.json", "{not json")]))
    error_of(import_archive(node, broken, "x:1", key=key), 400)

    error_of(import_archive(node, archive, "Not A Ref", key=key), 400)
    assert list_images(node, key) == []
    wait_until(lambda: staging_entries(node.state_dir) == [], 10,
               lambda: f"imports left {staging_entries(node.state_dir)} in staging")


def test_an_import_over_max_import_bytes_is_413(node_factory, tmp_path):
    n = node_factory(config="[images]\nmax_import_bytes = 1048576\n")
    archive = image_fixtures.docker_save_archive(tmp_path / "app.tar")
    assert archive.stat().st_size > 1048576
    assert "max_import_bytes" in error_of(import_archive(n, archive, "big:1"), 413)
    assert list_images(n) == [] and staging_entries(n.state_dir) == []


# -- delete, tenants, scopes -------------------------------------------------------------------


def test_an_image_in_use_cannot_be_deleted_until_its_sandbox_is_gone(node, registry,
                                                                   busybox_layer_tar):
    key = new_tenant_key(node)
    token = random_token(10)
    name = f"inuse-{token.lower()}"
    tars = [unique_busybox(busybox_layer_tar, token)]
    push_layers(registry.host, name, "1", tars, config=image_config(tars, Env=[BUSYBOX_PATH]))
    ref = f"{registry.host}/{name}:1"
    sid = node.create_sandbox(key=key, image=ref)["id"]
    (img,) = list_images(node, key)
    assert sha256_digest(tars[0]) in stored_layers(node.state_dir)

    r = node.delete(f"/v1/images/{img['id']}", key=key)
    assert sid in error_of(r, 409), r.text
    assert r.json()["code"] == "in_use", r.text
    assert sid in error_of(node.delete(f"/v1/images/{encoded(ref)}", key=key), 409)
    assert node.run(sid, f"cat /etc/ai2in-unique-{token}", key=key) == token + "\n"

    node.delete_sandbox(sid, key=key)
    assert node.delete(f"/v1/images/{img['id']}", key=key).status_code == 204
    assert list_images(node, key) == []
    wait_until(lambda: sha256_digest(tars[0]) not in stored_layers(node.state_dir), 10,
               "the layer of a deleted image nothing else names stayed in the store")
    # Named again, it is pulled again.
    again = pull_image(node, ref, key=key, expect=(201,))
    assert again["id"] != img["id"] and again["digest"] == img["digest"]


def test_images_are_private_to_their_tenant(node, registry):
    mine = new_tenant_key(node)
    other = new_tenant_key(node, tenant=f"other-{random_token(6).lower()}")
    ref = registry.refs["busybox"]
    img = pull_image(node, ref, key=mine)

    error_of(node.get(f"/v1/images/{img['id']}", key=other), 404)
    error_of(node.get(f"/v1/images/{encoded(ref)}", key=other), 404)
    assert list_images(node, other) == []
    error_of(node.delete(f"/v1/images/{img['id']}", key=other), 404)
    error_of(node.post("/v1/sandboxes", key=other, json={"image": img["id"]}), 404)
    assert node.get(f"/v1/images/{img['id']}", key=mine).status_code == 200

    # The other tenant pulls the same reference: a record of its own over the same content.
    theirs = pull_image(node, ref, key=other, expect=(201,))
    assert theirs["id"] != img["id"] and theirs["digest"] == img["digest"]
    assert node.delete(f"/v1/images/{theirs['id']}", key=other).status_code == 204
    assert node.get(f"/v1/images/{img['id']}", key=mine).status_code == 200
    sid = node.create_sandbox(key=mine, image=img["id"])["id"]
    assert node.run(sid, "cat /etc/ai2in-test-image", key=mine) == "busybox\n"


def test_image_routes_need_their_scopes(node, registry, tmp_path):
    ref = registry.refs["busybox"]
    owner = new_tenant_key(node)
    tenant_img = pull_image(node, ref, key=owner)
    sandboxes_only = node.create_key(["sandboxes:read", "sandboxes:write"])["key"]
    read_only = node.create_key(["images:read"])["key"]
    archive = image_fixtures.docker_save_archive(tmp_path / "app.tar")

    for k in (sandboxes_only, read_only):
        error_of(node.post("/v1/images", key=k, json={"ref": ref}), 403)
        r = node.post("/v1/images", key=k, json={"ref": ref}, headers={"Accept": "text/event-stream"})
        error_of(r, 403)
        error_of(import_archive(node, archive, "scoped:1", key=k), 403)
        error_of(node.delete(f"/v1/images/{tenant_img['id']}", key=k), 403)
    error_of(node.get("/v1/images", key=sandboxes_only), 403)
    error_of(node.get(f"/v1/images/{tenant_img['id']}", key=sandboxes_only), 403)
    assert node.get("/v1/images", key=read_only).status_code == 200
    error_of(node.get("/v1/images", key=NO_AUTH), 401)
    error_of(node.post("/v1/images", key=NO_AUTH, json={"ref": ref}), 401)


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("ref", [
    "",
    "Busybox:1",
    "busybox:",
    "busybox:-tag",
    "busybox@sha256:abc",
    "busybox@md5:" + "0" * 32,
    "a b:1",
    "foo//bar:1",
    "x" * 1100,
])
def test_references_that_do_not_parse_are_400(node, ref):
    r = node.post("/v1/images", json={"ref": ref})
    error_of(r, 400)
    if ref:
        error_of(node.post("/v1/sandboxes", json={"image": ref}), 400)


def test_an_image_the_registry_lacks_is_404_naming_it(node, registry):
    key = new_tenant_key(node)
    ref = f"{registry.host}/never-pushed-{random_token(6).lower()}:1"
    err = pull_error(node, ref, 404, key=key)
    assert ref.split("/", 1)[1].split(":")[0] in err, err
    err = pull_error(node, f"{registry.host}/busybox:no-such-tag", 404, key=key)
    assert "no-such-tag" in err, err
    assert image_refs(node, key) == set()


def test_an_unreachable_registry_is_502_naming_it(node):
    key = new_tenant_key(node)
    host = f"127.0.0.1:{free_port()}"
    err = pull_error(node, f"{host}/app:1", 502, key=key)
    assert host in err, err
    assert host in error_of(node.post("/v1/sandboxes", key=key, json={"image": f"{host}/app:1"}), 502)
    assert image_refs(node, key) == set()


def test_a_registry_answering_garbage_is_502(node, stub_registry):
    key = new_tenant_key(node)
    stub_registry.manifest_override[("junk", "1")] = b"<html>this is not a manifest</html>"
    err = pull_error(node, f"{stub_registry.host}/junk:1", 502, key=key)
    assert stub_registry.host in err, err
    assert_nothing_kept(node, f"{stub_registry.host}/junk:1", key=key)


def test_a_registry_dying_mid_blob_is_502_keeps_nothing_and_a_retry_fetches_again(
        node, stub_registry, busybox_layer_tar):
    key = new_tenant_key(node)
    token = random_token(10)
    big, content = random_file_layer("data/big.bin", 4 << 20)
    ref, digests, diff_ids = gz_blob_image(stub_registry, "dying", "1",
                                           [unique_busybox(busybox_layer_tar, token), big])
    stub_registry.blob_mode[digests[1]] = "half"
    err = pull_error(node, ref, 502, key=key)
    assert stub_registry.host in err, err
    assert stub_registry.sent.get(digests[1]) == len(stub_registry.blobs[digests[1]]) // 2
    assert_nothing_kept(node, ref, [diff_ids[1]], key=key)

    stub_registry.blob_mode[digests[1]] = "full"
    before = stub_registry.gets(digests[1])
    img = pull_image(node, ref, key=key, expect=(201,))
    assert stub_registry.gets(digests[1]) == before + 1, "the retry fetched the layer again"
    sid = node.create_sandbox(key=key, image=img["id"])["id"]
    assert node.run(sid, "sha256sum /data/big.bin", key=key).split()[0] == \
        hashlib.sha256(content).hexdigest()


def test_a_node_killed_mid_pull_restarts_clean_and_pulls_again(node_factory, stub_registry,
                                                               busybox_layer_tar):
    n = node_factory()
    token = random_token(10)
    big, content = random_file_layer("data/big.bin", 12 << 20)
    ref, digests, diff_ids = gz_blob_image(stub_registry, "slow", "1",
                                           [unique_busybox(busybox_layer_tar, token), big])
    stub_registry.blob_mode[digests[1]] = "trickle"
    stub_registry.trickle_head = 2 << 20

    def pull():
        try:
            n.post("/v1/images", json={"ref": ref}, timeout=300)
        except requests.RequestException:
            pass  # the node dies under it

    puller = threading.Thread(target=pull, daemon=True)
    puller.start()

    def half_a_layer_on_disk():
        tmp = Path(n.state_dir, "images", "tmp")
        return any(p.is_file() and p.stat().st_size >= 1 << 20 for p in tmp.rglob("big.bin"))

    wait_until(half_a_layer_on_disk, 60,
               lambda: f"no partly unpacked layer appeared in staging: {staging_entries(n.state_dir)}")
    assert stub_registry.sent[digests[1]] < len(stub_registry.blobs[digests[1]])
    n.kill9()
    puller.join(30)

    n.restart()
    assert n.healthy()
    assert staging_entries(n.state_dir) == [], "staging must be emptied at start"
    assert diff_ids[1] not in stored_layers(n.state_dir), "a half layer was published"
    # Whatever the crash left unrecorded (the small layer may have been whole) goes too.
    wait_until(lambda: stored_layers(n.state_dir) == set(), 10,
               lambda: f"layers no image names stayed after the restart: {stored_layers(n.state_dir)}")
    assert list_images(n) == []

    stub_registry.blob_mode[digests[1]] = "full"
    stub_registry.release.set()
    img = pull_image(n, ref, expect=(201,))
    assert diff_ids[1] in stored_layers(n.state_dir)
    sid = n.create_sandbox(image=img["id"])["id"]
    assert n.run(sid, "sha256sum /data/big.bin").split()[0] == hashlib.sha256(content).hexdigest()
    assert n.run(sid, f"cat /etc/ai2in-unique-{token}") == token + "\n"
    assert staging_entries(n.state_dir) == []

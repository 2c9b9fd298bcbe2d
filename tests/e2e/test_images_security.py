"""The image security suite: hostile layers and images, each crafted by hand (registry.py's
tar_layer, pushed to a real registry) against one protection of the node's unpacker, content
store or sandbox set-up. Each test asserts what the user sees (the pull refused with 502 and
nothing kept, or the entry confined to the layer) *and* that the host is untouched: no file
written, replaced, linked or removed outside the node's content store.

Every host path a test names is new (a random token) or is checked before and after, so
nothing here can harm the host even if a protection is missing.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
import zlib
from pathlib import Path

import pytest

from e2e_util import (
    assert_nothing_kept,
    files_under,
    pull_error,
    pull_image,
    random_token,
    vm_hwm_bytes,
)
import image_fixtures
from registry import (
    OCI_CONFIG,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    Device,
    Dir,
    File,
    Hardlink,
    Opaque,
    Symlink,
    Whiteout,
    compress_layer,
    image_config,
    push_blob,
    push_layers,
    push_manifest_raw,
    sha256_digest,
    tar_layer,
)

MIB = 1 << 20
# An import refused before its body is read drops the connection: never reuse it.
TAR = {"Content-Type": "application/x-tar", "Connection": "close"}
BUSYBOX_PATH = image_fixtures.BUSYBOX_PATH


# ---------------------------------------------------------------------------------------------
# helpers


def push_hostile(registry, base_tar: bytes | None, entries, prefix="hostile", config=None):
    """Pushes an image whose top layer is `entries` (above the busybox layer `base_tar`, for a
    shell, unless None): (ref, diff ids)."""
    name = f"{prefix}-{random_token(10).lower()}"
    tars = ([base_tar] if base_tar is not None else []) + [tar_layer(entries)]
    push_layers(registry.host, name, "1", tars,
                config=config(tars) if config else image_config(tars, Env=[BUSYBOX_PATH]))
    return f"{registry.host}/{name}:1", [sha256_digest(t) for t in tars]


def push_blobs(registry_host: str, name: str, layers: list[tuple[bytes, str]],
               diff_ids: list[str]) -> str:
    """An image of already compressed layer blobs [(blob, media type)] and the config's
    `diff_ids` as given (true or not): its reference."""
    descriptors = [{"mediaType": mt, "size": len(b), "digest": push_blob(registry_host, name, b)}
                   for b, mt in layers]
    config = image_config([], Env=[BUSYBOX_PATH])
    config["rootfs"]["diff_ids"] = list(diff_ids)
    config["history"] = [{"created_by": "ai2in e2e"} for _ in diff_ids]
    config_bytes = json.dumps(config).encode()
    manifest = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "size": len(config_bytes),
                   "digest": push_blob(registry_host, name, config_bytes)},
        "layers": descriptors,
    }
    push_manifest_raw(registry_host, name, "1", manifest)
    return f"{registry_host}/{name}:1"


def layer_fs(node, diff_id: str) -> Path:
    return Path(node.state_dir, "images", "layers", diff_id.removeprefix("sha256:"), "fs")


def snapshot(path: Path):
    """What the host has at `path` (not following a final symlink): None when nothing;
    for a file its bytes, mode and mtime; for a directory its listing, mode and mtime."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(st.st_mode):
        return ("dir", sorted(os.listdir(path)), st.st_mode, st.st_mtime_ns, st.st_nlink)
    if stat.S_ISREG(st.st_mode):
        return ("file", path.read_bytes(), st.st_mode, st.st_mtime_ns, st.st_nlink)
    return ("other", st.st_mode, st.st_mtime_ns)


def assert_host_unchanged(before: dict[Path, object]) -> None:
    changed = {str(p): (b, snapshot(p)) for p, b in before.items() if snapshot(p) != b}
    assert not changed, f"host paths changed: {changed}"


def assert_no_host_inode_in_store(node, host_path: str) -> None:
    """No file of the node's content store is a hard link of the host file `host_path`."""
    st = os.stat(host_path)
    for p in files_under(Path(node.state_dir, "images")):
        try:
            s = os.lstat(p)
        except FileNotFoundError:
            continue
        assert (s.st_dev, s.st_ino) != (st.st_dev, st.st_ino), \
            f"{p} in the content store is a hard link of the host's {host_path}"


def named_anywhere(root: Path, name: str) -> list[str]:
    return [str(p) for p in files_under(root) if p.name == name]


@pytest.fixture
def token():
    return random_token(10)


@pytest.fixture
def host_dir(token):
    """A host directory an image will try to reach: /tmp/ai2in-hostdir-TOKEN with `victim`
    ("original\\n") and `keepme`."""
    d = Path(f"/tmp/ai2in-hostdir-{token}")
    d.mkdir()
    (d / "victim").write_text("original\n")
    (d / "keepme").write_text("keep me\n")
    yield d
    shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# paths out of the layer


@pytest.mark.parametrize("make", [
    lambda t: [File(f"../escape-{t}", "x")],
    lambda t: [File(f"./../escape-{t}", "x")],
    lambda t: [Dir("a"), File(f"a/../../escape-{t}", "x")],
    lambda t: [File(f"a/b/../../../../../../../../tmp/escape-{t}", "x")],
    lambda t: [Dir(f"../escape-{t}")],
    lambda t: [Symlink(f"../escape-{t}", "/etc")],
    lambda t: [Whiteout(f"../escape-{t}")],
], ids=["dotdot", "dot-dotdot", "nested-dotdot", "deep-dotdot-to-tmp", "dir", "symlink", "whiteout"])
def test_a_layer_entry_going_up_with_dotdot_is_refused(node, registry, busybox_layer_tar, token, make):
    entries = make(token) + [File("after", "x")]
    ref, diff_ids = push_hostile(registry, busybox_layer_tar, entries)
    err = pull_error(node, ref, 502)
    assert "escape" in err and ".." in err, err
    assert_nothing_kept(node, ref, diff_ids[1:])
    # Nothing was kept, so a retry fetches the layer again (and refuses it again).
    blob = sha256_digest(compress_layer(tar_layer(entries), "gzip"))
    assert registry.blob_requests(blob) == 1
    pull_error(node, ref, 502)
    assert registry.blob_requests(blob) == 2
    assert not named_anywhere(Path(node.state_dir), f"escape-{token}")
    for p in (Path(f"/escape-{token}"), Path(f"/tmp/escape-{token}"),
              Path(node.state_dir, f"escape-{token}"), Path(node.state_dir, "images", f"escape-{token}")):
        assert not os.path.lexists(p), f"{p} was written on the host"


def test_an_absolute_entry_lands_inside_the_layer(node, registry, busybox_layer_tar, token):
    top = f"/ai2in-abs-{token}"
    ref, diff_ids = push_hostile(registry, busybox_layer_tar, [
        Dir(top), File(f"{top}/escape", "inside\n"), File(f"/tmp/abs-{token}", "tmp inside\n")])
    pull_image(node, ref, expect=(201,))
    assert not os.path.lexists(top), f"{top} was created on the host"
    assert not os.path.lexists(f"/tmp/abs-{token}"), "an absolute entry was written to the host's /tmp"
    assert (layer_fs(node, diff_ids[1]) / top.lstrip("/") / "escape").read_text() == "inside\n"
    sid = node.create_sandbox(image=ref)["id"]
    assert node.run(sid, f"cat {top}/escape /tmp/abs-{token}") == "inside\ntmp inside\n"


def test_a_symlink_to_root_is_never_followed_while_unpacking(node, registry, busybox_layer_tar, token):
    ref, diff_ids = push_hostile(registry, busybox_layer_tar, [
        Symlink("evil", "/"),
        File(f"evil/tmp/pwned-{token}", "pwned\n"),
        Symlink("up", "../../../../../../../../.."),
        File(f"up/tmp/pwned-up-{token}", "pwned up\n"),
    ])
    pull_image(node, ref, expect=(201,))
    for name in (f"pwned-{token}", f"pwned-up-{token}"):
        assert not os.path.lexists(f"/tmp/{name}"), f"/tmp/{name} was written on the host"
        assert not os.path.lexists(f"/{name}")
    fs = layer_fs(node, diff_ids[1])
    assert (fs / "tmp" / f"pwned-{token}").read_text() == "pwned\n", "the entry lands inside the layer"
    assert (fs / "tmp" / f"pwned-up-{token}").read_text() == "pwned up\n"
    assert os.readlink(fs / "evil") == "/", "the symlink is stored as it is"
    sid = node.create_sandbox(image=ref)["id"]
    assert node.run(sid, f"readlink /evil; cat /tmp/pwned-{token} /evil/tmp/pwned-up-{token}") == \
        "/\npwned\npwned up\n"


THROUGH_HOST_DIR = {
    # name: (entries, given the host dir and a token; a shell check inside; what it prints)
    "file": (lambda d, t: [Symlink("hostdir", str(d)), File("hostdir/victim", "overwritten\n"),
                           File(f"hostdir/new-{t}", "new\n")],
             lambda d, t: f"cat {d}/victim {d}/new-{t}", "overwritten\nnew\n"),
    "dir": (lambda d, t: [Symlink("hostdir", str(d)), Dir("hostdir/sub"), File("hostdir/sub/f", "f\n")],
            lambda d, t: f"cat {d}/sub/f", "f\n"),
    "whiteout": (lambda d, t: [Symlink("hostdir", str(d)), Whiteout("hostdir/keepme")],
                 lambda d, t: "readlink /hostdir", None),
    "opaque": (lambda d, t: [Symlink("hostdir", str(d)), Opaque("hostdir")],
               lambda d, t: "readlink /hostdir", None),
    "relative": (lambda d, t: [Symlink("rel", f"../../../../../../../..{d}"),
                               File("rel/victim", "through a relative link\n")],
                 lambda d, t: f"cat {d}/victim", "through a relative link\n"),
    "leaf": (lambda d, t: [Symlink("leaf", str(d / "victim")), File("leaf", "replaced the symlink\n")],
             lambda d, t: "test -L /leaf || cat /leaf", "replaced the symlink\n"),
    "hardlink-leaf": (lambda d, t: [File("mine", "mine\n"), Symlink("leaf", str(d / "victim")),
                                    Hardlink("leaf", "mine")],
                      lambda d, t: "test -L /leaf || cat /leaf", "mine\n"),
}


@pytest.mark.parametrize("case", list(THROUGH_HOST_DIR))
def test_a_symlink_to_a_host_directory_cannot_be_written_through(node, registry, busybox_layer_tar,
                                                                token, host_dir, case):
    """A symlink to a host directory, then entries through it (or at it): nothing of the host
    changes, and, as symlinks resolve inside the layer while unpacking, the entries land in
    the layer at the symlink's target (as with a symlink to /)."""
    entries, check, expected = THROUGH_HOST_DIR[case]
    before = {p: snapshot(p) for p in (host_dir, host_dir / "victim", host_dir / "keepme")}
    ref, diff_ids = push_hostile(registry, busybox_layer_tar, entries(host_dir, token))
    r = node.post("/v1/images", json={"ref": ref})
    # The host first, whatever the node answered.
    assert_host_unchanged(before)
    for name in (f"new-{token}", "sub"):
        assert not os.path.lexists(host_dir / name), f"{host_dir / name} was created on the host"
    with pytest.raises(OSError):
        os.getxattr(host_dir, "user.overlay.opaque")
    assert r.status_code == 201, f"pull of a layer with {case} through a symlink → {r.status_code} {r.text}"
    sid = node.create_sandbox(image=ref)["id"]
    out = node.run(sid, check(host_dir, token))
    if expected is not None:
        assert out == expected, out
    assert_host_unchanged(before)


@pytest.mark.parametrize("make", [
    lambda t: [Hardlink("shadow", "/etc/shadow")],
    lambda t: [Hardlink("shadow", "../../../../../../etc/shadow")],
    lambda t: [Hardlink(f"x-{t}", "../../x")],
    lambda t: [Symlink("etclink", "/etc"), Hardlink("shadow", "etclink/shadow")],
    lambda t: [Hardlink("passwd", "etc/passwd")],  # in the layer below, not in this one
], ids=["absolute", "dotdot", "dotdot-x", "through-symlink", "lower-layer"])
def test_a_hard_link_out_of_the_layer_is_refused(node, registry, busybox_layer_tar, token, make):
    shadow_links = os.stat("/etc/shadow").st_nlink
    ref, diff_ids = push_hostile(registry, busybox_layer_tar, make(token) + [File("after", "x")])
    err = pull_error(node, ref, 502)
    entry = make(token)[-1].path
    assert f'"{entry}"' in err, f"the error names the entry {entry}: {err}"
    assert_nothing_kept(node, ref, diff_ids[1:])
    assert os.stat("/etc/shadow").st_nlink == shadow_links, "the host's /etc/shadow got a new link"
    assert_no_host_inode_in_store(node, "/etc/shadow")
    assert_no_host_inode_in_store(node, "/etc/passwd")


def test_a_hard_link_to_a_symlink_links_the_symlink_not_the_host_file(node, registry,
                                                                     busybox_layer_tar):
    shadow_links = os.stat("/etc/shadow").st_nlink
    ref, _ = push_hostile(registry, busybox_layer_tar, [
        Symlink("via", "/etc/shadow"), Hardlink("linked", "via")])
    pull_image(node, ref, expect=(201,))
    assert os.stat("/etc/shadow").st_nlink == shadow_links
    assert_no_host_inode_in_store(node, "/etc/shadow")
    sid = node.create_sandbox(image=ref)["id"]
    assert node.run(sid, "readlink /linked") == "/etc/shadow\n"


def test_device_nodes_are_left_out(node, registry, busybox_layer_tar, token):
    ref, diff_ids = push_hostile(registry, busybox_layer_tar, [
        Device(f"devnull-{token}", "char", 1, 3),
        Device(f"mem-{token}", "char", 1, 1),
        Device(f"kmsg-{token}", "char", 1, 11),
        Device(f"disk-{token}", "block", 8, 0),
        Dir("dev"), Device("dev/mem", "char", 1, 1),
        File(f"marker-{token}", "ok\n"),
    ])
    pull_image(node, ref, expect=(201,))
    fs = layer_fs(node, diff_ids[1])
    assert (fs / f"marker-{token}").read_text() == "ok\n", "the layer is not where the test looks"
    for p in files_under(fs):
        mode = os.lstat(p).st_mode
        assert not (stat.S_ISCHR(mode) or stat.S_ISBLK(mode)), f"a device node was unpacked: {p}"
    sid = node.create_sandbox(image=ref)["id"]
    out = node.run(sid, f"cat /marker-{token}; for f in devnull mem kmsg disk; do "
                        f"test -e /$f-{token} && echo $f-present; done; test -e /dev/mem && echo dev-mem; "
                        f"echo end")
    assert out == "ok\nend\n", out


def test_setuid_files_are_kept_but_the_layer_store_is_roots_alone(node, registry):
    sid = node.create_sandbox(image=registry.refs["multilayer"])["id"]
    assert node.run(sid, "stat -c '%a %u:%g' /usr/local/bin/suid-hello") == "4755 0:0\n"

    images = Path(node.state_dir, "images")
    for d in ("layers", "blobs", "tmp"):
        st = os.stat(images / d)
        assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == 0, \
            f"{images / d} is {oct(stat.S_IMODE(st.st_mode))} owned by {st.st_uid}, not 0700 root"
    # The setuid-root file is on the host, as the image has it, where only root can reach it.
    suid = [p for p in (images / "layers").glob("*/fs/usr/local/bin/suid-hello")]
    assert suid, "the multilayer image's setuid file is not in the store"
    st = os.stat(suid[0])
    assert stat.S_IMODE(st.st_mode) == 0o4755 and st.st_uid == 0, oct(st.st_mode)
    as_nobody = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
         "sh", "-c", f"stat {suid[0]} >/dev/null 2>&1 && echo reached; {suid[0]} 2>&1; echo end"],
        capture_output=True, text=True, timeout=30)
    assert as_nobody.stdout.splitlines()[0] != "reached", as_nobody
    lines = as_nobody.stdout.splitlines()
    assert "hello" not in lines and lines[-1:] == ["end"], as_nobody


# ---------------------------------------------------------------------------------------------
# limits


def gzip_bomb(kind: str, size: int) -> tuple[bytes, str]:
    """A gzip layer decompressing to about `size` bytes of zeros: (blob, diff id).
    kind "one-file": one file of `size` bytes; "many-files": 1 MiB files; "trailing": a tiny
    archive followed by `size` zero bytes after its end."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    h = hashlib.sha256()
    out = []

    def feed(b: bytes):
        h.update(b)
        out.append(comp.compress(b))

    zeros = bytes(MIB)
    if kind == "one-file":
        info = tarfile.TarInfo("bomb")
        info.size = size
        feed(info.tobuf(tarfile.PAX_FORMAT))
        for _ in range(size // MIB):
            feed(zeros)
        feed(bytes(1024))
    elif kind == "many-files":
        for i in range(size // MIB):
            info = tarfile.TarInfo(f"bomb-{i}")
            info.size = MIB
            feed(info.tobuf(tarfile.PAX_FORMAT))
            feed(zeros)
        feed(bytes(1024))
    else:
        feed(tar_layer([File("small", "x")]))
        for _ in range(size // MIB):
            feed(zeros)
    out.append(comp.flush())
    return b"".join(out), "sha256:" + h.hexdigest()


@pytest.mark.parametrize("kind", ["one-file", "many-files", "trailing"])
def test_a_gzip_bomb_is_stopped_at_max_layer_bytes(node_factory, registry, kind):
    n = node_factory(config="[images]\nmax_layer_bytes = 8388608\n")
    # 512 MiB of zeros stopped at 8 MiB; past the end of the archive 64 MiB is enough to be
    # over the limit and quick to hash should the node read it all.
    blob, diff_id = gzip_bomb(kind, (64 if kind == "trailing" else 512) * MIB)
    assert len(blob) < 2 * MIB
    ref = push_blobs(registry.host, f"bomb-{kind}-{random_token(8).lower()}", [(blob, OCI_LAYER_GZIP)],
                     [diff_id])
    peak_before = vm_hwm_bytes(n.proc.pid)
    err = pull_error(n, ref, 502)
    assert "limit" in err, err
    assert_nothing_kept(n, ref, [diff_id])
    assert n.healthy()
    grown = vm_hwm_bytes(n.proc.pid) - peak_before
    assert grown < 128 * MIB, f"the node's peak memory grew by {grown >> 20} MiB on a bomb"
    # The same node still pulls what fits.
    small = push_blobs(registry.host, f"fits-{random_token(8).lower()}",
                       [(gzip.compress(tar_layer([File("ok", "ok")])), OCI_LAYER_GZIP)],
                       [sha256_digest(tar_layer([File("ok", "ok")]))])
    pull_image(n, small, expect=(201,))


def test_a_layer_with_too_many_entries_is_refused(node_factory, registry):
    n = node_factory(config="[images]\nmax_layer_files = 100\n")
    ref, diff_ids = push_hostile(registry, None, [File(f"f{i}", "") for i in range(500)], "many")
    err = pull_error(n, ref, 502)
    assert "100 entries" in err, err
    assert_nothing_kept(n, ref, diff_ids)
    ok, _ = push_hostile(registry, None, [File(f"f{i}", "") for i in range(50)], "fifty")
    assert pull_image(n, ok, expect=(201,))["layers"] == 1


# ---------------------------------------------------------------------------------------------
# digests


def test_a_config_whose_diff_ids_lie_is_502(node, registry, busybox_layer_tar, token):
    real = tar_layer([File(f"real-{token}", "real\n")])
    claimed = tar_layer([File(f"claimed-{token}", "claimed\n")])
    name = f"lying-config-{token.lower()}"
    push_layers(registry.host, name, "1", [real], config=image_config([claimed]))
    ref = f"{registry.host}/{name}:1"
    err = pull_error(node, ref, 502)
    assert "digest" in err, err
    assert_nothing_kept(node, ref, [sha256_digest(real), sha256_digest(claimed)])


def test_a_manifest_naming_another_blob_for_a_layer_is_502(node, registry, token):
    wanted = tar_layer([File(f"wanted-{token}", "wanted\n")])
    other = tar_layer([File(f"other-{token}", "other\n")])
    name = f"swapped-{token.lower()}"
    other_blob = gzip.compress(other, mtime=0)
    push_blob(registry.host, name, gzip.compress(wanted, mtime=0))
    ref = push_blobs(registry.host, name, [(other_blob, OCI_LAYER_GZIP)], [sha256_digest(wanted)])
    err = pull_error(node, ref, 502)
    assert "digest" in err, err
    assert_nothing_kept(node, ref, [sha256_digest(wanted), sha256_digest(other)])


def test_a_blob_whose_bytes_are_not_its_digest_is_502(node, stub_registry, token):
    tar = tar_layer([File(f"f-{token}", "content\n")])
    blob = gzip.compress(tar, mtime=0)
    stub_registry.add_image("liar", "1", [(blob, OCI_LAYER_GZIP)], image_config([tar]))
    stub_registry.blob_mode[sha256_digest(blob)] = "other"
    ref = f"{stub_registry.host}/liar:1"
    err = pull_error(node, ref, 502)
    assert "digest" in err, err
    assert_nothing_kept(node, ref, [sha256_digest(tar)])


def test_a_manifest_whose_bytes_are_not_the_digest_pulled_is_502(node, stub_registry, token):
    tar = tar_layer([File(f"f-{token}", "content\n")])
    digest = stub_registry.add_image("pinned", "1", [(gzip.compress(tar), OCI_LAYER_GZIP)],
                                      image_config([tar]))
    other = tar_layer([File(f"g-{token}", "other\n")])
    stub_registry.add_image("pinned", "2", [(gzip.compress(other), OCI_LAYER_GZIP)],
                            image_config([other]))
    stub_registry.manifest_override[("pinned", digest)] = stub_registry.manifests[("pinned", "2")][0]
    ref = f"{stub_registry.host}/pinned@{digest}"
    err = pull_error(node, ref, 502)
    assert "digest" in err, err
    assert_nothing_kept(node, ref, [sha256_digest(tar), sha256_digest(other)])


def docker_save_tar(path: Path, repo_tag: str, layer: bytes, diff_id: str) -> Path:
    """A `docker save` archive of one image whose config names `diff_id` for its one layer,
    which holds `layer` (true or not)."""
    config = json.dumps(image_config([], Env=[BUSYBOX_PATH]) | {
        "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [repo_tag],
                            "Layers": ["layer/layer.tar"]}]).encode()
    with tarfile.open(path, "w") as t:
        for name, data in (("manifest.json", manifest), (config_name, config),
                           ("layer/layer.tar", layer)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


def test_an_imported_archive_whose_layer_lies_is_502(node, tmp_path, token):
    claimed = tar_layer([File(f"claimed-{token}", "claimed\n")])
    forged = tar_layer([File(f"forged-{token}", "forged\n")])
    name = f"forged-{token.lower()}"
    archive = docker_save_tar(tmp_path / "forged.tar", f"{name}:1", forged, sha256_digest(claimed))
    with open(archive, "rb") as f:
        r = node.post("/v1/images/import", data=f, headers=TAR)
    assert r.status_code == 502, r.text
    assert "digest" in r.json()["error"], r.text
    assert_nothing_kept(node, f"docker.io/library/{name}:1",
                        [sha256_digest(claimed), sha256_digest(forged)])
    # The same archive telling the truth imports.
    honest = docker_save_tar(tmp_path / "honest.tar", f"{name}:1", claimed, sha256_digest(claimed))
    with open(honest, "rb") as f:
        r = node.post("/v1/images/import", data=f, headers=TAR)
    assert r.status_code == 201 and r.json()["ref"] == f"docker.io/library/{name}:1", r.text


# ---------------------------------------------------------------------------------------------
# what the node writes into a sandbox's root


def test_hosts_and_resolv_conf_symlinked_to_host_paths_are_not_written_through(
        node, registry, busybox_layer_tar, token):
    hosts = Path(f"/tmp/pwned-hosts-{token}")
    hosts.write_text("original\n")
    targets = [hosts, Path(f"/tmp/pwned-resolv-{token}"), Path(f"/tmp/pwned-hostname-{token}")]
    before = {p: snapshot(p) for p in targets}
    try:
        ref, _ = push_hostile(registry, busybox_layer_tar, [
            Dir("etc"),
            Symlink("etc/hosts", str(hosts)),
            Symlink("etc/resolv.conf", f"../../../../../../../..{targets[1]}"),
            Symlink("etc/hostname", str(targets[2])),
        ])
        sid = node.create_sandbox(image=ref)["id"]
        assert_host_unchanged(before)
        inside = node.run(sid, "for f in hosts resolv.conf hostname; do "
                               "test -L /etc/$f && echo $f-link; done; cat /etc/hostname")
        assert inside == sid + "\n", inside
        assert sid in node.run(sid, "cat /etc/hosts")
        assert "nameserver" in node.run(sid, "cat /etc/resolv.conf")
        node.delete_sandbox(sid)
        assert_host_unchanged(before)
    finally:
        for p in targets:
            if p.is_file() or p.is_symlink():
                p.unlink()


@pytest.mark.parametrize("target", ["/tmp", "/tmp/ai2in-etc-{token}"])
def test_an_image_whose_etc_is_a_symlink_to_a_host_directory_writes_nothing_there(
        node, registry, busybox_layer_tar, token, target):
    target = Path(target.format(token=token))
    made = not target.exists()
    if made:
        target.mkdir()
    names = ("hosts", "hostname", "resolv.conf", "passwd", "group")
    before = {target / n: snapshot(target / n) for n in names}
    if made:
        before[target] = snapshot(target)  # our own directory: nothing may appear in it
    try:
        ref, _ = push_hostile(registry, busybox_layer_tar, [Symlink("etc", str(target))])
        sbx = node.create_sandbox(image=ref)
        assert_host_unchanged(before)
        # The node's files went into the sandbox's own root, whatever its /etc points at.
        assert node.run(sbx["id"], "cat /etc/hostname") == sbx["id"] + "\n"
        assert sbx["id"] in node.run(sbx["id"], "cat /etc/hosts")
        node.delete_sandbox(sbx["id"])
        assert_host_unchanged(before)
        assert node.healthy()
    finally:
        if made:
            shutil.rmtree(target, ignore_errors=True)


def test_what_root_inside_changes_of_the_image_stays_in_its_sandbox(node, registry):
    """The layers are shared by every sandbox of the image: root inside may change any file,
    but the change lands in its own writable layer (overlay copy-up over a read-only,
    idmapped lower), never in the store nor in another sandbox."""
    ref = registry.refs["busybox"]
    a = node.create_sandbox(image=ref)["id"]
    node.run(a, "echo pwned > /etc/ai2in-test-image; rm /bin/cat; chmod 777 /bin; "
                "chown 1000 /etc/passwd; touch /bin/planted")
    assert node.run(a, "cat /etc/ai2in-test-image") == "pwned\n"
    b = node.create_sandbox(image=ref)["id"]
    assert node.run(b, "cat /etc/ai2in-test-image; stat -c '%a' /bin; stat -c '%u' /etc/passwd; "
                       "ls /bin/planted 2>&1 || true") == \
        "busybox\n755\n0\nls: /bin/planted: No such file or directory\n"
    diff_id = image_fixtures.busybox().config()["rootfs"]["diff_ids"][0]
    layer = Path(node.state_dir, "images", "layers", diff_id.removeprefix("sha256:"), "fs")
    mark = layer / "etc" / "ai2in-test-image"
    assert mark.read_text() == "busybox\n", "a sandbox wrote into the store"
    assert not (layer / "bin" / "planted").exists()
    assert (layer / "bin" / "cat").is_symlink()
    # The lower layers cannot be written in place either: they are mounted read-only.
    out = node.sh(a, "mount -o remount,rw / 2>&1; echo x > /proc/self/root/etc/ai2in-test-image; "
                     "grep -c ' overlay ' /proc/self/mountinfo")
    assert mark.read_text() == "busybox\n", out

"""The image-test fixtures themselves (registry.py, image_fixtures.py, the registry fixtures of
conftest.py), checked with tools that are not ours: skopeo reads what we pushed, umoci
unpacks what we built, curl fetches blobs, the registry verifies our tokens. If these fail,
an image test failing against the node proves nothing. None of them needs the node."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import tarfile

import requests

import image_fixtures
from registry import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    Device,
    Dir,
    Fifo,
    File,
    Hardlink,
    Opaque,
    Registry,
    Symlink,
    TokenServer,
    Whiteout,
    get_manifest,
    image_config,
    push_layers,
    push_manifest_raw,
    tar_layer,
)


def skopeo(*args: str, creds: tuple[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """`skopeo <command> <args>` over plain HTTP, with the registry credentials if given (for
    `copy`, those of the source)."""
    src = "src-" if args[0] == "copy" else ""
    cmd = ["skopeo", "--insecure-policy", args[0], f"--{src}tls-verify=false"]
    if creds:
        cmd += [f"--{src}creds", ":".join(creds)]
    p = subprocess.run(cmd + list(args[1:]), capture_output=True, text=True, timeout=120)
    if check:
        assert p.returncode == 0, f"{' '.join(cmd + list(args[1:]))} → {p.returncode}: {p.stderr}"
    return p


def inspect(ref: str, *flags: str, creds=None) -> dict:
    return json.loads(skopeo("inspect", *flags, f"docker://{ref}", creds=creds).stdout)


def tar_members(blob: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as t:
        return {m.name: m for m in t.getmembers()}


def registry_blob(reg: Registry, name: str, digest: str) -> bytes:
    r = requests.get(f"{reg.url}/v2/{name}/blobs/{digest}", timeout=60)
    assert r.status_code == 200, f"GET blob {digest} → {r.status_code}"
    return r.content


# ---------------------------------------------------------------------------------------------
# what push_all pushed, read back by skopeo


def test_busybox_has_one_layer_and_its_config(registry):
    info = inspect(registry.refs["busybox"])
    assert len(info["Layers"]) == 1, info
    assert info["Architecture"] == "amd64" and info["Os"] == "linux", info
    assert "AI2IN_TEST_IMAGE=busybox" in info["Env"], info
    cfg = inspect(registry.refs["busybox"], "--config")["config"]
    assert cfg["Cmd"] == ["/bin/sh"] and cfg["WorkingDir"] == "/work", cfg
    assert "8080/tcp" in cfg["ExposedPorts"], cfg
    raw = json.loads(skopeo("inspect", "--raw", f"docker://{registry.refs['busybox']}").stdout)
    assert raw["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json", raw
    # skopeo pushed the layout's manifest unchanged: the same digest as in the cache.
    layout_manifest = image_fixtures.busybox().manifest()
    assert raw["layers"] == layout_manifest["layers"], (raw, layout_manifest)


def test_busybox_docker_is_schema2_with_the_same_layer(registry):
    raw = json.loads(skopeo("inspect", "--raw", f"docker://{registry.refs['busybox-docker']}").stdout)
    assert raw["mediaType"] == DOCKER_MANIFEST, raw
    assert [l["mediaType"] for l in raw["layers"]] == ["application/vnd.docker.image.rootfs.diff.tar.gzip"]
    oci = inspect(registry.refs["busybox"])
    assert inspect(registry.refs["busybox-docker"])["Layers"] == oci["Layers"]


def test_multilayer_has_four_layers_and_its_config(registry):
    info = inspect(registry.refs["multilayer"])
    assert len(info["Layers"]) == 4, info
    cfg = inspect(registry.refs["multilayer"], "--config")
    assert cfg["config"]["WorkingDir"] == "/data", cfg
    assert len(cfg["rootfs"]["diff_ids"]) == 4, cfg


def test_multilayer_layers_hold_the_documented_entries(registry):
    """The whiteouts and special files the module docstring promises are in the layers as
    the registry serves them (not just in our memory of how they were built)."""
    manifest, _, _, _ = get_manifest(registry.host, "multilayer", "1")
    layers = [tar_members(registry_blob(registry, "multilayer", l["digest"])) for l in manifest["layers"]]
    l1, l2, l3, l4 = layers
    suid = l1["usr/local/bin/suid-hello"]
    assert suid.mode == 0o4755 and (suid.uid, suid.gid) == (0, 0), oct(suid.mode)
    owned = l1["data/owned.txt"]
    assert (owned.uid, owned.gid, owned.mode) == (1000, 1000, 0o640)
    assert l1["data/private"].isdir() and l1["data/private"].uid == 1000
    assert l1["data/keep.txt"].islnk() and l1["data/keep.txt"].linkname == "data/hard.txt"
    assert l1["data/link"].issym() and l1["data/link"].linkname == "keep.txt"
    assert l1["bin/sh"].issym() and l1["bin/sh"].linkname == "/bin/busybox"
    assert "data/.wh.gone.txt" in l2 and "data/.wh.olddir" in l2, sorted(l2)
    assert sorted(l3) == ["opt/replaced", "opt/replaced/.wh..wh..opq", "opt/replaced/new3.txt"]
    assert sorted(l4) == ["data/layer4.txt"], sorted(l4)


def test_multilayer_unpacks_to_the_documented_tree(tmp_path):
    """umoci applies the four layers (whiteouts included) to what a sandbox must see."""
    bundle = tmp_path / "bundle"
    image = image_fixtures.multilayer()
    subprocess.run(["umoci", "unpack", "--image", f"{image.layout}:1", str(bundle)],
                   check=True, capture_output=True, timeout=120)
    root = bundle / "rootfs"
    assert sorted(p.name for p in (root / "data").iterdir()) == [
        "added2.txt", "changed.txt", "hard.txt", "keep.txt", "layer4.txt", "link", "owned.txt",
        "private"]
    assert (root / "data/changed.txt").read_text() == "v2\n"
    assert (root / "data/keep.txt").stat().st_ino == (root / "data/hard.txt").stat().st_ino
    assert sorted(p.name for p in (root / "opt/replaced").iterdir()) == ["new3.txt"]
    assert (root / "opt/kept/k.txt").read_text() == "kept\n"
    st = (root / "usr/local/bin/suid-hello").stat()
    assert st.st_mode & 0o7777 == 0o4755 and st.st_uid == 0
    st = (root / "data/owned.txt").stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1000, 1000, 0o640)
    assert not list(root.rglob(".wh.*"))
    assert (root / "etc/ai2in-test-image").read_text() == "multilayer\n"


def test_python_is_debian_with_python3(registry):
    info = inspect(registry.refs["python"])
    assert len(info["Layers"]) == 1, info
    cfg = inspect(registry.refs["python"], "--config")["config"]
    assert cfg["Cmd"] == ["python3"] and "LANG=C.UTF-8" in cfg["Env"], cfg
    assert any(e.startswith("PATH=") for e in cfg["Env"]), cfg
    layer = image_fixtures.python().layout / "blobs" / "sha256" / info["Layers"][0].split(":")[1]
    names = subprocess.run(["tar", "tzf", str(layer)], capture_output=True, text=True,
                           check=True, timeout=120).stdout.splitlines()
    assert "./usr/bin/python3" in names and "./etc/debian_version" in names
    assert not [n for n in names if n.startswith("./dev/")], "devices left in the layer"


def test_hello_deb_is_a_small_package_needing_only_libc():
    deb = image_fixtures.hello_deb()
    fields = subprocess.run(["dpkg-deb", "-f", str(deb), "Package", "Depends", "Architecture"],
                            capture_output=True, text=True, check=True, timeout=30).stdout
    assert "Package: hello" in fields and "Architecture: amd64" in fields, fields
    assert "libc6" in fields, fields
    assert deb.stat().st_size < 1 << 20


def test_multi_arch_index_resolves_per_platform(registry):
    raw = json.loads(skopeo("inspect", "--raw", f"docker://{registry.refs['multi']}").stdout)
    assert raw["mediaType"] == OCI_INDEX, raw
    platforms = {(m["platform"]["architecture"], m["digest"]) for m in raw["manifests"]}
    assert platforms == {("amd64", registry.digests["busybox"]),
                         ("arm64", registry.digests["multi-arm64"])}, raw
    amd = inspect(registry.refs["multi"])
    assert amd["Architecture"] == "amd64" and amd["Layers"] == inspect(registry.refs["busybox"])["Layers"]
    arm = inspect(registry.refs["multi"], "--override-arch", "arm64")
    assert arm["Architecture"] == "arm64" and len(arm["Layers"]) == 1, arm

    docker = json.loads(skopeo("inspect", "--raw", f"docker://{registry.refs['multi-docker']}").stdout)
    assert docker["mediaType"] == DOCKER_MANIFEST_LIST
    assert {m["mediaType"] for m in docker["manifests"]} == {DOCKER_MANIFEST}

    only = skopeo("inspect", f"docker://{registry.refs['arm64-only']}", check=False)
    assert only.returncode != 0 and "amd64" in only.stderr, only.stderr


# ---------------------------------------------------------------------------------------------
# auth


def test_htpasswd_registry_wants_basic_credentials(auth_registry):
    ref = auth_registry.refs["busybox"]
    r = requests.get(f"{auth_registry.url}/v2/busybox/manifests/1", timeout=30)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic "), r.headers
    wrong = (auth_registry.username, "wrong")
    assert skopeo("inspect", f"docker://{ref}", creds=wrong, check=False).returncode != 0
    assert len(inspect(ref, creds=auth_registry.credentials)["Layers"]) == 1


def test_token_registry_refuses_anonymous_pulls(token_registry):
    r = requests.get(f"{token_registry.url}/v2/busybox/manifests/1", timeout=30)
    assert r.status_code == 401, r.text
    challenge = r.headers["WWW-Authenticate"]
    ts = token_registry.token_server
    assert challenge.startswith("Bearer ") and f'realm="{ts.realm}"' in challenge, challenge
    assert 'scope="repository:busybox:pull"' in challenge, challenge
    # The token server wants credentials too.
    params = {"service": ts.service, "scope": "repository:busybox:pull"}
    assert requests.get(ts.realm, params=params, timeout=30).status_code == 401
    assert requests.get(ts.realm, params=params, auth=("ai2in-test", "wrong"), timeout=30).status_code == 401
    assert skopeo("inspect", f"docker://{token_registry.refs['busybox']}", check=False).returncode != 0


def test_token_registry_serves_a_pull_through_the_token_server(token_registry, tmp_path):
    ts = token_registry.token_server
    before = len(ts.requests)
    skopeo("copy", f"docker://{token_registry.refs['busybox']}", f"oci:{tmp_path / 'out'}:1",
           creds=token_registry.credentials)
    asked = ts.requests[before:]
    assert any(q.user == token_registry.username and q.status == 200
               and "repository:busybox:pull" in q.scopes for q in asked), asked
    # And by hand, the way the node will: challenge → token → manifest.
    params = {"service": ts.service, "scope": "repository:busybox:pull"}
    body = requests.get(ts.realm, params=params, auth=token_registry.credentials, timeout=30).json()
    assert body["token"] == body["access_token"] and body["expires_in"] > 0
    header = json.loads(base64.urlsafe_b64decode(body["token"].split(".")[0] + "=="))
    assert header["alg"] == "RS256" and header["x5c"] and header["kid"].count(":") == 11, header
    r = requests.get(f"{token_registry.url}/v2/busybox/manifests/1", timeout=30,
                     headers={"Authorization": f"Bearer {body['token']}", "Accept": OCI_MANIFEST})
    assert r.status_code == 200, r.text
    assert r.headers["Docker-Content-Digest"] == token_registry.digests["busybox"]


def test_token_registry_checks_signature_and_scope(token_registry, tmp_path):
    """The registry verifies what the token server signs: a token for another repository, or
    one signed by a key it does not trust, is refused."""
    ts = token_registry.token_server
    url = f"{token_registry.url}/v2/busybox/manifests/1"
    other_repo = ts.issue("ai2in-test", ["repository:multi:pull"])
    assert requests.get(url, headers={"Authorization": f"Bearer {other_repo}"}, timeout=30).status_code == 401
    rogue = TokenServer("ai2in-test", "x", ts.service, ts.issuer, tmp_path)
    try:
        forged = rogue.issue("ai2in-test", ["repository:busybox:pull"])
    finally:
        rogue.stop()
    assert requests.get(url, headers={"Authorization": f"Bearer {forged}"}, timeout=30).status_code == 401
    good = ts.issue("ai2in-test", ["repository:busybox:pull"])
    assert requests.get(url, headers={"Authorization": f"Bearer {good}", "Accept": OCI_MANIFEST},
                        timeout=30).status_code == 200


# ---------------------------------------------------------------------------------------------
# the registry's log, hand-made pushes, crafted layers


def test_blob_requests_counts_blobs_fetched_with_curl():
    with Registry() as reg:
        layer = tar_layer([File("hello.txt", "hello\n")])
        push_layers(reg.host, "count/me", "1", [layer])
        manifest, _, _, _ = get_manifest(reg.host, "count/me", "1")
        digest = manifest["layers"][0]["digest"]
        assert reg.blob_requests(digest) == 0
        url = f"{reg.url}/v2/count/me/blobs/{digest}"
        subprocess.run(["curl", "-sSf", "-o", "/dev/null", url], check=True, timeout=30)
        assert reg.blob_requests(digest) == 1, reg.log_tail()
        subprocess.run(["curl", "-sSf", "-I", "-o", "/dev/null", url], check=True, timeout=30)
        assert reg.blob_requests(digest) == 1, "a HEAD is not a fetch"
        subprocess.run(["curl", "-sSf", "-o", "/dev/null", url], check=True, timeout=30)
        assert reg.blob_requests(digest) == 2
        assert reg.blob_requests(digest, name="other/repo") == 0
        missing = "sha256:" + "0" * 64
        subprocess.run(["curl", "-s", "-o", "/dev/null", f"{reg.url}/v2/count/me/blobs/{missing}"],
                       check=True, timeout=30)
        assert reg.blob_requests(missing) == 0 and reg.blob_requests(missing, statuses=None) == 1


def test_push_layers_variants_are_read_by_skopeo(tmp_path):
    layer = tar_layer([Dir("etc"), File("etc/variant", "x\n")])
    with Registry() as reg:
        push_layers(reg.host, "v", "zstd", [layer], compress="zstd")
        push_layers(reg.host, "v", "docker", [layer], media_type="docker")
        push_layers(reg.host, "v", "plain", [layer], compress="none",
                    config=image_config([layer], User="1000", Cmd=["/bin/true"]))
        raw = json.loads(skopeo("inspect", "--raw", f"docker://{reg.host}/v:zstd").stdout)
        assert raw["layers"][0]["mediaType"] == OCI_LAYER_ZSTD
        assert json.loads(skopeo("inspect", "--raw", f"docker://{reg.host}/v:docker").stdout)[
            "mediaType"] == DOCKER_MANIFEST
        cfg = inspect(f"{reg.host}/v:plain", "--config")
        assert cfg["config"]["User"] == "1000" and cfg["rootfs"]["diff_ids"][0].startswith("sha256:")
        # skopeo decompresses the zstd layer and checks it against the config's diff_id.
        skopeo("copy", f"docker://{reg.host}/v:zstd", f"dir:{tmp_path / 'zstd'}")


def test_push_manifest_raw_sends_what_it_is_given():
    with Registry() as reg:
        layer = tar_layer([File("a", "a\n")])
        push_layers(reg.host, "raw", "1", [layer])
        manifest, _, _, _ = get_manifest(reg.host, "raw", "1")
        lying = json.loads(json.dumps(manifest))
        lying["layers"][0]["size"] += 7  # the registry does not check sizes: the client must
        r = push_manifest_raw(reg.host, "raw", "lying", lying)
        assert r.status_code == 201
        assert get_manifest(reg.host, "raw", "lying")[0]["layers"][0]["size"] == lying["layers"][0]["size"]
        unknown = json.loads(json.dumps(manifest))
        unknown["layers"][0]["digest"] = "sha256:" + "1" * 64
        r = push_manifest_raw(reg.host, "raw", "unknown", unknown, expect=())
        assert r.status_code == 400 and "MANIFEST_BLOB_UNKNOWN" in r.text, r.text


def test_tar_layer_writes_names_and_types_verbatim():
    blob = tar_layer([
        Dir("d", 0o700, uid=5, gid=6),
        File("d/f", "data", mode=0o4750, uid=1000, gid=1000),
        Symlink("d/s", "/etc/passwd"),
        Hardlink("d/h", "d/f"),
        Device("d/null", "char", 1, 3),
        Device("d/blk", "block", 7, 0, mode=0o600),
        Fifo("d/p"),
        File("../escape", "x"),
        File("/abs", "y"),
        Whiteout("d/old"),
        Opaque("d"),
    ])
    m = tar_members(blob)
    assert list(m) == ["d", "d/f", "d/s", "d/h", "d/null", "d/blk", "d/p", "../escape", "/abs",
                       "d/.wh.old", "d/.wh..wh..opq"]
    assert m["d"].isdir() and (m["d"].mode, m["d"].uid, m["d"].gid) == (0o700, 5, 6)
    assert m["d/f"].mode == 0o4750 and m["d/f"].uid == 1000 and m["d/f"].size == 4
    assert m["d/s"].issym() and m["d/h"].islnk() and m["d/h"].linkname == "d/f"
    assert m["d/null"].ischr() and (m["d/null"].devmajor, m["d/null"].devminor) == (1, 3)
    assert m["d/blk"].isblk() and m["d/p"].isfifo()
    # GNU tar agrees (it is not only Python reading Python).
    listing = subprocess.run(["tar", "tvf", "-"], input=blob, capture_output=True, check=True,
                             timeout=30).stdout.decode()
    assert "../escape" in listing and "d/.wh..wh..opq" in listing, listing


# ---------------------------------------------------------------------------------------------
# the cache and the archives


def test_images_are_cached_by_recipe():
    first = image_fixtures.busybox()
    again = image_fixtures.busybox()
    assert again.cached and again.dir == first.dir
    assert again.meta["tools"]["umoci"] and again.meta["key"] == first.key
    assert (again.layout / "oci-layout").is_file() and (again.layout / "index.json").is_file()
    assert not list(image_fixtures.CACHE_ROOT.glob(".busybox-*.tmp-*")), "a temp build dir is left"


def test_archives_are_readable_by_skopeo(tmp_path):
    docker = image_fixtures.docker_save_archive(tmp_path / "app.tar")
    with tarfile.open(docker) as t:
        manifest = json.load(t.extractfile("manifest.json"))
    assert len(manifest) == 1 and len(manifest[0]["Layers"]) == 1, manifest
    assert manifest[0]["RepoTags"] and manifest[0]["RepoTags"][0].endswith("app:1"), manifest
    oci = image_fixtures.oci_archive(tmp_path / "oci.tar")
    with tarfile.open(oci) as t:
        names = set(t.getnames())
    assert {"oci-layout", "index.json"} <= names, names
    busybox_layers = image_fixtures.busybox().manifest()["layers"]
    for ref in (f"docker-archive:{docker}", f"oci-archive:{oci}:1"):
        p = subprocess.run(["skopeo", "--insecure-policy", "inspect", ref], capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 0, f"skopeo inspect {ref}: {p.stderr}"
        assert len(json.loads(p.stdout)["Layers"]) == len(busybox_layers)

"""Real container images for the image tests, built with independent tools and cached on disk.

The node's image code must be tested against images it did not make: these are assembled by
`busybox-static`, `umoci` (the OCI image tool of openSUSE/runc), `mmdebstrap` (Debian) and
`skopeo` (containers/image), never by ai2in. Each image is an OCI layout (tag "1") under
`/var/cache/ai2in-test/images/<name>-<key>/layout` (override with $AI2IN_TEST_IMAGE_CACHE),
where <key> is a sha256 of the recipe (the source of the builder functions below and the
versions of the tools), so a CI machine builds each image once and a changed recipe builds
anew. Builds are serialised between processes by a lock file and published by renaming a
finished temp dir, so two concurrent runs never see half an image. Needs root (the layers
carry files owned by other users and setuid bits).

What a sandbox must see
=======================

busybox (1 layer; config: Env PATH=/usr/sbin:/usr/bin:/sbin:/bin and AI2IN_TEST_IMAGE=busybox,
WorkingDir /work, Cmd ["/bin/sh"], ExposedPorts 8080/tcp, User unset, linux/amd64):

- /bin/busybox (static, 0755) and one absolute symlink → /bin/busybox per applet of
  `busybox --list-full` (/bin/sh, /bin/ls, /bin/cat, /bin/stat, /usr/bin/id, /usr/bin/env, …)
- /etc/passwd: root (0) with home /root, user (1000:1000) with home /home/user, nobody
  (65534); /etc/group: root, user (1000), nogroup; /etc/ai2in-test-image = "busybox\\n"
- /tmp 1777, /root 0700, /home/user 0755 owned 1000:1000, /work 0755, empty /dev /proc /sys

multilayer (4 layers, on top of the same busybox tree; config: Env PATH and
AI2IN_TEST_IMAGE=multilayer, WorkingDir /data, Cmd ["/bin/sh"]):

- layer 1 (umoci repack): the busybox tree; /etc/ai2in-test-image = "multilayer\\n";
  /data/keep.txt "keep\\n" 0644 0:0 and /data/hard.txt, one inode (umoci writes hard.txt as
  the file and keep.txt as a tar hard link to it);
  /data/link → keep.txt (relative symlink); /data/changed.txt "v1\\n"; /data/gone.txt;
  /data/owned.txt "owned by user\\n" 0640 1000:1000; /data/private/ 0700 1000:1000;
  /data/olddir/{a.txt,b.txt}; /usr/local/bin/suid-hello "#!/bin/sh\\necho hello\\n" 04755 0:0;
  /opt/replaced/{old1.txt,sub/old2.txt}; /opt/kept/k.txt "kept\\n"
- layer 2 (umoci repack): removes /data/gone.txt (umoci writes `data/.wh.gone.txt`) and the
  whole /data/olddir (`data/.wh.olddir`); rewrites /data/changed.txt to "v2\\n"; adds
  /data/added2.txt "layer 2\\n"
- layer 3 (crafted with tarfile, appended by `umoci raw add-layer`, as umoci never writes
  opaque whiteouts itself): `opt/replaced/` 0755, `opt/replaced/.wh..wh..opq`,
  `opt/replaced/new3.txt` "layer 3\\n"
- layer 4 (umoci repack): adds /data/layer4.txt "layer 4\\n"

  So a sandbox of multilayer:1 has /data/{keep.txt, hard.txt (same inode as keep.txt),
  link → keep.txt, changed.txt = "v2\\n", owned.txt (1000:1000, 0640), private/ (1000:1000,
  0700), added2.txt, layer4.txt}; no /data/gone.txt and no /data/olddir; /usr/local/bin/
  suid-hello mode 4755 owner 0:0; /opt/replaced holds only new3.txt (old1.txt and sub/ are
  gone, and no `.wh.*` file is visible anywhere); /opt/kept/k.txt is still there.

python (1 layer: `mmdebstrap --variant=minbase --include=python3,ca-certificates bookworm`
from http://deb.debian.org/debian, without /dev (`--skip=output/dev`); tar entries are
`./`-prefixed, as mmdebstrap writes them; config: Env PATH=/usr/local/sbin:/usr/local/bin:
/usr/sbin:/usr/bin:/sbin:/bin and LANG=C.UTF-8, Cmd ["python3"]): Debian 12 with python3
3.11, dpkg and apt, root only (no user 1000). `hello_deb()` is Debian's `hello` package,
downloaded in the same mmdebstrap run (depends on libc6 only), for a `dpkg -i` in a sandbox.

`push_all(registry)` pushes them (skopeo) and adds hand-made multi-platform indexes; see its
docstring for the names.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import inspect
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import registry as reg

CACHE_ROOT = Path(os.environ.get("AI2IN_TEST_IMAGE_CACHE", "/var/cache/ai2in-test/images"))
TAG = "1"
MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
LOCK_TIMEOUT = 1800.0  # a python build by another process on a slow machine
TOOL_TIMEOUT = 300.0
MMDEBSTRAP_TIMEOUT = 1500.0
PRUNE_AFTER = 86400.0  # other-recipe entries of an image older than this are removed

BUSYBOX_PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"
DEBIAN_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
AMD64 = {"architecture": "amd64", "os": "linux"}
ARM64 = {"architecture": "arm64", "os": "linux", "variant": "v8"}


@dataclass
class BuiltImage:
    """One cached image: an OCI layout with tag `tag`, and what it took to build."""

    name: str
    dir: Path  # the cache entry
    key: str
    meta: dict = field(default_factory=dict)
    cached: bool = True  # False when this call built it

    tag: str = TAG

    @property
    def layout(self) -> Path:
        return self.dir / "layout"

    @property
    def oci_ref(self) -> str:
        """The image for skopeo: `oci:<layout>:<tag>`."""
        return f"oci:{self.layout}:{self.tag}"

    @property
    def build_seconds(self) -> float:
        return float(self.meta.get("build_seconds", 0.0))

    def manifest(self) -> dict:
        index = json.loads((self.layout / "index.json").read_text())
        desc = next(m for m in index["manifests"]
                    if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == self.tag)
        return json.loads(self._blob(desc["digest"]))

    def config(self) -> dict:
        return json.loads(self._blob(self.manifest()["config"]["digest"]))

    def _blob(self, digest: str) -> bytes:
        algo, _, hexdigest = digest.partition(":")
        return (self.layout / "blobs" / algo / hexdigest).read_bytes()


# ---------------------------------------------------------------------------------------------
# running tools


def _run(args: list[str], timeout: float = TOOL_TIMEOUT, **kw) -> subprocess.CompletedProcess:
    """Runs a tool; a failure raises with its command line and output tail."""
    try:
        p = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL, **kw)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"{shlex.join(map(str, args))} did not finish within {timeout:.0f} s") from e
    if p.returncode != 0:
        raise RuntimeError(f"{shlex.join(map(str, args))} exited with {p.returncode}\n"
                           f"--- stdout (tail) ---\n{p.stdout[-3000:]}\n"
                           f"--- stderr (tail) ---\n{p.stderr[-3000:]}")
    return p


def _umoci(*args) -> None:
    _run([reg.require_tool("umoci", "umoci"), *args])


def _skopeo(*args, timeout: float = TOOL_TIMEOUT) -> None:
    # --insecure-policy: no /etc/containers/policy.json needed; nothing here is signed.
    _run([reg.require_tool("skopeo", "skopeo"), "--insecure-policy", *args], timeout=timeout)


def _pkg_version(package: str) -> str:
    p = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package],
                       capture_output=True, text=True, timeout=30)
    return p.stdout.strip() if p.returncode == 0 else "unknown"


def _tool_versions(*packages: str) -> dict[str, str]:
    return {p: _pkg_version(p) for p in packages}


# ---------------------------------------------------------------------------------------------
# the cache


@contextlib.contextmanager
def _lock(path: Path, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """An exclusive flock on `path`, waited for at most `timeout` seconds."""
    with open(path, "a") as f:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{path} is still locked after {timeout:.0f} s "
                                       f"(another process building the same image?)")
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _cached(name: str, recipe: dict, build: Callable[[Path], dict | None]) -> BuiltImage:
    """The cache entry of `name` for `recipe`, built by `build(tmp_dir)` (which makes
    `tmp_dir/layout` and may return extra metadata) if it is not there yet."""
    if os.geteuid() != 0:
        raise RuntimeError("the image fixtures need root (layers with other owners, setuid)")
    recipe_text = json.dumps(recipe, sort_keys=True)
    key = hashlib.sha256(recipe_text.encode()).hexdigest()[:16]
    final = CACHE_ROOT / f"{name}-{key}"
    if (final / "meta.json").is_file():  # published by rename: complete if present
        return BuiltImage(name, final, key, json.loads((final / "meta.json").read_text()))
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    with _lock(CACHE_ROOT / f".{name}.lock"):
        if (final / "meta.json").is_file():  # another process built it while we waited
            return BuiltImage(name, final, key, json.loads((final / "meta.json").read_text()))
        # Under the lock no other build of `name` runs: any temp dir of it is a dead one's.
        for stale in CACHE_ROOT.glob(f".{name}-*.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = CACHE_ROOT / f".{name}-{key}.tmp-{os.getpid()}"
        tmp.mkdir()
        try:
            t0 = time.monotonic()
            extra = build(tmp) or {}
            meta = {
                "name": name,
                "key": key,
                "recipe_sha256": hashlib.sha256(recipe_text.encode()).hexdigest(),
                "tools": recipe.get("tools", {}),
                "build_seconds": round(time.monotonic() - t0, 2),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                **extra,
            }
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
            os.rename(tmp, final)  # atomic: readers see no entry or a complete one
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        for old in CACHE_ROOT.glob(f"{name}-*"):
            if old != final and old.is_dir() and time.time() - old.stat().st_mtime > PRUNE_AFTER:
                shutil.rmtree(old, ignore_errors=True)
    return BuiltImage(name, final, key, meta, cached=False)


def _recipe(name: str, *functions: Callable, tools: dict[str, str], **extra) -> dict:
    """What an image is built from: the source of its builder functions (so that editing a
    recipe rebuilds it, and editing anything else here does not), the tool versions, and
    anything else it depends on."""
    return {
        "name": name,
        "schema": 1,
        "source": [inspect.getsource(f) for f in functions],
        "tools": tools,
        **extra,
    }


# ---------------------------------------------------------------------------------------------
# busybox


def _write(path: Path, content: str | bytes, mode: int = 0o644, uid: int = 0, gid: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    os.chown(path, uid, gid)
    os.chmod(path, mode)  # after chown: chown clears setuid bits


def _mkdir(path: Path, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, uid, gid)
    os.chmod(path, mode)


def _elf_has_interpreter(elf: bytes) -> bool:
    """Whether a 64-bit little-endian ELF has a PT_INTERP program header (a dynamic loader)."""
    import struct

    if elf[:4] != b"\x7fELF" or elf[4] != 2:
        raise RuntimeError("not a 64-bit ELF file")
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    return any(struct.unpack_from("<I", elf, phoff + i * phentsize)[0] == 3 for i in range(phnum))


def _busybox_rootfs(rootfs: Path, image_name: str) -> None:
    """The busybox tree (see the module docstring) in `rootfs`."""
    busybox = Path(reg.require_tool("busybox", "busybox-static")).resolve()
    data = busybox.read_bytes()
    if _elf_has_interpreter(data):  # the `busybox` package, not busybox-static
        raise RuntimeError(f"{busybox} is dynamically linked: install busybox-static")
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "dev", "proc", "sys", "work"):
        _mkdir(rootfs / d)
    _mkdir(rootfs / "tmp", 0o1777)
    _mkdir(rootfs / "root", 0o700)
    _mkdir(rootfs / "home", 0o755)
    _mkdir(rootfs / "home/user", 0o755, 1000, 1000)
    _write(rootfs / "bin/busybox", data, 0o755)
    applets = _run([busybox, "--list-full"]).stdout.split()
    for rel in sorted(applets):
        if "/" not in rel or rel == "bin/busybox":  # `linuxrc` lives in / on embedded systems
            continue
        link = rootfs / rel
        if not link.exists() and not link.is_symlink():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to("/bin/busybox")
    _write(rootfs / "etc/passwd",
           "root:x:0:0:root:/root:/bin/sh\n"
           "user:x:1000:1000:user:/home/user:/bin/sh\n"
           "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    _write(rootfs / "etc/group", "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n")
    _write(rootfs / "etc/ai2in-test-image", f"{image_name}\n")


def _build_busybox(tmp: Path) -> None:
    layout, ref, bundle = tmp / "layout", f"{tmp / 'layout'}:{TAG}", tmp / "bundle"
    _umoci("init", "--layout", layout)
    _umoci("new", "--image", ref)
    _umoci("unpack", "--image", ref, bundle)
    _busybox_rootfs(bundle / "rootfs", "busybox")
    _umoci("repack", "--image", ref, "--history.created_by", "ai2in e2e: busybox-static rootfs",
           bundle)
    _umoci("config", "--image", ref, "--config.env", BUSYBOX_PATH,
           "--config.env", "AI2IN_TEST_IMAGE=busybox", "--config.workingdir", "/work",
           "--config.cmd", "/bin/sh", "--config.exposedports", "8080/tcp",
           "--history.created_by", "ai2in e2e: busybox config")
    shutil.rmtree(bundle)
    _umoci("gc", "--layout", layout)


def busybox() -> BuiltImage:
    """The one-layer busybox image (see the module docstring), built once."""
    recipe = _recipe("busybox", _busybox_rootfs, _build_busybox, _write, _mkdir,
                     _elf_has_interpreter,
                     tools=_tool_versions("umoci", "busybox-static"))
    return _cached("busybox", recipe, _build_busybox)


# ---------------------------------------------------------------------------------------------
# multilayer


def _multilayer_layer3() -> bytes:
    """The opaque-whiteout layer umoci would not write."""
    return reg.tar_layer([
        reg.Dir("opt/replaced", 0o755),
        reg.Opaque("opt/replaced"),
        reg.File("opt/replaced/new3.txt", "layer 3\n"),
    ], format=tarfile.GNU_FORMAT)


def _build_multilayer(tmp: Path) -> None:
    layout, ref, bundle = tmp / "layout", f"{tmp / 'layout'}:{TAG}", tmp / "bundle"
    _umoci("init", "--layout", layout)
    _umoci("new", "--image", ref)

    # layer 1: the busybox tree, files of several owners and modes, links
    _umoci("unpack", "--image", ref, bundle)
    root = bundle / "rootfs"
    _busybox_rootfs(root, "multilayer")
    _mkdir(root / "data")
    _write(root / "data/keep.txt", "keep\n")
    os.link(root / "data/keep.txt", root / "data/hard.txt")
    (root / "data/link").symlink_to("keep.txt")
    _write(root / "data/changed.txt", "v1\n")
    _write(root / "data/gone.txt", "gone\n")
    _write(root / "data/owned.txt", "owned by user\n", 0o640, 1000, 1000)
    _mkdir(root / "data/private", 0o700, 1000, 1000)
    _write(root / "data/olddir/a.txt", "a\n")
    _write(root / "data/olddir/b.txt", "b\n")
    _write(root / "usr/local/bin/suid-hello", "#!/bin/sh\necho hello\n", 0o4755)
    _write(root / "opt/replaced/old1.txt", "old 1\n")
    _write(root / "opt/replaced/sub/old2.txt", "old 2\n")
    _write(root / "opt/kept/k.txt", "kept\n")
    _umoci("repack", "--image", ref, "--history.created_by", "ai2in e2e: multilayer layer 1",
           bundle)
    shutil.rmtree(bundle)

    # layer 2: a deleted file, a deleted directory, a changed and an added file
    _umoci("unpack", "--image", ref, bundle)
    root = bundle / "rootfs"
    (root / "data/gone.txt").unlink()
    shutil.rmtree(root / "data/olddir")
    _write(root / "data/changed.txt", "v2\n")
    _write(root / "data/added2.txt", "layer 2\n")
    _umoci("repack", "--image", ref, "--history.created_by", "ai2in e2e: multilayer layer 2",
           bundle)
    shutil.rmtree(bundle)

    # layer 3: an opaque directory, crafted
    layer3 = tmp / "layer3.tar"
    layer3.write_bytes(_multilayer_layer3())
    _umoci("raw", "add-layer", "--image", ref, "--history.created_by",
           "ai2in e2e: multilayer layer 3 (opaque whiteout of /opt/replaced)", layer3)
    layer3.unlink()

    # layer 4: one more file, on top of an unpack that applied the opaque whiteout
    _umoci("unpack", "--image", ref, bundle)
    root = bundle / "rootfs"
    left = sorted(p.name for p in (root / "opt/replaced").iterdir())
    if left != ["new3.txt"]:
        raise RuntimeError(f"umoci did not apply layer 3's opaque whiteout: /opt/replaced has {left}")
    _write(root / "data/layer4.txt", "layer 4\n")
    _umoci("repack", "--image", ref, "--history.created_by", "ai2in e2e: multilayer layer 4",
           bundle)
    shutil.rmtree(bundle)

    _umoci("config", "--image", ref, "--config.env", BUSYBOX_PATH,
           "--config.env", "AI2IN_TEST_IMAGE=multilayer", "--config.workingdir", "/data",
           "--config.cmd", "/bin/sh", "--history.created_by", "ai2in e2e: multilayer config")
    _umoci("gc", "--layout", layout)


def multilayer() -> BuiltImage:
    """The four-layer image with whiteouts (see the module docstring), built once."""
    recipe = _recipe("multilayer", _busybox_rootfs, _build_multilayer, _multilayer_layer3,
                     _write, _mkdir, _elf_has_interpreter, reg.tar_layer,
                     tools=_tool_versions("umoci", "busybox-static"),
                     python=f"{sys.version_info.major}.{sys.version_info.minor}")
    return _cached("multilayer", recipe, _build_multilayer)


# ---------------------------------------------------------------------------------------------
# python (Debian bookworm minbase)


def _debian_image(tmp: Path, suite: str, packages: str, hook: str, cmd: str) -> None:
    """`tmp/layout`: one layer of `mmdebstrap --variant=minbase --include=PACKAGES SUITE`
    (without /dev; `hook` customizes the root, "$1" naming it), Debian's PATH, LANG=C.UTF-8
    and Cmd `cmd`."""
    mmdebstrap = reg.require_tool("mmdebstrap", "mmdebstrap")
    layout, ref = tmp / "layout", f"{tmp / 'layout'}:{TAG}"
    rootfs_tar = tmp / "rootfs.tar"
    _run([mmdebstrap, "--quiet", "--variant=minbase", f"--include={packages}",
          "--skip=output/dev", f"--customize-hook={hook}", suite, rootfs_tar, MIRROR],
         timeout=MMDEBSTRAP_TIMEOUT)
    _umoci("init", "--layout", layout)
    _umoci("new", "--image", ref)
    _umoci("raw", "add-layer", "--image", ref, "--history.created_by",
           f"mmdebstrap --variant=minbase --include={packages} {suite}", rootfs_tar)
    rootfs_tar.unlink()
    _umoci("config", "--image", ref, "--config.env", DEBIAN_PATH, "--config.env", "LANG=C.UTF-8",
           "--config.cmd", cmd, "--history.created_by", f"ai2in e2e: {cmd} config")
    _umoci("gc", "--layout", layout)


def _build_python(tmp: Path) -> dict:
    debs = tmp / "debs"
    debs.mkdir()
    # The .deb comes from the same apt run, so it needs no apt lists on the host.
    hook = ('chroot "$1" sh -c "cd /tmp && apt-get download -q hello" && '
            f'mv "$1"/tmp/hello_*.deb {shlex.quote(str(debs))}/')
    _debian_image(tmp, SUITE, "python3,ca-certificates", hook, "python3")
    found = sorted(debs.glob("hello_*.deb"))
    if len(found) != 1:
        raise RuntimeError(f"apt-get download hello left {found} in {debs}")
    return {"deb": str(found[0].relative_to(tmp))}


def python() -> BuiltImage:
    """Debian bookworm minbase with python3 (see the module docstring), built once (about
    20 s to a few minutes, depending on the mirror)."""
    recipe = _recipe("python", _build_python, _debian_image,
                     tools=_tool_versions("umoci", "mmdebstrap", "apt"),
                     mirror=MIRROR, suite=SUITE)
    return _cached("python", recipe, _build_python)


def hello_deb() -> Path:
    """Debian's `hello` .deb (bookworm, amd64; depends on libc6 only), kept next to the
    python image it was downloaded with."""
    img = python()
    return img.dir / img.meta["deb"]


# ---------------------------------------------------------------------------------------------
# engines (Debian trixie minbase with PostgreSQL 17, MariaDB 11.8 and Redis 8.0)

ENGINES_SUITE = "trixie"
ENGINE_PACKAGES = "postgresql-17,mariadb-server,mariadb-client,redis-server,redis-tools"


def _build_engines(tmp: Path) -> dict:
    # The packages' own data directories and clusters are not the node's business (it makes
    # its own, on each database's volume): dropped, with the documentation, translations and
    # PostgreSQL's JIT (LLVM and z3: 150 of the image's 220 MB; PostgreSQL runs without it).
    lib = '"$1"/usr/lib/x86_64-linux-gnu'
    hook = ('rm -rf "$1"/var/lib/postgresql/17/main "$1"/etc/postgresql/17/main '
            '"$1"/var/lib/mysql/* "$1"/usr/share/doc/* "$1"/usr/share/man/* '
            f'"$1"/usr/share/locale/* {lib}/libLLVM* {lib}/libz3* '
            '"$1"/usr/lib/postgresql/17/lib/llvmjit* "$1"/usr/lib/postgresql/17/lib/bitcode')
    _debian_image(tmp, ENGINES_SUITE, ENGINE_PACKAGES, hook, "bash")
    return {}


def engines() -> BuiltImage:
    """Debian trixie minbase with the database engines the node can run from an image
    (PostgreSQL 17, MariaDB 11.8, Redis 8.0: none of them the host's bookworm versions), as
    Debian packages them (the layout of the official postgres and mariadb images too), built
    once (a minute or more, depending on the mirror)."""
    recipe = _recipe("engines", _build_engines, _debian_image,
                     tools=_tool_versions("umoci", "mmdebstrap", "apt"),
                     mirror=MIRROR, suite=ENGINES_SUITE, packages=ENGINE_PACKAGES)
    return _cached("engines", recipe, _build_engines)


def build_all() -> dict[str, BuiltImage]:
    return {"busybox": busybox(), "multilayer": multilayer(), "python": python()}


# ---------------------------------------------------------------------------------------------
# pushing and exporting


def _skopeo_push(image: BuiltImage, dest: str, registry: reg.Registry, fmt: str | None = None) -> str:
    with tempfile.TemporaryDirectory(prefix="ai2in-skopeo-") as d:
        digestfile = Path(d) / "digest"
        args = ["copy", "--quiet", "--dest-tls-verify=false", "--digestfile", digestfile]
        if registry.credentials:
            args += ["--dest-creds", ":".join(registry.credentials)]
        if fmt:
            args += ["--format", fmt]
        _skopeo(*args, image.oci_ref, f"docker://{dest}", timeout=600)
        return digestfile.read_text().strip()


def _arm64_layer() -> bytes:
    return reg.tar_layer([reg.Dir("etc"), reg.File("etc/ai2in-test-image", "arm64\n")])


ALL_NAMES = ("busybox", "busybox-docker", "multilayer", "python", "multi", "multi-docker",
             "arm64-only")
# Pushed only when asked for by name (the databases' engine image tests).
EXTRA_NAMES = ("engines",)


def push_all(registry: reg.Registry, names: tuple[str, ...] | None = None) -> dict[str, str]:
    """Pushes the images to `registry` (with its credentials if it has any) and returns their
    references, by name (all of ALL_NAMES unless `names` says which):

    - busybox: HOST/busybox:1, OCI manifest, as built (skopeo keeps the layout's digests)
    - busybox-docker: HOST/busybox-docker:1, the same converted to Docker schema 2 (v2s2)
    - multilayer: HOST/multilayer:1 (OCI); python: HOST/python:1 (OCI)
    - multi: HOST/multi:1, an OCI index: linux/amd64 → busybox (also HOST/multi:amd64),
      linux/arm64/v8 → a one-layer arm64 image whose /etc/ai2in-test-image says "arm64"
      (HOST/multi:arm64)
    - multi-docker: HOST/multi-docker:1, a Docker manifest list of the same two, in schema 2
    - arm64-only: HOST/arm64-only:1, an OCI index with only the arm64 image (no amd64 entry)
    - engines (only when named): HOST/engines:1 (OCI)

    Manifest digests go to `registry.digests` (same names; "multi-arm64" for the arm64 image),
    the references to `registry.refs`."""
    names = tuple(names or ALL_NAMES)
    unknown = set(names) - set(ALL_NAMES) - set(EXTRA_NAMES)
    if unknown:
        raise ValueError(f"unknown images {sorted(unknown)}; known: {ALL_NAMES + EXTRA_NAMES}")
    host, auth = registry.host, registry.credentials
    refs: dict[str, str] = {}

    def skopeo(name: str, image: BuiltImage, repo: str, tag: str = TAG, fmt: str | None = None) -> str:
        refs[name] = f"{host}/{repo}:{tag}"
        registry.digests[name] = _skopeo_push(image, refs[name], registry, fmt)
        return registry.digests[name]

    if "busybox" in names:
        skopeo("busybox", busybox(), "busybox")
    if "busybox-docker" in names:
        skopeo("busybox-docker", busybox(), "busybox-docker", fmt="v2s2")
    if "multilayer" in names:
        skopeo("multilayer", multilayer(), "multilayer")
    if "python" in names:
        skopeo("python", python(), "python")
    if "engines" in names:
        skopeo("engines", engines(), "engines")
    arm_layers = [_arm64_layer()]
    arm_config = reg.image_config(arm_layers, architecture="arm64", variant="v8",
                                  Cmd=["/bin/sh"])
    for name, repo, media_type, fmt in (("multi", "multi", "oci", None),
                                        ("multi-docker", "multi-docker", "docker", "v2s2")):
        if name not in names:
            continue
        amd = _skopeo_push(busybox(), f"{host}/{repo}:amd64", registry, fmt)
        arm = reg.push_layers(host, repo, "arm64", arm_layers, arm_config, media_type=media_type,
                              auth=auth)
        entries = []
        for digest, platform in ((amd, AMD64), (arm, ARM64)):
            _, got, mt, size = reg.get_manifest(host, repo, digest, auth=auth)
            entries.append((got, size, mt, platform))
        refs[name] = f"{host}/{repo}:{TAG}"
        registry.digests[name] = reg.push_index(host, repo, TAG, entries, media_type, auth)
        if name == "multi":
            refs["multi-arm64"] = f"{host}/{repo}:arm64"
            registry.digests["multi-arm64"] = arm
    if "arm64-only" in names:
        arm = reg.push_layers(host, "arm64-only", "arm64", arm_layers, arm_config, auth=auth)
        _, _, mt, size = reg.get_manifest(host, "arm64-only", arm, auth=auth)
        refs["arm64-only"] = f"{host}/arm64-only:{TAG}"
        registry.digests["arm64-only"] = reg.push_index(host, "arm64-only", TAG,
                                                        [(arm, size, mt, ARM64)], "oci", auth)
    registry.refs.update(refs)
    return refs


def docker_save_archive(path: str | os.PathLike) -> Path:
    """Writes busybox as a `docker save` tar made by skopeo's docker-archive transport:
    manifest.json (RepoTags ["docker.io/library/app:1"]: skopeo writes the full name where
    docker writes "app:1"), repositories, the config as <sha256>.json, the layer uncompressed
    as <diff_id>.tar and a legacy <id>/layer.tar symlink to it. Returns the path."""
    path = Path(path)
    path.unlink(missing_ok=True)
    _skopeo("copy", "--quiet", busybox().oci_ref, f"docker-archive:{path}:app:1")
    return path


def oci_archive(path: str | os.PathLike) -> Path:
    """Writes busybox's OCI layout (oci-layout, index.json with ref name "1", blobs/) as a tar,
    entries relative to the layout's root like `podman save --format oci-archive`; the
    manifest digest is the same as HOST/busybox:1's. Returns the path."""
    path = Path(path)
    layout = busybox().layout
    with tarfile.open(path, "w") as tar:
        for p in sorted(layout.rglob("*")):
            tar.add(p, arcname=str(p.relative_to(layout)), recursive=False)
    return path


if __name__ == "__main__":
    # Builds (or finds) every image and says how long each took: `python3 image_fixtures.py`.
    for name, build in (("busybox", busybox), ("multilayer", multilayer), ("python", python)):
        t0 = time.monotonic()
        img = build()
        print(f"{name}: {img.layout} ({'cached' if img.cached else 'built'} in "
              f"{time.monotonic() - t0:.1f} s; build took {img.build_seconds:.1f} s)")

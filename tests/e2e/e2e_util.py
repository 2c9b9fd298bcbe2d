"""Host-side helpers of the ai2in end-to-end suite: waiting with deadlines, and looking at
what a sandbox leaves on the host (cgroups, processes, directories, mounts).

Everything here reads the host's own view (/proc, /sys/fs/cgroup); nothing goes through the
node, so a test can check the node's claims against the kernel.
"""

from __future__ import annotations

import datetime as _dt
import glob
import json
import os
import re
import secrets
import signal
import string
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")

CGROUP_ROOT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("memory", "cpu", "pids", "freezer")
SANDBOX_ID_RE = re.compile(r"^sbx_[0-9A-Za-z]+$")
KEY_RE = re.compile(r"^ai2in_live_[0-9A-Za-z]{32,}$")
MIB = 1 << 20
GIB = 1 << 30


# ---------------------------------------------------------------------------------------------
# waiting


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    message: str | Callable[[], str],
    interval: float = 0.1,
) -> T:
    """Calls `predicate` until it returns something truthy (which is returned) or `timeout`
    seconds have passed (AssertionError with `message`). Exceptions of the predicate count as
    "not yet" and the last one is reported."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last = value
        except Exception as e:  # noqa: BLE001 - reported below
            last = e
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"{text} (waited {timeout:.0f} s; last: {last!r})")
        time.sleep(interval)


class MadeOnNode:
    """What a test made on a node under `route` (ids with the key that made them), deleted at
    its end, newest first (best effort: the test may have deleted them or killed the node)."""

    route = ""

    def __init__(self, node):
        self.node = node
        self.made: list[tuple[str, object]] = []

    def cleanup(self) -> None:
        if not self.node.running:
            return
        for rid, key in reversed(self.made):
            try:
                self.node.delete(f"{self.route}/{rid}", key=key, timeout=60)
            except Exception:  # noqa: BLE001 - best effort
                pass


@contextmanager
def per_node(factory: Callable[[object], T]) -> Iterator[Callable[[object], T]]:
    """For a fixture: `get(node)` → one `factory(node)` per node (a tracker of what a test
    made there), each `.cleanup()`-ed when the test ends."""
    made: dict[int, T] = {}

    def get(node) -> T:
        if id(node) not in made:
            made[id(node)] = factory(node)
        return made[id(node)]

    try:
        yield get
    finally:
        for tracker in made.values():
            tracker.cleanup()  # type: ignore[attr-defined]


def random_token(n: int = 16) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(n))


# ---------------------------------------------------------------------------------------------
# time


def parse_rfc3339_utc(value: str) -> _dt.datetime:
    """Parses an RFC 3339 timestamp and insists it is in UTC."""
    assert isinstance(value, str), f"timestamp must be a string, got {value!r}"
    assert re.match(
        r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|\+00:00)$", value
    ), f"not an RFC 3339 UTC timestamp: {value!r}"
    parsed = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.utcoffset() == _dt.timedelta(0), f"timestamp not in UTC: {value!r}"
    return parsed


def epoch(value: str) -> float:
    return parse_rfc3339_utc(value).timestamp()


# ---------------------------------------------------------------------------------------------
# cgroups


def cgroup_v2() -> bool:
    return (CGROUP_ROOT / "cgroup.controllers").exists()


def cgroup_dirs(sandbox_id: str) -> list[str]:
    """Every cgroup directory of the sandbox that exists, in any hierarchy."""
    found = set(glob.glob(str(CGROUP_ROOT / "*" / "ai2in" / sandbox_id)))
    found.update(glob.glob(str(CGROUP_ROOT / "ai2in" / sandbox_id)))
    return sorted(p for p in found if os.path.isdir(p))


def cgroup_file(sandbox_id: str, controller: str, name: str) -> Path:
    """Path of a control file of the sandbox's cgroup: v1 `<controller>/ai2in/<id>/<name>`,
    v2 `ai2in/<id>/<name>` (the controller is then implied by the name)."""
    if cgroup_v2():
        return CGROUP_ROOT / "ai2in" / sandbox_id / name
    return CGROUP_ROOT / controller / "ai2in" / sandbox_id / name


def cgroup_pids(sandbox_id: str) -> set[int]:
    """Pids listed in the sandbox's cgroup(s)."""
    pids: set[int] = set()
    for d in cgroup_dirs(sandbox_id):
        for name in ("cgroup.procs", "tasks"):
            try:
                text = Path(d, name).read_text()
            except OSError:
                continue
            pids.update(int(x) for x in text.split())
    return pids


def all_ai2in_cgroups() -> list[str]:
    """All sandbox cgroups on the host (any node)."""
    found = set(glob.glob(str(CGROUP_ROOT / "*" / "ai2in" / "sbx_*")))
    found.update(glob.glob(str(CGROUP_ROOT / "ai2in" / "sbx_*")))
    return sorted(found)


# ---------------------------------------------------------------------------------------------
# processes


def proc_status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def pid_alive(pid: int) -> bool:
    """True when `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat[stat.rfind(")") + 2 :].split(" ", 1)[0]
    return state not in ("Z", "X")


def processes_in_sandbox_cgroup(sandbox_id: str) -> list[int]:
    """Host pids whose /proc/PID/cgroup names the sandbox's cgroup (independently of the
    cgroup directories, which might already be gone)."""
    needle = re.compile(r"/ai2in/" + re.escape(sandbox_id) + r"(/|$)")
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/cgroup").read_text()
        except OSError:
            continue
        if any(needle.search(line) for line in text.splitlines()) and pid_alive(int(entry)):
            pids.append(int(entry))
    return pids


def agent_pid(sandbox_id: str) -> int:
    """Host pid of the sandbox's PID 1 (its agent): the process of its cgroup that is pid 1 of
    its own pid namespace."""
    candidates = cgroup_pids(sandbox_id) or set(processes_in_sandbox_cgroup(sandbox_id))
    for pid in sorted(candidates):
        try:
            nspid = proc_status(pid).get("NSpid", "").split()
        except OSError:
            continue
        if len(nspid) >= 2 and nspid[-1] == "1":
            return pid
    raise AssertionError(
        f"no process of sandbox {sandbox_id} is pid 1 of a pid namespace "
        f"(cgroup pids: {sorted(candidates)})"
    )


def host_uids(pid: int) -> list[int]:
    """Real, effective, saved and fs uid of a host process, as the host sees them."""
    return [int(x) for x in proc_status(pid)["Uid"].split()]


def read_cmdlines() -> dict[int, str]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                raw = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            out[int(entry)] = raw.replace(b"\0", b" ").decode(errors="replace")
    return out


# ---------------------------------------------------------------------------------------------
# leak checks


def mountinfo_lines(needle: str) -> list[str]:
    return [l for l in Path("/proc/self/mountinfo").read_text().splitlines() if needle in l]


def leftovers(state_dir: str | os.PathLike, sandbox_id: str) -> list[str]:
    """What of a sandbox is still on the host; empty when it is gone for good."""
    found = []
    d = Path(state_dir) / "sandboxes" / sandbox_id
    if d.exists():
        found.append(f"directory {d}")
    found += [f"cgroup {c}" for c in cgroup_dirs(sandbox_id)]
    found += [f"process {p} in its cgroup" for p in processes_in_sandbox_cgroup(sandbox_id)]
    found += [f"mount {l}" for l in mountinfo_lines(sandbox_id)]
    return found


def assert_gone_from_host(state_dir, sandbox_ids: Iterable[str], timeout: float = 15.0) -> None:
    ids = list(sandbox_ids)

    def nothing_left():
        return not any(leftovers(state_dir, i) for i in ids)

    wait_until(
        nothing_left,
        timeout,
        lambda: "sandboxes left things on the host: "
        + "; ".join(f"{i}: {leftovers(state_dir, i)}" for i in ids if leftovers(state_dir, i)),
        interval=0.2,
    )


# ---------------------------------------------------------------------------------------------
# harness clean-up (only for sandboxes this suite created, when the node failed to)


def force_destroy(sandbox_id: str) -> None:
    """Kills what is left in the sandbox's cgroups and removes them. Used by fixtures after
    the node was stopped, so that one broken test does not pollute the host for the next."""
    if not SANDBOX_ID_RE.match(sandbox_id):
        return
    freezer_state = cgroup_file(sandbox_id, "freezer", "freezer.state")
    try:
        if freezer_state.exists():
            freezer_state.write_text("THAWED")
        elif cgroup_v2():
            cgroup_file(sandbox_id, "", "cgroup.freeze").write_text("0")
    except OSError:
        pass
    for _ in range(50):
        pids = cgroup_pids(sandbox_id) | set(processes_in_sandbox_cgroup(sandbox_id))
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.1)
    # children first
    for d in sorted(cgroup_dirs(sandbox_id), key=len, reverse=True):
        for sub, _dirs, _files in sorted(os.walk(d), key=lambda t: len(t[0]), reverse=True):
            try:
                os.rmdir(sub)
            except OSError:
                pass


# ---------------------------------------------------------------------------------------------
# images: the API, the node's content store on disk, and a registry that misbehaves on purpose

IMAGE_ID_RE = re.compile(r"^img_[0-9A-Za-z]+$")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
IMAGE_SCOPES = ["sandboxes:read", "sandboxes:write", "images:read", "images:write"]


def new_tenant_key(node, scopes=IMAGE_SCOPES, tenant: str | None = None) -> str:
    """The secret of a new key of a new tenant (so that a test starts with no images)."""
    return node.create_key(list(scopes), tenant=tenant or "t-" + random_token(8).lower())["key"]


def pull_image(node, ref: str, key=None, expect=(201, 200), **kw) -> dict:
    """`POST /v1/images {ref}`; asserts the status is in `expect` and returns the body."""
    r = node.post("/v1/images", key=key, json={"ref": ref}, **kw)
    assert r.status_code in expect, f"POST /v1/images {ref} → {r.status_code} {r.text}"
    return r.json()


def pull_error(node, ref: str, status: int, key=None) -> str:
    """Pulls `ref`, asserts the answer is `status` with an error body, returns the message."""
    r = node.post("/v1/images", key=key, json={"ref": ref})
    assert r.status_code == status, f"POST /v1/images {ref}: expected {status}, got {r.status_code} {r.text}"
    err = r.json().get("error")
    assert isinstance(err, str) and err.strip(), r.text
    return err


def pull_events(node, ref: str, key=None, timeout: float = 120.0) -> list[tuple[str, dict]]:
    """`POST /v1/images` with `Accept: text/event-stream`: the (event, data) pairs, parsed by
    httpx-sse, until the node ends the stream."""
    import httpx
    from httpx_sse import connect_sse

    events = []
    headers = {"Authorization": f"Bearer {key or node.admin_key}", "Accept": "text/event-stream"}
    with httpx.Client(timeout=timeout, trust_env=False) as client:
        with connect_sse(client, "POST", f"{node.url}/v1/images", json={"ref": ref},
                         headers=headers) as source:
            assert source.response.status_code == 200, (
                f"SSE pull of {ref} → {source.response.status_code} {source.response.read()[:500]!r}")
            ctype = source.response.headers.get("content-type", "")
            assert ctype.startswith("text/event-stream"), ctype
            for sse in source.iter_sse():
                events.append((sse.event, json.loads(sse.data)))
    return events


def list_images(node, key=None) -> list[dict]:
    r = node.get("/v1/images", key=key)
    assert r.status_code == 200, f"GET /v1/images → {r.status_code} {r.text}"
    images = r.json()["images"]
    assert isinstance(images, list), r.text
    return images


def image_refs(node, key=None) -> set[str]:
    return {i["ref"] for i in list_images(node, key)}


def image_store(state_dir) -> Path:
    return Path(state_dir) / "images"


def stored_layers(state_dir) -> set[str]:
    """The diff ids (sha256:…) whose layer the node's content store holds."""
    try:
        return {"sha256:" + n for n in os.listdir(image_store(state_dir) / "layers")}
    except FileNotFoundError:
        return set()


def staging_entries(state_dir) -> list[str]:
    """What is in the content store's staging (images/tmp): empty when no pull runs."""
    try:
        return sorted(os.listdir(image_store(state_dir) / "tmp"))
    except FileNotFoundError:
        return []


def assert_nothing_kept(node, ref: str, diff_ids: Iterable[str] = (), key=None,
                        timeout: float = 10.0) -> None:
    """After a failed pull of `ref`: no image record, no layer of `diff_ids` in the store, and
    nothing left in staging."""
    refs = image_refs(node, key)
    assert not any(r == ref or r.startswith(ref + "@") for r in refs), (
        f"the failed pull of {ref} left an image: {sorted(refs)}")
    kept = set(diff_ids) & stored_layers(node.state_dir)
    assert not kept, f"the failed pull of {ref} left layers in the store: {sorted(kept)}"
    wait_until(lambda: staging_entries(node.state_dir) == [], timeout,
               lambda: f"staging of {node.state_dir} is not empty: {staging_entries(node.state_dir)}")


def files_under(root) -> list[Path]:
    """Every path under `root` (not following symlinks), `root` excluded."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            out.append(Path(dirpath, n))
    return out


def vm_hwm_bytes(pid: int) -> int:
    """The peak resident set of a host process (VmHWM)."""
    return int(proc_status(pid)["VmHWM"].split()[0]) * 1024


class StubRegistry:
    """A registry of our own (HTTP API v2, anonymous, plain HTTP on loopback) that can
    misbehave in ways a real one never does: a blob sent half and cut, a blob trickled
    slowly, a blob or manifest whose bytes are not its digest, garbage.

    `add_image(name, tag, layers, config)` with `layers` = [(blob bytes, media type)] stores a
    manifest (OCI) and returns its digest; `blob_mode[digest]` picks how a blob is served:
    "full" (default), "half" (the headers promise it all, half is sent, the connection
    closes), "trickle" (`trickle_head` bytes at once, then 16 KiB every 50 ms until
    `release` is set, then the rest), "other" (another blob's bytes of the same length).
    `manifest_override[(name, ref)] = bytes` serves those bytes instead. `gets(path_part)`
    counts the GETs whose path contains it; `sent[digest]` the bytes sent so far."""

    def __init__(self):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        import threading

        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.manifest_override: dict[tuple[str, str], bytes] = {}
        self.blobs: dict[str, bytes] = {}
        self.blob_mode: dict[str, str] = {}
        self.trickle_head = 1 << 20
        self.release = threading.Event()
        self.sent: dict[str, int] = {}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _send(self, status, body=b"", ctype="application/json", length=None,
                      extra=None):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.send_header("Connection", "close")
                self.send_header("Docker-Distribution-API-Version", "registry/2.0")
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.close_connection = True

            def do_HEAD(self):
                self._handle(head=True)

            def do_GET(self):
                self._handle(head=False)

            def _handle(self, head):
                with stub._lock:
                    stub.requests.append((self.command, self.path))
                path = self.path.split("?", 1)[0]
                try:
                    if path in ("/v2", "/v2/"):
                        self._send(200, b"{}")
                        if not head:
                            self.wfile.write(b"{}")
                        return
                    m = re.match(r"^/v2/(.+)/manifests/([^/]+)$", path)
                    if m:
                        key = (m[1], m[2])
                        if key not in stub.manifests and key not in stub.manifest_override:
                            body = b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}'
                            self._send(404, body)
                            if not head:
                                self.wfile.write(body)
                            return
                        body, ctype = stub.manifests.get(key, (b"", "application/vnd.oci.image.manifest.v1+json"))
                        body = stub.manifest_override.get(key, body)
                        self._send(200, body, ctype, extra={"Docker-Content-Digest": _sha256(body)})
                        if not head:
                            self.wfile.write(body)
                        return
                    m = re.match(r"^/v2/(.+)/blobs/(sha256:[0-9a-f]{64})$", path)
                    if m and m[2] in stub.blobs:
                        self._blob(m[2], head)
                        return
                    body = b'{"errors":[{"code":"BLOB_UNKNOWN"}]}'
                    self._send(404, body)
                    if not head:
                        self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError, OSError):
                    pass

            def _blob(self, digest, head):
                data = stub.blobs[digest]
                mode = stub.blob_mode.get(digest, "full")
                if mode == "other":
                    data = bytes(b ^ 0x5A for b in data)
                self._send(200, b"", "application/octet-stream", length=len(data),
                           extra={"Docker-Content-Digest": digest})
                if head:
                    return
                if mode == "half":
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    stub.sent[digest] = len(data) // 2
                    # Cut the connection hard, as a registry that died would.
                    import socket as _socket
                    try:
                        self.connection.shutdown(_socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                if mode == "trickle":
                    pos = min(stub.trickle_head, len(data))
                    self.wfile.write(data[:pos])
                    self.wfile.flush()
                    stub.sent[digest] = pos
                    while pos < len(data) and not stub.release.is_set():
                        chunk = data[pos: pos + (16 << 10)]
                        self.wfile.write(chunk)
                        self.wfile.flush()
                        pos += len(chunk)
                        stub.sent[digest] = pos
                        time.sleep(0.05)
                    self.wfile.write(data[pos:])
                    stub.sent[digest] = len(data)
                    return
                self.wfile.write(data)
                stub.sent[digest] = len(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def add_blob(self, data: bytes) -> str:
        digest = _sha256(data)
        self.blobs[digest] = data
        return digest

    def add_image(self, name: str, tag: str, layers: list[tuple[bytes, str]], config: dict) -> str:
        config_bytes = json.dumps(config, separators=(",", ":")).encode()
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "size": len(config_bytes), "digest": self.add_blob(config_bytes)},
            "layers": [{"mediaType": mt, "size": len(blob), "digest": self.add_blob(blob)}
                       for blob, mt in layers],
        }
        body = json.dumps(manifest, separators=(",", ":")).encode()
        self.manifests[(name, tag)] = (body, manifest["mediaType"])
        digest = _sha256(body)
        self.manifests[(name, digest)] = (body, manifest["mediaType"])
        return digest

    def gets(self, part: str) -> int:
        with self._lock:
            return sum(1 for m, p in self.requests if m == "GET" and part in p)

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _sha256(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()

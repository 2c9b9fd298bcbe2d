"""Fixtures of the ai2in end-to-end suite: a real node on a temporary state dir and port,
driven over HTTP.

- `node` (session): one shared node with the default configuration.
- `node_factory` (function): starts separate nodes (own state dir and port, optional TOML
  config) for tests that need special limits or that kill the node.
- `sandbox` (function): a fresh sandbox on the shared node, deleted afterwards.

The binary is `$AI2IN_BIN`, else `<repo>/target/x86_64-unknown-linux-gnu/debug/ai2in`.
Set `AI2IN_E2E_KEEP=1` to keep the state directories (and their node.log) after the run.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from e2e_util import force_destroy, random_token, wait_until

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO / "target" / "x86_64-unknown-linux-gnu" / "debug" / "ai2in"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
HTTP_TIMEOUT = 120.0

# The nodes alive right now, for the log tails attached to failed tests.
_LIVE_NODES: list["Node"] = []


class _NoAuth:
    def __repr__(self) -> str:
        return "NO_AUTH"


#: Pass as `key=` to send a request without an Authorization header.
NO_AUTH = _NoAuth()


def binary_path() -> Path:
    path = Path(os.environ.get("AI2IN_BIN") or DEFAULT_BIN)
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"ai2in binary not found or not executable at {path}. Build it first "
            f"(cargo build, target x86_64-unknown-linux-gnu) or set AI2IN_BIN.",
            pytrace=False,
        )
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_refused(config: str, tmp_path) -> str:
    """Starts `ai2in serve` with `config`, which must stop it at start (exit status not 0
    within 30 s): its stderr."""
    config_path = Path(tmp_path) / "config.toml"
    config_path.write_text(config)
    done = subprocess.run(
        [str(binary_path()), "serve", "--state-dir", str(Path(tmp_path) / "state"),
         "--listen", f"127.0.0.1:{free_port()}", "--config", str(config_path)],
        capture_output=True, text=True, timeout=30)
    assert done.returncode != 0, f"the node started with {config!r}: {done.stderr}"
    return done.stderr


class Node:
    """One `ai2in serve` process and a client for it."""

    def __init__(self, state_dir: str | None = None, port: int | None = None, config: str | None = None):
        self.state_dir = state_dir or tempfile.mkdtemp(prefix="ai2in-e2e-")
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # The warm pool is off unless a test asks for it (test_pool.py), so that the
        # sandboxes, cgroups and links a test counts are its own.
        config = config or ""
        if "[pool]" not in config:
            config += "\n[pool]\nsize = 0\n"
        self.config_path = os.path.join(self.state_dir, "e2e-config.toml")
        Path(self.config_path).write_text(config)
        self.log_path = os.path.join(self.state_dir, "node.log")
        self.proc: subprocess.Popen | None = None
        self.admin_key: str | None = None
        self.session: requests.Session | None = None
        # sandbox id -> key that created it; deleted at teardown.
        self.created: dict[str, str] = {}

    # -- process ----------------------------------------------------------------------------

    def start(self) -> "Node":
        binary = binary_path()
        args = [str(binary), "serve", "--state-dir", self.state_dir, "--listen", f"127.0.0.1:{self.port}"]
        if self.config_path:
            args += ["--config", self.config_path]
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        log = open(self.log_path, "ab")
        log.write(f"\n===== e2e: starting {' '.join(args)} at {time.ctime()} =====\n".encode())
        log.flush()
        try:
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.state_dir,
                start_new_session=True,  # a Ctrl-C of pytest must not kill it before clean-up
            )
        finally:
            log.close()
        self.session = requests.Session()
        self.session.trust_env = False  # never through a proxy
        if self not in _LIVE_NODES:
            _LIVE_NODES.append(self)

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"ai2in serve exited with {self.proc.returncode} during start-up.\n"
                    f"--- {self.log_path} (tail) ---\n{self.log_tail()}",
                    pytrace=False,
                )
            try:
                if self.session.get(self.url + "/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.kill9()
                pytest.fail(
                    f"ai2in serve did not answer GET /healthz with 200 within {START_TIMEOUT:.0f} s.\n"
                    f"--- {self.log_path} (tail) ---\n{self.log_tail()}",
                    pytrace=False,
                )
            time.sleep(0.1)

        key_file = Path(self.state_dir, "admin.key")
        try:
            self.admin_key = wait_until(
                lambda: key_file.read_text().strip(), 5, f"{key_file} was not written"
            )
        except AssertionError as e:
            pytest.fail(f"{e}\n--- node.log (tail) ---\n{self.log_tail()}", pytrace=False)
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM and wait; returns the exit status (None if it had to be killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> "Node":
        """Starts the node again on the same state dir, port and config."""
        assert not self.running, "restart() needs the node to be stopped first"
        return self.start()

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = Path(self.log_path).read_text(errors="replace")
        except OSError as e:
            return f"(no log: {e})"
        return "\n".join(text.splitlines()[-lines:])

    def cleanup(self, remove_state: bool = True) -> None:
        """Deletes every sandbox this client created, stops the node, removes what is left of
        every sandbox the node knew (also those made by other clients: the SDKs, the CLI,
        schemathesis), and removes the state dir."""
        try:
            known = set(os.listdir(os.path.join(self.state_dir, "sandboxes")))
        except OSError:
            known = set()
        if self.running:
            for sid, key in list(self.created.items()):
                try:
                    self.delete(f"/v1/sandboxes/{sid}", key=key, timeout=30)
                except requests.RequestException:
                    pass
            self.stop()
        for sid in known | set(self.created):
            force_destroy(sid)
        if self in _LIVE_NODES:
            _LIVE_NODES.remove(self)
        if remove_state and not os.environ.get("AI2IN_E2E_KEEP"):
            shutil.rmtree(self.state_dir, ignore_errors=True)

    # -- HTTP -------------------------------------------------------------------------------

    def request(self, method: str, path: str, key=None, headers=None, **kw) -> requests.Response:
        """`key=None` → the admin key; `key=NO_AUTH` → no Authorization header."""
        assert self.session is not None, "node not started"
        headers = dict(headers or {})
        if key is not NO_AUTH:
            headers.setdefault("Authorization", f"Bearer {key or self.admin_key}")
        kw.setdefault("timeout", HTTP_TIMEOUT)
        return self.session.request(method, self.url + path, headers=headers, **kw)

    def get(self, path, key=None, **kw):
        return self.request("GET", path, key=key, **kw)

    def post(self, path, key=None, **kw):
        return self.request("POST", path, key=key, **kw)

    def delete(self, path, key=None, **kw):
        return self.request("DELETE", path, key=key, **kw)

    # -- sandboxes --------------------------------------------------------------------------

    def create_sandbox(self, key=None, **body) -> dict:
        r = self.post("/v1/sandboxes", key=key, json=body)
        assert r.status_code == 201, f"POST /v1/sandboxes {body} → {r.status_code} {r.text}"
        sbx = r.json()
        self.created[sbx["id"]] = key or self.admin_key
        return sbx

    def delete_sandbox(self, sid: str, key=None) -> None:
        r = self.delete(f"/v1/sandboxes/{sid}", key=key)
        assert r.status_code == 204, f"DELETE /v1/sandboxes/{sid} → {r.status_code} {r.text}"

    def sandbox(self, sid: str, key=None) -> requests.Response:
        return self.get(f"/v1/sandboxes/{sid}", key=key)

    def shell_raw(self, sid: str, cmd: str, key=None, **body) -> requests.Response:
        return self.post(f"/v1/sandboxes/{sid}/shell", key=key, json={"cmd": cmd, **body})

    def sh(self, sid: str, cmd: str, key=None, **body) -> dict:
        """Runs a shell command; asserts the call answered 200 and returns the result."""
        r = self.shell_raw(sid, cmd, key=key, **body)
        assert r.status_code == 200, f"shell {cmd!r} in {sid} → {r.status_code} {r.text}"
        return r.json()

    def run(self, sid: str, cmd: str, key=None, **body) -> str:
        """Runs a shell command that must succeed; returns its stdout."""
        res = self.sh(sid, cmd, key=key, **body)
        assert res["exit_code"] == 0, (
            f"command {cmd!r} in {sid} failed: exit_code={res['exit_code']} "
            f"stdout={res['stdout'][-2000:]!r} stderr={res['stderr'][-2000:]!r} error={res.get('error')!r}"
        )
        return res["stdout"]

    def create_key(self, scopes, tenant=None, name="e2e", key=None) -> dict:
        body = {"name": name, "scopes": list(scopes)}
        if tenant is not None:
            body["tenant"] = tenant
        r = self.post("/v1/keys", key=key, json=body)
        assert r.status_code == 201, f"POST /v1/keys {body} → {r.status_code} {r.text}"
        return r.json()

    def healthy(self) -> bool:
        try:
            return self.get("/healthz", key=NO_AUTH, timeout=5).status_code == 200
        except requests.RequestException:
            return False


# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="session")
def node(request) -> Node:
    n = Node()
    request.addfinalizer(n.cleanup)
    n.start()
    return n


@pytest.fixture
def node_factory(request):
    """`node_factory(config=None)` → a started separate node; all are cleaned up after the
    test, whatever state (stopped, killed, restarted) the test left them in."""
    nodes: list[Node] = []

    def start(config: str | None = None) -> Node:
        n = Node(config=config)
        nodes.append(n)
        return n.start()

    def cleanup():
        for n in nodes:
            n.cleanup()

    request.addfinalizer(cleanup)
    return start


@pytest.fixture
def sandbox(node) -> dict:
    """A fresh sandbox on the shared node with default settings, deleted after the test."""
    sbx = node.create_sandbox()
    yield sbx
    node.delete(f"/v1/sandboxes/{sbx['id']}")


@pytest.fixture
def host_secret(node):
    """A file on the host, outside every sandbox: (path, content)."""
    content = f"host-secret-{random_token()}"
    path = Path("/root") / f"ai2in-files-{random_token(8)}"
    path.write_text(content)
    yield path, content
    path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# reporting: a failed test shows the tail of every live node's log


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for n in list(_LIVE_NODES):
            rep.sections.append((f"ai2in node.log tail ({n.log_path})", n.log_tail(40)))


# ---------------------------------------------------------------------------------------------
# image registries: a real docker-registry (distribution 2.8) with images built by independent
# tools (registry.py, image_fixtures.py). They need no node.


def _start_registry(auth: str | None, names: tuple[str, ...] | None):
    import image_fixtures
    import registry as oci_registry

    try:
        reg = oci_registry.Registry(auth=auth)
    except oci_registry.ToolMissing as e:
        pytest.fail(str(e), pytrace=False)
    try:
        image_fixtures.push_all(reg, names)
    except BaseException:
        reg.stop()
        raise
    return reg


@pytest.fixture(scope="session")
def registry():
    """An anonymous plain-HTTP registry on loopback holding every image of
    `image_fixtures.push_all` (`.host`, `.refs[name]` = "HOST/NAME:1", `.digests[name]`,
    `.blob_requests(digest)`, `.log_path`). Images are built on first use and cached in
    /var/cache/ai2in-test/images. Shared by the session: a test that counts blob fetches
    should push its own image (registry.push_layers) or start its own `Registry()`."""
    reg = _start_registry(None, None)
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def auth_registry():
    """A registry behind htpasswd (Basic) auth, `.credentials` = (user, password), holding
    busybox and the multi-platform index `multi` (`.refs`)."""
    reg = _start_registry("htpasswd", ("busybox", "multi"))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def token_registry():
    """A registry behind bearer-token auth: `.token_server` (ours, Docker token spec; `.realm`,
    `.requests` it answered) issues tokens for `.credentials`; holds busybox and `multi`."""
    reg = _start_registry("token", ("busybox", "multi"))
    yield reg
    reg.stop()


# ---------------------------------------------------------------------------------------------
# image tests (test_images.py, test_images_security.py)


@pytest.fixture(scope="session")
def busybox_layer_tar() -> bytes:
    """The busybox image's only layer, uncompressed (a tar made by umoci): the base of the
    images the tests push themselves, so that their sandboxes have a shell."""
    import gzip as _gzip

    import image_fixtures

    img = image_fixtures.busybox()
    (layer,) = img.manifest()["layers"]
    return _gzip.decompress(img._blob(layer["digest"]))


@pytest.fixture
def stub_registry():
    """A misbehaving registry of our own (e2e_util.StubRegistry), stopped after the test."""
    from e2e_util import StubRegistry

    stub = StubRegistry()
    yield stub
    stub.stop()

"""Fixtures of the SDK's tests: one real ai2in node for the whole session.

The node is ``$AI2IN_BIN``, else ``<repo>/target/x86_64-unknown-linux-gnu/debug/ai2in``,
started as ``ai2in serve`` on a temporary state dir and a free port (root is needed). Its
address and admin key are put in ``AI2IN_BASE_URL`` and ``AI2IN_API_KEY``, so the SDK finds
them as a user's program would. At the end every service, database and sandbox left is
deleted, the node is stopped and its state dir removed (``AI2IN_TEST_KEEP=1`` keeps it, with its
``node.log``).

The image tests use the end-to-end suite's fixtures (``tests/e2e/registry.py`` and
``image_fixtures.py``): a real registry (Debian's ``docker-registry``) on a loopback port,
holding images built by independent tools (umoci, skopeo; cached in
``/var/cache/ai2in-test/images``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ai2in import Sandbox

REPO = Path(__file__).resolve().parents[3]
DEFAULT_BIN = REPO / "target" / "x86_64-unknown-linux-gnu" / "debug" / "ai2in"
E2E = REPO / "tests" / "e2e"
START_S = 20.0
STOP_S = 15.0


@dataclass
class Node:
    """A running node: its URL, admin key and state dir."""

    url: str
    admin_key: str
    state_dir: Path
    proc: subprocess.Popen[bytes]

    def admin(self) -> httpx.Client:
        """A raw HTTP client with the admin key, for set-up and clean-up beside the SDK."""
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.admin_key}"},
            timeout=30,
        )

    def log_tail(self, lines: int = 40) -> str:
        text = (self.state_dir / "node.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_for(what: str, check: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, httpx.HTTPError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} within {timeout:.0f} s")


def _start_node() -> Node:
    binary = Path(os.environ.get("AI2IN_BIN") or DEFAULT_BIN)
    if not os.access(binary, os.X_OK):
        pytest.exit(f"no ai2in binary at {binary}: build it or set AI2IN_BIN", returncode=2)
    state_dir = Path(tempfile.mkdtemp(prefix="ai2in-sdk-py-"))
    url = f"http://127.0.0.1:{_free_port()}"
    with open(state_dir / "node.log", "wb") as log:
        proc = subprocess.Popen(
            [str(binary), "serve", "--state-dir", str(state_dir), "--listen", url[7:]],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    key_file = state_dir / "admin.key"
    try:
        _wait_for(
            "the node did not answer /healthz",
            lambda: proc.poll() is None and httpx.get(f"{url}/healthz").status_code == 200,
            START_S,
        )
        _wait_for("admin.key was not written", lambda: key_file.read_text().strip(), START_S)
    except RuntimeError:
        proc.kill()
        raise
    return Node(url, key_file.read_text().strip(), state_dir, proc)


def _stop_node(node: Node) -> None:
    """Deletes every service, database and sandbox left (they outlive the node), then stops
    the node."""
    if node.proc.poll() is None:
        with node.admin() as admin:
            services = admin.get("/v1/hosting/services")
            if services.status_code == 200:
                for svc in services.json()["services"]:
                    admin.delete(f"/v1/hosting/services/{svc['id']}")
            databases = admin.get("/v1/databases")
            if databases.status_code == 200:
                for db in databases.json()["databases"]:
                    admin.delete(f"/v1/databases/{db['id']}")
            for sbx in admin.get("/v1/sandboxes").json()["sandboxes"]:
                admin.delete(f"/v1/sandboxes/{sbx['id']}")
        node.proc.send_signal(signal.SIGTERM)
        try:
            node.proc.wait(STOP_S)
        except subprocess.TimeoutExpired:
            node.proc.kill()
            node.proc.wait()
    if not os.environ.get("AI2IN_TEST_KEEP"):
        shutil.rmtree(node.state_dir, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def node() -> Iterator[Node]:
    """The session's node; the SDK's environment variables point at it."""
    n = _start_node()
    saved = {k: os.environ.get(k) for k in ("AI2IN_BASE_URL", "AI2IN_API_KEY")}
    os.environ["AI2IN_BASE_URL"] = n.url
    os.environ["AI2IN_API_KEY"] = n.admin_key
    try:
        yield n
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _stop_node(n)


@pytest.fixture(scope="session")
def sbx(node: Node) -> Iterator[Sandbox]:
    """One sandbox shared by the tests that only run things in it."""
    with Sandbox.create(metadata={"suite": "sdk-python"}) as s:
        yield s


@pytest.fixture
def own_node() -> Iterator[Node]:
    """A node of the test's own, for a test that changes what the node is (a drain): the
    session's node must go on taking creates."""
    n = _start_node()
    try:
        yield n
    finally:
        _stop_node(n)


@pytest.fixture(scope="session")
def read_only_key(node: Node) -> str:
    """A key of the same tenant with only ``sandboxes:read``."""
    with node.admin() as admin:
        r = admin.post("/v1/keys", json={"name": "ro", "scopes": ["sandboxes:read"]})
        r.raise_for_status()
        key: str = r.json()["key"]
        return key


def _e2e_fixtures() -> tuple[Any, Any]:
    """The end-to-end suite's ``registry`` and ``image_fixtures`` modules."""
    if str(E2E) not in sys.path:
        sys.path.insert(0, str(E2E))
    import image_fixtures
    import registry as oci_registry

    return oci_registry, image_fixtures


@pytest.fixture(scope="session")
def registry() -> Iterator[Any]:
    """A plain-HTTP registry on loopback holding busybox (``.refs["busybox"]`` =
    ``HOST/busybox:1``) and the same image in Docker schema 2 (``.refs["busybox-docker"]``);
    ``.host``, and ``.digests[name]`` their manifest digests."""
    oci_registry, image_fixtures = _e2e_fixtures()
    try:
        reg = oci_registry.Registry()
    except oci_registry.ToolMissing as e:
        pytest.fail(str(e), pytrace=False)
    try:
        image_fixtures.push_all(reg, ("busybox", "busybox-docker"))
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def docker_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """busybox as a ``docker save`` archive, its image named ``app:1``."""
    _, image_fixtures = _e2e_fixtures()
    path: Path = image_fixtures.docker_save_archive(tmp_path_factory.mktemp("images") / "app.tar")
    return path


def _rss() -> int:
    """The process's resident memory now, in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def _rss_growth() -> Iterator[list[int]]:
    """Samples the resident memory while the block runs; yields a list that holds, after
    it, the most it grew above where it was at the start."""
    start, peak, done = _rss(), [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak[0] = max(peak[0], _rss() - start)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()
        peak[0] = max(peak[0], _rss() - start)


#: ``with rss_growth() as grown:`` ... then ``grown[0]``: the most the process's resident
#: memory grew while the block ran.
RssGrowth = Callable[[], AbstractContextManager[list[int]]]


@pytest.fixture
def rss_growth() -> RssGrowth:
    """Measures how much memory a block takes (see :data:`RssGrowth`): what streams must
    not grow by the size of what they move."""
    return _rss_growth


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test shows the tail of the node's log."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    n = item.funcargs.get("node") if hasattr(item, "funcargs") else None
    if report.failed and isinstance(n, Node):
        report.sections.append(("ai2in node.log (tail)", n.log_tail()))

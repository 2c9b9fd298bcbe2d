"""A cluster of ai2in processes for the end-to-end suite: a real PostgreSQL server started
from the host's packages, nodes (`ai2in serve --cluster`) and gateways (`ai2in gateway`), each
on a temporary state dir and a free loopback port. Nothing here may outlive the test that
made it: every process is stopped (killed if need be) and every directory removed, also when
the test fails.

- `Postgres()`: initdb as the `postgres` system user in a temp dir, then `.start()`,
  `.stop()`, `.kill9()`, `.restart()` (same data dir and port), `.psql(sql, db)`,
  `.create_database(name)`, `.url(db)`, `.cleanup()`.
- `ClusterNode(cluster_url, node_id, config)`: conftest's `Node` started with `--cluster` and
  `--advertise`; the id goes in its config (`node_id = "…"`). Such a node refuses every keyed
  call made straight to it, so it counts as up once `GET /healthz` (no key) answers 200;
  `own_admin_key()` is whatever it wrote to its own `admin.key`, if anything.
- `Gateway(postgres_url, admin_key)`: `ai2in gateway` with the request helpers of `Node`
  (`get/post/delete/request/create_sandbox/sh/run/create_key/...`), keyed with the cluster's
  admin key. The first gateway on an empty database writes that key to its `admin.key`.
- `Cluster(pg, nodes, gateways, node_config, database)`: a database of its own on `pg`, the
  gateways (the first one alone first, for the admin key), then the nodes; `.start()` returns
  once `GET /v1/nodes` shows every node `ready`. `.gateway(i)`, `.node(i)`, `.node_by_id(id)`,
  `.node_ids`, `.nodes_status()`, `.wait_node_status(id, status)`, `.placement(ids)`;
  processes are killed and restarted through their own `kill9()` and `restart()`.
  `.cleanup()` deletes every sandbox left through a gateway, then stops the gateways and the
  nodes (conftest's `Node.cleanup`: stop, remove what is left of their sandboxes, remove the
  state dirs) and drops the database.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from conftest import _LIVE_NODES, START_TIMEOUT, Node, binary_path, free_port
from e2e_util import random_token, wait_until

PG_USER = "postgres"  # the system user of Debian's postgresql packages, and the superuser
PG_START_TIMEOUT = 30.0
PG_STOP_TIMEOUT = 15.0
# A node that stops heartbeating is `down` after 5 s; these leave room for a loaded host.
READY_TIMEOUT = 20.0


# ---------------------------------------------------------------------------------------------
# PostgreSQL


def postgres_bin_dir() -> Path:
    """The bin directory of the newest PostgreSQL server installed (Debian's
    /usr/lib/postgresql/N/bin)."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/postgres")
             if os.path.exists(Path(p).parent / "initdb")]
    if not found:
        pytest.fail("no PostgreSQL server in /usr/lib/postgresql/*/bin: install the Debian "
                    "package postgresql (.ci/run does this on CI)", pytrace=False)
    return max(found, key=lambda d: [int(x) for x in re.findall(r"\d+", d.parent.name)] or [0])


class Postgres:
    """A PostgreSQL server of the test's own: data and unix socket in a temp dir owned by the
    `postgres` system user (initdb refuses root), listening on 127.0.0.1 and a free port,
    `trust` authentication (loopback only, throw-away data), fsync off."""

    def __init__(self):
        self.bin = postgres_bin_dir()
        self.dir = Path(tempfile.mkdtemp(prefix="ai2in-pg-"))
        self.data = self.dir / "data"
        self.log_path = str(self.dir / "postgres.log")
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self._started = False  # the port is kept from the first start on
        try:
            shutil.chown(self.dir, PG_USER, PG_USER)
            self._initdb()
        except BaseException:
            self.cleanup()
            raise

    def __repr__(self) -> str:
        return f"Postgres(127.0.0.1:{self.port}, {self.dir})"

    def url(self, database: str = "postgres") -> str:
        return f"postgres://{PG_USER}@127.0.0.1:{self.port}/{database}"

    @staticmethod
    def _as_postgres(*args) -> list[str]:
        return ["runuser", "-u", PG_USER, "--", *map(str, args)]

    def _initdb(self) -> None:
        done = subprocess.run(
            self._as_postgres(self.bin / "initdb", "-D", self.data, "-U", PG_USER, "--auth=trust",
                              "--encoding=UTF8", "--locale=C", "--no-sync"),
            capture_output=True, text=True, timeout=120, cwd=self.dir)
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        # Only the unix socket and loopback TCP, without passwords: the server lives for one
        # test run and holds nothing of value.
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            "host all all 127.0.0.1/32 trust\n")

    # -- process ----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> "Postgres":
        """Starts the server on the data dir and port it has (a restart keeps both) and waits
        until it takes connections."""
        assert not self.running, "the PostgreSQL server is already running"
        args = self._as_postgres(
            self.bin / "postgres", "-D", self.data, "-p", self.port, "-k", self.dir,
            "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300",
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== e2e: starting {' '.join(args)} at {time.ctime()} =====\n".encode())
            log.flush()
            # runuser stays as the parent of the postmaster; the new session makes them one
            # process group, which kill9() kills whole.
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, cwd=self.dir,
                                         start_new_session=True)
        deadline = time.monotonic() + PG_START_TIMEOUT
        while not self._accepts_connections():
            if self.proc.poll() is not None and not self._started and "already in use" in self.log_tail(5):
                # Another process took the free port before the first start: pick another.
                self.port = free_port()
                return self.start()
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill9()
                pytest.fail(f"PostgreSQL did not start on 127.0.0.1:{self.port} within "
                            f"{PG_START_TIMEOUT:.0f} s.\n--- {self.log_path} (tail) ---\n"
                            f"{self.log_tail()}", pytrace=False)
            time.sleep(0.1)
        self._started = True
        return self

    def _accepts_connections(self) -> bool:
        done = subprocess.run(
            [str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port),
             "-U", PG_USER, "-t", "2"],
            capture_output=True, timeout=10)
        return done.returncode == 0

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def stop(self, timeout: float = PG_STOP_TIMEOUT) -> None:
        """A fast shutdown (SIGINT to the postmaster: every session is cut, nothing is lost);
        killed if it takes longer than `timeout`."""
        if not self.running:
            return
        pid = self._postmaster_pid()
        try:
            if pid is not None:
                os.kill(pid, signal.SIGINT)
            else:
                self.proc.send_signal(signal.SIGINT)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill9()

    def kill9(self) -> None:
        """SIGKILL to the postmaster and every process of its server, as a crash would; returns
        once none of them is left (a zombie postmaster or an orphaned backend would make the
        next start refuse the data dir)."""
        if self.proc is None:
            return
        victims = set(_server_processes(self.data))
        pid = self._postmaster_pid()
        if pid is not None and self.running:
            victims.add(pid)
        for p in victims:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            # runuser, the postmaster's parent, reaps it and exits.
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        wait_until(lambda: not any(os.path.exists(f"/proc/{p}") for p in victims), 10,
                   lambda: f"PostgreSQL processes of {self.data} outlived the kill: "
                           f"{sorted(p for p in victims if os.path.exists(f'/proc/{p}'))}")

    def restart(self) -> "Postgres":
        self.stop()
        return self.start()

    def cleanup(self) -> None:
        """Stops the server and removes its directory (unless AI2IN_E2E_KEEP is set)."""
        try:
            self.stop()
        finally:
            if self.proc is not None and self.proc.poll() is None:
                self.kill9()
            for pid in _server_processes(self.data):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if not os.environ.get("AI2IN_E2E_KEEP"):
                shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = Path(self.log_path).read_text(errors="replace")
        except OSError as e:
            return f"(no log: {e})"
        return "\n".join(text.splitlines()[-lines:])

    # -- SQL ----------------------------------------------------------------------------------

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Runs `sql` with psql over TCP as the superuser; returns its unaligned output."""
        done = subprocess.run(
            [str(self.bin / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-d", self.url(database), "-c", sql],
            capture_output=True, text=True, timeout=60, env={**os.environ, "PGCONNECT_TIMEOUT": "10"})
        assert done.returncode == 0, f"psql {sql!r} failed ({done.returncode}): {done.stderr}"
        return done.stdout

    def create_database(self, name: str) -> str:
        """Creates an empty database; returns its URL."""
        assert re.fullmatch(r"[a-z_][a-z0-9_]*", name), name
        self.psql(f"CREATE DATABASE {name}")
        return self.url(name)

    def drop_database(self, name: str) -> None:
        assert re.fullmatch(r"[a-z_][a-z0-9_]*", name), name
        self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _server_processes(data_dir: Path) -> list[int]:
    """Pids of the PostgreSQL processes serving `data_dir` (the postmaster names it on its
    command line; its children are found by their parent)."""
    cmdlines: dict[int, str] = {}
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdlines[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = Path(f"/proc/{entry}/stat").read_text()
            parents[int(entry)] = int(stat[stat.rfind(")") + 2:].split(" ")[1])
        except (OSError, ValueError, IndexError):
            continue
    postmasters = {pid for pid, cmd in cmdlines.items()
                   if "postgres" in cmd and f"-D {data_dir} " in cmd + " " and not cmd.startswith("runuser")}
    return sorted(postmasters | {pid for pid, ppid in parents.items() if ppid in postmasters})


# ---------------------------------------------------------------------------------------------
# ai2in processes of a cluster


def _launch(member: Node, args: list[str], what: str) -> None:
    """Starts `args` as `member`'s process (output to its log, a session of its own, as
    conftest's Node.start does) and waits until `GET /healthz` without a key answers 200."""
    env = dict(os.environ)
    env.setdefault("RUST_BACKTRACE", "1")
    with open(member.log_path, "ab") as log:
        log.write(f"\n===== e2e: starting {' '.join(args)} at {time.ctime()} =====\n".encode())
        log.flush()
        member.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, env=env, cwd=member.state_dir,
                                       start_new_session=True)
    member.session = requests.Session()
    member.session.trust_env = False  # never through a proxy
    if member not in _LIVE_NODES:
        _LIVE_NODES.append(member)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if member.proc.poll() is not None:
            pytest.fail(f"{what} exited with {member.proc.returncode} during start-up.\n"
                        f"--- {member.log_path} (tail) ---\n{member.log_tail()}", pytrace=False)
        try:
            if member.session.get(member.url + "/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            member.kill9()
            pytest.fail(f"{what} did not answer GET /healthz with 200 within {START_TIMEOUT:.0f} s."
                        f"\n--- {member.log_path} (tail) ---\n{member.log_tail()}", pytrace=False)
        time.sleep(0.1)


class ClusterNode(Node):
    """`ai2in serve --cluster URL --advertise 127.0.0.1:PORT` with `node_id` in its config.
    Its HTTP helpers call the node itself, which in cluster mode refuses every keyed call: the
    security tests use them; everything else goes through a `Gateway`. `admin_key` (the
    helpers' default key) is the node's own admin.key when it wrote one."""

    def __init__(self, cluster_url: str, node_id: str, config: str | None = None):
        self.cluster_url = cluster_url
        self.node_id = node_id
        # node_id is a top-level key, so it goes before any [section] of the config.
        super().__init__(config=f'node_id = "{node_id}"\n' + (config or ""))

    def __repr__(self) -> str:
        return f"ClusterNode({self.node_id} at {self.address})"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "ClusterNode":
        args = [str(binary_path()), "serve", "--state-dir", self.state_dir,
                "--listen", self.address, "--config", self.config_path,
                "--cluster", self.cluster_url, "--advertise", self.address]
        _launch(self, args, f"ai2in serve (cluster node {self.node_id})")
        self.admin_key = self.own_admin_key()
        return self

    def own_admin_key(self) -> str | None:
        """The key in the node's own admin.key, or None when it wrote none."""
        try:
            return Path(self.state_dir, "admin.key").read_text().strip() or None
        except OSError:
            return None

    def sandbox_dirs(self) -> set[str]:
        """The sandboxes this node holds on the host (its state dir's `sandboxes/`)."""
        try:
            return {n for n in os.listdir(os.path.join(self.state_dir, "sandboxes")) if n.startswith("sbx_")}
        except OSError:
            return set()


class Gateway(Node):
    """`ai2in gateway --postgres URL --listen 127.0.0.1:PORT --state-dir DIR`, with the
    request helpers of conftest's Node keyed by default with the cluster's admin key
    (`admin_key`: given, or read from this gateway's admin.key when it is the first)."""

    def __init__(self, postgres_url: str, admin_key: str | None = None, config: str = ""):
        # The attributes Node's helpers use; `config` is the gateway's TOML ([quotas]).
        self.postgres_url = postgres_url
        self.state_dir = tempfile.mkdtemp(prefix="ai2in-e2e-gw-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = None
        if config:
            self.config_path = os.path.join(self.state_dir, "gateway.toml")
            Path(self.config_path).write_text(config)
        self.log_path = os.path.join(self.state_dir, "gateway.log")
        self.proc = None
        self.admin_key = admin_key
        self.session = None
        self.created = {}

    def __repr__(self) -> str:
        return f"Gateway({self.url})"

    def start(self) -> "Gateway":
        args = [str(binary_path()), "gateway", "--postgres", self.postgres_url,
                "--listen", f"127.0.0.1:{self.port}", "--state-dir", self.state_dir]
        if self.config_path:
            args += ["--config", self.config_path]
        _launch(self, args, "ai2in gateway")
        if self.admin_key is None:
            key_file = Path(self.state_dir, "admin.key")
            try:
                self.admin_key = wait_until(lambda: key_file.read_text().strip(), 10,
                                            f"the first gateway did not write {key_file}")
            except AssertionError as e:
                pytest.fail(f"{e}\n--- {self.log_path} (tail) ---\n{self.log_tail()}", pytrace=False)
        return self


# ---------------------------------------------------------------------------------------------
# the cluster


class Cluster:
    """PostgreSQL (given, shared or not), `gateways` gateways and `nodes` nodes joined through
    a database of its own. Node ids are `e2e<i>-<random>` (unique, so that a test can look
    for them in error messages). `node_config` is added to every node's config,
    `gateway_config` is every gateway's."""

    def __init__(self, pg: Postgres, nodes: int = 3, gateways: int = 2, node_config: str = "",
                 database: str | None = None, gateway_config: str = ""):
        assert nodes >= 1 and gateways >= 1
        self.pg = pg
        self.database = database or "ai2in_" + random_token(8).lower()
        self.url = pg.url(self.database)
        tag = random_token(5).lower()
        self.nodes = [ClusterNode(self.url, f"e2e{i + 1}-{tag}", node_config) for i in range(nodes)]
        self.gateways = [Gateway(self.url, config=gateway_config) for _ in range(gateways)]
        self.admin_key: str | None = None
        self._database_made = False

    def __repr__(self) -> str:
        return f"Cluster({self.url}, nodes={self.node_ids}, gateways={[g.url for g in self.gateways]})"

    # -- start ----------------------------------------------------------------------------

    def start(self) -> "Cluster":
        self.pg.create_database(self.database)
        self._database_made = True
        # The first gateway alone on the empty database: it creates the admin key.
        first = self.gateways[0].start()
        self.admin_key = first.admin_key
        for g in self.gateways[1:]:
            g.admin_key = self.admin_key
            g.start()
        for n in self.nodes:
            n.start()
        for nid in self.node_ids:
            self.wait_node_status(nid, "ready", READY_TIMEOUT)
        return self

    # -- access -----------------------------------------------------------------------------

    def gateway(self, i: int = 0) -> Gateway:
        return self.gateways[i]

    def node(self, i: int) -> ClusterNode:
        return self.nodes[i]

    @property
    def node_ids(self) -> list[str]:
        return [n.node_id for n in self.nodes]

    def node_by_id(self, node_id: str) -> ClusterNode:
        for n in self.nodes:
            if n.node_id == node_id:
                return n
        raise AssertionError(f"{node_id!r} is none of this cluster's nodes {self.node_ids}")

    def live_gateway(self) -> Gateway:
        for g in self.gateways:
            if g.running:
                return g
        raise AssertionError("no gateway of the cluster is running")

    def nodes_status(self, gateway: Gateway | None = None) -> dict[str, dict]:
        """`GET /v1/nodes` through `gateway` (default: the first running one): id → node."""
        g = gateway or self.live_gateway()
        r = g.get("/v1/nodes", timeout=10)
        assert r.status_code == 200, f"GET /v1/nodes through {g.url} → {r.status_code} {r.text}"
        nodes = r.json()["nodes"]
        return {n["id"]: n for n in nodes}

    def wait_node_status(self, node_id: str, status: str, timeout: float,
                         gateway: Gateway | None = None) -> dict:
        """Waits until `GET /v1/nodes` says `node_id` is `status`; returns that node."""
        last: dict = {}

        def reached():
            nonlocal last
            last = self.nodes_status(gateway)
            node = last.get(node_id)
            return node if node and node["status"] == status else None

        return wait_until(reached, timeout,
                          lambda: f"node {node_id} is not {status!r} in GET /v1/nodes: {last.get(node_id, last)}",
                          interval=0.25)

    def placement(self, sandbox_ids, gateway: Gateway | None = None) -> dict[str, str]:
        """sandbox id → the `node_id` of its info (`GET /v1/sandboxes/:id`)."""
        g = gateway or self.live_gateway()
        out = {}
        for sid in sandbox_ids:
            r = g.sandbox(sid)
            assert r.status_code == 200, f"GET /v1/sandboxes/{sid} → {r.status_code} {r.text}"
            out[sid] = r.json()["node_id"]
        return out

    # -- clean-up ---------------------------------------------------------------------------

    def cleanup(self) -> None:
        """Deletes every sandbox left (through a gateway, with the key that made it, after
        bringing back what a test left stopped, so that the nodes remove them properly; best
        effort, as conftest's Node.cleanup), then stops and removes gateways and nodes and
        drops the database, each step whatever happened before; the first error of those is
        raised at the end."""
        errors: list[BaseException] = []

        def attempt(step, report=True):
            try:
                step()
            except (Exception, pytest.fail.Exception) as e:  # noqa: BLE001 - reported below
                if report:
                    errors.append(e)

        if self._database_made:
            attempt(self._bring_back, report=False)
            attempt(self._delete_sandboxes, report=False)
        for g in self.gateways:
            attempt(g.cleanup)
        for n in self.nodes:
            attempt(n.cleanup)
        if self._database_made and self.pg.running:
            attempt(lambda: self.pg.drop_database(self.database))
            self._database_made = False
        if errors:
            raise errors[0]

    def _bring_back(self) -> None:
        if not self.pg.running and self.pg.proc is not None:
            self.pg.start()
        if not any(g.running for g in self.gateways) and self.gateways[0].proc is not None:
            self.gateways[0].restart()
        for n in self.nodes:
            if n.proc is not None and not n.running and n.sandbox_dirs():
                n.restart()
        for n in self.nodes:
            if n.running:
                # Up again: ready, or draining when a test drained it.
                wait_until(lambda: self.nodes_status().get(n.node_id, {}).get("status") in ("ready", "draining"),
                           READY_TIMEOUT, f"node {n.node_id} did not come back")

    def _delete_sandboxes(self) -> None:
        if not any(g.running for g in self.gateways):
            return
        g = self.live_gateway()
        todo: dict[str, str] = {}
        for gw in self.gateways:
            todo.update(gw.created)
            gw.created.clear()
        try:
            r = g.get("/v1/sandboxes", timeout=30)
            if r.status_code == 200:
                for s in r.json().get("sandboxes", []):
                    todo.setdefault(s["id"], self.admin_key)
        except requests.RequestException:
            pass
        for sid, key in todo.items():
            try:
                g.delete(f"/v1/sandboxes/{sid}", key=key, timeout=30)
            except requests.RequestException:
                pass

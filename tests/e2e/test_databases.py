"""Databases end to end (issue 15: PostgreSQL, MySQL as MariaDB, Redis): real servers the node
runs on demand, reached with their own clients (`psql`, `pgbench`, `mariadb`, `mysqlslap`,
`redis-cli`, `redis-benchmark`) through the url the API answers, from the host and from inside
a sandbox; passwords that work, wrong ones and other databases' that do not, a reset that
takes effect at once; the server's death (on a full volume too), the node's `kill -9` and a
simulated host restart with the data kept; memory and disk that run out inside the database
only; deletes that leave nothing behind (port, sandbox, volume file); the API's errors,
scopes, tenants and quota; 20 databases at once.

What is checked is what a user sees (answers, what the clients print) and, where it matters,
what the host's kernel sees: the server's processes (found from the host, as the API shows no
sandbox: a postgres backend is titled `postgres: USER DB …`, whose parent is the server; a
redis server is told by its pid inside and its start time; a MariaDB server names its sandbox
in `@@hostname`), the node's state dir.

Every engine test runs for each engine the node lists in `GET /v1/databases/engines`;
PostgreSQL must be served (CI installs it), MySQL and Redis are skipped when the node does not
serve them.
Tests that need another configuration or that kill the node run their own nodes, each on a
port range of its own (`[databases] ports`), beside the shared node's default range.

The contract: /tmp/brief/databases.md and "Databases" in API.md; wire types in
crates/api/src/database.rs. test_databases_security.py attacks databases from sandboxes.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest

from conftest import Node, binary_path
from e2e_util import (
    MIB,
    SANDBOX_ID_RE,
    assert_gone_from_host,
    cgroup_file,
    cgroup_pids,
    cgroup_v2,
    epoch,
    MadeOnNode,
    per_node,
    pid_alive,
    proc_status,
    processes_in_sandbox_cgroup,
    random_token,
    wait_until,
)
from test_storage import error_of

DATABASES = "/v1/databases"
ENGINES = ["postgres", "mysql", "redis"]
DB_ID_RE = re.compile(r"^db_[0-9A-Za-z]+$")
USERNAME_RE = re.compile(r"^u_[a-z0-9]{12}$")
PASSWORD_RE = re.compile(r"^[A-Za-z0-9]{32}$")
STATUSES = {"creating", "available", "restarting", "failed"}
ALL_SCOPES = ["sandboxes:read", "sandboxes:write", "databases:read", "databases:write", "images:read", "images:write",
              "volumes:read", "volumes:write", "hosting:read", "hosting:write"]
DEFAULT_PORTS = range(21000, 22000)
CLIENT_TIMEOUT = 60


# ---------------------------------------------------------------------------------------------
# the API (test_databases_security.py uses these too)


def tenant_key(node, scopes=ALL_SCOPES, tenant: str | None = None) -> str:
    """The secret of a new key of a new (or the given) tenant."""
    return node.create_key(list(scopes), tenant=tenant or "db-" + random_token(8).lower())["key"]


def assert_database_shape(db: dict, engine: str | None = None) -> None:
    fields = {"id", "engine", "version", "name", "status", "url", "host", "port", "username",
              "password", "created_at", "resources"}
    assert set(db) >= fields, f"database object lacks {sorted(fields - set(db))}: {db}"
    assert DB_ID_RE.match(db["id"]), f"bad database id {db['id']!r}"
    assert db["status"] in STATUSES, db
    if engine is not None:
        assert db["engine"] == engine, db
    assert isinstance(db["version"], str) and db["version"], db
    assert USERNAME_RE.match(db["username"]), f"username is not u_ + 12 of a-z0-9: {db['username']!r}"
    assert PASSWORD_RE.match(db["password"]), f"password is not 32 alphanumerics: {db['password']!r}"
    assert isinstance(db["port"], int) and 0 < db["port"] < 65536, db
    url = urllib.parse.urlsplit(db["url"])
    scheme = {"postgres": "postgres", "redis": "redis", "mysql": "mysql"}[db["engine"]]
    assert url.scheme == scheme, f"url scheme {url.scheme!r} for {db['engine']}: {db['url']}"
    assert (url.username, url.password) == (db["username"], db["password"]), \
        f"the url's credentials are not username/password: {db['url']} vs {db['username']}"
    assert (url.hostname, url.port) == (db["host"].strip("[]"), db["port"]), \
        f"the url's address is not host:port: {db['url']} vs {db['host']}:{db['port']}"
    if db["engine"] in ("postgres", "mysql"):
        assert url.path == "/" + db["name"], f"the url does not name the database {db['name']!r}: {db['url']}"
    if db["engine"] == "redis":
        assert url.path == "/0", f"a redis url names database 0: {db['url']}"
    res = db["resources"]
    assert isinstance(res.get("memory_bytes"), int) and res["memory_bytes"] > 0, db
    assert isinstance(res.get("disk_bytes"), int) and res["disk_bytes"] > 0, db
    epoch(db["created_at"])


def get_db(node, ref: str, key=None) -> dict:
    r = node.get(f"{DATABASES}/{ref}", key=key)
    assert r.status_code == 200, f"GET {DATABASES}/{ref} → {r.status_code} {r.text}"
    db = r.json()
    assert_database_shape(db)
    return db


def list_dbs(node, key=None) -> list[dict]:
    r = node.get(DATABASES, key=key)
    assert r.status_code == 200, f"GET {DATABASES} → {r.status_code} {r.text}"
    dbs = r.json()["databases"]
    assert isinstance(dbs, list), r.text
    return dbs


def served_engines(node, key=None) -> dict[str, dict]:
    r = node.get(f"{DATABASES}/engines", key=key)
    assert r.status_code == 200, f"GET {DATABASES}/engines → {r.status_code} {r.text}"
    engines = r.json()["engines"]
    for e in engines:
        assert set(e) >= {"engine", "versions", "default"}, e
        assert e["versions"] and e["default"] in e["versions"], f"the default is not among the versions: {e}"
    return {e["engine"]: e for e in engines}


def require_engine(served: dict, engine: str) -> None:
    """Skips a MySQL or Redis test on a node without it; PostgreSQL must be served."""
    if engine in served:
        return
    if engine == "redis":
        pytest.skip("this node serves no redis (redis-server is not installed)")
    if engine == "mysql":
        pytest.skip("this node serves no mysql (mariadb-server is not installed)")
    pytest.fail(f"the node does not serve {engine}: it serves {sorted(served)}", pytrace=False)


def wait_db_status(node, ref: str, status: str, key=None, timeout: float = 60.0, seen: list | None = None) -> dict:
    """Waits until the database is `status`; returns it. `seen` collects the statuses passed."""
    last = {}

    def reached():
        last["db"] = get_db(node, ref, key)
        if seen is not None and (not seen or seen[-1] != last["db"]["status"]):
            seen.append(last["db"]["status"])
        return last["db"]["status"] == status and last["db"]

    return wait_until(reached, timeout, lambda: f"database {ref} is not {status}: {last.get('db')}",
                      interval=0.05)


class Tracker(MadeOnNode):
    """The databases a test made on a node, deleted at its end."""

    route = DATABASES

    def create(self, engine: str, key=None, **body) -> dict:
        body = {"engine": engine, **body}
        r = self.node.post(DATABASES, key=key, json=body, timeout=180)
        assert r.status_code == 201, f"POST {DATABASES} {body} → {r.status_code} {r.text}"
        db = r.json()
        self.made.append((db["id"], key))
        assert_database_shape(db, engine)
        assert db["status"] == "available", f"a create answers once the server accepts connections: {db}"
        return db


@pytest.fixture
def databases(request):
    """`databases(node)` → the test's Tracker on that node (one per node)."""
    with per_node(Tracker) as get:
        yield get


@pytest.fixture
def d(node, databases) -> Tracker:
    return databases(node)


@pytest.fixture(scope="module")
def served(node) -> dict[str, dict]:
    return served_engines(node)


# The port ranges of the separate nodes: each a hundred ports of its own, none shared with
# another separate node alive at the same time (a module's node outlives several tests, and a
# test that checks a port is closed must not find another node's endpoint on it).
OWN_PORT_BASES = iter(random.sample(range(22000, 29000, 100), 70))


def own_node(config: str = "") -> Node:
    """A separate node whose databases take ports of their own (not the shared node's nor
    another separate node's): `.db_ports` is its range. `config` goes on after
    `[databases] ports`."""
    base = next(OWN_PORT_BASES)
    n = Node(config=f"[databases]\nports = \"{base}-{base + 99}\"\n{config}")
    n.db_ports = range(base, base + 100)
    return n.start()


# ---------------------------------------------------------------------------------------------
# the clients: psql, mariadb, redis-cli (on the host, and in a sandbox through the shell route)


def client_env() -> dict:
    """The environment of the clients: none of the caller's PG*/MYSQL*/REDIS* settings (a
    password there would hide a refusal), a connect timeout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "MYSQL", "REDISCLI"))}
    env.update(PGCONNECT_TIMEOUT="10", PGSSLMODE="disable", HOME="/nonexistent")
    return env


def run_client(argv: list[str], timeout: float = CLIENT_TIMEOUT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env={**client_env(), **(env or {})},
                          stdin=subprocess.DEVNULL)


def psql(url: str, sql: str, timeout: float = CLIENT_TIMEOUT) -> subprocess.CompletedProcess:
    return run_client(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql, url], timeout)


def mysql_parts(url: str) -> dict[str, str | None]:
    """host, port, user, password (None: none in the url) and database of a mysql:// url."""
    u = urllib.parse.urlsplit(url)
    unquote = urllib.parse.unquote
    return {"host": u.hostname, "port": str(u.port or 3306), "user": unquote(u.username or ""),
            "password": None if u.password is None else unquote(u.password),
            "database": unquote(u.path.lstrip("/"))}


#: The mariadb client's options of every call: no option file, TCP even to "localhost".
MARIADB_OPTS = "--no-defaults --connect-timeout=10 --protocol=TCP"


def mysql(url: str, sql: str, timeout: float = CLIENT_TIMEOUT) -> subprocess.CompletedProcess:
    """`mariadb` through the url (tab-separated rows, no column names); the password goes in
    MYSQL_PWD, never on the command line."""
    p = mysql_parts(url)
    argv = ["mariadb", *MARIADB_OPTS.split(), "-h", p["host"], "-P", p["port"], "-u", p["user"],
            "-N", "-B", "-e", sql]
    if p["database"]:
        argv.append(p["database"])
    return run_client(argv, timeout, env={} if p["password"] is None else {"MYSQL_PWD": p["password"]})


def redis_cli(url: str, *args: str, timeout: float = CLIENT_TIMEOUT) -> subprocess.CompletedProcess:
    return run_client(["redis-cli", "--no-auth-warning", "-u", url, *args], timeout)


def said(r: subprocess.CompletedProcess) -> str:
    return (r.stdout + r.stderr).strip()


def upsert_sql(k: str, v: str, engine: str = "postgres") -> str:
    if engine == "mysql":
        return ("create table if not exists kv (k varchar(64) primary key, v text); "
                f"insert into kv values ('{k}', '{v}') on duplicate key update v = values(v)")
    return ("create table if not exists kv (k text primary key, v text); "
            f"insert into kv values ('{k}', '{v}') on conflict (k) do update set v = excluded.v")


def select_sql(k: str) -> str:
    return f"select v from kv where k = '{k}'"


def write(engine: str, url: str, k: str, v: str) -> None:
    """Writes k = v through `url`; asserts it worked."""
    if engine == "postgres":
        r = psql(url, upsert_sql(k, v))
        assert r.returncode == 0, f"psql write through {redact(url)}: {said(r)}"
    elif engine == "mysql":
        r = mysql(url, upsert_sql(k, v, engine))
        assert r.returncode == 0, f"mariadb write through {redact(url)}: {said(r)}"
    else:
        r = redis_cli(url, "SET", k, v)
        assert r.stdout.strip() == "OK", f"redis-cli SET through {redact(url)}: {said(r)}"


def read(engine: str, url: str, k: str) -> str:
    """The value of k through `url` ("" when there is none); asserts the client worked."""
    if engine == "postgres":
        r = psql(url, select_sql(k))
        assert r.returncode == 0, f"psql read through {redact(url)}: {said(r)}"
    elif engine == "mysql":
        r = mysql(url, select_sql(k))
        assert r.returncode == 0, f"mariadb read through {redact(url)}: {said(r)}"
    else:
        r = redis_cli(url, "GET", k)
        assert r.returncode == 0 and "ERR" not in r.stdout and "NOAUTH" not in r.stdout, \
            f"redis-cli GET through {redact(url)}: {said(r)}"
    return r.stdout.strip()


def attempt(engine: str, url: str) -> tuple[bool, str]:
    """(logged in and answered, what the client said) of a trivial request through `url`."""
    if engine == "postgres":
        r = psql(url, "select 'in-' || current_user")
        return r.returncode == 0 and r.stdout.strip().startswith("in-"), said(r)
    if engine == "mysql":
        r = mysql(url, "select concat('in-', current_user())")
        return r.returncode == 0 and r.stdout.strip().startswith("in-"), said(r)
    r = redis_cli(url, "PING")
    return r.stdout.strip() == "PONG", said(r)


def assert_refused(engine: str, url: str, why: str) -> str:
    """The server refuses `url` for want of the right credentials; returns what it said."""
    ok, text = attempt(engine, url)
    assert not ok, f"{why}: {redact(url)} logged in: {text}"
    if engine == "postgres":
        assert re.search(r"password authentication failed|no password supplied", text), \
            f"{why}: psql failed for another reason than the password: {text}"
    elif engine == "mysql":
        assert re.search(MYSQL_DENIED, text), f"{why}: mariadb failed for another reason than the password: {text}"
    else:
        assert re.search(r"WRONGPASS|NOAUTH|invalid username-password", text), \
            f"{why}: redis-cli failed for another reason than the password: {text}"
    return text


#: What MariaDB answers a login it refuses (1045, or 1698 for a user it does not have).
MYSQL_DENIED = r"ERROR (1045|1698) \(28000\)[^\n]*Access denied for user"
#: What the engines' clients print when the server refuses the credentials.
REFUSED = r"password authentication failed|no password supplied|WRONGPASS|NOAUTH|" + MYSQL_DENIED


def with_password(url: str, password: str) -> str:
    u = urllib.parse.urlsplit(url)
    netloc = f"{u.username}:{password}@{u.netloc.rsplit('@', 1)[1]}"
    return urllib.parse.urlunsplit(u._replace(netloc=netloc))


def with_credentials(url: str, of: str) -> str:
    """`url` with the user and password of the url `of`."""
    creds = urllib.parse.urlsplit(of).netloc.rsplit("@", 1)[0]
    u = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(u._replace(netloc=f"{creds}@{u.netloc.rsplit('@', 1)[1]}"))


def redact(url: str) -> str:
    u = urllib.parse.urlsplit(url)
    if u.password:
        return url.replace(":" + u.password + "@", ":…@")
    return url


def inside(node, sid: str, engine: str, url: str, what: str, key=None) -> dict:
    """Runs the engine's client inside the sandbox (shell route) with $URL = url; `what` is SQL
    for postgres and mysql, a redis-cli command line for redis. The mariadb client takes the
    url's parts ($H $P $U $D) and its password in MYSQL_PWD (the host image has the host's
    /usr: its clients are there)."""
    if engine == "postgres":
        cmd = 'psql -X -q -At -v ON_ERROR_STOP=1 -c "$SQL" "$URL"'
        env = {"URL": url, "SQL": what, "PGCONNECT_TIMEOUT": "10"}
    elif engine == "mysql":
        p = mysql_parts(url)
        cmd = f'mariadb {MARIADB_OPTS} -h "$H" -P "$P" -u "$U" -N -B -e "$SQL" $D'
        env = {"H": p["host"], "P": p["port"], "U": p["user"], "D": p["database"], "SQL": what}
        if p["password"] is not None:
            env["MYSQL_PWD"] = p["password"]
    else:
        cmd = f'redis-cli --no-auth-warning -u "$URL" {what}'
        env = {"URL": url}
    return node.sh(sid, cmd, key=key, env=env, timeout_ms=60_000)


def port_refuses(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=3).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


def main_ipv4() -> str:
    """The host's main IPv4 address: the source address of its default route (127.0.0.1 when
    there is none), as the node picks its default public_host."""
    out = subprocess.run(["ip", "-4", "-o", "route", "show", "default"], capture_output=True, text=True).stdout
    m = re.search(r"\bdev (\S+)", out)
    if not m:
        return "127.0.0.1"
    src = re.search(r"\bsrc (\S+)", out)
    if src:
        return src.group(1)
    addrs = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", m.group(1)], capture_output=True, text=True).stdout
    return re.search(r"inet (\S+)/", addrs).group(1)


# ---------------------------------------------------------------------------------------------
# the server's processes, seen from the host


def sandbox_of(pid: int) -> str | None:
    """The sandbox whose cgroup holds the host process `pid`."""
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return None
    m = re.search(r"/ai2in/(sbx_[0-9A-Za-z]+)(?:/|$)", text, re.M)
    return m.group(1) if m else None


def node_sandbox_ids(node) -> set[str]:
    """The sandboxes of the node's state dir (databases' ones included)."""
    d = Path(node.state_dir, "sandboxes")
    try:
        return {n for n in os.listdir(d) if SANDBOX_ID_RE.match(n)}
    except FileNotFoundError:
        return set()


def title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def engine_main_processes(node, engine: str) -> dict[int, str]:
    """Host pids of the engine's servers in the node's sandboxes → their sandbox: a postgres
    postmaster (argv[0] the postgres binary; its children retitle themselves `postgres: …`),
    a mariadbd (one process, its threads), a redis-server (titled `redis-server ADDR:PORT`)."""
    ids = node_sandbox_ids(node)
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        first = title(pid).split(" ", 1)[0]
        main = os.path.basename(first) == {"postgres": "postgres", "mysql": "mariadbd", "redis": "redis-server"}[engine]
        if not main:
            continue
        sid = sandbox_of(pid)
        if sid and sid in ids and pid_alive(pid):
            out[pid] = sid
    return out


def start_time(pid: int) -> float:
    """When the host process started (epoch seconds)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    ticks = int(stat[stat.rfind(")") + 2:].split()[19])
    btime = next(int(l.split()[1]) for l in Path("/proc/stat").read_text().splitlines() if l.startswith("btime"))
    return btime + ticks / os.sysconf("SC_CLK_TCK")


def pg_server_pid(node, db: dict) -> int:
    """Host pid of the database's postmaster: a connection held open (pg_sleep) has a backend
    titled `postgres: USERNAME NAME …`, whose parent is the server."""
    holder = subprocess.Popen(["psql", "-X", "-q", "-c", "select pg_sleep(60)", db["url"]], env=client_env(),
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    prefix = f"postgres: {db['username']} "
    try:
        def backend():
            for entry in os.listdir("/proc"):
                if entry.isdigit() and title(int(entry)).startswith(prefix):
                    return int(entry)
            return None

        pid = wait_until(backend, 20, f"no backend process titled {prefix!r} on the host")
        server = int(proc_status(pid)["PPid"])
        assert os.path.basename(title(server).split(" ", 1)[0]) == "postgres", \
            f"the parent of backend {pid} is not a postgres server: {title(server)!r}"
        assert sandbox_of(server) in node_sandbox_ids(node), \
            f"the server {server} is not in a sandbox of the node's state dir: {sandbox_of(server)}"
        return server
    finally:
        holder.kill()
        holder.wait()


def redis_info(url: str, section: str = "server") -> dict[str, str]:
    r = redis_cli(url, "INFO", section)
    assert r.returncode == 0 and "NOAUTH" not in r.stdout, said(r)
    return dict(l.split(":", 1) for l in r.stdout.splitlines() if ":" in l and not l.startswith("#"))


def redis_server_pid(node, db: dict) -> int:
    """Host pid of the database's redis-server: its pid inside (INFO's process_id) and its start
    time (server time less uptime) among the node's redis servers."""
    info = redis_info(db["url"])
    inner = info["process_id"].strip()
    started = int(info["server_time_usec"]) / 1e6 - int(info["uptime_in_seconds"])
    candidates = [p for p in engine_main_processes(node, "redis")
                  if proc_status(p).get("NSpid", "").split()[-1:] == [inner]]
    assert candidates, f"no redis-server with pid {inner} inside in the node's sandboxes"
    best = min(candidates, key=lambda p: abs(start_time(p) - started))
    assert abs(start_time(best) - started) < 3, \
        f"no redis-server started when the database's did ({started}): {[(p, start_time(p)) for p in candidates]}"
    return best


def mysql_server_pid(node, db: dict) -> int:
    """Host pid of the database's mariadbd: the server's @@hostname is its sandbox's id (the
    sandbox's hostname), the one mariadbd there is the server, started when it says (now less
    its Uptime)."""
    r = mysql(db["url"], "select @@hostname, unix_timestamp(now(6)), variable_value "
                         "from information_schema.global_status where variable_name = 'UPTIME'")
    assert r.returncode == 0, f"mariadb through {redact(db['url'])}: {said(r)}"
    sid, now, uptime = r.stdout.split()
    started = float(now) - int(uptime)
    candidates = [p for p, s in engine_main_processes(node, "mysql").items() if s == sid]
    assert len(candidates) == 1, \
        f"the server's @@hostname is {sid!r}: not one mariadbd in that sandbox of the node: {candidates}"
    assert abs(start_time(candidates[0]) - started) < 3, \
        f"mariadbd {candidates[0]} in {sid} started at {start_time(candidates[0])}, the server says {started}"
    return candidates[0]


def server_pid(node, db: dict) -> int:
    return {"postgres": pg_server_pid, "mysql": mysql_server_pid, "redis": redis_server_pid}[db["engine"]](node, db)


def kill_sandbox_from_the_host(sandbox_id: str) -> None:
    """Kills every process of the sandbox, as a host restart would."""
    def gone():
        pids = cgroup_pids(sandbox_id) | set(processes_in_sandbox_cgroup(sandbox_id))
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return not pids

    wait_until(gone, 10, f"processes of {sandbox_id} survive SIGKILL")


def named_files(node, token: str) -> list[str]:
    """Paths of the node's state dir whose name holds `token` (not under images/, whose
    unpacked layers are many and never named after a database)."""
    out = []
    for root, dirs, files in os.walk(node.state_dir):
        if root == node.state_dir:
            dirs[:] = [x for x in dirs if x != "images"]
        out += [os.path.join(root, x) for x in dirs + files if token in x]
    return out


def volume_files(node) -> set[str]:
    try:
        return set(os.listdir(Path(node.state_dir, "volumes")))
    except FileNotFoundError:
        return set()


# ---------------------------------------------------------------------------------------------
# engines


def test_engines_lists_what_the_node_serves(node, served):
    assert "postgres" in served, f"CI serves postgres: {served}"
    for name, e in served.items():
        assert name in {"postgres", "redis", "mysql"}, e
        assert all(isinstance(v, str) and v for v in e["versions"]), e
    # Any key may read it, with databases:read.
    reader = tenant_key(node, ["databases:read"])
    assert served_engines(node, reader) == served
    # Redis and MySQL are served when the host has them; MySQL is MariaDB, and says so.
    if shutil.which("redis-server"):
        assert "redis" in served, f"redis-server is installed but the node does not serve redis: {served}"
    if Path("/usr/sbin/mariadbd").exists():
        assert "mysql" in served, f"/usr/sbin/mariadbd is installed but the node does not serve mysql: {served}"
    if "mysql" in served:
        for v in served["mysql"]["versions"]:
            assert re.fullmatch(r"\d+\.\d+-MariaDB", v), f"a mysql version is not MAJOR.MINOR-MariaDB: {served['mysql']}"


# ---------------------------------------------------------------------------------------------
# create, connect, write, read; passwords


@pytest.fixture(scope="module", params=ENGINES)
def pair(request, node, served):
    """Two databases of one engine of a fresh tenant, each holding a value written from the
    host: {engine, key, a, b, values}."""
    engine = request.param
    require_engine(served, engine)
    key = tenant_key(node)
    t = Tracker(node)
    try:
        a = t.create(engine, key)
        b = t.create(engine, key, **({"name": "second"} if engine in ("postgres", "mysql") else {}))
        values = {"a": "value-a-" + random_token(8), "b": "value-b-" + random_token(8)}
        write(engine, a["url"], "shared", values["a"])
        write(engine, b["url"], "shared", values["b"])
        yield {"engine": engine, "key": key, "a": a, "b": b, "values": values}
    finally:
        t.cleanup()


def test_create_answers_an_available_database_whose_url_works_from_the_host(node, pair):
    engine, key, a, b = pair["engine"], pair["key"], pair["a"], pair["b"]
    for db in (a, b):
        assert db["status"] == "available", db
        assert db["host"] == main_ipv4(), f"public_host defaults to the host's main IPv4 {main_ipv4()}: {db}"
        assert db["port"] in DEFAULT_PORTS, f"port outside the default range 21000-21999: {db}"
        assert abs(epoch(db["created_at"]) - time.time()) < 600, db
        assert db["version"] in served_engines(node)[engine]["versions"], db
    assert a["port"] != b["port"] and a["username"] != b["username"] and a["password"] != b["password"], (a, b)
    if engine in ("postgres", "mysql"):
        assert a["name"] == "app" and b["name"] == "second", (a["name"], b["name"])
    # Each holds its own value: two servers, not two names for one.
    assert read(engine, a["url"], "shared") == pair["values"]["a"]
    assert read(engine, b["url"], "shared") == pair["values"]["b"]
    # GET answers the same url; the list holds both, oldest first; the admin's tenant sees none.
    assert get_db(node, a["id"], key)["url"] == a["url"]
    assert [x["id"] for x in list_dbs(node, key)] == [a["id"], b["id"]]
    assert not {a["id"], b["id"]} & {x["id"] for x in list_dbs(node)}


def test_the_server_is_the_engines_own(node, pair):
    engine, a = pair["engine"], pair["a"]
    if engine == "postgres":
        r = psql(a["url"], "select current_user || ' ' || current_database() || ' ' || "
                           "current_setting('server_version_num')::int / 10000")
        assert r.returncode == 0, said(r)
        assert r.stdout.split() == [a["username"], a["name"], a["version"].split(".")[0]], r.stdout
        # sslmode=disable works (plain connections stay served beside TLS).
        ok, text = attempt(engine, a["url"] + "?sslmode=disable")
        assert ok, text
    elif engine == "mysql":
        r = mysql(a["url"], "select current_user(), database(), version()")
        assert r.returncode == 0, said(r)
        user, name, version = r.stdout.rstrip("\n").split("\t")
        assert (user, name) == (f"{a['username']}@%", a["name"]), r.stdout
        assert version.startswith(a["version"].split("-")[0] + ".") and "MariaDB" in version, \
            f"version() {version!r} of a {a['version']} database"
    else:
        info = redis_info(a["url"])
        assert info["redis_version"].strip().startswith(a["version"].split(".")[0]), (info["redis_version"], a)
        r = redis_cli(a["url"], "ACL", "WHOAMI")
        assert r.stdout.strip() == a["username"], said(r)


def tls_in_use(engine: str, url: str, options: str = "") -> tuple[bool, str]:
    """(whether the session through `url` is encrypted, what the client said); `options` are
    libpq's query parameters (PostgreSQL) or the mariadb client's flags (MySQL)."""
    if engine == "postgres":
        sep = "&" if "?" in url else "?"
        r = psql(url + (sep + options if options else ""),
                 "select ssl from pg_stat_ssl where pid = pg_backend_pid()")
        return r.returncode == 0 and r.stdout.strip() == "t", said(r)
    u = urllib.parse.urlsplit(url)
    argv = ["mariadb", "--no-defaults", "--connect-timeout=10", "--protocol=TCP", "-h", u.hostname,
            "-P", str(u.port), "-u", u.username, "-N", "-B", *options.split(), u.path.lstrip("/"),
            "-e", "show status like 'Ssl_cipher'"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=CLIENT_TIMEOUT,
                       env={**client_env(), "MYSQL_PWD": u.password}, stdin=subprocess.DEVNULL)
    cipher = r.stdout.split("\t", 1)[1].strip() if "\t" in r.stdout else ""
    return r.returncode == 0 and cipher != "", said(r)


@pytest.mark.parametrize("engine", ["postgres", "mysql"])
def test_tls_with_the_nodes_certificate_verifies_and_plain_connections_still_work(node, d, served, engine):
    require_engine(served, engine)
    db = d.create(engine, tenant_key(node))
    cert = Path(node.state_dir, "tls", "databases.crt")
    assert cert.exists() and cert.read_text().startswith("-----BEGIN CERTIFICATE-----"), \
        f"the node made no certificate in {cert.parent}"
    assert Path(node.state_dir, "tls", "databases.key").stat().st_mode & 0o077 == 0, "the key is readable by others"
    if engine == "postgres":
        required, verified, plain = "sslmode=require", f"sslmode=verify-full&sslrootcert={cert}", "sslmode=disable"
    else:
        required, verified, plain = "--ssl", f"--ssl --ssl-verify-server-cert --ssl-ca={cert}", "--skip-ssl"
    on, text = tls_in_use(engine, db["url"], required)
    assert on, f"{engine} with TLS required: {text}"
    # The certificate names the url's host: a client that verifies it against the node's
    # certificate connects.
    on, text = tls_in_use(engine, db["url"], verified)
    assert on, f"{engine} verifying the server against {cert}: {text}"
    on, text = tls_in_use(engine, db["url"], plain)
    assert not on and "ERROR" not in text and "error" not in text.lower(), f"{engine} without TLS: {text}"


def test_without_tls_the_servers_refuse_it_and_serve_plain(databases, served):
    n = own_node("tls = false\n")
    try:
        t = databases(n)
        db = t.create("postgres", tenant_key(n))
        r = psql(db["url"] + "?sslmode=require", "select 1")
        assert r.returncode != 0 and "does not support SSL" in said(r), said(r)
        ok, text = attempt("postgres", db["url"] + "?sslmode=disable")
        assert ok, text
        assert not Path(n.state_dir, "tls").exists(), "a node without TLS made a certificate"
    finally:
        databases(n).cleanup()
        n.cleanup()


def test_a_wrong_password_is_refused(pair):
    engine, a = pair["engine"], pair["a"]
    assert_refused(engine, with_password(a["url"], random_token(32)), "a wrong password")
    assert_refused(engine, with_password(a["url"], a["password"][:-1]), "the password less its last character")
    if a["password"].swapcase() != a["password"]:
        assert_refused(engine, with_password(a["url"], a["password"].swapcase()), "the password in another case")
    assert read(engine, a["url"], "shared") == pair["values"]["a"], "the right password stopped working"


def test_another_databases_credentials_do_not_open_it(pair):
    engine, a, b = pair["engine"], pair["a"], pair["b"]
    assert_refused(engine, with_credentials(a["url"], b["url"]), "b's user and password at a's port")
    assert_refused(engine, with_credentials(b["url"], a["url"]), "a's user and password at b's port")
    # a's user with b's password, and the other way round.
    assert_refused(engine, with_password(a["url"], b["password"]), "a's user with b's password")
    assert_refused(engine, with_password(b["url"], a["password"]), "b's user with a's password")


def test_the_same_url_works_from_inside_a_sandbox(node, pair):
    engine, key, a = pair["engine"], pair["key"], pair["a"]
    sbx = node.create_sandbox(key=key)
    sid = sbx["id"]
    try:
        if engine in ("postgres", "mysql"):
            res = inside(node, sid, engine, a["url"], select_sql("shared"), key)
            assert res["exit_code"] == 0 and res["stdout"].strip() == pair["values"]["a"], res
            res = inside(node, sid, engine, a["url"], upsert_sql("from-sandbox", "written-inside", engine), key)
            assert res["exit_code"] == 0, res
        else:
            res = inside(node, sid, engine, a["url"], "GET shared", key)
            assert res["stdout"].strip() == pair["values"]["a"], res
            res = inside(node, sid, engine, a["url"], "SET from-sandbox written-inside", key)
            assert res["stdout"].strip() == "OK", res
        assert read(engine, a["url"], "from-sandbox") == "written-inside", "a write from the sandbox is not seen from the host"
        # A wrong password is refused there too.
        what = "PING" if engine == "redis" else "select 1"
        res = inside(node, sid, engine, with_password(a["url"], random_token(32)), what, key)
        text = res["stdout"] + res["stderr"]
        assert res["stdout"].strip() not in ("1", "PONG"), f"a wrong password logged in from the sandbox: {res}"
        assert re.search(REFUSED, text), res
        # A sandbox without egress reaches it too: the database's port is on the node.
        closed = node.create_sandbox(key=key, network={"egress": "deny"})
        try:
            what = "GET shared" if engine == "redis" else select_sql("shared")
            res = inside(node, closed["id"], engine, a["url"], what, key)
            assert res["stdout"].strip() == pair["values"]["a"], f"from a sandbox with egress denied: {res}"
        finally:
            node.delete(f"/v1/sandboxes/{closed['id']}", key=key)
    finally:
        node.delete(f"/v1/sandboxes/{sid}", key=key)


def test_reset_password_fails_the_old_one_at_once_and_keeps_the_data(node, d, served):
    for engine in ENGINES:
        if engine not in served:
            continue
        key = tenant_key(node)
        db = d.create(engine, key)
        write(engine, db["url"], "kept", "across-the-reset")
        r = node.post(f"{DATABASES}/{db['id']}/reset_password", key=key)
        assert r.status_code == 200, f"reset_password → {r.status_code} {r.text}"
        new = r.json()
        assert_database_shape(new, engine)
        assert new["password"] != db["password"], new
        assert (new["id"], new["username"], new["host"], new["port"], new["name"]) == \
            (db["id"], db["username"], db["host"], db["port"], db["name"]), (db, new)
        assert new["url"] == with_password(db["url"], new["password"]), new["url"]
        # At once: the very next connection with the old password is refused.
        assert_refused(engine, db["url"], f"{engine}: the old password after reset_password")
        assert read(engine, new["url"], "kept") == "across-the-reset"
        assert get_db(node, db["id"], key)["url"] == new["url"], "GET does not answer the new url"
        assert new["status"] == "available", new
        # A second reset: the first new password fails in turn.
        newer = node.post(f"{DATABASES}/{db['id']}/reset_password", key=key).json()
        assert newer["password"] not in (db["password"], new["password"]), newer
        assert_refused(engine, new["url"], f"{engine}: the first new password after a second reset")
        assert read(engine, newer["url"], "kept") == "across-the-reset"


@pytest.mark.parametrize("engine", ["postgres", "mysql"])
def test_the_name_is_the_database_inside(node, d, served, engine):
    require_engine(served, engine)
    key = tenant_key(node)
    longest = "s" + "x_9" * 20 + "zz"  # 63 characters
    assert len(longest) == 63
    db = d.create(engine, key, name=longest)
    assert db["name"] == longest and db["url"].endswith("/" + longest), db
    if engine == "postgres":
        r = psql(db["url"], "select current_database()")
        assert r.returncode == 0 and r.stdout.strip() == longest, said(r)
        # The user owns its database: it creates tables and schemas there.
        r = psql(db["url"], "create schema s; create table s.t (x int); insert into s.t values (42); "
                            "select x from s.t")
        assert r.returncode == 0 and r.stdout.strip() == "42", said(r)
        return
    r = mysql(db["url"], "select database()")
    assert r.returncode == 0 and r.stdout.strip() == longest, said(r)
    # The user has all of its database (tables, indexes, views), and no other database.
    r = mysql(db["url"], "create table t (x int primary key); insert into t values (42); "
                         "create index tx on t (x); create view v as select x from t; select x from v")
    assert r.returncode == 0 and r.stdout.strip() == "42", said(r)
    r = mysql(db["url"], "create database other")
    assert r.returncode != 0 and re.search(r"ERROR 1044 .*Access denied for user .* to database 'other'", said(r)), \
        f"create database other: {said(r)}"
    r = mysql(db["url"], "create table mysql.t (x int)")
    assert r.returncode != 0 and "denied" in said(r), f"a table in the mysql schema: {said(r)}"


# ---------------------------------------------------------------------------------------------
# delete


@pytest.mark.parametrize("engine", ENGINES)
def test_delete_closes_the_port_and_leaves_nothing(node, d, served, engine):
    require_engine(served, engine)
    key = tenant_key(node)
    sandboxes_before, volumes_before = node_sandbox_ids(node), volume_files(node)
    db = d.create(engine, key, memory_bytes=128 * MIB)
    write(engine, db["url"], "doomed", "yes")
    server = server_pid(node, db)
    sid = sandbox_of(server)
    assert sid and sid not in sandboxes_before, f"the server {server} is not in a sandbox made by the create: {sid}"
    new_volumes = volume_files(node) - volumes_before
    assert new_volumes, f"the create made no file in {node.state_dir}/volumes"

    r = node.delete(f"{DATABASES}/{db['id']}", key=key)
    assert r.status_code == 204 and r.content == b"", f"DELETE → {r.status_code} {r.text}"
    error_of(node.get(f"{DATABASES}/{db['id']}", key=key), 404)
    error_of(node.post(f"{DATABASES}/{db['id']}/reset_password", key=key), 404)
    error_of(node.delete(f"{DATABASES}/{db['id']}", key=key), 404)
    assert list_dbs(node, key) == []
    # The port refuses; the server, its sandbox and its volume's file are gone.
    wait_until(lambda: port_refuses(db["host"], db["port"]), 10,
               f"{db['host']}:{db['port']} still accepts connections after the delete")
    ok, text = attempt(engine, db["url"])
    assert not ok, text
    wait_until(lambda: not pid_alive(server), 10, f"the server (host pid {server}) survived the delete")
    assert_gone_from_host(node.state_dir, [sid])
    assert not (volume_files(node) & new_volumes), \
        f"the database's volume files are left: {sorted(volume_files(node) & new_volumes)}"
    named = named_files(node, db["id"][3:])
    assert not named, f"files named after the deleted database are left: {named}"


# ---------------------------------------------------------------------------------------------
# persistence: the server's death, kill -9 of the node, a host restart


@pytest.fixture(scope="module", params=ENGINES)
def kept(request, served):
    """A node of its own with one database of the engine: {engine, node, db, rows} (`rows`:
    the values written so far, which every test checks are all still there)."""
    engine = request.param
    require_engine(served, engine)
    n = own_node()
    try:
        r = n.post(DATABASES, json={"engine": engine}, timeout=180)
        assert r.status_code == 201, f"POST {DATABASES} → {r.status_code} {r.text}"
        db = r.json()
        state = {"engine": engine, "node": n, "db": db, "rows": {}}
        yield state
        if n.running:
            n.delete(f"{DATABASES}/{db['id']}")
    finally:
        n.cleanup()


def add_row(state) -> None:
    k, v = f"row{len(state['rows'])}", random_token(12)
    write(state["engine"], state["db"]["url"], k, v)
    state["rows"][k] = v


def assert_rows(state, when: str) -> None:
    for k, v in state["rows"].items():
        got = read(state["engine"], state["db"]["url"], k)
        assert got == v, f"{when}: {k} is {got!r}, was written as {v!r}"


def test_kill_9_of_the_server_restarts_it_with_its_data(kept):
    n, db = kept["node"], kept["db"]
    add_row(kept)
    add_row(kept)
    server = server_pid(n, db)
    os.kill(server, signal.SIGKILL)
    seen = []
    back = wait_db_status(n, db["id"], "available", timeout=60, seen=seen)
    wait_until(lambda: server_pid(n, db) != server, 30, "the server was not started again")
    assert back["url"] == db["url"] and back["port"] == db["port"], (db, back)
    assert set(seen) <= {"available", "restarting"}, f"statuses while it restarted: {seen}"
    assert_rows(kept, "after kill -9 of the server")
    add_row(kept)
    assert n.running and n.healthy(), "the server's death hurt the node"


def held_connection(engine: str, url: str):
    """An open client connection through `url` and a function that runs a query on it and
    answers its result (PostgreSQL: psycopg; Redis: redis-py); `None` for MySQL (its tests
    use the command-line client, one connection a call)."""
    if engine == "postgres":
        import psycopg

        conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
        return conn, lambda: conn.execute("select 'held'").fetchone()[0]
    if engine == "redis":
        import redis

        conn = redis.Redis.from_url(url, socket_timeout=10)
        conn.ping()
        return conn, lambda: "held" if conn.ping() else "no pong"
    return None, None


def test_kill_9_of_the_node_leaves_the_server_running_and_the_url_works_after_its_restart(kept):
    n, db = kept["node"], kept["db"]
    engine = kept["engine"]
    add_row(kept)
    server = server_pid(n, db)
    conn, query = held_connection(engine, db["url"])
    n.kill9()
    assert pid_alive(server), f"the server (host pid {server}) died with the node"
    # The kernel forwards the port (the endpoints listen on the host's main address): a
    # connection open through the url goes on, and new ones work, while the node is down.
    if not db["host"].startswith("127."):
        try:
            if query is not None:
                assert query() == "held", "a connection through the url broke with the node"
            ok, text = attempt(engine, db["url"])
            assert ok, f"a new connection through the url failed while the node was down: {text}"
        finally:
            if conn is not None:
                conn.close()
    elif conn is not None:
        conn.close()
    n.restart()
    wait_db_status(n, db["id"], "available", timeout=60)
    got = get_db(n, db["id"])
    assert (got["url"], got["port"]) == (db["url"], db["port"]), (db, got)
    assert_rows(kept, "after kill -9 and restart of the node")
    assert server_pid(n, db) == server, "the node's restart replaced the server"
    add_row(kept)


def test_after_a_host_restart_the_node_starts_the_database_again_with_its_data(kept):
    n, db = kept["node"], kept["db"]
    add_row(kept)
    old = server_pid(n, db)
    n.stop()
    for sid in node_sandbox_ids(n) | {sandbox_of(old)}:
        kill_sandbox_from_the_host(sid)
    assert not pid_alive(old)
    n.restart()
    back = wait_db_status(n, db["id"], "available", timeout=90)
    assert (back["url"], back["port"]) == (db["url"], db["port"]), (db, back)
    assert_rows(kept, "after a host restart")
    assert server_pid(n, db) != old
    add_row(kept)
    assert_rows(kept, "after a write following the host restart")


# ---------------------------------------------------------------------------------------------
# real workloads: pgbench, mysqlslap, redis-benchmark


def test_pgbench_through_the_url_completes_with_no_errors(node, d, served):
    require_engine(served, "postgres")
    db = d.create("postgres", tenant_key(node))
    init = run_client(["pgbench", "-i", "-s", "2", "-q", db["url"]], timeout=180)
    assert init.returncode == 0, f"pgbench -i: {said(init)}"
    bench = run_client(["pgbench", "-T", "5", "-c", "4", "-j", "2", "-n", db["url"]], timeout=120)
    out = said(bench)
    assert bench.returncode == 0, f"pgbench -T 5: {out}"
    done = re.search(r"number of transactions actually processed: (\d+)", out)
    assert done and int(done.group(1)) > 0, out
    failed = re.search(r"number of failed transactions: (\d+)", out)
    assert failed is None or failed.group(1) == "0", out
    assert "error" not in out.lower(), out
    r = psql(db["url"], "select count(*) from pgbench_accounts")
    assert r.returncode == 0 and r.stdout.strip() == "200000", said(r)


def mysql_status(url: str, *names: str) -> dict[str, int]:
    """The server's global status counters `names`, through the url."""
    listed = ", ".join(f"'{n.upper()}'" for n in names)
    r = mysql(url, f"select variable_name, variable_value from information_schema.global_status "
                   f"where variable_name in ({listed})")
    assert r.returncode == 0, f"global status through {redact(url)}: {said(r)}"
    got = {name.upper(): int(value) for name, value in (line.split("\t") for line in r.stdout.splitlines())}
    assert set(got) == {n.upper() for n in names}, f"status {names}: {r.stdout}"
    return got


def test_mysqlslap_through_the_url_completes_with_no_errors(node, d, served):
    require_engine(served, "mysql")
    db = d.create("mysql", tenant_key(node), name="slap")
    p = mysql_parts(db["url"])
    counters = ("Com_insert", "Com_select")
    before = mysql_status(db["url"], *counters)
    # mysqlslap creates its schema (the database's: the user's to drop and create) and drops
    # it at its end.
    bench = run_client(["mysqlslap", "--no-defaults", "-h", p["host"], "-P", p["port"], "-u", p["user"],
                        f"--create-schema={p['database']}", "--concurrency=4", "--iterations=2",
                        "--number-of-queries=200", "--auto-generate-sql", "--auto-generate-sql-load-type=mixed"],
                       timeout=180, env={"MYSQL_PWD": p["password"]})
    out = said(bench)
    assert bench.returncode == 0, f"mysqlslap: {out}"
    for what in ("Average", "Minimum", "Maximum"):
        assert re.search(rf"^\s*{what} number of seconds to run all queries: [\d.]+ seconds", out, re.M), \
            f"no {what.lower()} time: {out}"
    assert re.search(r"^\s*Number of clients running queries: 4$", out, re.M), out
    assert not re.search(r"error|denied|Lost connection", out, re.I), out
    # The server ran them: 2 iterations of 200 queries, inserts and selects.
    after = mysql_status(db["url"].rsplit("/", 1)[0] + "/", *counters)
    done = {c: after[c.upper()] - before[c.upper()] for c in counters}
    assert all(n > 0 for n in done.values()) and sum(done.values()) >= 400, f"the server counted {done}"
    # Its schema is gone with it; the user makes it again and the url works as before.
    r = mysql(db["url"].rsplit("/", 1)[0] + "/", f"create database {p['database']}")
    assert r.returncode == 0, said(r)
    write("mysql", db["url"], "after", "the-bench")
    assert read("mysql", db["url"], "after") == "the-bench"


def test_redis_benchmark_through_the_url_completes_with_no_errors(node, d, served):
    require_engine(served, "redis")
    db = d.create("redis", tenant_key(node))
    u = urllib.parse.urlsplit(db["url"])
    bench = run_client(["redis-benchmark", "-h", u.hostname, "-p", str(u.port), "--user", u.username,
                        "-a", u.password, "-n", "2000", "-c", "10", "-t", "set,get,incr,lpush", "-q"],
                       timeout=120)
    out = said(bench)
    assert bench.returncode == 0, f"redis-benchmark: {out}"
    for test in ("SET", "GET", "INCR", "LPUSH"):
        assert re.search(rf"^{test}: [\d.]+ requests per second", out, re.M), f"no {test} figure: {out}"
    assert not re.search(r"NOAUTH|WRONGPASS|ERR|error", out), out
    # The server counted them, and none failed.
    stats = redis_info(db["url"], "commandstats")
    for cmd in ("set", "get", "incr", "lpush"):
        line = stats.get(f"cmdstat_{cmd}", "")
        calls = re.search(r"calls=(\d+)", line)
        assert calls and int(calls.group(1)) >= 2000, f"cmdstat_{cmd}: {line!r}"
        for kind in ("failed_calls", "rejected_calls"):
            m = re.search(rf"{kind}=(\d+)", line)
            assert m is None or m.group(1) == "0", f"cmdstat_{cmd}: {line!r}"


# ---------------------------------------------------------------------------------------------
# limits: memory and disk run out inside, never outside


def big_value(url: str, key: str, megabytes: int) -> subprocess.CompletedProcess:
    """SET key to `megabytes` MB of x's through redis-cli -x (the value on its stdin)."""
    return subprocess.run(f"head -c {megabytes * 1000000} /dev/zero | tr '\\0' x | "
                          f"redis-cli --no-auth-warning -u \"$URL\" -x SET {key}",
                          shell=True, capture_output=True, text=True, timeout=120,
                          env={**client_env(), "URL": url})


def wait_readable(engine: str, url: str, k: str, v: str, timeout: float = 60.0) -> None:
    """Waits until k reads as v through url (the server may be restarting)."""
    def back():
        client = {"postgres": lambda: psql(url, select_sql(k)), "mysql": lambda: mysql(url, select_sql(k)),
                  "redis": lambda: redis_cli(url, "GET", k)}[engine]
        return client().stdout.strip() == v

    wait_until(back, timeout, f"{k} = {v} did not come back through {redact(url)}", interval=0.5)


#: memory_bytes of the memory test: a MariaDB server takes ~100 MB of its own (see
#: test_the_smallest_memory_a_database_takes_serves).
HOG_MEMORY = {"postgres": 96 * MIB, "mysql": 128 * MIB, "redis": 64 * MIB}


@pytest.mark.parametrize("engine", ENGINES)
def test_memory_past_memory_bytes_is_the_engines_error_or_a_restart_and_the_data_stays(node, d, served, engine):
    require_engine(served, engine)
    key = tenant_key(node)
    db = d.create(engine, key, memory_bytes=HOG_MEMORY[engine])
    write(engine, db["url"], "keep", "before-the-hog")
    if engine == "postgres":
        # About 500 MB in one backend, past its 96 MiB.
        r = psql(db["url"], "select length(string_agg(repeat(md5(g::text), 30000), '')) "
                            "from generate_series(1, 500) g", timeout=120)
        assert r.returncode != 0, f"a 500 MB aggregate fit in 96 MiB: {said(r)}"
        assert re.search(r"out of memory|terminated abnormally|closed the connection", said(r)), said(r)
    elif engine == "mysql":
        # A GROUP BY of 2 million 200-byte keys in an in-memory temporary table (allowed 1 GiB):
        # ~450 MB, past its 128 MiB.
        r = mysql(db["url"], "set session max_heap_table_size = 1073741824, tmp_table_size = 1073741824; "
                             "select count(*) from (select concat(seq, repeat('x', 200)) s "
                             "from seq_1_to_2000000 group by s) t", timeout=120)
        assert r.returncode != 0, f"a 450 MB temporary table fit in 128 MiB: {said(r)}"
        assert re.search(r"Lost connection|gone away|[Oo]ut of memory|is full|TLS/SSL error: unexpected eof", said(r)), said(r)
    else:
        # 10 MB values until the engine refuses (OOM, maxmemory) or its server is killed.
        answers = [said(big_value(db["url"], f"big{i}", 10)) for i in range(8)]
        assert any(a != "OK" for a in answers), f"80 MB went into a 64 MiB Redis: {answers}"
    # Whatever happened, the server is back with what was there, and the node never noticed.
    wait_readable(engine, db["url"], "keep", "before-the-hog")
    assert node.running and node.healthy(), "a database's memory hurt the node"
    wait_db_status(node, db["id"], "available", key)


@pytest.mark.parametrize("engine", ENGINES)
def test_the_smallest_memory_a_database_takes_serves(node, d, served, engine):
    """64 MiB, the least memory_bytes a create takes: a server that works, or a 400 that
    names memory_bytes (never a server that cannot start)."""
    require_engine(served, engine)
    key = tenant_key(node)
    r = node.post(DATABASES, key=key, json={"engine": engine, "memory_bytes": 64 * MIB}, timeout=180)
    if r.status_code == 400:
        assert "memory_bytes" in error_of(r, 400), r.text
        assert list_dbs(node, key) == [], "a refused create left a database"
        return
    assert r.status_code == 201, f"{engine} with memory_bytes 64 MiB → {r.status_code} {r.text}"
    db = r.json()
    d.made.append((db["id"], key))
    write(engine, db["url"], "small", "but-working")
    assert read(engine, db["url"], "small") == "but-working"
    time.sleep(2)
    assert get_db(node, db["id"], key)["status"] == "available" and attempt(engine, db["url"])[0], \
        "the server of a 64 MiB database died once used"


@pytest.mark.parametrize("engine", ["postgres", "mysql"])
def test_a_disk_too_small_for_the_engine_is_400_and_leaves_nothing(node, served, engine):
    require_engine(served, engine)
    key = tenant_key(node)
    volumes_before = volume_files(node)
    # 16 MiB: the smallest volume [limits] allow, too small for a data directory (~40 MB of
    # PostgreSQL, ~50 MB of MariaDB).
    err = error_of(node.post(DATABASES, key=key, json={"engine": engine, "disk_bytes": 16 * MIB}, timeout=120), 400)
    assert "disk_bytes" in err, f"the sentence must name disk_bytes: {err}"
    assert list_dbs(node, key) == [], "a refused create left a database"
    assert volume_files(node) == volumes_before, "a refused create left a volume file"


def fill_the_volume(engine: str, url: str) -> None:
    """Writes more than the database's volume holds (16 MiB for redis, 128 MiB for the others,
    the smallest they take); asserts the engine refused with its own error."""
    if engine == "postgres":
        # 300 MB of rows into a 128 MiB volume.
        r = psql(url, "create table flood (s text); insert into flood "
                      "select repeat(md5(g::text), 30) from generate_series(1, 300000) g", timeout=180)
        assert r.returncode != 0, f"300 MB fit in a 128 MiB volume: {said(r)}"
        # The statement fails, or the server stops when its write-ahead log cannot grow
        # (PANIC: its backends are told "crash of another server process") and restarts.
        assert re.search(r"No space left on device|could not extend|crash of another server process", said(r)), \
            said(r)
    elif engine == "mysql":
        # 300 MB of rows into a 128 MiB volume (the table is made first: it stays, full).
        r = mysql(url, "create table flood (s text); insert into flood "
                       "select repeat(md5(seq), 30) from seq_1_to_300000", timeout=180)
        assert r.returncode != 0, f"300 MB fit in a 128 MiB volume: {said(r)}"
        assert re.search(r"ERROR 1114 .*The table 'flood' is full|No space left on device|Got error 28", said(r)), \
            said(r)
    else:
        # 20 MB into a 16 MiB volume: the append-only file cannot take it.
        big_value(url, "flood", 20)
        r = redis_cli(url, "SET", "after", "the-flood")
        assert re.search(r"MISCONF|No space left on device", said(r)), f"a write on a full volume: {said(r)}"


def free_the_volume(engine: str, url: str) -> None:
    """Drops what filled the volume; asserts the server took it and writes again. The node
    gives a full volume's reserve back to the server once the volume has stayed full for two
    seconds (the write that filled it has failed), so that a drop that must write (MariaDB's
    DDL log) can: the drop is retried for a few seconds."""
    if engine in ("postgres", "mysql"):
        client = psql if engine == "postgres" else mysql
        last = {}

        def dropped():
            last["r"] = client(url, "drop table if exists flood; select 'still writable'")
            return last["r"].returncode == 0 and last["r"].stdout.strip() == "still writable"

        wait_until(dropped, 15, lambda: f"on a full volume: {said(last['r'])}", interval=0.5)
    else:
        r = redis_cli(url, "DEL", "flood")
        assert r.returncode == 0 and r.stdout.strip() in ("0", "1"), f"on a full volume: {said(r)}"
    write(engine, url, "after", "the-flood")
    assert read(engine, url, "after") == "the-flood"


@pytest.mark.parametrize("engine", ENGINES)
def test_a_full_disk_is_the_engines_error_and_the_data_stays(node, d, served, engine):
    require_engine(served, engine)
    key = tenant_key(node)
    db = d.create(engine, key, disk_bytes=(16 if engine == "redis" else 128) * MIB)
    write(engine, db["url"], "keep", "before-the-flood")
    fill_the_volume(engine, db["url"])
    # The engine's own error, then the data is there (after a restart, if the engine needed one).
    wait_readable(engine, db["url"], "keep", "before-the-flood")
    assert node.running and node.healthy(), "a full volume hurt the node"
    if engine != "redis":
        free_the_volume(engine, db["url"])


@pytest.mark.parametrize("engine", ENGINES)
def test_a_server_killed_on_its_full_volume_starts_again_with_its_data(node, d, served, engine):
    # A crash or a host restart may come when the volume is full: the server must start there.
    require_engine(served, engine)
    key = tenant_key(node)
    db = d.create(engine, key, disk_bytes=(16 if engine == "redis" else 128) * MIB)
    write(engine, db["url"], "keep", "before-the-flood")
    fill_the_volume(engine, db["url"])
    # PostgreSQL may have stopped on its full write-ahead log: it is back before it is killed.
    wait_readable(engine, db["url"], "keep", "before-the-flood")
    server = server_pid(node, db)
    os.kill(server, signal.SIGKILL)
    wait_until(lambda: not pid_alive(server), 10, f"the server (host pid {server}) survived SIGKILL")
    try:
        wait_readable(engine, db["url"], "keep", "before-the-flood", timeout=90)
    except AssertionError as e:
        raise AssertionError(f"the server killed on its full volume did not come back: {e}; the database is "
                             f"{get_db(node, db['id'], key)['status']}") from None
    wait_db_status(node, db["id"], "available", key)
    assert node.running and node.healthy(), "a full volume hurt the node"
    free_the_volume(engine, db["url"])


# ---------------------------------------------------------------------------------------------
# errors, scopes, tenants, quota


def test_an_unknown_engine_is_400_listing_what_the_node_serves(node, served):
    key = tenant_key(node)
    for engine in ["oracle", "Postgres", "", "MySQL", "mysql8", "mysql"]:
        if engine in served:
            continue
        err = error_of(node.post(DATABASES, key=key, json={"engine": engine}), 400)
        for name in served:
            assert name in err, f"engine {engine!r}: the 400 must list what the node serves ({sorted(served)}): {err}"
    err = error_of(node.post(DATABASES, key=key, json={}), 400)
    assert "engine" in err, err
    err = error_of(node.post(DATABASES, key=key, json={"engine": 5}), 400)
    assert "engine" in err, err
    assert list_dbs(node, key) == [], "a refused create left a database"


def test_mysql_is_mariadb_named_by_its_version_or_as_mariadb(node, d, served):
    require_engine(served, "mysql")
    key = tenant_key(node)
    default = served["mysql"]["default"]
    number = default.removesuffix("-MariaDB")
    assert number != default, f"the mysql version does not say MariaDB: {served['mysql']}"
    # "10.11" names "10.11-MariaDB", and the database answers the full name.
    db = d.create("mysql", key, version=number)
    assert db["version"] == default, f"version {number!r} → {db['version']!r}"
    ok, text = attempt("mysql", db["url"])
    assert ok, text
    # "mariadb" is a name of the engine: the database is a mysql one.
    r = node.post(DATABASES, key=key, json={"engine": "mariadb", "version": default}, timeout=180)
    assert r.status_code == 201, f"engine mariadb → {r.status_code} {r.text}"
    other = r.json()
    d.made.append((other["id"], key))
    assert_database_shape(other, "mysql")
    assert (other["version"], other["url"].split(":")[0]) == (default, "mysql"), other
    assert get_db(node, other["id"], key)["engine"] == "mysql"
    ok, text = attempt("mysql", other["url"])
    assert ok, text
    # A version that is not MAJOR.MINOR of the one served is not served.
    for version in [number.split(".")[0], number + "-MySQL", number + ".0", "8.0"]:
        err = error_of(node.post(DATABASES, key=key, json={"engine": "mysql", "version": version}), 400)
        assert "version" in err and default in err, f"version {version!r}: {err}"
    assert len(list_dbs(node, key)) == 2


def test_an_unknown_version_is_400_listing_the_versions(node, served):
    key = tenant_key(node)
    for engine in served:
        for version in ["9.6", "latest", "", "15; drop"]:
            if version in served[engine]["versions"]:
                continue
            err = error_of(node.post(DATABASES, key=key, json={"engine": engine, "version": version}), 400)
            assert "version" in err, err
            for v in served[engine]["versions"]:
                assert v in err, f"{engine} {version!r}: the 400 must list the versions served ({served[engine]['versions']}): {err}"
    assert list_dbs(node, key) == []


BAD_NAMES = ["", "App", "1app", "_app", "a-b", "a b", "a.b", "caf\u00e9", "a" * 64, "app;drop", 7]


@pytest.mark.parametrize("name", BAD_NAMES, ids=lambda x: repr(x)[:20])
def test_a_bad_name_is_400(node, served, name):
    key = tenant_key(node)
    for engine in ("postgres", "mysql"):
        if engine not in served:
            continue
        err = error_of(node.post(DATABASES, key=key, json={"engine": engine, "name": name}), 400)
        assert "name" in err, f"{engine}: the sentence must name the field: {err}"
    assert list_dbs(node, key) == []


@pytest.mark.parametrize("body,field", [
    ({"memory_bytes": 1}, "memory_bytes"),
    ({"memory_bytes": -1}, "memory_bytes"),
    ({"memory_bytes": "1GiB"}, "memory_bytes"),
    ({"memory_bytes": 1 << 60}, "memory_bytes"),
    ({"disk_bytes": 1}, "disk_bytes"),
    ({"disk_bytes": 1 << 60}, "disk_bytes"),
    ({"size": 10}, "size"),
])
def test_bad_sizes_and_unknown_fields_are_400(node, body, field):
    key = tenant_key(node)
    err = error_of(node.post(DATABASES, key=key, json={"engine": "postgres", **body}), 400)
    assert field in err, f"{body}: the sentence must name {field!r}: {err}"
    assert list_dbs(node, key) == []


def test_another_tenants_database_is_404(node, d, served):
    key_a, key_b = tenant_key(node), tenant_key(node)
    a = d.create("postgres", key_a)
    for method, path in [("GET", f"{DATABASES}/{a['id']}"), ("POST", f"{DATABASES}/{a['id']}/reset_password"),
                         ("DELETE", f"{DATABASES}/{a['id']}")]:
        err = error_of(node.request(method, path, key=key_b), 404)
        assert a["password"] not in err, err
    # The admin key's tenant is another tenant too; unknown ids are 404 alike.
    error_of(node.get(f"{DATABASES}/{a['id']}"), 404)
    error_of(node.get(f"{DATABASES}/db_doesnotexist0000"), 404)
    error_of(node.delete(f"{DATABASES}/db_doesnotexist0000", key=key_a), 404)
    assert list_dbs(node, key_b) == []
    # None of it touched a's database.
    got = get_db(node, a["id"], key_a)
    assert got["url"] == a["url"] and got["status"] == "available", got
    ok, text = attempt("postgres", a["url"])
    assert ok, text


def test_databases_routes_need_their_scopes(node, d):
    tenant = "db-" + random_token(8).lower()
    writer = tenant_key(node, ["databases:write"], tenant)
    reader = tenant_key(node, ["databases:read"], tenant)
    other = tenant_key(node, ["sandboxes:read", "sandboxes:write", "hosting:write", "volumes:write"], tenant)
    # databases:write alone creates (and reads: write implies read).
    db = d.create("postgres", writer)
    assert get_db(node, db["id"], writer)["id"] == db["id"]
    # databases:read reads, lists and lists engines, and nothing else.
    assert get_db(node, db["id"], reader)["url"] == db["url"]
    assert [x["id"] for x in list_dbs(node, reader)] == [db["id"]]
    served_engines(node, reader)
    for method, path, body in [("POST", DATABASES, {"engine": "postgres"}),
                               ("POST", f"{DATABASES}/{db['id']}/reset_password", None),
                               ("DELETE", f"{DATABASES}/{db['id']}", None)]:
        err = error_of(node.request(method, path, key=reader, json=body), 403)
        assert "databases:write" in err, f"{method} {path}: the 403 must name the scope: {err}"
    for method, path in [("GET", DATABASES), ("GET", f"{DATABASES}/{db['id']}"), ("GET", f"{DATABASES}/engines")]:
        err = error_of(node.request(method, path, key=other), 403)
        assert "databases:read" in err, f"{method} {path}: the 403 must name the scope: {err}"
    err = error_of(node.post(DATABASES, key=other, json={"engine": "postgres"}), 403)
    assert "databases:write" in err, err
    assert node.get(DATABASES, key=None, headers={"Authorization": "Bearer nope"}).status_code == 401
    # The refused calls changed nothing: the password is the same, one database.
    assert [x["id"] for x in list_dbs(node, writer)] == [db["id"]]
    assert get_db(node, db["id"], writer)["password"] == db["password"]


def test_the_databases_quota_is_429_and_listen_public_host_and_ports_come_from_the_config(databases, served):
    # Endpoints on loopback, urls naming "localhost" (a name: clients resolve it).
    n = own_node('listen = "127.0.0.1"\npublic_host = "localhost"\n[quotas]\ndatabases = 1\n')
    try:
        t = databases(n)
        ports = n.db_ports
        key = tenant_key(n)
        first = t.create("postgres", key)
        assert first["host"] == "localhost" and f"@localhost:{first['port']}/" in first["url"], first
        assert first["port"] in ports, f"port {first['port']} outside the configured range"
        ok, text = attempt("postgres", first["url"])
        assert ok, text
        assert not port_refuses("127.0.0.1", first["port"]) and port_refuses(main_ipv4(), first["port"]), \
            "the endpoint does not listen on [databases] listen only"
        engine = "redis" if "redis" in served else "postgres"
        err = error_of(n.post(DATABASES, key=key, json={"engine": engine}), 429)
        assert "database" in err.lower() and "1" in err, f"the 429 must name the quota and its value: {err}"
        assert len(list_dbs(n, key)) == 1
        # Another tenant has its own quota; a delete gives the room back.
        t.create(engine, tenant_key(n))
        assert n.delete(f"{DATABASES}/{first['id']}", key=key).status_code == 204
        again = t.create(engine, key)
        assert again["port"] in ports
    finally:
        databases(n).cleanup()
        n.cleanup()


def test_a_databases_sandbox_volume_and_service_are_not_listed(node, d):
    key = tenant_key(node)
    db = d.create("postgres", key, memory_bytes=192 * MIB)
    assert db["resources"]["memory_bytes"] == 192 * MIB, db
    sid = sandbox_of(pg_server_pid(node, db))
    for k in (key, None):
        assert sid not in {x["id"] for x in node.get("/v1/sandboxes", key=k).json()["sandboxes"]}, \
            "the database's sandbox is listed among sandboxes"
    assert node.get("/v1/sandboxes", key=key).json()["sandboxes"] == []
    r = node.get("/v1/volumes", key=key)
    assert r.status_code == 200 and r.json()["volumes"] == [], f"the database's volume is listed: {r.text}"
    r = node.get("/v1/hosting/services", key=key)
    assert r.status_code == 200 and r.json()["services"] == [], f"the database's service is listed: {r.text}"
    # Its memory is the sandbox's cgroup limit.
    name = "memory.max" if cgroup_v2() else "memory.limit_in_bytes"
    limit = int(cgroup_file(sid, "memory", name).read_text().strip())
    assert limit == 192 * MIB, f"memory limit of the database's sandbox: {limit}"


def test_20_databases_at_once_all_answer(node, served):
    engine = "redis" if "redis" in served else "postgres"
    memory = 64 * MIB if engine == "redis" else 128 * MIB
    keys = [tenant_key(node), tenant_key(node)]  # the default quota is 10 per tenant
    jobs = [keys[i % 2] for i in range(20)]

    def create(key):
        r = node.post(DATABASES, key=key, json={"engine": engine, "memory_bytes": memory}, timeout=300)
        return key, r

    made = []
    try:
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(create, jobs))
        made = [(key, r.json()) for key, r in answers if r.status_code == 201]
        failed = [f"{r.status_code} {r.text}" for _key, r in answers if r.status_code != 201]
        assert not failed, f"{len(failed)} of 20 creates at once failed: {failed[:3]}"
        dbs = [db for _key, db in made]
        assert len({db["port"] for db in dbs}) == 20, "two databases share a port"
        assert all(db["status"] == "available" for db in dbs), [db["status"] for db in dbs]
        values = {db["id"]: "v-" + random_token(10) for db in dbs}

        def use(db):
            write(engine, db["url"], "mine", values[db["id"]])
            return read(engine, db["url"], "mine")

        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            got = list(pool.map(use, dbs))
        assert got == [values[db["id"]] for db in dbs], "a database answered another's value"
        # Each holds its own value only, read again once all were written.
        for db in dbs:
            assert read(engine, db["url"], "mine") == values[db["id"]]
        for key in keys:
            assert len(list_dbs(node, key)) == 10
    finally:
        def delete(item):
            key, db = item
            return node.delete(f"{DATABASES}/{db['id']}", key=key, timeout=120).status_code

        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            statuses = list(pool.map(delete, made))
    assert statuses == [204] * len(made), statuses
    for _key, db in made:
        wait_until(lambda: port_refuses(db["host"], db["port"]), 10, f"port {db['port']} open after delete")


# ---------------------------------------------------------------------------------------------
# the CLI


def test_the_cli_creates_lists_shows_resets_and_removes(node, served):
    env = dict(os.environ, AI2IN_BASE_URL=node.url, AI2IN_API_KEY=tenant_key(node), NO_COLOR="1")

    def cli(*args, ok=True):
        r = subprocess.run([str(binary_path()), *args], capture_output=True, text=True, env=env, timeout=180)
        if ok:
            assert r.returncode == 0, f"ai2in {' '.join(args)} → {r.returncode}: {r.stdout} {r.stderr}"
        return r

    engines = json.loads(cli("db", "engines", "--json").stdout)["engines"]
    assert {e["engine"] for e in engines} == set(served)
    db = json.loads(cli("db", "create", "postgres", "--name", "shop", "--memory", "256MiB", "--json").stdout)
    assert_database_shape(db, "postgres")
    assert db["name"] == "shop" and db["resources"]["memory_bytes"] == 256 * MIB, db
    try:
        url = cli("database", "create", "postgres").stdout.strip()
        assert url.startswith("postgres://u_") and url.endswith("/app"), url
        ok, text = attempt("postgres", url)
        assert ok, text
        listing = cli("db", "ls").stdout
        assert db["id"] in listing and f"{db['host']}:{db['port']}" in listing and "available" in listing, listing
        listed = json.loads(cli("db", "ls", "--json").stdout)["databases"]
        assert [x["id"] for x in listed][0] == db["id"] and len(listed) == 2, listed
        info = cli("db", "info", db["id"]).stdout
        assert db["url"] in info, "info shows the url"
        new_url = cli("db", "reset-password", db["id"]).stdout.strip()
        old, new = urllib.parse.urlsplit(db["url"]), urllib.parse.urlsplit(new_url)
        assert (new.username, new.hostname, new.port, new.path) == (old.username, old.hostname, old.port, old.path) \
            and new.password != old.password, new_url
        assert_refused("postgres", db["url"], "the old password after `ai2in db reset-password`")
        ok, text = attempt("postgres", new_url)
        assert ok, text
        other = next(x["id"] for x in listed if x["id"] != db["id"])
        cli("db", "rm", db["id"], other)
        assert json.loads(cli("db", "ls", "--json").stdout)["databases"] == []
        missing = cli("db", "info", db["id"], ok=False)
        assert missing.returncode == 4, f"info of a deleted database → {missing.returncode} {missing.stderr}"
        bad = cli("db", "create", "oracle", ok=False)
        assert bad.returncode != 0 and "postgres" in bad.stderr, bad
    finally:
        for x in list_dbs(node, env["AI2IN_API_KEY"]):
            node.delete(f"{DATABASES}/{x['id']}", key=env["AI2IN_API_KEY"])

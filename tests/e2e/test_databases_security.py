"""Attacks on databases (issue 15): a database's server runs in a sandbox of its own, reached
only through the node's endpoint, and only with its credentials.

- From inside another tenant's sandbox the database's port answers, but only to its own user
  and password: no password, the engines' built-in users (`postgres`, Redis's `default`), a
  wrong password and the database's user with another password are all refused.
- The database's sandbox is out of reach: not through the sandbox routes (exec, files, expose,
  delete...), nor the hosting routes of the service that runs it, nor the volume routes of
  its volume (all 404, to its own tenant too), nor the proxy's host names (a port of its
  sandbox, the service's URL); other sandboxes cannot connect to its address, and it has no
  egress (seen from the host, in its network namespace).
- Its server runs as an unprivileged uid of the host; SQL and Redis commands cannot read the
  host's files; passwords never reach the node's log.

The ids of the service and volume behind a database are not in the API: the tests read them
from the node's store (`STATE_DIR/ai2in.db`, tables `databases` and `services`), as an
attacker could only guess them. Nothing here can harm the host even if a layer is missing.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from e2e_util import host_uids, pid_alive, proc_status, random_token
from test_databases import (
    DATABASES,
    ENGINES,
    Tracker,
    attempt,
    inside,
    psql,
    redis_cli,
    require_engine,
    said,
    sandbox_of,
    server_pid,
    tenant_key,
    with_password,
)
from test_network import Outside
from test_security import host_secrets  # noqa: F401 - a fixture of these tests too
from test_storage import error_of


@pytest.fixture(scope="module")
def served(node) -> dict[str, dict]:
    r = node.get(f"{DATABASES}/engines")
    assert r.status_code == 200, r.text
    return {e["engine"]: e for e in r.json()["engines"]}


@pytest.fixture(scope="module")
def victims(node, served):
    """One database per served engine of a victim tenant: {engine: (database, key)}."""
    key = tenant_key(node)
    t = Tracker(node)
    try:
        yield {engine: (t.create(engine, key), key) for engine in ENGINES if engine in served}
    finally:
        t.cleanup()


@pytest.fixture(scope="module")
def attacker(node):
    """A sandbox of another tenant (host image: psql and redis-cli are there): (id, key)."""
    key = tenant_key(node)
    sbx = node.create_sandbox(key=key, timeout_ms=1_800_000)
    yield sbx["id"], key
    node.delete(f"/v1/sandboxes/{sbx['id']}", key=key)


def victim(victims, engine: str):
    if engine not in victims:
        require_engine({}, engine)
    return victims[engine]


def stored(node, db: dict) -> dict:
    """The database's row of the node's store, with its service's `instance` (sandbox)."""
    conn = sqlite3.connect(f"file:{Path(node.state_dir, 'ai2in.db')}?mode=ro", uri=True, timeout=10)
    try:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT d.service_id, d.volume_id, s.instance FROM databases d "
                           "LEFT JOIN services s ON s.id = d.service_id WHERE d.id = ?", (db["id"],)).fetchone()
    finally:
        conn.close()
    assert row is not None, f"database {db['id']} is not in the node's store"
    return dict(row)


def in_sandbox(node, sid: str, cmd: str, key, **env) -> str:
    res = node.sh(sid, cmd, key=key, env=env, timeout_ms=60_000)
    return res["stdout"] + res["stderr"] + (res.get("error") or "")


# ---------------------------------------------------------------------------------------------
# the port: only with credentials


def test_from_another_tenants_sandbox_postgres_answers_only_to_its_user_and_password(node, victims, attacker):
    db, _key = victim(victims, "postgres")
    sid, key = attacker
    host, port = db["host"], db["port"]
    # Control: with the url, it answers from there (the port is reachable).
    res = inside(node, sid, "postgres", db["url"], "select 'reached ' || current_user", key)
    assert res["exit_code"] == 0 and res["stdout"].strip() == f"reached {db['username']}", res
    attempts = {
        "its user, no password": f"postgres://{db['username']}@{host}:{port}/{db['name']}",
        "superuser postgres, no password": f"postgres://postgres@{host}:{port}/postgres",
        "superuser postgres, its password": f"postgres://postgres:{db['password']}@{host}:{port}/postgres",
        "superuser postgres, empty password": f"postgres://postgres:@{host}:{port}/template1",
        "its user, a guessed password": with_password(db["url"], "password"),
        "its user, an empty password": with_password(db["url"], ""),
    }
    for what, url in attempts.items():
        out = in_sandbox(node, sid, 'psql -X -w -At -c "select 1" "$URL" 2>&1; echo "exit=$?"', key,
                         URL=url, PGCONNECT_TIMEOUT="10")
        assert "exit=0" not in out, f"{what}: logged in from another tenant's sandbox: {out}"
        assert re.search(r"password authentication failed|no password supplied", out), \
            f"{what}: refused for another reason than the password: {out}"
    # The same from the host.
    for what, url in attempts.items():
        ok, text = attempt("postgres", url)
        assert not ok, f"{what}: logged in from the host: {text}"


def test_from_another_tenants_sandbox_redis_answers_only_to_its_user_and_password(node, victims, attacker):
    db, _key = victim(victims, "redis")
    sid, key = attacker
    res = inside(node, sid, "redis", db["url"], "PING", key)
    assert res["stdout"].strip() == "PONG", f"control: the url from another tenant's sandbox: {res}"
    host, port = db["host"], str(db["port"])
    attempts = {
        "no credentials": ["-h", host, "-p", port],
        "the default user, no password": ["-h", host, "-p", port, "--user", "default", "--pass", ""],
        "the default user, its password": ["-h", host, "-p", port, "--user", "default", "--pass", db["password"]],
        "requirepass style, its password": ["-h", host, "-p", port, "-a", db["password"]],
        "its user, a guessed password": ["-h", host, "-p", port, "--user", db["username"], "--pass", "password"],
    }
    for what, args in attempts.items():
        quoted = " ".join(f"'{a}'" for a in args)
        out = in_sandbox(node, sid, f"redis-cli --no-auth-warning {quoted} PING; "
                                    f"redis-cli --no-auth-warning {quoted} KEYS '*'", key)
        assert "PONG" not in out, f"{what}: answered from another tenant's sandbox: {out}"
        assert re.search(r"NOAUTH|WRONGPASS", out), f"{what}: refused for another reason: {out}"
        r = subprocess.run(["redis-cli", "--no-auth-warning", *args, "PING"], capture_output=True, text=True,
                           timeout=30, stdin=subprocess.DEVNULL)
        assert "PONG" not in r.stdout, f"{what}: answered from the host: {said(r)}"
    # AUTH after connecting does not help either.
    out = in_sandbox(node, sid, f"printf 'AUTH default x\\nAUTH {db['username']} x\\nPING\\n' | "
                                f"redis-cli -h {host} -p {port}", key)
    assert "PONG" not in out and "NOAUTH" in out, out


# ---------------------------------------------------------------------------------------------
# the database's sandbox, service and volume: out of reach


@pytest.mark.parametrize("engine", ENGINES)
def test_the_databases_sandbox_service_and_volume_are_not_reachable_through_their_routes(node, victims, engine):
    db, owner = victim(victims, engine)
    ids = stored(node, db)
    sid = sandbox_of(server_pid(node, db))
    assert sid and ids["instance"] in (None, sid), (sid, ids)
    svc, vol = ids["service_id"], ids["volume_id"]
    inner = 5432 if engine == "postgres" else 6379
    other = tenant_key(node)
    calls = [
        ("GET", f"/v1/sandboxes/{sid}", None),
        ("POST", f"/v1/sandboxes/{sid}/shell", {"cmd": "id"}),
        ("POST", f"/v1/sandboxes/{sid}/fs/read", {"path": "/etc/hostname"}),
        ("POST", f"/v1/sandboxes/{sid}/fs/write", {"path": "/tmp/pwned", "content": "x"}),
        ("POST", f"/v1/sandboxes/{sid}/run", {"code": "1"}),
        ("POST", f"/v1/sandboxes/{sid}/expose", {"port": inner}),
        ("GET", f"/v1/sandboxes/{sid}/metrics", None),
        ("POST", f"/v1/sandboxes/{sid}/pause", None),
        ("POST", f"/v1/sandboxes/{sid}/timeout", {"timeout_ms": 1000}),
        ("POST", f"/v1/sandboxes/{sid}/snapshot", {}),
        ("DELETE", f"/v1/sandboxes/{sid}", None),
        ("GET", f"/v1/hosting/services/{svc}", None),
        ("POST", f"/v1/hosting/services/{svc}/logs", {}),
        ("POST", f"/v1/hosting/services/{svc}/redeploy", {"start_cmd": "exec sleep 1000"}),
        ("POST", f"/v1/hosting/services/{svc}/stop", None),
        ("DELETE", f"/v1/hosting/services/{svc}", None),
        ("GET", f"/v1/volumes/{vol}", None),
        ("DELETE", f"/v1/volumes/{vol}", None),
    ]
    for who, key in (("its own tenant", owner), ("another tenant", other), ("the admin's tenant", None)):
        for method, path, body in calls:
            r = node.request(method, path, key=key, json=body, timeout=60)
            assert r.status_code == 404, \
                f"{who}: {method} {path} → {r.status_code} {r.text[:300]} (the database's own: want 404)"
            assert db["password"] not in r.text
    # Mounting its volume in a sandbox, read-only or not, is refused alike.
    for read_only in (True, False):
        r = node.post("/v1/sandboxes", key=owner, json={"volumes": [{"volume_id": vol, "path": "/steal",
                                                                      "read_only": read_only}]})
        assert r.status_code == 404, f"a sandbox mounting the database's volume → {r.status_code} {r.text}"
    # After all that the database is whole and serves.
    got = node.get(f"{DATABASES}/{db['id']}", key=owner).json()
    assert got["status"] == "available", got
    ok, text = attempt(engine, db["url"])
    assert ok, text
    assert sandbox_of(server_pid(node, db)) == sid, "the calls replaced the database's server"


@pytest.mark.parametrize("engine", ENGINES)
def test_the_databases_port_is_not_reachable_through_the_proxys_host_names(node, victims, engine):
    db, owner = victim(victims, engine)
    ids = stored(node, db)
    sid = sandbox_of(server_pid(node, db))
    inner = 5432 if engine == "postgres" else 6379
    svc = ids["service_id"]
    hosts = [f"{inner}-{sid[4:]}.localhost:{node.port}", f"{inner}-{sid}.localhost", f"{db['port']}-{sid[4:]}.localhost",
             f"{inner}-{sid[4:]}.LOCALHOST", f"{svc}-{svc[4:]}.localhost:{node.port}", f"{svc}.localhost",
             f"{db['id']}.localhost", f"{inner}-{db['id'][3:]}.localhost", f"{svc.replace('_', '-')}-{svc[4:]}.localhost"]
    for host in hosts:
        r = requests.get(node.url + "/", headers={"Host": host}, timeout=30)
        assert r.status_code == 404, f"Host {host} → {r.status_code} {r.text[:300]} (want 404: nothing is exposed)"
    # And exposing a port of its sandbox is refused to its tenant (404: not its sandbox).
    error_of(node.post(f"/v1/sandboxes/{sid}/expose", key=owner, json={"port": inner}), 404)
    r = requests.get(node.url + "/", headers={"Host": hosts[0]}, timeout=30)
    assert r.status_code == 404, r.text


@pytest.fixture
def outside():
    o = Outside()
    yield o
    o.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_the_databases_sandbox_has_no_egress_and_takes_no_connection_from_sandboxes(node, victims, attacker,
                                                                                     outside, engine):
    db, owner = victim(victims, engine)
    server = server_pid(node, db)
    inner = 5432 if engine == "postgres" else 6379
    sid, key = attacker

    def from_its_netns(host, port) -> str:
        return subprocess.run(["nsenter", "-t", str(server), "-n", sys.executable, "-c", probe(host, port)],
                              capture_output=True, text=True, timeout=30).stdout.strip()

    # Its network namespace, seen from the host: its server listens there (the control) ...
    assert from_its_netns("127.0.0.1", inner) == "connected"
    # ... and nothing leaves it, where a sandbox with egress reaches.
    out = from_its_netns(outside.ip, 8080)
    assert out.startswith("ERROR"), f"the database's sandbox reached the outside ({outside.ip}:8080): {out}"
    control = node.sh(sid, "python3 -", key=key, stdin=probe(outside.ip, 8080))["stdout"].strip()
    assert control == "connected", f"control: a sandbox does not reach the outside: {control}"
    # Straight to its address from another tenant's sandbox, and from its own tenant's: refused.
    addrs = subprocess.run(["nsenter", "-t", str(server), "-n", "ip", "-4", "-o", "addr", "show", "scope", "global"],
                           capture_output=True, text=True).stdout
    own = node.create_sandbox(key=owner)
    try:
        for addr in re.findall(r"inet (\S+)/", addrs):
            for who, (s, k) in (("another tenant", attacker), ("its own tenant", (own["id"], owner))):
                r = node.sh(s, "python3 -", key=k, stdin=probe(addr, inner))
                assert r["stdout"].strip().startswith("ERROR"), \
                    f"{who}'s sandbox connected to the database's sandbox at {addr}:{inner}: {r}"
    finally:
        node.delete(f"/v1/sandboxes/{own['id']}", key=owner)


def probe(host: str, port: int) -> str:
    """Python that connects to host:port and prints `connected` or `ERROR …`."""
    return ("import socket\n"
            "try:\n"
            f"    socket.create_connection(({host!r}, {port}), 3).close(); print('connected')\n"
            "except Exception as e:\n"
            "    print('ERROR', repr(e))\n")


# ---------------------------------------------------------------------------------------------
# the server's privileges


@pytest.mark.parametrize("engine", ENGINES)
def test_the_server_runs_as_an_unprivileged_uid_of_the_host(node, victims, engine):
    db, _owner = victim(victims, engine)
    server = server_pid(node, db)
    uids = host_uids(server)
    assert 0 not in uids, f"the {engine} server runs as host uid {uids}"
    gids = [int(x) for x in proc_status(server)["Gid"].split()]
    assert 0 not in gids, f"the {engine} server runs with host gid {gids}"
    caps = int(proc_status(server)["CapEff"], 16)
    assert caps == 0, f"the {engine} server has capabilities {caps:#x}"
    # It is not the sandbox's PID 1, and it is inside a pid namespace of its own.
    nspid = proc_status(server)["NSpid"].split()
    assert len(nspid) >= 2 and nspid[-1] != "1", nspid


def test_sql_cannot_read_host_files_or_run_programs(node, victims, host_secrets):  # noqa: F811
    db, _owner = victim(victims, "postgres")
    for path, secret in host_secrets.items():
        for sql in (f"select pg_read_file('{path}')",
                    f"create temp table stolen (line text); copy stolen from '{path}'; select * from stolen",
                    f"create temp table ran (line text); copy ran from program 'cat {path}'; select * from ran",
                    f"select lo_import('{path}')"):
            r = psql(db["url"], sql)
            assert secret not in r.stdout + r.stderr, f"{sql} read the host's {path}: {said(r)}"
            assert r.returncode != 0, f"{sql} worked: {said(r)}"
    # The user is no superuser, and cannot make itself one.
    r = psql(db["url"], "select rolsuper from pg_roles where rolname = current_user")
    assert r.returncode == 0 and r.stdout.strip() == "f", said(r)
    r = psql(db["url"], "alter role current_user superuser")
    assert r.returncode != 0, said(r)


def test_redis_commands_cannot_reach_the_host_or_leave_the_server(node, victims, host_secrets):  # noqa: F811
    db, _owner = victim(victims, "redis")
    name = f"ai2in-pwn-{random_token(8)}.rdb"
    for args in (["CONFIG", "SET", "dir", "/root"], ["CONFIG", "SET", "dbfilename", f"../../../../root/{name}"],
                 ["MODULE", "LOAD", "/usr/lib/x86_64-linux-gnu/libc.so.6"],
                 ["EVAL", "return io.open('/etc/passwd'):read('*a')", "0"],
                 ["EVAL", "return os.execute('id')", "0"]):
        r = redis_cli(db["url"], *args)
        out = said(r)
        assert re.search(r"ERR|NOPERM|protected|not allowed|can't|Script attempted", out, re.I), \
            f"{' '.join(args)} worked: {out}"
    r = redis_cli(db["url"], "SAVE")
    for root in ("/", "/root", "/tmp"):
        assert not Path(root, name).exists(), f"a redis SAVE wrote {root}/{name} on the host"
    for secret in host_secrets.values():
        assert secret not in said(r)
    ok, text = attempt("redis", db["url"])
    assert ok, text


def test_passwords_never_reach_the_nodes_log(node, victims):
    seen = []
    for engine, (db, key) in victims.items():
        seen.append(db["password"])
        r = node.post(f"{DATABASES}/{db['id']}/reset_password", key=key)
        assert r.status_code == 200, r.text
        new = r.json()
        seen.append(new["password"])
        db.update(new)  # the fixture's database now has the new password
        ok, text = attempt(engine, new["url"])
        assert ok, text
    log = Path(node.log_path).read_text(errors="replace")
    for password in seen:
        assert password not in log, "a database's password is in the node's log"
    # Nor are they on any host process's command line now.
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and pid_alive(int(entry.name)):
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            for password in seen:
                assert password not in cmdline, f"a password is on the command line of host pid {entry.name}"


def test_a_database_the_attacker_deleted_nothing_of(node, victims):
    # The last check of the module: every victim database is still there and serves.
    for engine, (db, key) in victims.items():
        got = node.get(f"{DATABASES}/{db['id']}", key=key)
        assert got.status_code == 200 and got.json()["status"] == "available", got.text
        ok, text = attempt(engine, got.json()["url"])
        assert ok, text

"""Attacks on databases (issue 15): a database's server runs in a sandbox of its own, reached
only through the node's endpoint, and only with its credentials.

- From inside another tenant's sandbox the database's port answers, but only to its own user
  and password: no password, the engines' built-in users (`postgres`, MariaDB's `root`,
  `mysql` and `mariadb.sys`, Redis's `default`), a wrong password and the database's user with
  another password are all refused.
- The database's sandbox is out of reach: not through the sandbox routes (exec, files, expose,
  delete...), nor the hosting routes of the service that runs it, nor the volume routes of
  its volume (all 404, to its own tenant too), nor the proxy's host names (a port of its
  sandbox, the service's URL); other sandboxes cannot connect to its address, and it has no
  egress (seen from the host, in its network namespace).
- Its server runs as an unprivileged uid of the host; SQL and Redis commands cannot read the
  host's files (a MariaDB user has no FILE privilege, sees and makes no other database);
  passwords never reach the node's log, nor the servers' logs the node keeps.

The ids of the service and volume behind a database are not in the API: the tests read them
from the node's store (`STATE_DIR/ai2in.db`, tables `databases` and `services`), as an
attacker could only guess them. Nothing here can harm the host even if a layer is missing.
"""

from __future__ import annotations

import os
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
    MARIADB_OPTS,
    MYSQL_DENIED,
    Tracker,
    attempt,
    inside,
    mysql,
    mysql_parts,
    psql,
    redis_cli,
    require_engine,
    said,
    sandbox_of,
    server_pid,
    tenant_key,
    with_credentials,
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


#: The port each engine's server listens on in its sandbox.
INNER_PORT = {"postgres": 5432, "mysql": 3306, "redis": 6379}


@pytest.fixture(scope="module")
def attacker(node):
    """A sandbox of another tenant (host image: psql, mariadb and redis-cli are there): (id, key)."""
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


def test_from_another_tenants_sandbox_mysql_answers_only_to_its_user_and_password(node, victims, attacker):
    db, _key = victim(victims, "mysql")
    sid, key = attacker
    # Control: with the url, it answers from there (the port is reachable).
    res = inside(node, sid, "mysql", db["url"], "select concat('reached ', current_user())", key)
    assert res["exit_code"] == 0 and res["stdout"].strip() == f"reached {db['username']}@%", res
    # The attacker's own mysql database: its user and password are no key to the victim's.
    t = Tracker(node)
    try:
        own = t.create("mysql", key)
        p = mysql_parts(db["url"])
        attempts = {  # what: (user, password or None: no password at all)
            "its user, no password": (p["user"], None),
            "its user, an empty password": (p["user"], ""),
            "its user, a guessed password": (p["user"], "password"),
            "its user, the attacker's database's password": (p["user"], own["password"]),
            "the attacker's database's user and password": (own["username"], own["password"]),
            "root, no password": ("root", None),
            "root, an empty password": ("root", ""),
            "root, its password": ("root", db["password"]),
            "mysql, no password": ("mysql", None),
            "mariadb.sys, no password": ("mariadb.sys", None),
            "mariadb.sys, its password": ("mariadb.sys", db["password"]),
        }
        for what, (user, password) in attempts.items():
            env = {"H": p["host"], "P": p["port"], "U": user}
            if password is not None:
                env["MYSQL_PWD"] = password
            for database in (p["database"], "mysql", ""):
                out = in_sandbox(node, sid, f'mariadb {MARIADB_OPTS} -h "$H" -P "$P" -u "$U" -N -B '
                                            f'-e "select 1" {database} 2>&1; echo "exit=$?"', key, **env)
                assert "exit=0" not in out, f"{what}: logged in from another tenant's sandbox ({database!r}): {out}"
                assert re.search(MYSQL_DENIED, out), f"{what}: refused for another reason than the password: {out}"
            # The same from the host.
            url = f"mysql://{user}{'' if password is None else ':' + password}@{p['host']}:{p['port']}/{p['database']}"
            r = mysql(url, "select 1")
            assert r.returncode != 0 and re.search(MYSQL_DENIED, said(r)), f"{what}: from the host: {said(r)}"
        # Its own url still opens the attacker's database only (the control of the attempts).
        ok, text = attempt("mysql", own["url"])
        assert ok, text
        ok, text = attempt("mysql", with_credentials(db["url"], own["url"]))
        assert not ok, text
    finally:
        t.cleanup()


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
    inner = INNER_PORT[engine]
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
    inner = INNER_PORT[engine]
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
    inner = INNER_PORT[engine]
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


def test_mysql_cannot_read_or_write_files_nor_reach_other_databases(node, victims, host_secrets):  # noqa: F811
    db, _owner = victim(victims, "mysql")
    url, name = db["url"], db["name"]
    mark = f"ai2in-pwn-{random_token(8)}"
    r = mysql(url, "create table if not exists stolen (line text)")
    assert r.returncode == 0, said(r)
    for path, secret in host_secrets.items():
        # No FILE privilege: load_file is NULL, LOAD DATA INFILE (read by the server) refused.
        r = mysql(url, f"select load_file('{path}') is null, load_file('/etc/passwd') is null")
        assert r.returncode == 0 and r.stdout.split() == ["1", "1"], f"load_file read a file: {said(r)}"
        r = mysql(url, f"load data infile '{path}' into table stolen; select * from stolen")
        assert r.returncode != 0 and re.search(r"denied|FILE privilege", said(r)), f"LOAD DATA INFILE {path}: {said(r)}"
        assert secret not in said(r), said(r)
    # Nor does it write files (the server's own /tmp, the host's /tmp, the volume).
    for target in (f"/tmp/{mark}", f"/data/mysql/{mark}", f"/root/{mark}"):
        for sql in (f"select 'x' into outfile '{target}'", f"select 'x' into dumpfile '{target}.d'"):
            r = mysql(url, sql)
            assert r.returncode != 0 and re.search(r"FILE privilege|denied", said(r)), f"{sql}: {said(r)}"
    for root in ("/tmp", "/root"):
        assert not list(Path(root).glob(f"{mark}*")), f"SELECT … INTO OUTFILE wrote {root}/{mark} on the host"
    r = mysql(url, "select count(*) from stolen")
    assert r.returncode == 0 and r.stdout.strip() == "0", f"rows were loaded from files: {said(r)}"
    # It sees its database and information_schema only, and is granted nothing beyond it.
    r = mysql(url, "show databases")
    assert r.returncode == 0 and sorted(r.stdout.split()) == sorted(["information_schema", name]), said(r)
    r = mysql(url, "show grants")
    assert r.returncode == 0, said(r)
    grants = r.stdout.splitlines()
    assert len(grants) == 2 and grants[0].startswith("GRANT USAGE ON *.* TO") and \
        grants[1].startswith(f"GRANT ALL PRIVILEGES ON `{name}`.* TO"), f"the user's grants: {grants}"
    # And cannot give itself more: users, grants, plugins, server settings, other schemas.
    for sql in ("grant all privileges on *.* to current_user()", "create user 'evil'@'%' identified by 'x'",
                "create database other", "select * from mysql.user", "select * from mysql.global_priv",
                "install soname 'ha_connect'", "set global general_log_file = '/tmp/evil.log'",
                "set global local_infile = 1", "shutdown", "kill connection 1",
                "create table evil (a text) engine=CONNECT table_type=DOS file_name='/etc/passwd'"):
        r = mysql(url, sql)
        assert r.returncode != 0, f"{sql} worked: {said(r)}"
        assert re.search(r"denied|privilege|Unknown storage engine|Unknown thread id|not owner", said(r)), f"{sql}: {said(r)}"
    ok, text = attempt("mysql", url)
    assert ok, text
    mysql(url, "drop table if exists stolen")


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


@pytest.mark.parametrize("engine", ["postgres", "mysql"])
def test_the_tls_key_shared_by_all_databases_is_not_in_a_servers_environment(node, victims, engine):
    # Every database presents the node's certificate: its key must stay out of what a
    # server's processes carry (their environment is what a compromised server reads first).
    db, _owner = victim(victims, engine)
    key = Path(node.state_dir, "tls", "databases.key").read_text()
    secret = "".join(key.strip().splitlines()[1:-1])
    server = server_pid(node, db)
    pids = [server] + [int(p) for p in Path(f"/proc/{server}/task/{server}/children").read_text().split()]
    for pid in pids:
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError):
            continue
        assert "DB_TLS_KEY" not in env and secret[:40] not in env.replace("\n", ""), \
            f"the TLS key is in the environment of {engine}'s process {pid}"
    # The file the server reads is its user's alone (seen through the server's own root).
    info = os.stat(f"/proc/{server}/root/tmp/tls/server.key")
    assert info.st_mode & 0o077 == 0, f"the key file's mode is {oct(info.st_mode)}"
    assert info.st_uid == os.stat(f"/proc/{server}").st_uid, "the key file is not the server's user's"


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
    # Nor in what the node keeps of the servers' output (their services' logs).
    conn = sqlite3.connect(f"file:{Path(node.state_dir, 'ai2in.db')}?mode=ro", uri=True, timeout=10)
    try:
        lines = [line for (line,) in conn.execute("SELECT line FROM service_logs")]
    finally:
        conn.close()
    for password in seen:
        assert not [line for line in lines if password in line], "a database's password is in its server's log"
    # MariaDB's init file (the user and its first password) is gone once the server serves.
    if "mysql" in victims:
        server = server_pid(node, victims["mysql"][0])
        r = subprocess.run(["nsenter", "-t", str(server), "-m", "sh", "-c", "ls -a /tmp; cat /tmp/init.sql"],
                           capture_output=True, text=True, timeout=30)
        assert "mysqld.sock" in r.stdout, f"control: not the server's /tmp: {r.stdout} {r.stderr}"
        assert "init.sql" not in r.stdout and not any(p in r.stdout for p in seen), \
            f"the mysql server's init file is left in its /tmp: {r.stdout}"
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

#!/usr/bin/env python3
"""Databases benchmark: what a database of the node costs over the same server run by hand on
the host, side by side with baselines measured in the same run.

- create → accepting connections (p50, p95): from the POST until a client's first query
  through the url succeeds (psycopg for PostgreSQL, AUTH + PING on a socket for Redis,
  retried every millisecond), each database deleted (untimed) before the next; one untimed
  create first (a node's first PostgreSQL or MySQL create also makes its template). Baselines,
  as an unprivileged user (`nobody`) on the host: `initdb` + `pg_ctl start -w` until the same
  first query succeeds; `mariadb-install-db` + `mariadbd` until PyMySQL's first query does;
  `redis-server` started until PING answers PONG;
- pgbench -S (select-only, scale 5, 10 s) through the url against a PostgreSQL server started
  on the host with the same settings (shared_buffers, max_connections, scram-sha-256 over
  TCP), with 1 and 4 clients; the database's server may use all the host's cores
  (`[defaults] cpu`), as the host's does;
- redis-benchmark -t get,set through the url against a redis-server started on the host;
- mysqlslap (auto-generated reads, 1 and 4 clients: the path, as pgbench -S) through the url against a MariaDB
  server started on the host with the same settings;
- connect latency: a psycopg connect + `select 1` + close, through the url against the
  host's server;
- idle host memory per database: the drop of MemAvailable over 10 PostgreSQL (then 10
  Redis) databases left idle, with their sandboxes' cgroup memory, against 10 servers of the
  same engine started by hand on the host;
- engines from an image (`[databases.ENGINE] image`): a second node serves PostgreSQL 17,
  MariaDB 11.8 and Redis 8.0 from the e2e suite's `engines` image (Debian trixie, pushed to a
  local registry): the node's start → the engines listed (pull + probe), the first create of
  each (its template made in a sandbox of the image), and create → first query against the
  same creates from the host's packages (above, same run).

Usage: sudo benches/databases.py [--creates N] [--seconds S] [--idle N]
Builds the release binary unless AI2IN_BIN is set. Installs postgresql, mariadb-server,
redis-server and redis-tools with apt-get and psycopg and PyMySQL with pip when missing.
"""
import argparse
import glob
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse

from harness import (REPO, Node, cgroup_memory, ensure_tool, free_port, machine, mem_available, percentile,
                     release_binary, report)

DATABASES = "/v1/databases"
MIB = 1 << 20
USER = "nobody"


def call(node, method, path, body=None, timeout=600):
    """`node.call`, with the answer's body in the error when it fails."""
    try:
        return node.call(method, path, body, timeout=timeout)
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{method} {path} → {e.code} {e.read().decode(errors='replace')}") from None


def psycopg():
    try:
        import psycopg as module
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "psycopg[binary]"], check=True)
        import psycopg as module
    return module


# ---------------------------------------------------------------------------------------------
# first queries, retried until they succeed


def pg_first_query(url, deadline_s=60):
    pg = psycopg()
    deadline = time.perf_counter() + deadline_s
    while True:
        try:
            with pg.connect(url, connect_timeout=5) as conn:
                conn.execute("select 1").fetchone()
            return
        except pg.OperationalError:
            if time.perf_counter() > deadline:
                raise
            time.sleep(0.001)


def pymysql():
    try:
        import pymysql as module
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "PyMySQL"], check=True)
        import pymysql as module
    return module


def my_first_query(url, deadline_s=60):
    my = pymysql()
    u = urllib.parse.urlsplit(url)
    deadline = time.perf_counter() + deadline_s
    while True:
        try:
            conn = my.connect(host=u.hostname, port=u.port, user=u.username, password=u.password,
                              database=u.path.lstrip("/"), connect_timeout=5)
            with conn.cursor() as cur:
                cur.execute("select 1")
            conn.close()
            return
        except my.err.OperationalError:
            if time.perf_counter() > deadline:
                raise
            time.sleep(0.001)


def resp(*args):
    return b"".join([f"*{len(args)}\r\n".encode()] +
                    [f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args])


def redis_ping(host, port, user=None, password=None):
    """True once the server answers PONG (after AUTH when given)."""
    try:
        with socket.create_connection((host, port), timeout=5) as s:
            f = s.makefile("rb")
            if password is not None:
                s.sendall(resp("AUTH", user, password) if user else resp("AUTH", password))
                if f.readline().strip() != b"+OK":
                    return False
            s.sendall(resp("PING"))
            return f.readline().strip() == b"+PONG"
    except OSError:
        return False


def redis_first_query(url, deadline_s=60):
    u = urllib.parse.urlsplit(url)
    deadline = time.perf_counter() + deadline_s
    while not redis_ping(u.hostname, u.port, u.username, u.password):
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{u.hostname}:{u.port} never answered PONG")
        time.sleep(0.001)


def first_query(engine, url):
    {"postgres": pg_first_query, "mysql": my_first_query, "redis": redis_first_query}[engine](url)


# ---------------------------------------------------------------------------------------------
# servers started by hand on the host, as an unprivileged user


def as_user(argv, **kw):
    kw.setdefault("cwd", "/")
    return subprocess.run(["runuser", "-u", USER, "--", *argv], check=True, capture_output=True, text=True, **kw)


class HostPostgres:
    """initdb + pg_ctl start -w in a fresh directory, as `nobody`, listening on 127.0.0.1 with
    scram-sha-256 over TCP (a role `bench` with a password) and the node's settings for
    `memory_bytes`."""

    def __init__(self, version, memory_bytes=256 * MIB):
        self.bin = f"/usr/lib/postgresql/{version}/bin"
        self.dir = tempfile.mkdtemp(prefix="ai2in-bench-pg-")
        os.chmod(self.dir, 0o755)
        shutil.chown(self.dir, USER)
        self.data, self.port = os.path.join(self.dir, "data"), free_port()
        self.memory_bytes = memory_bytes
        self.password = "".join(random.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(32))
        self.url = f"postgres://bench:{self.password}@127.0.0.1:{self.port}/bench"

    def initdb(self):
        as_user([f"{self.bin}/initdb", "-D", self.data, "-U", "postgres", "--auth-local=trust",
                 "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "-N"])

    def start(self):
        buffers_kb = max(self.memory_bytes // 4 // 1024, 1024)
        connections = min(max(self.memory_bytes >> 20, 20), 200)
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c shared_buffers={buffers_kb}kB "
                   f"-c max_connections={connections}")
        as_user([f"{self.bin}/pg_ctl", "-D", self.data, "-o", options, "-l", os.path.join(self.dir, "log"),
                 "-w", "start"])

    def make_user(self):
        sql = f"CREATE ROLE bench LOGIN PASSWORD '{self.password}'; CREATE DATABASE bench OWNER bench;"
        for statement in sql.split("; "):
            as_user([f"{self.bin}/psql", "-X", "-q", "-h", self.dir, "-p", str(self.port), "-U", "postgres",
                     "-d", "postgres", "-c", statement])

    def stop(self):
        subprocess.run(["runuser", "-u", USER, "--", f"{self.bin}/pg_ctl", "-D", self.data, "-m", "immediate",
                        "stop"], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


class HostRedis:
    """redis-server as `nobody` on 127.0.0.1, with the node's settings (append-only file, no
    RDB snapshots) and an ACL user."""

    def __init__(self, memory_bytes=256 * MIB):
        self.dir = tempfile.mkdtemp(prefix="ai2in-bench-redis-")
        shutil.chown(self.dir, USER)
        self.port, self.memory_bytes = free_port(), memory_bytes
        self.password = "".join(random.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(32))
        self.url = f"redis://bench:{self.password}@127.0.0.1:{self.port}/0"
        acl = os.path.join(self.dir, "users.acl")
        with open(acl, "w") as f:
            f.write(f"user default off\nuser bench on >{self.password} ~* &* +@all\n")
        shutil.chown(acl, USER)
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            ["runuser", "-u", USER, "--", "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", self.dir, "--aclfile", os.path.join(self.dir, "users.acl"), "--appendonly", "yes",
             "--save", "", "--maxmemory", str(self.memory_bytes // 4 * 3), "--maxmemory-policy", "noeviction"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class HostMariadb:
    """mariadb-install-db + mariadbd in a fresh directory, as `nobody`, on 127.0.0.1, with the
    node's settings for `memory_bytes` and a user `bench` with a password and a database."""

    def __init__(self, memory_bytes=256 * MIB):
        self.dir = tempfile.mkdtemp(prefix="ai2in-bench-my-")
        os.chmod(self.dir, 0o755)
        shutil.chown(self.dir, USER)
        self.data, self.port, self.memory_bytes = os.path.join(self.dir, "data"), free_port(), memory_bytes
        self.password = "".join(random.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(32))
        self.url = f"mysql://bench:{self.password}@127.0.0.1:{self.port}/bench"
        self.base = ["--no-defaults", "--skip-name-resolve", "--performance-schema=0",
                     "--innodb-buffer-pool-load-at-startup=0", "--innodb-buffer-pool-dump-at-shutdown=0",
                     "--innodb-log-file-size=16M"]
        self.proc = None

    def initdb(self):
        as_user(["mariadb-install-db", *self.base, f"--datadir={self.data}", "--auth-root-authentication-method=socket",
                 "--skip-test-db"])

    def start(self):
        init = os.path.join(self.dir, "init.sql")
        with open(init, "w") as f:
            f.write(f"CREATE DATABASE IF NOT EXISTS bench;\nCREATE USER IF NOT EXISTS 'bench'@'%' IDENTIFIED BY "
                    f"'{self.password}';\nGRANT ALL ON bench.* TO 'bench'@'%';\n")
        shutil.chown(init, USER)
        pool_mb = (self.memory_bytes >> 20) // 4
        connections = min(max(self.memory_bytes >> 20, 20), 200)
        self.proc = subprocess.Popen(
            ["runuser", "-u", USER, "--", "/usr/sbin/mariadbd", *self.base, f"--datadir={self.data}",
             f"--port={self.port}", "--bind-address=127.0.0.1", f"--socket={self.dir}/sock",
             f"--pid-file={self.dir}/pid", f"--tmpdir={self.dir}", f"--innodb-buffer-pool-size={pool_mb}M",
             f"--max-connections={connections}", f"--init-file={init}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")

    def stop(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def host_my_start(runs):
    """mariadb-install-db + mariadbd + the first query, `runs` times (one untimed first)."""
    out = []
    for i in range(runs + 1):
        server = HostMariadb()
        try:
            t = time.perf_counter()
            server.initdb()
            server.start()
            my_first_query(server.url)
            if i:
                out.append((time.perf_counter() - t) * 1000)
        finally:
            server.stop()
    return out


def host_pg_start(version, runs):
    """initdb + pg_ctl start -w + the first query, `runs` times (one untimed first)."""
    out = []
    for i in range(runs + 1):
        server = HostPostgres(version)
        try:
            t = time.perf_counter()
            server.initdb()
            server.start()
            pg_first_query(f"postgres://postgres@127.0.0.1:{server.port}/postgres?host={server.dir}")
            if i:
                out.append((time.perf_counter() - t) * 1000)
        finally:
            server.stop()
    return out


def host_redis_start(runs):
    """redis-server's start until PONG, `runs` times (one untimed first)."""
    out = []
    for i in range(runs + 1):
        server = HostRedis()
        try:
            t = time.perf_counter()
            server.start()
            redis_first_query(server.url)
            if i:
                out.append((time.perf_counter() - t) * 1000)
        finally:
            server.stop()
    return out


# ---------------------------------------------------------------------------------------------
# the node's databases


def create(node, engine, **body):
    return call(node, "POST", DATABASES, {"engine": engine, **body})


def delete(node, db):
    call(node, "DELETE", f"{DATABASES}/{db['id']}")


def create_to_first_query(node, engine, runs):
    out, answered = [], []
    for i in range(runs + 1):
        t = time.perf_counter()
        db = create(node, engine)
        answered.append((time.perf_counter() - t) * 1000)
        first_query(engine, db["url"])
        if i:
            out.append((time.perf_counter() - t) * 1000)
        delete(node, db)
    return out, answered[1:]


def pgbench_tps(url, clients, seconds):
    out = subprocess.run(["pgbench", "-S", "-n", "-T", str(seconds), "-c", str(clients), "-j", str(min(clients, 2)),
                          url], check=True, capture_output=True, text=True).stdout
    failed = re.search(r"number of failed transactions: (\d+)", out)
    return float(re.search(r"tps = ([\d.]+)", out).group(1)), int(failed.group(1)) if failed else 0


def pgbench_through_vs_direct(node, version, seconds):
    memory = 512 * MIB
    db = create(node, "postgres", memory_bytes=memory)
    server = HostPostgres(version, memory)
    try:
        server.initdb()
        server.start()
        server.make_user()
        for url in (db["url"], server.url):
            subprocess.run(["pgbench", "-i", "-q", "-s", "5", url], check=True, capture_output=True)
        for clients in (1, 4):
            through, failed_through = pgbench_tps(db["url"], clients, seconds)
            direct, failed_direct = pgbench_tps(server.url, clients, seconds)
            label = f"pgbench -S, {clients} client{'s' if clients > 1 else ''}"
            print(f"{label:<28} {through:9.0f} TPS through the url | direct to a server on the host "
                  f"{direct:9.0f} TPS | {100 * through / direct:5.1f}% (goal ≥ 90%); "
                  f"failed {failed_through} / {failed_direct}")
        # Connect latency: a new connection, select 1, close.
        pg = psycopg()

        def connects(url, n=100):
            times = []
            for _ in range(n):
                t = time.perf_counter()
                with pg.connect(url) as conn:
                    conn.execute("select 1").fetchone()
                times.append((time.perf_counter() - t) * 1000)
            return times

        connects(db["url"], 5)
        through, direct = connects(db["url"]), connects(server.url)
        report("connect + select 1, url", through, "direct, server on the host", direct, high=95)
        print(f"{'':<28} (goal: ≤ 1.5x)")
    finally:
        server.stop()
        delete(node, db)


def redis_benchmark_through_vs_direct(node):
    db = create(node, "redis", memory_bytes=256 * MIB)
    server = HostRedis()
    server.start()
    try:
        redis_first_query(server.url)

        def ops(url):
            u = urllib.parse.urlsplit(url)
            out = subprocess.run(["redis-benchmark", "-h", u.hostname, "-p", str(u.port), "--user", u.username,
                                  "-a", u.password, "-t", "get,set", "-n", "100000", "-c", "50", "-q"],
                                 check=True, capture_output=True, text=True).stdout
            return {m[0]: float(m[1]) for m in re.findall(r"^(SET|GET): ([\d.]+) requests per second", out, re.M)}

        through, direct = ops(db["url"]), ops(server.url)
        for test in ("SET", "GET"):
            label = f"redis-benchmark {test}"
            print(f"{label:<28} {through[test]:9.0f} ops/s through the url | direct to a server on the host "
                  f"{direct[test]:9.0f} ops/s | {100 * through[test] / direct[test]:5.1f}% (goal ≥ 80%)")
    finally:
        server.stop()
        delete(node, db)


def mysqlslap_through_vs_direct(node, seconds):
    memory = 512 * MIB
    db = create(node, "mysql", memory_bytes=memory)
    server = HostMariadb(memory)
    try:
        server.initdb()
        server.start()
        my_first_query(server.url)

        def queries_per_second(url, clients):
            u = urllib.parse.urlsplit(url)
            queries = 400 * seconds * clients
            out = subprocess.run(
                ["mysqlslap", "--no-defaults", "-h", u.hostname, "-P", str(u.port), "-u", u.username,
                 f"--create-schema={u.path.lstrip('/')}", f"--concurrency={clients}", "--iterations=1",
                 f"--number-of-queries={queries}", "--auto-generate-sql", "--auto-generate-sql-load-type=read",
                 "--auto-generate-sql-add-autoincrement"],
                check=True, capture_output=True, text=True, env={**os.environ, "MYSQL_PWD": u.password}).stdout
            took = float(re.search(r"Average number of seconds to run all queries: ([\d.]+)", out).group(1))
            return queries / took

        for clients in (1, 4):
            through, direct = queries_per_second(db["url"], clients), queries_per_second(server.url, clients)
            label = f"mysqlslap read, {clients} client{'s' if clients > 1 else ''}"
            print(f"{label:<28} {through:9.0f} q/s through the url | direct to a server on the host "
                  f"{direct:9.0f} q/s | {100 * through / direct:5.1f}% (goal ≥ 90%)")
    finally:
        server.stop()
        delete(node, db)


def idle_memory(node, engine, version, count):
    """MemAvailable drop per idle database, and its sandbox's cgroup memory, against `count`
    servers of the engine started by hand on the host."""
    before_sandboxes = set(os.listdir(os.path.join(node.dir, "sandboxes")))
    time.sleep(1)
    before = mem_available()
    dbs = [create(node, engine, memory_bytes=256 * MIB) for _ in range(count)]
    for db in dbs:
        first_query(engine, db["url"])
    time.sleep(3)
    after = mem_available()
    sandboxes = set(os.listdir(os.path.join(node.dir, "sandboxes"))) - before_sandboxes
    cgroups = [cgroup_memory(node, s) for s in sandboxes]
    for db in dbs:
        delete(node, db)

    servers = []
    time.sleep(1)
    host_before = mem_available()
    try:
        for _ in range(count):
            server = {"postgres": lambda: HostPostgres(version), "mysql": HostMariadb, "redis": HostRedis}[engine]()
            servers.append(server)
            if engine != "redis":
                server.initdb()
            server.start()
        for server in servers:
            if engine != "postgres":
                first_query(engine, server.url)
        time.sleep(3)
        host_after = mem_available()
    finally:
        for server in servers:
            server.stop()
    per = (before - after) / count / MIB
    host_per = (host_before - host_after) / count / MIB
    goal = {"postgres": 25, "mysql": 120, "redis": 8}[engine]
    label = f"idle memory, {count} {engine}"
    print(f"{label:<28} {per:6.2f} MiB host per database (MemAvailable drop; goal ≤ {goal} MiB), "
          f"{statistics.mean(cgroups) / MIB if cgroups else 0:.2f} MiB in its cgroup | "
          f"the server by hand on the host {host_per:6.2f} MiB")


def from_images(binary, runs, host_creates):
    """The engines of the `engines` image, on a node of their own: start → engines listed,
    first creates, creates → first query against `host_creates` (engine → the host's)."""
    sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
    import image_fixtures
    import registry as reg

    with reg.Registry() as registry:
        ref = image_fixtures.push_all(registry, ("engines",))["engines"]
        base = random.randrange(22000, 29000, 100)
        config = (f"[pool]\nsize = 0\n[defaults]\ncpu = {float(os.cpu_count())}\n"
                  f"[databases]\nports = \"{base}-{base + 99}\"\n")
        config += "".join(f'[databases.{e}]\nimage = "{ref}"\n' for e in ("postgres", "mysql", "redis"))
        t = time.perf_counter()
        node = Node(binary, config)
        try:
            engines = call(node, "GET", f"{DATABASES}/engines")["engines"]
            listed = (time.perf_counter() - t) * 1000
            print(f"{'engines from an image':<28} node start → engines listed {listed:8.0f} ms "
                  f"(a pull of {ref.split('/')[-1]} and a probe per engine): "
                  + ", ".join(f"{e['engine']} {e['default']}" for e in engines))
            for engine in ("postgres", "mysql", "redis"):
                t = time.perf_counter()
                delete(node, create(node, engine))
                first = (time.perf_counter() - t) * 1000
                created, _ = create_to_first_query(node, engine, runs)
                report(f"{engine} (image) create → query", created, f"{engine} (host packages), above",
                       host_creates[engine], high=95)
                print(f"{'':<28} its first create (the template made in the image) {first:8.0f} ms")
        finally:
            stop(node)


def stop(node):
    """Deletes the databases left (their servers outlive the node), then stops the node."""
    try:
        for db in call(node, "GET", DATABASES)["databases"]:
            delete(node, db)
    finally:
        node.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--creates", type=int, default=10, help="creates (and baseline starts) to time per engine")
    ap.add_argument("--seconds", type=int, default=10, help="length of each pgbench run")
    ap.add_argument("--idle", type=int, default=10, help="idle databases per engine for the memory figure")
    ap.add_argument("--no-images", action="store_true", help="skip the engines from an image")
    args = ap.parse_args()
    binary = release_binary()
    if not glob.glob("/usr/lib/postgresql/*/bin/postgres"):
        subprocess.run(["apt-get", "install", "-y", "-q", "postgresql"], check=True, stdout=subprocess.DEVNULL)
    if not os.path.exists("/usr/sbin/mariadbd"):
        subprocess.run(["apt-get", "install", "-y", "-q", "mariadb-server"], check=True, stdout=subprocess.DEVNULL)
    ensure_tool("mysqlslap", "mariadb-client")
    ensure_tool("redis-server", "redis-server")
    ensure_tool("redis-benchmark", "redis-tools")
    psycopg()
    pymysql()
    print(machine())

    base = random.randrange(22000, 29000, 100)
    # The servers may use every core, as those started on the host do.
    node = Node(binary, f"[pool]\nsize = 0\n[defaults]\ncpu = {float(os.cpu_count())}\n"
                        f"[databases]\nports = \"{base}-{base + 99}\"\n")
    try:
        engines = {e["engine"]: e for e in call(node, "GET", f"{DATABASES}/engines")["engines"]}
        version = engines["postgres"]["default"]
        host_creates = {}
        created, answered = create_to_first_query(node, "postgres", args.creates)
        host_creates["postgres"] = created
        report("postgres create → query", created, "initdb + pg_ctl start -w → query",
               host_pg_start(version, args.creates), high=95)
        print(f"{'':<28} the create answered after p50 {percentile(answered, 50):8.2f} ms (goal: ≤ 500 ms to a query)")
        if "mysql" in engines:
            created, answered = create_to_first_query(node, "mysql", args.creates)
            host_creates["mysql"] = created
            report("mysql create → query", created, "install-db + mariadbd → query", host_my_start(args.creates),
                   high=95)
            print(f"{'':<28} the create answered after p50 {percentile(answered, 50):8.2f} ms (goal: ≤ 500 ms to a query)")
        if "redis" in engines:
            created, answered = create_to_first_query(node, "redis", args.creates)
            host_creates["redis"] = created
            report("redis create → PONG", created, "redis-server start → PONG", host_redis_start(args.creates),
                   high=95)
            print(f"{'':<28} the create answered after p50 {percentile(answered, 50):8.2f} ms (goal: ≤ 100 ms to PONG)")

        pgbench_through_vs_direct(node, version, args.seconds)
        if "mysql" in engines:
            mysqlslap_through_vs_direct(node, args.seconds)
        if "redis" in engines:
            redis_benchmark_through_vs_direct(node)

        idle_memory(node, "postgres", version, args.idle)
        if "mysql" in engines:
            idle_memory(node, "mysql", version, args.idle)
        if "redis" in engines:
            idle_memory(node, "redis", version, args.idle)
    finally:
        stop(node)
    if not args.no_images and len(host_creates) == 3:
        from_images(binary, args.creates, host_creates)
    return 0


if __name__ == "__main__":
    sys.exit(main())

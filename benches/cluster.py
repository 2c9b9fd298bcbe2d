#!/usr/bin/env python3
"""Cluster benchmark: what a gateway adds to a create and to a per-sandbox call, how many
placements per second two gateways make over 20 and 50 nodes, what each create costs
PostgreSQL, and what the design's statements cost at 1,000 nodes and 1M placements.

1. create and delete through a gateway (a cluster of one real node) against the same calls
   straight at a standalone node of the same config, taking turns, sequential: cold (no warm
   pool; also against the cluster's node called with the cluster's secret, as a gateway
   calls it, and with the PostgreSQL statements per create) and claimed from a warm pool of
   the same size on both.
2. `POST /v1/sandboxes/:id/shell {"cmd":"true"}` and `GET /v1/sandboxes/:id` through the
   gateway against the standalone node, kept-alive connections on both (and, for the hop
   alone, against the cluster's node called with the cluster's secret, as a gateway does).
3. placement throughput: 20 and 50 simulated nodes (this file, `--fake-nodes`: asyncio
   listeners in one process that heartbeat into PostgreSQL with the statement of
   `Cluster::heartbeat`, check the cluster's secret, and answer creates, lists and deletes
   without starting anything) behind 2 real gateways, 32 clients creating for 10 s: creates/s,
   latency, PostgreSQL statements per create (pg_stat_statements), deletes/s; beside the same
   clients creating straight at the simulated nodes and pgbench running the gateway's own
   statements on the same database.
4. an exposed port's URL through the gateway (relayed to the node's own proxy) against the
   same URL asked of the node: benches/network.py's Node.js server and wrk, 1 and 8
   connections (skipped when the gateway does not expose ports, or without wrk and node).
5. scale: a scratch database of 1,000 nodes and 1M placements (generate_series) against one of
   20 nodes and the same placements: the reserve statement's time (EXPLAIN ANALYZE) for a new
   tenant, a tenant of ~100 and one of 100,000; create+delete statements per second (pgbench);
   1,000 heartbeats per second (PostgreSQL's CPU); a gateway's read of all the nodes.

Usage: AI2IN_BIN=<path> python3 benches/cluster.py [--quick] [--only 1,2,3,4,5]
Builds the release binary unless AI2IN_BIN is set. Needs root (nodes start sandboxes,
PostgreSQL runs as `postgres`) and Debian's postgresql (tests/e2e/cluster.py starts it) with
pgbench; psycopg; wrk and Node.js for part 4. Every statement the simulated nodes and pgbench
run is read from the Rust sources (crates/cluster/src, the working tree, or the git revision
in AI2IN_BENCH_SQL_FROM), so the figures follow the code.
"""
import argparse
import asyncio
import hmac
import http.client
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter

from harness import REPO, machine, percentile, release_binary, report

# tests/e2e first: `cluster` below is the e2e suite's harness (tests/e2e/cluster.py:
# PostgreSQL, gateways, cluster nodes), not this file.
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))

SECRET_HEADER = "x-ai2in-cluster-secret"
PRINCIPAL_HEADER = "x-ai2in-principal"
MIB = 1 << 20
# The quotas and capacity of benches/harness.py's Node, so that no limit is in the way.
LIMITS = ("[quotas]\nsandboxes = 5000\nmemory_bytes = 10995116277760\ndatabases = 5000\n"
          "[capacity]\nsandboxes = 5000\ncpu = 100000.0\n")
# A gateway counts each tenant's sandboxes over the whole cluster: no quota in the way either.
GATEWAY_CONFIG = "[quotas]\nsandboxes = 1000000000\n"


# ---------------------------------------------------------------------------------------------
# the cluster's statements, as the Rust code runs them


# The statements come from the working tree, or from this git revision (when the tree is in
# the middle of a change the binary does not have).
SQL_FROM = os.environ.get("AI2IN_BENCH_SQL_FROM")


def rust_sql(path, function, *fill):
    """The first statement `fn <function>` in `path` (crates/cluster/src) sends, or formats
    (`format!`, its `{}` filled with `fill`), or the string of `const <function>`, as the
    program sends it: line continuations joined, escapes undone."""
    rel = os.path.join("crates", "cluster", "src", path)
    if SQL_FROM:
        src = subprocess.run(["git", "show", f"{SQL_FROM}:{rel}"], cwd=REPO, check=True, capture_output=True,
                             text=True).stdout
    else:
        src = open(os.path.join(REPO, rel)).read()
    at = re.search(rf"\b(fn|const) {function}\b", src)
    assert at, f"no {function} in crates/cluster/src/{path}"
    if at.group(1) == "fn":
        body = at.end()
        at = re.compile(r"\.(execute|query|query_opt|query_one|batch_execute)\(\s*&?(\w*)").search(src, body)
        if at.group(2):  # a statement made before the call: `let sql = format!(…)`
            at = re.compile(rf"let {at.group(2)} = format!\(\s*").search(src, body)
    i = src.index('"', at.end())
    out, i = [], i + 1
    while src[i] != '"':
        if src[i] == "\\":
            nxt = src[i + 1]
            if nxt == "\n":
                i += 2
                while src[i] in " \t":
                    i += 1
                continue
            out.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
            i += 2
            continue
        out.append(src[i])
        i += 1
    sql = "".join(out)
    if "{}" in sql:  # a format! string: older code may have sent it as a plain one
        assert sql.count("{}") == len(fill), f"{function}: {sql}"
        for value in fill:
            sql = sql.replace("{}", value, 1)
    return sql


HEARTBEAT_SQL = rust_sql("nodes.rs", "heartbeat")
NODES_SQL = rust_sql("nodes.rs", "SELECT") + " ORDER BY id"
ADMIT_SQL = rust_sql("placements.rs", "admit")
# The reserve as a create's first attempt sends it: a node another gateway is reserving is
# skipped (since e2eecda a last attempt waits for it instead: FOR UPDATE alone).
RESERVE_SQL = rust_sql("placements.rs", "reserve", "SKIP LOCKED")
PLACE_SQL = rust_sql("placements.rs", "place")
UNPLACE_SQL = rust_sql("placements.rs", "unplace")
RECOUNT_SQL = rust_sql("placements.rs", "recount")
SANDBOXES_ON_SQL = rust_sql("placements.rs", "sandboxes_on")
SECRET_INSERT_SQL = rust_sql("db.rs", "secret")
try:  # since e2eecda: what was deleted on a node while it was away (a heartbeat says so)
    DELETED_ON_SQL = rust_sql("placements.rs", "deleted_on")
except AssertionError:
    DELETED_ON_SQL = None
assert HEARTBEAT_SQL.startswith("INSERT INTO ai2in_nodes") and "ON CONFLICT" in HEARTBEAT_SQL, HEARTBEAT_SQL
assert RESERVE_SQL.startswith("UPDATE ai2in_nodes") and "SKIP LOCKED" in RESERVE_SQL, RESERVE_SQL
assert PLACE_SQL.startswith("INSERT INTO ai2in_placements"), PLACE_SQL
assert "DELETE FROM ai2in_placements" in UNPLACE_SQL and ADMIT_SQL.startswith("INSERT INTO ai2in_usage"), UNPLACE_SQL


def psycopg_sql(sql, params):
    """`sql` with $1, $2 … as psycopg's named placeholders, and `params` by those names:
    psycopg numbers them in the order they first appear, so the server receives the same
    text when they first appear in order (checked)."""
    numbers = [int(n) for n in re.findall(r"\$(\d+)", sql)]
    assert list(dict.fromkeys(numbers)) == list(range(1, len(params) + 1)), sql
    assert "%" not in sql, sql
    return re.sub(r"\$(\d+)", r"%(p\1)s", sql), {f"p{i + 1}": v for i, v in enumerate(params)}


# What each statement of the cluster's database is, by how its text begins.
STATEMENTS = [
    ("admit", ADMIT_SQL[:40]),
    ("release", "UPDATE ai2in_usage SET count = greatest"),
    ("reserve", RESERVE_SQL[:40]),
    ("place", PLACE_SQL[:40]),
    ("unplace", UNPLACE_SQL[:40]),
    ("placement lookup", "SELECT node_id, tenant FROM ai2in_placements"),
    ("node's placements", SANDBOXES_ON_SQL[:40]),
    ("heartbeat", "INSERT INTO ai2in_nodes"),
    ("node list", "SELECT id, address"),
    ("key check", "SELECT id, name, tenant"),
]


# ---------------------------------------------------------------------------------------------
# simulated nodes (run as `cluster.py --fake-nodes N --postgres URL`)


def base36(n, width):
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = []
    for _ in range(width):
        n, d = divmod(n, 36)
        out.append(digits[d])
    return "".join(out)


def rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


REASONS = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
           404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


class FakeNode:
    """A node that starts nothing on the host but speaks the protocol of `ai2in serve
    --cluster`: it joins as a node does (the cluster's secret; its placements that it does not
    hold forgotten; a heartbeat with the statement of `Cluster::heartbeat`, then one a second,
    all from a connection of its own; what a heartbeat says was deleted while it was away,
    deleted), serves only callers presenting the cluster's secret and
    a principal, holds sandboxes as records (201 with a new `sbx_` id, 503 once `capacity` are
    held; lists, info and deletes by the caller's tenant), and tells the cluster each sandbox
    that ends, as a node does (`Cluster::unplace`, after the delete's answer)."""

    def __init__(self, node_id, capacity, url):
        self.id, self.capacity, self.url = node_id, capacity, url
        self.secret = None
        self.held = {}  # id → sandbox
        self.address = None
        self.conn = None
        self.ended = asyncio.Queue()

    # -- membership ---------------------------------------------------------------------------

    async def listen(self):
        server = await asyncio.start_server(self.connection, "127.0.0.1", 0, backlog=1024)
        self.address = "127.0.0.1:%d" % server.sockets[0].getsockname()[1]
        return server

    async def connect(self):
        import psycopg

        self.conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True, application_name="ai2in")

    async def join(self):
        await self.connect()
        made = os.urandom(32).hex()
        await self.conn.execute(*psycopg_sql(SECRET_INSERT_SQL, (made,)))
        cur = await self.conn.execute("SELECT secret FROM ai2in_cluster WHERE id = 1")
        self.secret = (await cur.fetchone())[0].encode()
        cur = await self.conn.execute(*psycopg_sql(SANDBOXES_ON_SQL, (self.id,)))
        for (sid,) in await cur.fetchall():
            if sid not in self.held:
                await self.conn.execute(*psycopg_sql(UNPLACE_SQL, (sid,)))
        await self.beat()

    async def beat(self):
        used_mem = sum(s["resources"]["memory_bytes"] for s in self.held.values())
        used_cpu = sum(s["resources"]["cpu"] for s in self.held.values())
        # What a node with these defaults holds at most: 512 MiB and 1 cpu per sandbox.
        cur = await self.conn.execute(*psycopg_sql(HEARTBEAT_SQL, (
            self.id, self.address, self.capacity, self.capacity * 512 * MIB, float(self.capacity),
            len(self.held), used_mem, float(used_cpu))))
        if cur.description and (await cur.fetchone() or [False])[0] and DELETED_ON_SQL:
            # Deleted while this node was away: delete it now, then forget it, as a node does.
            cur = await self.conn.execute(*psycopg_sql(DELETED_ON_SQL, (self.id,)))
            for sid, *_ in await cur.fetchall():
                self.held.pop(sid, None)
                self.ended.put_nowait(sid)

    async def reconnect(self, what, error):
        import psycopg

        print(f"{self.id}: {what} failed: {error}", file=sys.stderr, flush=True)
        try:
            await self.conn.close()
            await self.connect()
        except psycopg.Error:
            await asyncio.sleep(1)

    async def heartbeats(self, offset):
        import psycopg

        loop = asyncio.get_running_loop()
        due = loop.time() + offset
        while True:
            due += 1.0
            await asyncio.sleep(max(0.0, due - loop.time()))
            try:
                await self.beat()
            except psycopg.Error as e:
                await self.reconnect("heartbeat", e)

    async def report_ends(self):
        import psycopg

        while True:
            sid = await self.ended.get()
            while True:
                try:
                    await self.conn.execute(*psycopg_sql(UNPLACE_SQL, (sid,)))
                    break
                except psycopg.Error as e:
                    await self.reconnect("unplace", e)

    # -- HTTP/1.1, kept alive ------------------------------------------------------------------

    async def connection(self, reader, writer):
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    break
                lines = head.decode("latin-1").split("\r\n")
                method, target = lines[0].split(" ")[:2]
                headers = {}
                for line in lines[1:]:
                    if line:
                        k, _, v = line.partition(":")
                        headers[k.strip().lower()] = v.strip()
                body = b""
                if "content-length" in headers:
                    body = await reader.readexactly(int(headers["content-length"]))
                elif headers.get("transfer-encoding", "").lower() == "chunked":
                    while True:
                        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                        chunk = await reader.readexactly(size + 2)
                        if size == 0:
                            break
                        body += chunk[:-2]
                status, answer = self.answer(method, target.split("?")[0], headers, body)
                data = json.dumps(answer).encode() if answer is not None else b""
                length = f"content-length: {len(data)}\r\n" if status != 204 else ""
                writer.write(f"HTTP/1.1 {status} {REASONS[status]}\r\ncontent-type: application/json\r\n"
                             f"{length}\r\n".encode() + data)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except ConnectionError:
            pass
        finally:
            writer.close()

    def answer(self, method, path, headers, body):
        if path == "/healthz":
            return 200, {"status": "ok"}
        given = headers.get(SECRET_HEADER, "").encode()
        if self.secret is None or not hmac.compare_digest(given, self.secret):
            return 401, {"error": "this node belongs to a cluster and serves only its gateways; call a gateway"}
        principal = headers.get(PRINCIPAL_HEADER, "").split(" ")
        if len(principal) != 3 or not principal[1]:
            return 401, {"error": "the gateway sent no principal; send `key_id tenant scopes`"}
        tenant = principal[1]
        segments = path.strip("/").split("/")
        if segments[:2] != ["v1", "sandboxes"] or len(segments) > 3:
            return 404, {"error": f"no route {method} {path}"}
        if len(segments) == 2:
            if method == "POST":
                return self.create(tenant, body)
            if method == "GET":
                return 200, {"sandboxes": [s for s in self.held.values() if s["_tenant"] == tenant]}
            return 405, {"error": f"{method} is not allowed on {path}"}
        sandbox = self.held.get(segments[2])
        if sandbox is None or sandbox["_tenant"] != tenant:
            return 404, {"error": f"no sandbox {segments[2]}"}
        if method == "GET":
            return 200, sandbox
        if method == "DELETE":
            del self.held[segments[2]]
            self.ended.put_nowait(segments[2])
            return 204, None
        return 405, {"error": f"{method} is not allowed on {path}"}

    def create(self, tenant, body):
        try:
            want = json.loads(body or b"{}")
            assert isinstance(want, dict)
        except (ValueError, AssertionError):
            return 400, {"error": "the body is not a JSON object"}
        memory, cpu = int(want.get("memory_bytes", 512 * MIB)), float(want.get("cpu", 1.0))
        used_mem = sum(s["resources"]["memory_bytes"] for s in self.held.values())
        if len(self.held) >= self.capacity or used_mem + memory > self.capacity * 512 * MIB:
            return 503, {"error": f"node {self.id} is full ({len(self.held)} sandboxes); try another node"}
        now = time.time()
        sid = "sbx_" + base36(random.getrandbits(103), 20)
        sandbox = {"id": sid, "status": "running", "image": want.get("image", "host"), "image_digest": None,
                   "desktop": False, "created_at": rfc3339(now),
                   "end_at": rfc3339(now + want.get("timeout_ms", 300000) / 1000), "node_id": self.id,
                   "metadata": want.get("metadata", {}),
                   "resources": {"cpu": cpu, "memory_bytes": memory, "disk_bytes": 2048 * MIB},
                   "network": {"egress": "allow"}, "volumes": [], "_tenant": tenant}
        self.held[sid] = sandbox
        return 201, sandbox


async def fake_nodes_main(url, count, capacity, prefix):
    nodes = [FakeNode(f"{prefix}-{i + 1:03d}", capacity, url) for i in range(count)]
    servers = [await n.listen() for n in nodes]
    for n in nodes:
        await n.join()
    # Each node beats once a second from when it joined: spread over the second.
    tasks = []
    for i, n in enumerate(nodes):
        tasks += [asyncio.create_task(n.heartbeats(i / count)), asyncio.create_task(n.report_ends())]
    print(json.dumps({"nodes": [{"id": n.id, "address": n.address} for n in nodes]}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for s in servers:
        s.close()
    for n in nodes:
        await n.conn.close()


class FakeNodes:
    """`count` simulated nodes in a process of their own (this file, `--fake-nodes`)."""

    def __init__(self, url, count, capacity, log_dir):
        self.log = open(os.path.join(log_dir, f"fake-nodes-{count}.log"), "w")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--fake-nodes", str(count), "--postgres", url,
             "--capacity", str(capacity), "--prefix", f"fake{count}"],
            stdout=subprocess.PIPE, stderr=self.log, text=True, start_new_session=True)
        line = self.proc.stdout.readline()
        if not line:
            self.stop()
            raise RuntimeError(f"the simulated nodes did not start: see {self.log.name}")
        self.nodes = json.loads(line)["nodes"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# ---------------------------------------------------------------------------------------------
# clients


class Http:
    """One kept-alive HTTP/1.1 connection (http.client: TCP_NODELAY, head and body in one
    write) with fixed headers."""

    def __init__(self, url, headers):
        host, port = url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=60)
        self.headers = headers

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        headers = dict(self.headers, **({"Content-Type": "application/json"} if data else {}))
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                raw = r.read()
                return r.status, (json.loads(raw) if raw else None)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                if attempt:
                    raise

    def ok(self, method, path, body=None, status=200):
        got, answer = self.call(method, path, body)
        assert got == status, f"{method} {path} → {got} {answer}"
        return answer

    def close(self):
        self.conn.close()


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


def timed_ms(fn):
    t = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t) * 1000, out


def goal_line(text, met):
    print(f"{'':<29}{text}: {'met' if met else 'NOT met'}")


# ---------------------------------------------------------------------------------------------
# PostgreSQL's counters


def pg_connect(pg, db="postgres"):
    import psycopg

    return psycopg.connect(pg.url(db), autocommit=True)


def enable_statement_stats(pg):
    """pg_stat_statements preloaded (ALTER SYSTEM, then a restart of the bench's own server):
    True when it works."""
    try:
        pg.psql("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        pg.restart()
        pg.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        return True
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # noqa: BLE001 - pytest.fail's too; reported, then the fallback
        print(f"(pg_stat_statements unavailable: {e}; counting transactions from pg_stat_database)")
        if not pg.running:
            pg.start()
        return False


class StatementCounts:
    """Statements run on `db` between start() and stop(), by kind (pg_stat_statements), or
    the transactions committed and rows written (pg_stat_database) without it."""

    def __init__(self, pg, db, statements):
        self.pg, self.db, self.statements = pg, db, statements

    def start(self):
        with pg_connect(self.pg) as c:
            if self.statements:
                c.execute("SELECT pg_stat_statements_reset()")
            else:
                time.sleep(1.5)  # the backends' pending counters flushed
                self.before = self._database(c)

    def _database(self, c):
        return c.execute("SELECT xact_commit, tup_inserted, tup_updated, tup_deleted FROM pg_stat_database "
                         "WHERE datname = %s", (self.db,)).fetchone()

    def stop(self):
        with pg_connect(self.pg) as c:
            if not self.statements:
                time.sleep(1.5)
                after = self._database(c)
                return {"transactions": after[0] - self.before[0], "rows inserted": after[1] - self.before[1],
                        "rows updated": after[2] - self.before[2], "rows deleted": after[3] - self.before[3]}, {}
            rows = c.execute(
                "SELECT query, calls, total_exec_time FROM pg_stat_statements s JOIN pg_database d "
                "ON d.oid = s.dbid WHERE d.datname = %s", (self.db,)).fetchall()
        calls, ms = Counter(), Counter()
        for query, n, total in rows:
            kind = next((k for k, prefix in STATEMENTS if query.startswith(prefix)), "other")
            calls[kind] += n
            ms[kind] += total
        return calls, ms


def print_statements(what, count, calls, ms, seconds):
    if "transactions" in calls:
        print(f"{'':<29}per {what}: " + ", ".join(f"{v / count:.2f} {k}" for k, v in calls.items())
              + " (pg_stat_database; pg_stat_statements unavailable)")
        return
    total = sum(calls.values())
    parts = ", ".join(f"{calls[k] / count:.2f} {k}" for k, _ in STATEMENTS + [("other", "")] if calls[k])
    print(f"{'':<29}statements per {what}: {total / count:.2f} ({parts}; pg_stat_statements over "
          f"{seconds:.1f} s)")
    busy = sum(ms.values())
    print(f"{'':<29}PostgreSQL execution time per {what}: {busy / count:.3f} ms "
          + ", ".join(f"{k} {ms[k] / max(calls[k], 1):.3f} ms each" for k, _ in STATEMENTS if calls[k]))


# ---------------------------------------------------------------------------------------------
# 1 and 2: one real node through a gateway against a standalone node


def creates_side_by_side(sides, n, label, deleted_between=True):
    """`n` creates on each of `sides` ((name, client): the gateway first, the standalone node
    second, then any other baseline), taking turns in a rotating order, each deleted before
    the next when `deleted_between`; reports the gateway's against the others'."""
    out = {name: ([], []) for name, _ in sides}
    held = {name: [] for name, _ in sides}
    for i in range(n):
        for name, client in sides[i % len(sides):] + sides[:i % len(sides)]:
            ms, answer = timed_ms(lambda: client.ok("POST", "/v1/sandboxes", {}, 201))
            out[name][0].append(ms)
            if deleted_between:
                ms, _ = timed_ms(lambda: client.ok("DELETE", f"/v1/sandboxes/{answer['id']}", status=204))
                out[name][1].append(ms)
            else:
                held[name].append(answer["id"])
    for name, client in sides:
        for sid in held[name]:
            ms, _ = timed_ms(lambda: client.ok("DELETE", f"/v1/sandboxes/{sid}", status=204))
            out[name][1].append(ms)
    (gw, (gc, gd)), (direct, (dc, dd)) = list(out.items())[:2]
    report(f"create, {label}, gateway", gc, direct, dc)
    for name, (c, _) in list(out.items())[2:]:
        report(f"create, {label}, gateway", gc, name, c)
    goal = 1.3 * percentile(dc, 50) + 2
    goal99 = 1.3 * percentile(dc, 99) + 2
    goal_line(f"p50 {percentile(gc, 50):.2f} ms (goal: ≤ 1.3 × direct + 2 ms = {goal:.2f} ms); "
              f"p99 {percentile(gc, 99):.2f} ms against {goal99:.2f} ms", percentile(gc, 50) <= goal)
    report(f"delete, {label}, gateway", gd, direct, dd)
    for name, (_, d) in list(out.items())[2:]:
        report(f"delete, {label}, gateway", gd, name, d)
    return gc, dc


def wait_sandboxes(state_dir, count, timeout=180):
    path = os.path.join(state_dir, "sandboxes")
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if sum(1 for d in os.listdir(path) if d.startswith("sbx_")) >= count:
                break
        except OSError:
            pass
        time.sleep(0.2)
    time.sleep(1)


def gateway_vs_node(pg, args, pool, statements):
    from cluster import Cluster
    from conftest import Node

    config = LIMITS + f"[pool]\nsize = {pool}\n"
    cluster = Cluster(pg, nodes=1, gateways=1, node_config=config, database=f"ai2in_bench_pool{pool}",
                      gateway_config=GATEWAY_CONFIG)
    direct = Node(config=config)
    try:
        cluster.start()
        direct.start()
        gw = Http(cluster.gateway(0).url, bearer(cluster.admin_key))
        dn = Http(direct.url, bearer(direct.admin_key))
        direct_name = "the same, straight at a node"
        if pool:
            wait_sandboxes(cluster.node(0).state_dir, pool)
            wait_sandboxes(direct.state_dir, pool)
            creates_side_by_side([("gateway", gw), (direct_name, dn)], pool, f"pool of {pool}",
                                 deleted_between=False)
            return
        # The hop alone: the cluster's node called as a gateway calls it (secret, principal).
        key = next(k for k in gw.ok("GET", "/v1/keys")["keys"])
        with pg_connect(pg, cluster.database) as c:
            secret = c.execute("SELECT secret FROM ai2in_cluster").fetchone()[0]
        hop = Http(cluster.node(0).url, {SECRET_HEADER: secret,
                                         PRINCIPAL_HEADER: f"{key['id']} {key['tenant']} {','.join(key['scopes'])}"})
        hop_name = "cluster node, called with secret"
        # A few of each first: connections opened, code paths warm.
        for client in (gw, dn, hop):
            for _ in range(5):
                sid = client.ok("POST", "/v1/sandboxes", {}, 201)["id"]
                client.ok("DELETE", f"/v1/sandboxes/{sid}", status=204)
        if "1" in args.only:
            creates_side_by_side([("gateway", gw), (direct_name, dn), (hop_name, hop)], args.creates, "no pool")
            # The gateway's and its node's statements (the node reports each end: an unplace),
            # in creates and deletes through the gateway alone.
            counts = StatementCounts(pg, cluster.database, statements)
            counts.start()
            t, n = time.perf_counter(), min(args.creates, 50)
            for _ in range(n):
                sid = gw.ok("POST", "/v1/sandboxes", {}, 201)["id"]
                gw.ok("DELETE", f"/v1/sandboxes/{sid}", status=204)
            calls, ms = counts.stop()
            print_statements("create+delete", n, calls, ms, time.perf_counter() - t)

        if "4" in args.only:
            exposed_urls(gw, cluster.gateway(0).url, cluster.node(0).url)
        if "2" not in args.only:
            return
        # 2: per-sandbox calls.
        gsid = gw.ok("POST", "/v1/sandboxes", {}, 201)["id"]
        dsid = dn.ok("POST", "/v1/sandboxes", {}, 201)["id"]
        try:
            for what, method, suffix, body in (("shell `true`", "POST", "/shell", {"cmd": "true"}),
                                               ("GET the sandbox", "GET", "", None)):
                times = {"gw": [], "direct": [], "hop": []}
                clients = (("gw", gw, gsid), ("direct", dn, dsid), ("hop", hop, gsid))
                for client in clients:
                    for _ in range(10):
                        client[1].ok(method, f"/v1/sandboxes/{client[2]}{suffix}", body)
                for i in range(args.calls):
                    for side, client, sid in clients[i % 3:] + clients[:i % 3]:
                        ms, _ = timed_ms(lambda: client.ok(method, f"/v1/sandboxes/{sid}{suffix}", body))
                        times[side].append(ms)
                report(f"{what}, gateway", times["gw"], "the same, straight at a node", times["direct"])
                report(f"{what}, gateway", times["gw"], hop_name, times["hop"])
                goal = 1.5 * percentile(times["direct"], 50)
                goal_line(f"p50 {percentile(times['gw'], 50):.2f} ms (goal: ≤ 1.5 × direct = {goal:.2f} ms); "
                          f"the gateway adds {percentile(times['gw'], 50) - percentile(times['hop'], 50):.2f} ms "
                          "to the node's own answer", percentile(times["gw"], 50) <= goal)
        finally:
            gw.ok("DELETE", f"/v1/sandboxes/{gsid}", status=204)
            dn.ok("DELETE", f"/v1/sandboxes/{dsid}", status=204)
            hop.close()
    finally:
        try:
            cluster.cleanup()
        finally:
            direct.cleanup()


def exposed_urls(gw, gateway_url, node_url):
    """4: an exposed port's URL through the gateway (it relays the request, `Host` kept, to
    the node's own proxy) against the same URL asked of the node itself: benches/network.py's
    Node.js server and wrk, latency with 1 connection, throughput with 8."""
    from network import SERVER

    def wrk(url, connections):
        """(latency p50 ms, requests/s) of a 5 s wrk run; every answer a 200."""
        out = subprocess.run(["wrk", "-t1", f"-c{connections}", "-d5s", "--latency", "-H", f"Host: {host}", url],
                             check=True, capture_output=True, text=True).stdout
        assert "Non-2xx" not in out and "Socket errors" not in out, out
        value, unit = re.search(r"50%\s+([\d.]+)(us|ms|s)", out).groups()
        return (float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit],
                float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)))

    if not shutil.which("wrk") or not shutil.which("node"):
        print(f"{'exposed URL, gateway':<28} skipped: needs wrk and node (Node.js) on the host")
        return
    sid = gw.ok("POST", "/v1/sandboxes", {}, 201)["id"]
    try:
        gw.ok("POST", f"/v1/sandboxes/{sid}/fs/write", {"path": "server.js", "content": SERVER})
        gw.ok("POST", f"/v1/sandboxes/{sid}/commands", {"cmd": "exec node /home/user/server.js"})
        status, answer = gw.call("POST", f"/v1/sandboxes/{sid}/expose", {"port": 8000})
        if status != 200:
            print(f"{'exposed URL, gateway':<28} skipped: this gateway does not expose ports ({status} "
                  f"{str(answer)[:80]})")
            return
        host = answer["url"].split("//")[1].split("/")[0].rsplit(":", 1)[0]
        for url in (gateway_url, node_url):
            deadline = time.time() + 15
            while True:
                conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=5)
                try:
                    conn.request("GET", "/", headers={"Host": host})
                    r = conn.getresponse()
                    if r.status == 200 and b"hello from the sandbox" in r.read():
                        break
                except OSError:
                    pass
                finally:
                    conn.close()
                assert time.time() < deadline, f"{host} does not answer at {url}"
                time.sleep(0.2)
        for connections in (1, 8):
            relayed = wrk(f"{gateway_url}/", connections)
            own = wrk(f"{node_url}/", connections)
            print(f"{f'exposed URL, {connections} conn., gateway':<28} p50 {relayed[0]:6.3f} ms, {relayed[1]:6.0f} req/s | "
                  f"the node's own proxy p50 {own[0]:6.3f} ms, {own[1]:6.0f} req/s | "
                  f"latency {relayed[0] / own[0]:4.2f}x, throughput {100 * relayed[1] / own[1]:5.1f}%")
    finally:
        gw.ok("DELETE", f"/v1/sandboxes/{sid}", status=204)


# ---------------------------------------------------------------------------------------------
# 3: placement throughput over simulated nodes


def run_clients(targets, clients, seconds, make_request):
    """`clients` threads, client i on targets[i % len(targets)], each calling
    make_request(http, i) in a loop for `seconds` (or, when `seconds` is a list per client,
    once per item): (latencies in ms, results, wall seconds, failures)."""
    latencies, results, failures, lock = [], [], Counter(), threading.Lock()
    start = time.perf_counter()
    stop = start + seconds if not isinstance(seconds, list) else None

    def client(i):
        url, headers = targets[i % len(targets)]
        h = Http(url, headers)
        mine, got = [], []
        items = iter(seconds[i]) if stop is None else None
        try:
            while True:
                if items is not None:
                    item = next(items, None)
                    if item is None:
                        break
                elif time.perf_counter() >= stop:
                    break
                else:
                    item = None
                t = time.perf_counter()
                status, answer = make_request(h, item)
                ms = (time.perf_counter() - t) * 1000
                if status in (200, 201, 204):
                    mine.append(ms)
                    got.append((i, answer))
                else:
                    with lock:
                        failures[f"{status} {str(answer)[:120]}"] += 1
        finally:
            h.close()
            with lock:
                latencies.extend(mine)
                results.extend(got)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, results, time.perf_counter() - start, failures


def create(h, _):
    return h.call("POST", "/v1/sandboxes", {})


def delete(h, sid):
    status, answer = h.call("DELETE", f"/v1/sandboxes/{sid}")
    return status, sid


def pgbench(pg, db, script, clients, seconds, rate=None, extra=()):
    """pgbench running `script` (extended protocol, as tokio-postgres): (tps, ms latency)."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(script)
    os.chmod(f.name, 0o644)
    args = [str(pg.bin / "pgbench"), "-n", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres",
            "-M", "extended", "-c", str(clients), "-j", str(min(clients, 2)), "-T", str(seconds),
            "-f", f.name, *extra]
    if rate:
        args += ["-R", str(rate)]
    try:
        done = subprocess.run(args + [db], capture_output=True, text=True, timeout=seconds + 120)
    finally:
        os.unlink(f.name)
    assert done.returncode == 0, f"pgbench failed: {done.stderr[-2000:]}"
    tps = float(re.search(r"tps = ([\d.]+)", done.stdout).group(1))
    latency = float(re.search(r"latency average = ([\d.]+) ms", done.stdout).group(1))
    return tps, latency


def reserve_with(memory, cpu, down, skip, tenant):
    """The reserve statement with its parameters written in: memory, cpu, the down
    threshold, the nodes to skip, the tenant; any later one (an optional filter, such as the
    one node a sandbox's volumes pin it to) NULL."""
    given = {1: memory, 2: cpu, 3: down, 4: skip, 5: tenant}
    return re.sub(r"\$(\d+)", lambda m: given.get(int(m.group(1)), "NULL"), RESERVE_SQL)


def create_delete_script(tenant_expr):
    """A create and a delete as a gateway runs them (admit against the tenant's quota,
    reserve, place; unplace), and the node's own report of the end (an unplace that finds
    nothing left), each statement its own transaction."""
    sid = "'sbx_pgb' || :client_id || '_' || :r"
    admit = ADMIT_SQL.replace("$1", tenant_expr).replace("$2", "'sandbox'").replace("$3", "1000000000")
    reserve = reserve_with("0", "0", "5", "'{}'::text[]", tenant_expr)
    place = (PLACE_SQL.replace("$1", sid).replace("$2", "'sandbox'").replace("$3", tenant_expr)
             .replace("$4", ":id"))
    unplace = UNPLACE_SQL.replace("$1", sid)
    return (f"\\set t random(0, 8999)\n\\set r random(1, 1000000000)\n"
            f"{admit};\n{reserve} \\gset\n{place};\n{unplace};\n{unplace};\n")


def placement_throughput(pg, args, count, statements, log_dir):
    from cluster import Gateway

    db = f"ai2in_bench_nodes{count}"
    pg.create_database(db)
    url = pg.url(db)
    gateways, fake = [], None
    try:
        first = Gateway(url, config=GATEWAY_CONFIG)
        gateways.append(first)
        first.start()
        second = Gateway(url, first.admin_key, config=GATEWAY_CONFIG)
        gateways.append(second)
        second.start()
        fake = FakeNodes(url, count, args.capacity, log_dir)
        ids = {n["id"] for n in fake.nodes}
        admin = Http(first.url, bearer(first.admin_key))
        deadline = time.time() + 30
        while sum(n["id"] in ids and n["status"] == "ready" for n in admin.ok("GET", "/v1/nodes")["nodes"]) < count:
            assert time.time() < deadline, "the simulated nodes are not all ready"
            time.sleep(0.25)
        key = admin.ok("GET", "/v1/keys")["keys"][0]
        time.sleep(1.5)  # every gateway's view of the nodes read again (each 0.5 s)
        lists = []
        for _ in range(20):
            ms, answer = timed_ms(lambda: admin.ok("GET", "/v1/sandboxes"))
            lists.append(ms)
        admin.close()

        targets = [(g.url, bearer(g.admin_key)) for g in gateways]
        # Warm: connections to every node opened; what this made is deleted.
        _, warm, _, _ = run_clients(targets, args.clients, 1.0, create)
        per_client = [[] for _ in range(args.clients)]
        for i, answer in warm:
            per_client[i].append(answer["id"])
        run_clients(targets, args.clients, per_client, delete)
        time.sleep(1)  # the nodes' reports of those ends done
        counts = StatementCounts(pg, db, statements)
        counts.start()
        who = {"gateways": lambda: sum(cpu_seconds([g.proc.pid]) for g in gateways),
               "PostgreSQL": lambda: pg_cpu_seconds(pg), "simulated nodes": lambda: cpu_seconds([fake.proc.pid]),
               "clients": lambda: sum(os.times()[:2])}
        before = {k: f() for k, f in who.items()}
        lat, made, wall, failures = run_clients(targets, args.clients, args.seconds, create)
        used = {k: (f() - before[k]) / wall for k, f in who.items()}
        calls, ms = counts.stop()
        rate = len(made) / wall

        # Deletes, each through the gateway that created it (its placement cached there).
        per_client = [[] for _ in range(args.clients)]
        for i, answer in made:
            per_client[i].append(answer["id"])
        counts.start()
        dl, gone, dwall, dfail = run_clients(targets, args.clients, per_client, delete)
        dcalls, dms = counts.stop()

        # The baseline: the same clients straight at the simulated nodes, with the secret.
        with pg_connect(pg, db) as c:
            secret = c.execute("SELECT secret FROM ai2in_cluster").fetchone()[0]
        principal = f"{key['id']} {key['tenant']} {','.join(key['scopes'])}"
        direct = [(f"http://{n['address']}", {SECRET_HEADER: secret, PRINCIPAL_HEADER: principal})
                  for n in fake.nodes]
        blat, bmade, bwall, _ = run_clients(direct, args.clients, args.seconds / 2, create)
        brate = len(bmade) / bwall
        per_client = [[] for _ in range(args.clients)]
        for i, answer in bmade:
            per_client[i].append(answer["id"])
        run_clients(direct, args.clients, per_client, delete)
        time.sleep(2)  # the nodes' reports of those ends done

        # PostgreSQL alone: the statements of a create and a delete, from 2 connections (a
        # gateway holds one), on the same database, the nodes heartbeating.
        tps, latency = pgbench(pg, db, create_delete_script(f"'{key['tenant']}'"), 2, 5)

        print(f"{f'creates/s, {count} nodes':<28} {rate:8.1f} per second, {args.clients} clients over 2 gateways "
              f"| straight at the nodes {brate:8.1f} per second | ratio {rate / brate:5.2f}x")
        report(f"create latency, {count} nodes", lat, "straight at the nodes", blat)
        goal_line(f"{rate:.0f} placements per second (goal: ≥ 200){'; failures: ' + str(dict(failures)) if failures else ''}",
                  rate >= 200 and not failures)
        print_statements("create", len(made), calls, ms, wall)
        print(f"{'':<29}CPU in cores: " + ", ".join(f"{k} {v:.2f}" for k, v in used.items())
              + f" (of {os.cpu_count()})")
        spread = Counter(answer["node_id"] for _, answer in made)
        print(f"{'':<29}spread: {len(spread)} nodes, {min(spread.values())}–{max(spread.values())} "
              "sandboxes each")
        print(f"{'':<29}PostgreSQL alone (pgbench, 2 connections, one tenant; admit, reserve, place, "
              f"unplace, the node's unplace): {tps:.0f} creates+deletes/s, {latency:.2f} ms each")
        print(f"{f'deletes/s, {count} nodes':<28} {len(gone) / dwall:8.1f} per second, p50 {percentile(dl, 50):.2f} ms "
              f"p99 {percentile(dl, 99):.2f} ms{', failures ' + str(dict(dfail)) if dfail else ''}")
        print_statements("delete", max(len(gone), 1), dcalls, dms, dwall)
        print(f"{f'list, {count} nodes':<28} p50 {percentile(lists, 50):8.2f} ms  p99 {percentile(lists, 99):8.2f} ms "
              "| GET /v1/sandboxes through a gateway: a GET to every node, none holding any")
        return percentile(lists, 50)
    finally:
        if fake:
            fake.stop()
        for g in gateways:
            g.cleanup()
        pg.drop_database(db)


# ---------------------------------------------------------------------------------------------
# 5: the statements at 1,000 nodes and 1M placements


def populate(pg, db, nodes, placements):
    """A cluster's schema (made by a gateway, which then stops) holding `nodes` nodes, up for
    a day, with room to spare, and `placements` placements: a tenant `big` holding a tenth,
    9,000 tenants `t0`… sharing the rest (~100 each), spread over the nodes by a hash."""
    from cluster import Gateway

    pg.create_database(db)
    g = Gateway(pg.url(db))
    try:
        g.start()
    finally:
        g.cleanup()
    per = placements // nodes
    with pg_connect(pg, db) as c:
        c.execute(
            "INSERT INTO ai2in_nodes (id, address, capacity_sandboxes, capacity_memory, capacity_cpu, "
            "used_sandboxes, used_memory, used_cpu, last_seen) "
            "SELECT 'node-' || lpad(i::text, 4, '0'), '10.0.' || (i / 250) || '.' || mod(i, 250) || ':4747', "
            "100000000, 100000000 * 536870912::bigint, 100000000, %s, %s * 536870912::bigint, %s, "
            "now() + interval '1 day' FROM generate_series(1, %s) i", (per, per, float(per), nodes))
        c.execute(
            "INSERT INTO ai2in_placements (id, kind, tenant, node_id) "
            "SELECT 'sbx_' || lpad(i::text, 20, '0'), 'sandbox', "
            "CASE WHEN mod(i, 10) = 0 THEN 'big' ELSE 't' || mod(i / 10, 9000) END, "
            "'node-' || lpad((1 + mod(hashint4(i)::bigint + 2147483648, %s))::text, 4, '0') "
            "FROM generate_series(1, %s) i", (nodes, placements))
        c.execute("INSERT INTO ai2in_usage (tenant, kind, count) "
                  "SELECT tenant, kind, count(*) FROM ai2in_placements GROUP BY tenant, kind")
        for table in ("ai2in_nodes", "ai2in_placements", "ai2in_usage"):
            c.execute(f"VACUUM ANALYZE {table}")
        # What every gateway's start does: count each tenant's things again.
        ms, _ = timed_ms(lambda: c.execute(RECOUNT_SQL))
        c.execute("VACUUM ANALYZE ai2in_usage")
    return ms


def reserve_ms(pg, db, tenant, runs):
    """EXPLAIN ANALYZE of the reserve statement (a custom plan, as each tokio-postgres query
    gets), rolled back each time: its execution times in ms."""
    out = []
    with pg_connect(pg, db) as c:
        c.execute("SET plan_cache_mode = force_custom_plan")
        c.execute(f"PREPARE reserve AS {RESERVE_SQL}")
        # A utility statement takes no parameters: the tenant (a plain word) inline.
        assert re.fullmatch(r"\w+", tenant), tenant
        extra = ", NULL" * (max(int(n) for n in re.findall(r"\$(\d+)", RESERVE_SQL)) - 5)
        for _ in range(runs):
            c.execute("BEGIN")
            plan = c.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE reserve(0, 0, 5, '{{}}', '{tenant}'{extra})"
                             ).fetchone()[0]
            c.execute("ROLLBACK")
            out.append(plan[0]["Execution Time"])
    return out


def node_list_ms(pg, db, runs):
    """A gateway's read of every node (its refresh every 0.5 s), rows fetched: ms."""
    out = []
    with pg_connect(pg, db) as c:
        c.execute(f"PREPARE nodes AS {NODES_SQL}")
        for _ in range(runs):
            ms, rows = timed_ms(lambda: c.execute("EXECUTE nodes(5)").fetchall())
            out.append(ms)
    return out


def pg_cpu_seconds(pg):
    from cluster import _server_processes

    return cpu_seconds(_server_processes(pg.data))


def cpu_seconds(pids):
    """User and system CPU of `pids` (their threads included), in seconds."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def heartbeats_cpu(pg, db, nodes, rate, seconds):
    """pgbench sending `rate` heartbeats per second (random nodes of `nodes`), PostgreSQL's
    CPU measured over the middle of the run: (share of a core, ms per heartbeat)."""
    beat = HEARTBEAT_SQL
    for n, value in ((1, "'node-' || lpad(:n::text, 4, '0')"), (2, "'10.0.0.1:4747'"), (3, "100000000"),
                     (4, "100000000 * 536870912::bigint"), (5, "100000000"), (6, "1000"),
                     (7, "1000 * 536870912::bigint"), (8, "1000")):
        beat = beat.replace(f"${n}", value)
    script = f"\\set n random(1, {nodes})\n{beat};\n"
    result = {}
    runner = threading.Thread(target=lambda: result.update(
        out=pgbench(pg, db, script, 4, seconds, rate=rate)))
    runner.start()
    time.sleep(1.5)
    a, t = pg_cpu_seconds(pg), time.perf_counter()
    time.sleep(seconds - 3)
    cpu = (pg_cpu_seconds(pg) - a) / (time.perf_counter() - t)
    runner.join()
    return cpu, result["out"]


def scale(pg, args):
    big, small = args.scale_nodes, 20
    print(f"(scratch databases: {big} and {small} nodes, {args.placements:,} placements each: a tenant "
          f"'big' of {args.placements // 10:,}, 9,000 tenants of ~{args.placements * 9 // 10 // 9000})")
    figures = {}
    typical = f"tenant of ~{args.placements * 9 // 10 // 9000}"
    for nodes in (big, small):
        db = f"ai2in_bench_scale{nodes}"
        try:
            t = time.perf_counter()
            recount = populate(pg, db, nodes, args.placements)
            print(f"{'':<29}{nodes} nodes populated in {time.perf_counter() - t:.1f} s; a gateway's start "
                  f"recounts every tenant's sandboxes in {recount:.0f} ms")
            f = figures[nodes] = {}
            for label, tenant in (("new tenant", "nobody"), (typical, "t42"), ("tenant 'big'", "big")):
                f[label] = reserve_ms(pg, db, tenant, args.runs)
            f["pgbench"] = pgbench(pg, db, create_delete_script("'t' || :t"), 2, args.bench_seconds)
            f["nodes"] = node_list_ms(pg, db, args.runs)
            if nodes == big:
                f["heartbeats"] = heartbeats_cpu(pg, db, nodes, nodes, args.bench_seconds + 4)
        finally:
            pg.drop_database(db)
    print(f"(the reserve statement's execution, EXPLAIN ANALYZE, {big} nodes against {small})")
    for label in ("new tenant", typical, "tenant 'big'"):
        report(f"reserve, {label}", figures[big][label], f"the same, {small} nodes", figures[small][label])
    (tps, lat), (btps, blat) = figures[big]["pgbench"], figures[small]["pgbench"]
    print(f"{f'create+delete SQL, {big} nodes':<28} {tps:8.1f} per second ({lat:.2f} ms each, pgbench, 2 connections) "
          f"| {small} nodes {btps:8.1f} per second | ratio {tps / btps:5.2f}x")
    cpu, (beat_tps, beat_ms) = figures[big]["heartbeats"]
    print(f"{f'{big} heartbeats/s':<28} {cpu * 100:6.1f} % of a core in PostgreSQL ({beat_tps:.0f}/s sent, "
          f"{beat_ms:.2f} ms each)")
    report(f"node list, {big} nodes", figures[big]["nodes"], f"the same, {small} nodes", figures[small]["nodes"])
    each = percentile(figures[big]["nodes"], 50)
    print(f"{'':<29}2 gateways × 2 reads/s: {4 * each:.1f} ms of reads per second")


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer creates and calls, shorter runs, 100k placements")
    ap.add_argument("--only", default="1,2,3,4,5",
                    help="parts to run: 1 creates, 2 calls, 3 placement, 4 exposed URLs, 5 scale")
    ap.add_argument("--creates", type=int, default=200)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--pool", type=int, default=50, help="warm pool size for the pooled creates; 0: none")
    ap.add_argument("--nodes", default="20,50", help="counts of simulated nodes")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--capacity", type=int, default=500, help="sandboxes a simulated node holds at most")
    ap.add_argument("--scale-nodes", type=int, default=1000)
    ap.add_argument("--placements", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=30, help="EXPLAIN ANALYZE runs per figure")
    ap.add_argument("--bench-seconds", type=int, default=10, help="pgbench's runs in part 5")
    # Internal: the simulated nodes' process.
    ap.add_argument("--fake-nodes", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--postgres", help=argparse.SUPPRESS)
    ap.add_argument("--prefix", default="fake", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.fake_nodes:
        asyncio.run(fake_nodes_main(args.postgres, args.fake_nodes, args.capacity, args.prefix))
        return 0
    if args.quick:
        args.creates, args.calls, args.pool, args.seconds = 40, 50, min(args.pool, 10), 4.0
        args.placements, args.runs, args.bench_seconds = 100_000, 10, 5
    args.only = set(args.only.split(","))

    binary = release_binary()
    os.environ["AI2IN_BIN"] = binary  # what tests/e2e/cluster.py starts
    from cluster import Postgres

    print(machine())
    print(f"binary: {binary}")
    pg = Postgres()
    log_dir = tempfile.mkdtemp(prefix="ai2in-bench-cluster-")
    failed = False
    try:
        pg.start()
        statements = enable_statement_stats(pg)
        if args.only & {"1", "2", "4"}:
            gateway_vs_node(pg, args, 0, statements)
            if "1" in args.only and args.pool:
                gateway_vs_node(pg, args, args.pool, statements)
        if "3" in args.only:
            for count in map(int, args.nodes.split(",")):
                placement_throughput(pg, args, count, statements, log_dir)
        if "5" in args.only:
            scale(pg, args)
    except BaseException as e:  # pytest.fail's exception is a BaseException
        failed = True
        print(f"failed: {type(e).__name__}: {e}", file=sys.stderr)
        import traceback

        traceback.print_exc()
    finally:
        pg.cleanup()
        if failed:
            print(f"(logs kept in {log_dir})", file=sys.stderr)
        else:
            shutil.rmtree(log_dir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

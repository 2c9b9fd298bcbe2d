"""Many nodes as one cluster through PostgreSQL, behind gateways that serve the node's API:
creates spread over the nodes and every per-sandbox route (shell, files, terminals and their
WebSocket, streamed runs) answering through either gateway, `GET /v1/nodes` and its figures,
a full cluster (503), draining, a node or a gateway killed with SIGKILL, PostgreSQL restarted
under a running cluster, and a node in cluster mode refusing every call made straight to it.

The shared cluster (3 nodes, 2 gateways) serves the tests that leave it as they found it;
those that kill, drain or fill something start a small cluster of their own on the same
PostgreSQL server (a database each), or on a server of their own when they restart it.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import httpx
import requests
import pytest
import websocket  # websocket-client
from httpx_sse import connect_sse

from cluster import Cluster, Postgres
from conftest import NO_AUTH
from e2e_util import KEY_RE, MIB, assert_gone_from_host, epoch, random_token, wait_until

# Small and long-lived enough to outlast the module.
SHAPE = {"memory_bytes": 128 * MIB, "timeout_ms": 900_000}
# A node silent for 5 s is down; a gateway must say so within this.
DOWN_TIMEOUT = 15.0


# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def postgres():
    """One PostgreSQL server for the module; each cluster takes a database of its own."""
    pg = Postgres()
    try:
        yield pg.start()
    finally:
        pg.cleanup()


@pytest.fixture(scope="module")
def cluster(postgres):
    """The shared cluster: 3 nodes and 2 gateways on the database `ai2in`."""
    c = Cluster(postgres, nodes=3, gateways=2, database="ai2in")
    try:
        yield c.start()
    finally:
        c.cleanup()


@pytest.fixture
def cluster_factory(postgres):
    """`cluster_factory(nodes=2, gateways=1, node_config="", pg=None, gateway_config="")` → a started cluster of
    the test's own (on the module's PostgreSQL unless `pg` is given), cleaned up after it
    whatever state the test left it in."""
    made: list[Cluster] = []

    def make(nodes: int = 2, gateways: int = 1, node_config: str = "", pg: Postgres | None = None,
             gateway_config: str = "") -> Cluster:
        c = Cluster(pg or postgres, nodes=nodes, gateways=gateways, node_config=node_config,
                    gateway_config=gateway_config)
        made.append(c)
        return c.start()

    yield make
    errors = []
    for c in reversed(made):
        try:
            c.cleanup()
        except (Exception, pytest.fail.Exception) as e:  # noqa: BLE001 - raised below
            errors.append(e)
    if errors:
        raise errors[0]


@pytest.fixture
def fresh_postgres():
    """A PostgreSQL server of the test's own, for a test that stops and starts it."""
    pg = Postgres()
    try:
        yield pg.start()
    finally:
        pg.cleanup()


# ---------------------------------------------------------------------------------------------
# helpers


def error_of(r, status: int) -> str:
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:500]}"
    err = r.json().get("error")
    assert isinstance(err, str) and err.strip(), r.text
    return err


def listed_ids(gw, key=None, **params) -> list[str]:
    r = gw.get("/v1/sandboxes", key=key, params=params)
    assert r.status_code == 200, f"GET /v1/sandboxes through {gw.url} → {r.status_code} {r.text[:500]}"
    return [s["id"] for s in r.json()["sandboxes"]]


def by_node(sandboxes) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for s in sandboxes:
        out.setdefault(s["node_id"], []).append(s)
    return out


def create_many(gateways, n: int, workers: int = 4, **body) -> list[dict]:
    """`n` creates, the i-th through `gateways[i % len(gateways)]`, a few at a time."""
    def create(i):
        return gateways[i % len(gateways)].create_sandbox(**SHAPE, **body)

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(create, range(n)))


def create_until_every_node_holds_one(c, gw, limit: int = 20) -> list[dict]:
    """Creates through `gw` until every node of `c` holds at least one of them."""
    made: list[dict] = []
    while len(by_node(made)) < len(c.nodes):
        assert len(made) < limit, (
            f"{limit} creates never reached every node: {Counter(s['node_id'] for s in made)}")
        made.append(gw.create_sandbox(**SHAPE))
    return made


def ws_url(gw, path: str) -> str:
    return gw.url.replace("http://", "ws://") + path


def terminal_over_websocket(creator, attacher, sid: str, line: bytes, timeout: float = 15.0):
    """Opens a terminal in `sid` through `creator`, attaches to its WebSocket through
    `attacher`, types `line`, and reads until the terminal closes the socket: (bytes received,
    close reason)."""
    r = creator.post(f"/v1/sandboxes/{sid}/pty", json={})
    assert r.status_code == 200, f"POST pty through {creator.url} → {r.status_code} {r.text[:500]}"
    pid = r.json()["pid"]
    ws = websocket.create_connection(ws_url(attacher, f"/v1/sandboxes/{sid}/pty/{pid}/ws"),
                                     header=[f"Authorization: Bearer {attacher.admin_key}"], timeout=timeout)
    received, reason = b"", None
    try:
        ws.send_binary(line)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                opcode, data = ws.recv_data()
            except websocket.WebSocketTimeoutException:
                break
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                reason = data[2:].decode(errors="replace")
                break
            received += data
    finally:
        ws.close()
    return received, reason


def run_stream(gw, sid: str, code: str, timeout: float = 60.0) -> list[tuple[str, dict, float]]:
    """`POST …/run/stream` through `gw`: (event, data, arrival time) for every SSE event."""
    events = []
    headers = {"Authorization": f"Bearer {gw.admin_key}"}
    with httpx.Client(timeout=timeout, trust_env=False) as client:
        with connect_sse(client, "POST", f"{gw.url}/v1/sandboxes/{sid}/run/stream",
                         json={"code": code}, headers=headers) as source:
            assert source.response.status_code == 200, (
                f"run/stream through {gw.url} → {source.response.status_code} {source.response.read()[:500]!r}")
            for sse in source.iter_sse():
                events.append((sse.event, json.loads(sse.data), time.monotonic()))
    return events


def main_text(execution) -> str | None:
    mains = [r for r in execution["results"] if r["is_main_result"]]
    return mains[0]["data"]["text/plain"] if mains else None


def used_agrees_with_list(cluster) -> tuple[bool, str]:
    """Whether `used.sandboxes` of every node equals the number of sandboxes listed on it."""
    counts = Counter(s["node_id"] for s in cluster.gateway(0).get("/v1/sandboxes").json()["sandboxes"])
    used = {nid: n["used"]["sandboxes"] for nid, n in cluster.nodes_status().items()}
    wanted = {nid: counts.get(nid, 0) for nid in cluster.node_ids}
    return used == wanted, f"used.sandboxes {used}, listed per node {wanted}"


# ---------------------------------------------------------------------------------------------
# the cluster as a whole


def test_gateways_answer_health_and_share_the_admin_key_the_first_one_wrote(cluster):
    first, second = cluster.gateways
    for g in (first, second):
        r = g.get("/healthz", key=NO_AUTH)
        assert r.status_code == 200 and r.json() == {"status": "ok"}, f"{g.url}: {r.status_code} {r.text}"
    path = Path(first.state_dir, "admin.key")
    assert path.stat().st_mode & 0o777 == 0o600, f"{path} has mode {path.stat().st_mode & 0o777:o}"
    assert KEY_RE.match(path.read_text().strip()), path.read_text()
    assert not Path(second.state_dir, "admin.key").exists(), (
        "the second gateway on the same database wrote an admin key of its own")
    for g in (first, second):
        assert g.get("/v1/nodes").status_code == 200, f"{g.url} refused the cluster's admin key"


def test_every_node_is_listed_ready_with_its_address_capacity_and_heartbeats(cluster):
    for g in cluster.gateways:
        nodes = cluster.nodes_status(g)
        assert sorted(nodes) == sorted(cluster.node_ids), nodes
        for n in cluster.nodes:
            info = nodes[n.node_id]
            assert info["address"] == n.address, info
            assert info["status"] == "ready", info
            for part in ("capacity", "used"):
                assert set(info[part]) >= {"sandboxes", "memory_bytes", "cpu"}, info
                assert all(isinstance(v, (int, float)) and v >= 0 for v in info[part].values()), info
            assert info["capacity"]["sandboxes"] == 1000, f"the default [capacity] sandboxes is 1000: {info}"
            assert abs(epoch(info["last_seen_at"]) - time.time()) < 10, info
    # Nodes heartbeat every second: every last_seen_at moves on.
    before = {nid: epoch(n["last_seen_at"]) for nid, n in cluster.nodes_status().items()}
    wait_until(lambda: all(epoch(n["last_seen_at"]) > before[nid]
                           for nid, n in cluster.nodes_status(cluster.gateway(1)).items()),
               5, lambda: f"last_seen_at did not move on from {before}: {cluster.nodes_status()}")


# ---------------------------------------------------------------------------------------------
# sixty sandboxes on the shared cluster


@pytest.fixture(scope="module")
def sixty(cluster):
    """60 sandboxes created through alternating gateways; deleted at the end if a test
    did not."""
    made = create_many(cluster.gateways, 60, metadata={"e2e": "sixty"})
    yield made
    g = cluster.live_gateway()
    for s in made:
        g.delete(f"/v1/sandboxes/{s['id']}", timeout=30)


def test_sixty_creates_through_both_gateways_land_on_every_node(cluster, sixty):
    placed = by_node(sixty)
    assert set(placed) <= set(cluster.node_ids), f"sandboxes on unknown nodes: {sorted(placed)}"
    spread = {nid: len(placed.get(nid, [])) for nid in cluster.node_ids}
    assert all(spread.values()), f"a node holds none of the 60 sandboxes: {spread}"
    # The node that node_id names is the one that holds the sandbox on the host.
    for s in sixty:
        holders = [n.node_id for n in cluster.nodes if s["id"] in n.sandbox_dirs()]
        assert holders == [s["node_id"]], f"{s['id']} says node {s['node_id']}, held by {holders}"
    # Both gateways give the same info.
    for g in cluster.gateways:
        assert cluster.placement([s["id"] for s in sixty], g) == {s["id"]: s["node_id"] for s in sixty}


def test_used_sandboxes_of_every_node_agrees_with_where_the_sandboxes_are(cluster, sixty):
    wait_until(lambda: used_agrees_with_list(cluster)[0], 10, lambda: used_agrees_with_list(cluster)[1])
    used = {nid: n["used"]["sandboxes"] for nid, n in cluster.nodes_status().items()}
    for nid, ours in by_node(sixty).items():
        assert used[nid] >= len(ours), f"node {nid} holds {len(ours)} of ours, used says {used[nid]}"


def test_a_sample_on_every_node_answers_every_route_through_both_gateways(cluster, sixty):
    g0, g1 = cluster.gateways
    sample = [s for ours in by_node(sixty).values() for s in ours[:2]]
    assert len(sample) == 2 * len(cluster.nodes), f"fewer than 2 sandboxes on some node: {sample}"
    for s in sample:
        sid = s["id"]
        for a, b in ((g0, g1), (g1, g0)):
            where = f"{sid} on {s['node_id']}, {a.url} then {b.url}"
            token = random_token(10)

            # shell: what one gateway's command leaves, the other's reads
            a.run(sid, f"echo {token} > /tmp/shell-mark")
            assert b.run(sid, "cat /tmp/shell-mark") == f"{token}\n", where

            # files: JSON write and read
            text = f"written through {a.url}: {token}\n"
            r = a.post(f"/v1/sandboxes/{sid}/fs/write", json={"path": f"notes-{token}.txt", "content": text})
            assert r.status_code == 200, f"{where}: fs/write → {r.status_code} {r.text[:300]}"
            assert r.json() == {"path": f"/home/user/notes-{token}.txt", "size_bytes": len(text.encode())}
            r = b.post(f"/v1/sandboxes/{sid}/fs/read", json={"path": f"/home/user/notes-{token}.txt"})
            assert r.status_code == 200 and r.json() == {"content": text}, f"{where}: fs/read → {r.status_code} {r.text[:300]}"

            # files: raw bytes, streamed both ways
            data = os.urandom(MIB + 7)
            r = a.request("PUT", f"/v1/sandboxes/{sid}/files", params={"path": f"blob-{token}"}, data=data)
            assert r.status_code == 200, f"{where}: PUT files → {r.status_code} {r.text[:300]}"
            assert r.json()["size_bytes"] == len(data)
            r = b.request("GET", f"/v1/sandboxes/{sid}/files", params={"path": f"blob-{token}"})
            assert r.status_code == 200 and r.content == data, f"{where}: GET files → {r.status_code}, {len(r.content)} bytes"

            # a terminal opened through one gateway, its WebSocket through the other
            received, reason = terminal_over_websocket(a, b, sid, b"cat /tmp/shell-mark; echo $((6*7)); exit 3\n")
            assert token.encode() in received and b"42" in received, f"{where}: terminal said {received[-500:]!r}"
            assert reason == "exit 3", f"{where}: close reason {reason!r}"

            # a streamed run: events arrive as they happen, done last
            code = f"import time\nprint('{token}-1')\ntime.sleep(0.5)\nprint('{token}-2')\n6*7"
            events = run_stream(b, sid, code)
            names = [e for e, _, _ in events]
            assert names and names[-1] == "done" and names.count("done") == 1, f"{where}: {names}"
            outs = [(d["text"], t) for e, d, t in events if e == "stdout"]
            assert [text for text, _ in outs] == [f"{token}-1\n", f"{token}-2\n"], f"{where}: {events}"
            assert main_text(events[-1][1]["execution"]) == "42", f"{where}: {events[-1]}"
            assert events[-1][2] - outs[0][1] >= 0.3, (
                f"{where}: the first output came with the end of the run: the stream was held back")


def test_both_gateways_list_all_sixty(cluster, sixty):
    ours = {s["id"]: s["node_id"] for s in sixty}
    for g in cluster.gateways:
        r = g.get("/v1/sandboxes")
        assert r.status_code == 200, r.text
        listed = r.json()["sandboxes"]
        ids = [s["id"] for s in listed]
        assert len(ids) == len(set(ids)), f"{g.url} lists a sandbox twice"
        missing = set(ours) - set(ids)
        assert not missing, f"{g.url} does not list {len(missing)} of the 60: {sorted(missing)[:5]}"
        assert {s["id"]: s["node_id"] for s in listed if s["id"] in ours} == ours
        # Filters apply across the cluster.
        assert sorted(listed_ids(g, **{"metadata.e2e": "sixty"})) == sorted(ours)


def test_deleting_through_either_gateway_empties_the_list(cluster, sixty):
    g0, g1 = cluster.gateways

    def delete(i):
        # Through the other gateway than the one that created it.
        (g1 if i % 2 == 0 else g0).delete_sandbox(sixty[i]["id"])

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(delete, range(len(sixty))))
    for g in (g0, g1):
        assert listed_ids(g, **{"metadata.e2e": "sixty"}) == [], f"{g.url} still lists some of the 60"
        left = set(listed_ids(g)) & {s["id"] for s in sixty}
        assert not left, f"{g.url} still lists {sorted(left)}"
    for s in sixty[:6]:
        assert g0.sandbox(s["id"]).status_code in (404, 410)
    for nid, ours in by_node(sixty).items():
        assert_gone_from_host(cluster.node_by_id(nid).state_dir, [s["id"] for s in ours])
    wait_until(lambda: used_agrees_with_list(cluster)[0], 10, lambda: used_agrees_with_list(cluster)[1])


# ---------------------------------------------------------------------------------------------
# keys: a node in cluster mode takes nothing straight; revocation reaches every gateway


def test_a_node_in_cluster_mode_refuses_every_call_made_straight_to_it(cluster):
    gw = cluster.gateway(0)
    sid = gw.create_sandbox(**SHAPE)["id"]
    try:
        gw.run(sid, "echo original > /home/user/f")
        node = cluster.node_by_id(gw.sandbox(sid).json()["node_id"])
        assert node.healthy(), "the node must be up for its refusals to mean anything"
        r = gw.post(f"/v1/sandboxes/{sid}/pty", json={"cmd": "sleep 60"})
        assert r.status_code == 200, r.text
        pty_pid = r.json()["pid"]
        user = gw.create_key(["sandboxes:read", "sandboxes:write"], name="e2e-direct")["key"]
        keys = {"no Authorization header": NO_AUTH, "a key made through the gateway": user,
                "the cluster's admin key": cluster.admin_key}
        if node.own_admin_key():
            keys["the node's own admin.key"] = node.own_admin_key()
        calls = [
            ("GET", "/v1/sandboxes", None),
            ("POST", "/v1/sandboxes", {}),
            ("GET", f"/v1/sandboxes/{sid}", None),
            ("POST", f"/v1/sandboxes/{sid}/shell", {"cmd": "echo changed > /home/user/f"}),
            ("POST", f"/v1/sandboxes/{sid}/fs/write", {"path": "/home/user/f", "content": "changed\n"}),
            ("PUT", f"/v1/sandboxes/{sid}/files?path=/home/user/f", b"changed\n"),
            ("POST", f"/v1/sandboxes/{sid}/pause", None),
            ("DELETE", f"/v1/sandboxes/{sid}", None),
            ("GET", "/v1/keys", None),
            ("POST", "/v1/keys", {"name": "e2e-made-on-the-node", "scopes": ["admin"]}),
            ("GET", "/v1/nodes", None),
        ]
        dirs_before = node.sandbox_dirs()
        for what, key in keys.items():
            for method, path, body in calls:
                kw = {"data": body} if isinstance(body, bytes) else {"json": body} if body is not None else {}
                r = node.request(method, path, key=key, **kw)
                assert r.status_code == 401, (
                    f"{method} {path} straight to node {node.node_id} with {what} → {r.status_code} {r.text[:300]}")
            header = [] if key is NO_AUTH else [f"Authorization: Bearer {key}"]
            with pytest.raises(websocket.WebSocketBadStatusException) as refused:
                websocket.create_connection(ws_url(node, f"/v1/sandboxes/{sid}/pty/{pty_pid}/ws"),
                                            header=header, timeout=10).close()
            assert refused.value.status_code == 401, f"terminal WebSocket straight to the node with {what}"
        # The sandbox is as it was, and nothing was made on the node.
        info = gw.sandbox(sid)
        assert info.status_code == 200 and info.json()["status"] == "running", info.text
        assert gw.run(sid, "cat /home/user/f") == "original\n"
        assert node.sandbox_dirs() == dirs_before
        names = [k["name"] for k in gw.get("/v1/keys").json()["keys"]]
        assert "e2e-made-on-the-node" not in names, names
    finally:
        gw.delete(f"/v1/sandboxes/{sid}")


def test_a_key_revoked_through_one_gateway_fails_on_both_within_seconds(cluster):
    g0, g1 = cluster.gateways
    made = g0.create_key(["sandboxes:read"], name="e2e-revoked")
    for g in (g0, g1):
        wait_until(lambda: g.get("/v1/sandboxes", key=made["key"]).status_code == 200, 3,
                   f"a key made through {g0.url} does not work through {g.url}")
    r = g1.delete(f"/v1/keys/{made['id']}")
    assert r.status_code == 204, r.text
    for g in (g1, g0):
        wait_until(lambda: g.get("/v1/sandboxes", key=made["key"]).status_code == 401, 3,
                   f"the key revoked through {g1.url} still works through {g.url}")
    assert made["id"] not in [k["id"] for k in g0.get("/v1/keys").json()["keys"]]


def test_nodes_routes_want_an_admin_key(cluster):
    # Last of the shared cluster's tests: a drain wrongly let through would spoil the others.
    g = cluster.gateway(0)
    target = cluster.node_ids[0]
    assert g.get("/v1/nodes", key=NO_AUTH).status_code == 401
    user = g.create_key(["sandboxes:read", "sandboxes:write"], name="e2e-not-admin")["key"]
    assert "admin" in error_of(g.get("/v1/nodes", key=user), 403)
    assert "admin" in error_of(g.post(f"/v1/nodes/{target}/drain", key=user), 403)
    error_of(g.post("/v1/nodes/no-such-node-e2e/drain"), 404)
    assert cluster.nodes_status()[target]["status"] == "ready", "a refused drain drained the node"


# ---------------------------------------------------------------------------------------------
# clusters of their own: full, draining, a node or a gateway killed, PostgreSQL restarted


def test_a_full_cluster_answers_503_and_every_node_holds_its_capacity(cluster_factory):
    c = cluster_factory(nodes=3, gateways=1, node_config="[capacity]\nsandboxes = 2\n")
    gw = c.gateway(0)
    made = [gw.create_sandbox(**SHAPE) for _ in range(6)]
    spread = {nid: len(by_node(made).get(nid, [])) for nid in c.node_ids}
    assert spread == {nid: 2 for nid in c.node_ids}, f"6 creates on nodes of room 2: {spread}"
    error_of(gw.post("/v1/sandboxes", json=SHAPE), 503)
    nodes = c.nodes_status()
    assert {nid: n["capacity"]["sandboxes"] for nid, n in nodes.items()} == {nid: 2 for nid in c.node_ids}
    wait_until(lambda: all(n["used"]["sandboxes"] == 2 for n in c.nodes_status().values()), 5,
               lambda: f"used.sandboxes is not 2 everywhere: {c.nodes_status()}")
    # Room made on one node takes the next create.
    freed = made[0]
    gw.delete_sandbox(freed["id"])

    def create():
        r = gw.post("/v1/sandboxes", json=SHAPE)
        if r.status_code == 201:
            gw.created[r.json()["id"]] = gw.admin_key
            return r.json()
        assert r.status_code == 503, r.text
        return None

    again = wait_until(create, 5, "no create succeeded after a sandbox was deleted from a full cluster")
    assert again["node_id"] == freed["node_id"], (again["node_id"], freed["node_id"])


def test_a_drained_node_takes_nothing_new_and_keeps_serving_what_it_has(cluster_factory):
    c = cluster_factory(nodes=2, gateways=1)
    gw = c.gateway(0)
    first = create_many([gw], 4)
    drained = first[0]["node_id"]
    on_drained = by_node(first)[drained]
    for s in on_drained:
        gw.run(s["id"], f"echo kept-{s['id']} > /home/user/kept")

    r = gw.post(f"/v1/nodes/{drained}/drain")
    assert r.status_code == 200, r.text
    assert r.json()["id"] == drained and r.json()["status"] == "draining", r.json()
    nodes = c.nodes_status()
    assert nodes[drained]["status"] == "draining", nodes
    assert all(n["status"] == "ready" for nid, n in nodes.items() if nid != drained), nodes

    later = create_many([gw], 6)
    assert not [s["id"] for s in later if s["node_id"] == drained], (
        f"creates landed on the draining node {drained}: {[s['node_id'] for s in later]}")
    for s in on_drained:
        assert gw.run(s["id"], "cat /home/user/kept") == f"kept-{s['id']}\n"
    # Draining lasts: the heartbeats since did not turn it back to ready.
    assert c.nodes_status()[drained]["status"] == "draining"


def test_a_node_killed_answers_503_naming_it_and_comes_back_with_its_sandboxes(cluster_factory):
    c = cluster_factory(nodes=2, gateways=1)
    gw = c.gateway(0)
    placed = by_node(create_until_every_node_holds_one(c, gw))
    victim, survivor = c.node(0), c.node(1)
    on_victim = [s["id"] for s in placed[victim.node_id]]
    on_survivor = [s["id"] for s in placed[survivor.node_id]]
    for sid in on_victim:
        gw.run(sid, f"echo before-{sid} > /home/user/kept")

    victim.kill9()
    wait_until(lambda: gw.shell_raw(on_victim[0], "true").status_code == 503, DOWN_TIMEOUT,
               f"sandbox {on_victim[0]} on the killed node {victim.node_id} does not answer 503")
    for sid in on_victim:
        assert victim.node_id in error_of(gw.shell_raw(sid, "true"), 503)
        r = gw.post(f"/v1/sandboxes/{sid}/fs/read", json={"path": "/home/user/kept"})
        assert victim.node_id in error_of(r, 503)
    for sid in on_survivor:
        assert gw.run(sid, "echo alive") == "alive\n"
    c.wait_node_status(victim.node_id, "down", DOWN_TIMEOUT)
    assert c.nodes_status()[survivor.node_id]["status"] == "ready"
    assert set(on_survivor) <= set(listed_ids(gw)), "the list lost the sandboxes of the live node"

    later = create_many([gw], 3, workers=1)
    assert all(s["node_id"] == survivor.node_id for s in later), [s["node_id"] for s in later]

    victim.restart()
    c.wait_node_status(victim.node_id, "ready", DOWN_TIMEOUT)
    for sid in on_victim:
        wait_until(lambda: gw.shell_raw(sid, "true").status_code == 200, 10,
                   f"sandbox {sid} does not answer after its node came back")
        assert gw.run(sid, "cat /home/user/kept") == f"before-{sid}\n"


def test_a_gateway_killed_leaves_the_other_serving_everything(cluster_factory):
    c = cluster_factory(nodes=1, gateways=2)
    g0, g1 = c.gateways
    old = g0.create_sandbox(**SHAPE)["id"]
    g0.run(old, "echo from-before > /home/user/f")

    g0.kill9()
    assert g1.healthy()
    assert c.nodes_status(g1)[c.node_ids[0]]["status"] == "ready"
    new = g1.create_sandbox(**SHAPE)["id"]
    assert g1.run(old, "cat /home/user/f") == "from-before\n"
    assert g1.run(new, "echo fine") == "fine\n"
    assert {old, new} <= set(listed_ids(g1))
    g1.delete_sandbox(old)
    g1.delete_sandbox(new)
    assert not {old, new} & set(listed_ids(g1))

    # Started again on its state dir, it serves with the same admin key.
    g0.restart()
    again = g0.create_sandbox(**SHAPE)["id"]
    assert g1.run(again, "echo both") == "both\n"
    g1.delete_sandbox(again)


def test_the_cluster_reconnects_after_postgresql_restarts(cluster_factory, fresh_postgres):
    c = cluster_factory(nodes=2, gateways=2, pg=fresh_postgres)
    before = c.gateway(0).create_sandbox(**SHAPE)["id"]

    # Down for a few heartbeats: every connection of the cluster is cut, and stays cut.
    fresh_postgres.stop()
    time.sleep(3)
    fresh_postgres.start()
    back = time.time()
    deadline = time.monotonic() + 30

    for g in c.gateways:
        def create():
            r = g.post("/v1/sandboxes", json=SHAPE, timeout=10)
            if r.status_code == 201:
                g.created[r.json()["id"]] = g.admin_key
            return r.status_code == 201

        wait_until(create, max(1.0, deadline - time.monotonic()),
                   f"{g.url} does not serve creates again after PostgreSQL restarted", interval=0.5)

    def all_ready_and_heard_from():
        nodes = c.nodes_status()
        return all(nodes[nid]["status"] == "ready" and epoch(nodes[nid]["last_seen_at"]) > back
                   for nid in c.node_ids)

    wait_until(all_ready_and_heard_from, max(1.0, deadline - time.monotonic()),
               lambda: f"nodes did not report again after PostgreSQL restarted: {c.nodes_status()}",
               interval=0.5)
    for g in c.gateways:
        assert g.run(before, "echo still") == "still\n"


# ---------------------------------------------------------------------------------------------
# quotas: counted once for the whole cluster


def test_a_quota_holds_when_two_gateways_admit_at_once(cluster_factory):
    c = cluster_factory(nodes=3, gateways=2, gateway_config="[quotas]\nsandboxes = 10\n")
    g0, g1 = c.gateways
    tenant = "quota-" + random_token(6).lower()
    key = g0.create_key(["sandboxes:read", "sandboxes:write"], tenant=tenant, name="e2e-quota")["key"]

    def create(i):
        g = (g0, g1)[i % 2]
        r = g.post("/v1/sandboxes", key=key, json=SHAPE, timeout=120)
        if r.status_code == 201:
            g.created[r.json()["id"]] = key
        return r

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(create, range(100)))
    statuses = Counter(r.status_code for r in answers)
    assert statuses == {201: 10, 429: 90}, f"100 creates at once against a quota of 10: {statuses}"
    err = next(r for r in answers if r.status_code == 429).json()["error"]
    assert "quota" in err and "10" in err, err
    ours = [r.json() for r in answers if r.status_code == 201]
    assert sorted(listed_ids(g1, key=key)) == sorted(s["id"] for s in ours)
    # A delete (through the other gateway) gives one back; the next create takes it.
    g1.delete_sandbox(ours[0]["id"], key=key)
    r = g0.post("/v1/sandboxes", key=key, json=SHAPE)
    assert r.status_code == 201, r.text
    g0.created[r.json()["id"]] = key
    error_of(g1.post("/v1/sandboxes", key=key, json=SHAPE), 429)
    # Another tenant has a quota of its own.
    other = g0.create_key(["sandboxes:write"], tenant=tenant + "-b", name="e2e-quota-b")["key"]
    r = g1.post("/v1/sandboxes", key=other, json=SHAPE)
    assert r.status_code == 201, r.text
    g1.created[r.json()["id"]] = other


def test_a_sandbox_that_ends_by_itself_gives_its_place_and_quota_back(cluster_factory):
    c = cluster_factory(nodes=1, gateways=1, gateway_config="[quotas]\nsandboxes = 1\n")
    gw = c.gateway(0)
    short = gw.create_sandbox(memory_bytes=128 * MIB, timeout_ms=2000)
    error_of(gw.post("/v1/sandboxes", json=SHAPE), 429)
    # Its node ends it at its lifetime and tells the cluster: the list, the routes and the
    # quota all forget it.
    wait_until(lambda: short["id"] not in listed_ids(gw), 20, f"{short['id']} outlived its lifetime")
    wait_until(lambda: gw.sandbox(short["id"]).status_code in (404, 410), 10,
               f"the gateway still finds {short['id']} running after it ended")
    # Its room comes back once its node has destroyed it (a moment after it leaves lists).

    def create():
        r = gw.post("/v1/sandboxes", json=SHAPE)
        assert r.status_code in (201, 429), r.text
        if r.status_code == 201:
            gw.created[r.json()["id"]] = gw.admin_key
            return r.json()
        return None

    again = wait_until(create, 10, "the quota did not come back after the sandbox ended")
    assert again["id"] != short["id"]


# ---------------------------------------------------------------------------------------------
# public URLs: exposed ports and services, served through any gateway


def through(gw, host: str, path: str = "/", **kw):
    """A request to `gw` for the public host `host` (as DNS would send it there)."""
    return requests.get(gw.url + path, headers={"Host": host, **kw.pop("headers", {})}, timeout=30, **kw)


def test_exposed_ports_and_services_answer_through_every_gateway(cluster):
    g0, g1 = cluster.gateways
    sid = g0.create_sandbox(**SHAPE)["id"]
    svc = None
    try:
        site = "echo from-$(hostname)-port > /tmp/index.html && cd /tmp && exec python3 -m http.server 8000"
        r = g0.post(f"/v1/sandboxes/{sid}/commands", json={"cmd": site})
        assert r.status_code == 200, r.text
        probe = "python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", 8000), 1)'"
        wait_until(lambda: g1.sh(sid, probe)["exit_code"] == 0, 15, "nothing listens on 8000")
        r = g1.post(f"/v1/sandboxes/{sid}/expose", json={"port": 8000})
        assert r.status_code == 200, r.text
        host = f"8000-{sid.removeprefix('sbx_')}.localhost"
        for g in (g0, g1):
            r = through(g, host, "/index.html")
            assert r.status_code == 200 and r.text.startswith("from-") and r.text.endswith("-port\n"), (g.url, r.status_code, r.text[:300])
            # The older form with the whole id, and any case.
            assert through(g, f"8000-{sid}.LOCALHOST:{g.port}", "/index.html").text == r.text
        # A port not exposed is the node's own 404; an unknown sandbox the gateway's.
        assert through(g0, f"8001-{sid.removeprefix('sbx_')}.localhost").status_code == 404
        assert through(g0, "8000-doesnotexist00000000.localhost").status_code == 404

        cmd = "mkdir -p /tmp/site && echo served-by-service > /tmp/site/index.html && cd /tmp/site && exec python3 -m http.server 8000"
        r = g0.post("/v1/hosting/services", json={"name": "web", "image": "host", "internal_port": 8000, "start_cmd": cmd})
        assert r.status_code == 201, r.text
        svc = r.json()
        wait_until(lambda: g1.get(f"/v1/hosting/services/{svc['id']}").json()["status"] == "running", 30,
                   lambda: f"the service is not running: {g1.get('/v1/hosting/services/' + svc['id']).text}")
        assert svc["id"] in [s["id"] for s in g1.get("/v1/hosting/services").json()["services"]]
        # By name too, through either gateway.
        assert g0.get("/v1/hosting/services/web").json()["id"] == svc["id"]
        host = f"web-{svc['id'].removeprefix('svc_')}.localhost"
        for g in (g0, g1):
            r = through(g, host)
            assert r.status_code == 200 and r.text == "served-by-service\n", (g.url, r.status_code, r.text[:300])
    finally:
        g0.delete(f"/v1/sandboxes/{sid}")
        if svc:
            r = g1.delete(f"/v1/hosting/services/{svc['id']}")
            assert r.status_code == 204, r.text
            assert g0.get(f"/v1/hosting/services/{svc['id']}").status_code == 404


# ---------------------------------------------------------------------------------------------
# databases, volumes and images through the gateway


def test_a_database_is_placed_served_and_deleted_through_the_gateway(cluster_factory):
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is missing: install redis-server (.ci/run does)", pytrace=False)
    c = cluster_factory(nodes=1, gateways=2, node_config='[databases]\nlisten = "127.0.0.1"\n')
    g0, g1 = c.gateways
    engines = g1.get("/v1/databases/engines")
    assert engines.status_code == 200 and "redis" in engines.text, engines.text
    r = g0.post("/v1/databases", json={"engine": "redis"}, timeout=180)
    assert r.status_code == 201, r.text
    db = r.json()
    try:
        ping = subprocess.run(["redis-cli", "--no-auth-warning", "-u", db["url"], "PING"],
                              capture_output=True, text=True, timeout=30)
        assert ping.stdout.strip() == "PONG", ping
        assert [d["id"] for d in g1.get("/v1/databases").json()["databases"]] == [db["id"]]
        assert g1.get(f"/v1/databases/{db['id']}").json()["url"] == db["url"]
        r = g1.post(f"/v1/databases/{db['id']}/reset_password")
        assert r.status_code == 200 and r.json()["password"] != db["password"], r.text
    finally:
        r = g1.delete(f"/v1/databases/{db['id']}")
        assert r.status_code == 204, r.text
    assert g0.get(f"/v1/databases/{db['id']}").status_code == 404
    assert g0.get("/v1/databases").json()["databases"] == []


def test_a_sandbox_mounting_a_volume_is_placed_on_the_volumes_node(cluster_factory):
    c = cluster_factory(nodes=3, gateways=1)
    gw = c.gateway(0)
    name = "data-" + random_token(6).lower()
    r = gw.post("/v1/volumes", json={"name": name, "size_bytes": 64 * MIB})
    assert r.status_code == 201, r.text
    vol = r.json()
    first = gw.create_sandbox(**SHAPE, volumes=[{"volume_id": vol["id"], "path": "/data"}])
    gw.run(first["id"], "echo kept > /data/f")
    gw.delete_sandbox(first["id"])
    # However many sandboxes the others hold, each that mounts it (by id or by name) lands
    # where it is.
    for ref in (vol["id"], name, vol["id"]):
        s = gw.create_sandbox(**SHAPE, volumes=[{"volume_id": ref, "path": "/data"}])
        assert s["node_id"] == first["node_id"], (ref, s["node_id"], first["node_id"])
        assert gw.run(s["id"], "cat /data/f") == "kept\n"
        gw.delete_sandbox(s["id"])
    # Two volumes on different nodes cannot be mounted together.
    others = [n for n in c.node_ids if n != first["node_id"]]
    c.gateway(0).post(f"/v1/nodes/{first['node_id']}/drain")
    r = gw.post("/v1/volumes", json={"name": name + "-b", "size_bytes": 64 * MIB})
    assert r.status_code == 201, r.text
    other = r.json()
    assert gw.get(f"/v1/volumes/{name}-b").json()["id"] == other["id"]
    err = error_of(gw.post("/v1/sandboxes", json={**SHAPE, "volumes": [
        {"volume_id": vol["id"], "path": "/a"}, {"volume_id": other["id"], "path": "/b"}]}), 400)
    assert "volumes" in err and "different nodes" in err, err
    assert others, c.node_ids
    for ref in (vol["id"], name + "-b"):
        r = gw.delete(f"/v1/volumes/{ref}")
        assert r.status_code == 204, r.text
    assert gw.get("/v1/volumes").json()["volumes"] == []


def test_an_image_pulled_through_the_gateway_runs_on_every_node(cluster_factory, registry):
    c = cluster_factory(nodes=3, gateways=1)
    gw = c.gateway(0)
    ref = registry.refs["busybox"]
    r = gw.post("/v1/images", json={"ref": ref}, timeout=300)
    assert r.status_code == 201, r.text
    image = r.json()
    again = gw.post("/v1/images", json={"ref": ref}, timeout=300)
    assert again.status_code == 200 and again.json()["id"] == image["id"], again.text
    listed = gw.get("/v1/images").json()["images"]
    assert [i["ref"] for i in listed] == [ref], f"one image, pulled by 3 nodes: {listed}"
    assert gw.get(f"/v1/images/{image['id']}").json()["id"] == image["id"]
    # One sandbox of the image on each node (a tenant's creates spread), each runs it.
    made = [gw.create_sandbox(**SHAPE, image=ref) for _ in range(3)]
    assert sorted(s["node_id"] for s in made) == sorted(c.node_ids), [s["node_id"] for s in made]
    for s in made:
        assert gw.run(s["id"], "busybox echo hello") == "hello\n"
    # In use on the nodes: the delete is refused; once they are gone, it goes everywhere.
    error_of(gw.delete(f"/v1/images/{image['id']}"), 409)
    for s in made:
        gw.delete_sandbox(s["id"])
    r = gw.delete(f"/v1/images/{image['id']}")
    assert r.status_code == 204, r.text
    assert gw.get(f"/v1/images/{image['id']}").status_code == 404
    assert gw.get("/v1/images").json()["images"] == [], "a node kept the image"
    # A create's body past the limit is refused as a node refuses it.
    r = gw.post("/v1/sandboxes", data=b"{" + b" " * (2 << 20) + b"}", headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "bytes" in r.json()["error"], r.text[:300]
    # Import is not a cluster's (yet): a clear answer.
    r = gw.post("/v1/images/import", data=b"x" * 10)
    assert r.status_code == 501 and "registry" in r.json()["error"], r.text


def test_creates_at_once_through_two_gateways_on_one_node_all_succeed(cluster_factory):
    # Each reservation locks the node's row for a moment; the others wait for it instead of
    # finding no node with room.
    c = cluster_factory(nodes=1, gateways=2)
    g0, g1 = c.gateways

    def create(i):
        g = (g0, g1)[i % 2]
        r = g.post("/v1/sandboxes", json=SHAPE, timeout=120)
        if r.status_code == 201:
            g.created[r.json()["id"]] = g.admin_key
        return r.status_code, r.text[:200]

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(create, range(48)))
    assert Counter(status for status, _ in answers) == {201: 48}, [a for a in answers if a[0] != 201][:3]


def test_a_node_cut_off_answers_503_and_deletes_what_was_deleted_meanwhile_when_back(cluster_factory):
    c = cluster_factory(nodes=2, gateways=1)
    gw = c.gateway(0)
    made = create_until_every_node_holds_one(c, gw)
    victim = c.node(0)
    made += [gw.create_sandbox(**SHAPE) for _ in range(2)]
    on_victim = [s["id"] for s in made if s["node_id"] == victim.node_id]
    assert len(on_victim) >= 2, Counter(s["node_id"] for s in made)
    kept, deleted = on_victim[0], on_victim[1]
    gw.run(kept, "echo kept > /home/user/f")
    assert deleted in victim.sandbox_dirs()

    # Cut off: it neither reports nor answers (a partition, as the cluster sees it).
    os.kill(victim.proc.pid, signal.SIGSTOP)
    try:
        c.wait_node_status(victim.node_id, "down", DOWN_TIMEOUT)
        assert victim.node_id in error_of(gw.shell_raw(kept, "true"), 503)
        others = [s["id"] for s in made if s["node_id"] != victim.node_id]
        assert gw.run(others[0], "echo fine") == "fine\n"
        # Deleted meanwhile: gone from the cluster at once...
        r = gw.delete(f"/v1/sandboxes/{deleted}")
        assert r.status_code == 204, r.text
        assert gw.sandbox(deleted).status_code == 404
        assert deleted in victim.sandbox_dirs(), "the cut-off node cannot have deleted it yet"
    finally:
        os.kill(victim.proc.pid, signal.SIGCONT)
    # ... and from its node once it is back; what was not deleted answers again.
    c.wait_node_status(victim.node_id, "ready", DOWN_TIMEOUT)
    wait_until(lambda: deleted not in victim.sandbox_dirs(), 15,
               f"{deleted}, deleted while its node was cut off, is still on the node")
    assert gw.run(kept, "cat /home/user/f") == "kept\n"
    assert deleted not in listed_ids(gw)


def test_a_caller_cannot_forge_the_gateways_headers(cluster):
    # What a client sends as the gateway's own headers is replaced by what the gateway
    # authenticated: a tenant's key cannot act as another tenant, nor as the cluster.
    gw = cluster.gateway(0)
    a = gw.create_key(["sandboxes:read", "sandboxes:write"], tenant="forge-a", name="e2e-forge-a")["key"]
    b = gw.create_key(["sandboxes:read", "sandboxes:write"], tenant="forge-b", name="e2e-forge-b")["key"]
    theirs = gw.post("/v1/sandboxes", key=b, json=SHAPE)
    assert theirs.status_code == 201, theirs.text
    sid = theirs.json()["id"]
    gw.created[sid] = b
    forged = {"X-Ai2in-Principal": "key_forged forge-b sandboxes:read,sandboxes:write,admin",
              "X-Ai2in-Cluster-Secret": "0" * 64}
    assert gw.get(f"/v1/sandboxes/{sid}", key=a, headers=forged).status_code == 404
    r = gw.get("/v1/sandboxes", key=a, headers=forged)
    assert r.status_code == 200 and sid not in [s["id"] for s in r.json()["sandboxes"]], r.text
    assert gw.post(f"/v1/sandboxes/{sid}/shell", key=a, headers=forged, json={"cmd": "true"}).status_code == 404
    assert gw.get("/v1/nodes", key=a, headers=forged).status_code == 403
    # Without a key, the forged headers alone are nothing.
    assert gw.get(f"/v1/sandboxes/{sid}", key=NO_AUTH, headers=forged).status_code == 401
    # A browser's preflight is answered without a key, as a node answers it.
    r = requests.options(gw.url + "/v1/sandboxes", headers={
        "Origin": "https://example.com", "Access-Control-Request-Method": "POST"}, timeout=10)
    assert r.status_code == 204 and r.headers["Access-Control-Allow-Origin"] == "*", r.headers

"""The warm pool: creates claim ready sandboxes; each is handed out once, to one tenant, with
the caller's env, metadata and lifetime; the pool refills, counts toward capacity, can be
turned off, and is destroyed when the node stops (issue 7)."""

from __future__ import annotations

import os
import re

from e2e_util import cgroup_pids, epoch, wait_until


def pool_ready(node, n: int) -> bool:
    """Whether the node holds exactly `n` pooled sandboxes, ready, and starts none."""
    text = node.get("/metrics").text
    count = lambda status: int(re.search(rf'^ai2in_sandboxes{{status="{status}"}} (\d+)$', text, re.M).group(1))
    return count("pooled") == n and count("starting") == 0


def wait_for_pool(node, n: int, what="the pool did not fill"):
    wait_until(lambda: pool_ready(node, n), 20, what)


def pooled_ids(node) -> set[str]:
    """Ids of the node's sandboxes that no tenant holds: those with a directory in its state
    dir that the admin key cannot see."""
    on_disk = set(os.listdir(os.path.join(node.state_dir, "sandboxes")))
    visible = {s["id"] for s in node.get("/v1/sandboxes").json()["sandboxes"]}
    return on_disk - visible


def test_creates_claim_pooled_sandboxes_and_the_pool_refills(node_factory):
    n = node_factory(config="[pool]\nsize = 2\n")
    wait_for_pool(n, 2)
    warm = pooled_ids(n)
    sbx = n.create_sandbox(env={"GREETING": "hello from the pool"}, metadata={"job": "42"}, timeout_ms=120_000)
    assert sbx["id"] in warm, "the create did not claim a pooled sandbox"
    assert sbx["metadata"] == {"job": "42"} and sbx["status"] == "running"
    assert 119 < epoch(sbx["end_at"]) - epoch(sbx["created_at"]) <= 120.5
    # The caller's environment reaches every process, and the sandbox works as any other.
    assert n.run(sbx["id"], "echo $GREETING") == "hello from the pool\n"
    r = n.post(f"/v1/sandboxes/{sbx['id']}/run", json={"code": "import os; os.environ['GREETING']"})
    assert r.status_code == 200, r.text
    main = [x for x in r.json()["results"] if x["is_main_result"]][0]["data"]
    assert main["text/plain"] == "'hello from the pool'", r.text
    # The pool refills with new sandboxes; the claimed one is never pooled again.
    wait_for_pool(n, 2, "the pool did not refill")
    assert sbx["id"] not in pooled_ids(n)


def test_a_pooled_sandbox_is_never_handed_out_twice_nor_across_tenants(node_factory):
    n = node_factory(config="[pool]\nsize = 2\n")
    other = n.create_key(["sandboxes:write"], tenant="other")
    seen = set()
    for i in range(6):
        key = other["key"] if i % 2 else None
        sbx = n.create_sandbox(key=key)
        assert sbx["id"] not in seen
        seen.add(sbx["id"])
        n.delete_sandbox(sbx["id"], key=key)
    wait_for_pool(n, 2, "the pool did not refill")
    assert not (pooled_ids(n) & seen)
    # No tenant sees or reaches a pooled sandbox.
    for sid in pooled_ids(n):
        assert n.get(f"/v1/sandboxes/{sid}").status_code == 404
        assert n.get(f"/v1/sandboxes/{sid}", key=other["key"]).status_code == 404
        assert n.shell_raw(sid, "true").status_code == 404


def test_other_shapes_are_pooled_once_asked_for(node_factory):
    n = node_factory(config="[pool]\nsize = 1\n")
    wait_for_pool(n, 1)
    n.create_sandbox(memory_bytes=128 << 20)
    # Now that shape is in demand: a sandbox of it waits, and the next such create claims it.
    wait_for_pool(n, 2, "the asked-for shape was not pooled")
    warm = pooled_ids(n)
    second = n.create_sandbox(memory_bytes=128 << 20)
    assert second["id"] in warm and second["resources"]["memory_bytes"] == 128 << 20


def test_the_pool_counts_toward_capacity_gives_way_and_can_be_turned_off(node_factory):
    n = node_factory(config="[pool]\nsize = 2\n[capacity]\nsandboxes = 3\n")
    wait_for_pool(n, 2)
    a = n.create_sandbox()
    # The refill takes the last room: two pooled and one claimed fill the node.
    wait_for_pool(n, 2, "the pool did not refill")
    # A create of another shape finds no room: a pooled sandbox gives way.
    b = n.create_sandbox(memory_bytes=128 << 20)
    assert len(pooled_ids(n)) == 1
    c = n.create_sandbox()
    assert pooled_ids(n) == set()
    r = n.post("/v1/sandboxes", json={})
    assert r.status_code == 503, r.text
    for s in (a, b, c):
        n.delete_sandbox(s["id"])
    off = node_factory(config="[pool]\nsize = 0\n")
    off.create_sandbox()
    assert pooled_ids(off) == set()


def test_a_graceful_stop_destroys_the_pool(node_factory):
    n = node_factory(config="[pool]\nsize = 2\n")
    wait_for_pool(n, 2)
    pooled = pooled_ids(n)
    n.stop()
    for sid in pooled:
        assert not cgroup_pids(sid), f"pooled sandbox {sid} still runs after the node stopped"


def test_a_stop_during_a_refill_leaves_no_pooled_sandbox(node_factory):
    n = node_factory(config="[pool]\nsize = 6\n")
    sandboxes = os.path.join(n.state_dir, "sandboxes")
    wait_until(lambda: os.listdir(sandboxes), 20, "the refill did not begin")
    n.stop()  # while the refill is still starting sandboxes
    left = os.listdir(sandboxes)
    assert not left, f"sandboxes left after a graceful stop: {left}"
    assert not any(cgroup_pids(sid) for sid in left)

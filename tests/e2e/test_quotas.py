"""Per-tenant quotas (429), node capacity (503), and node configuration of defaults and
limits. Each test runs its own node with a TOML config."""

from __future__ import annotations


from conftest import serve_refused
from e2e_util import MIB, epoch, random_token


def error_of(r, status):
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text}"
    err = r.json().get("error")
    assert isinstance(err, str) and err, r.text
    return err


def other_tenant_key(n, prefix="e2e-q"):
    return n.create_key(["sandboxes:write"], tenant=f"{prefix}-{random_token(6)}")["key"]


def test_third_sandbox_over_tenant_quota_answers_429_naming_the_quota(node_factory):
    n = node_factory("[quotas]\nsandboxes = 2\n")
    first = n.create_sandbox(memory_bytes=64 * MIB)["id"]
    second = n.create_sandbox(memory_bytes=64 * MIB)["id"]

    err = error_of(n.post("/v1/sandboxes", json={"memory_bytes": 64 * MIB}), 429)
    assert "sandbox" in err.lower() and "2" in err, f"429 must name the quota and its value: {err}"

    # Paused sandboxes still count.
    assert n.post(f"/v1/sandboxes/{second}/pause").status_code == 200
    error_of(n.post("/v1/sandboxes", json={"memory_bytes": 64 * MIB}), 429)

    # Another tenant is not affected.
    other = other_tenant_key(n)
    n.create_sandbox(key=other, memory_bytes=64 * MIB)

    # Deleting one frees a slot.
    n.delete_sandbox(first)
    n.create_sandbox(memory_bytes=64 * MIB)
    error_of(n.post("/v1/sandboxes", json={"memory_bytes": 64 * MIB}), 429)


def test_memory_over_tenant_quota_answers_429_naming_memory(node_factory):
    n = node_factory(f"[quotas]\nmemory_bytes = {256 * MIB}\n")
    n.create_sandbox(memory_bytes=128 * MIB)
    n.create_sandbox(memory_bytes=128 * MIB)
    err = error_of(n.post("/v1/sandboxes", json={"memory_bytes": 64 * MIB}), 429)
    assert "memory" in err.lower(), err
    # Another tenant has its own budget.
    n.create_sandbox(key=other_tenant_key(n), memory_bytes=128 * MIB)


def test_create_beyond_node_capacity_answers_503_node_at_capacity(node_factory):
    n = node_factory("[capacity]\nsandboxes = 2\n")
    key_a, key_b, key_c = (other_tenant_key(n, p) for p in ("e2e-a", "e2e-b", "e2e-c"))
    a = n.create_sandbox(key=key_a, memory_bytes=64 * MIB)["id"]
    n.create_sandbox(key=key_b, memory_bytes=64 * MIB)
    for key in (key_a, key_c, None):
        err = error_of(n.post("/v1/sandboxes", key=key, json={"memory_bytes": 64 * MIB}), 503)
        assert "node at capacity" in err, err
    n.delete_sandbox(a, key=key_a)
    n.create_sandbox(key=key_c, memory_bytes=64 * MIB)


def test_config_defaults_and_limits_apply(node_factory):
    n = node_factory(
        "[defaults]\n"
        "timeout_ms = 60000\n"
        "cpu = 0.5\n"
        f"memory_bytes = {128 * MIB}\n"
        f"disk_bytes = {64 * MIB}\n"
        "[limits]\n"
        "max_timeout_ms = 600000\n"
        "max_cpu = 1.0\n"
        f"max_memory_bytes = {256 * MIB}\n"
        f"max_disk_bytes = {128 * MIB}\n"
    )
    sbx = n.create_sandbox()
    assert sbx["resources"] == {"cpu": 0.5, "memory_bytes": 128 * MIB, "disk_bytes": 64 * MIB}, sbx["resources"]
    assert abs(epoch(sbx["end_at"]) - epoch(sbx["created_at"]) - 60) < 3, (sbx["created_at"], sbx["end_at"])

    for field, value in [
        ("memory_bytes", 256 * MIB + 1),
        ("cpu", 1.5),
        ("disk_bytes", 128 * MIB + 1),
        ("timeout_ms", 600_001),
    ]:
        err = error_of(n.post("/v1/sandboxes", json={field: value}), 400)
        assert field in err, f"error must name {field}: {err}"
    # Exactly at the limits is fine.
    big = n.create_sandbox(memory_bytes=256 * MIB, cpu=1.0, disk_bytes=128 * MIB, timeout_ms=600_000)
    assert big["resources"] == {"cpu": 1.0, "memory_bytes": 256 * MIB, "disk_bytes": 128 * MIB}


def test_defaults_outside_the_limits_stop_the_node_at_start(tmp_path):
    stderr = serve_refused("[defaults]\nmemory_bytes = 1024\n", tmp_path)
    assert "[defaults]" in stderr and "memory_bytes" in stderr, stderr

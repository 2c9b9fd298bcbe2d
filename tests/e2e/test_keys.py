"""API keys, scopes and tenants: `/v1/keys`, 401/403 rules, tenant isolation (404, never
403, for another tenant's sandbox)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from conftest import NO_AUTH
from e2e_util import KEY_RE, epoch, random_token

ALL_SCOPES = [
    "sandboxes:read",
    "sandboxes:write",
    "databases:read",
    "databases:write",
    "hosting:read",
    "hosting:write",
    "admin",
]


def error_of(r, status):
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text}"
    err = r.json().get("error")
    assert isinstance(err, str) and err, r.text
    return err


def test_admin_key_file_is_0600_and_holds_the_key(node):
    path = Path(node.state_dir, "admin.key")
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == 0o600, f"{path} has mode {oct(mode)}, want 0o600"
    assert path.stat().st_uid == 0
    assert KEY_RE.match(path.read_text().strip())


def test_create_key_returns_the_secret_once_and_it_works(node):
    name = "ci-" + random_token(6)
    created = node.create_key(["sandboxes:read", "sandboxes:write"], name=name)
    assert created["id"].startswith("key_"), created
    assert created["name"] == name
    assert sorted(created["scopes"]) == ["sandboxes:read", "sandboxes:write"]
    assert created["tenant"] == "default" or isinstance(created["tenant"], str) and created["tenant"]
    assert KEY_RE.match(created["key"]), created["key"]
    epoch(created["created_at"])
    assert created["key"] != node.admin_key

    assert node.get("/v1/sandboxes", key=created["key"]).status_code == 200

    r = node.get("/v1/keys")
    assert r.status_code == 200, r.text
    keys = r.json()["keys"]
    listed = next((k for k in keys if k["id"] == created["id"]), None)
    assert listed is not None, "new key not listed"
    assert listed["name"] == name and sorted(listed["scopes"]) == sorted(created["scopes"])
    assert "key" not in listed or not listed["key"], "GET /v1/keys must not return secrets"
    assert created["key"] not in r.text and node.admin_key not in r.text, "a secret leaked in GET /v1/keys"


def test_new_key_defaults_to_the_callers_tenant(node):
    admin_tenant = node.create_key(["sandboxes:read"])["tenant"]
    reader = node.create_key(["sandboxes:write"])
    assert reader["tenant"] == admin_tenant
    sbx = node.create_sandbox(key=reader["key"])
    # Same tenant: the admin key sees it.
    assert node.sandbox(sbx["id"]).status_code == 200
    node.delete_sandbox(sbx["id"])


def test_deleted_key_stops_working_at_once(node):
    created = node.create_key(["sandboxes:write"])
    assert node.get("/v1/sandboxes", key=created["key"]).status_code == 200
    r = node.delete(f"/v1/keys/{created['id']}")
    assert r.status_code == 204, r.text
    error_of(node.get("/v1/sandboxes", key=created["key"]), 401)
    error_of(node.post("/v1/sandboxes", key=created["key"], json={}), 401)
    assert created["id"] not in {k["id"] for k in node.get("/v1/keys").json()["keys"]}
    assert node.delete(f"/v1/keys/{created['id']}").status_code in (404, 410)


def test_delete_unknown_key_answers_404(node):
    assert node.delete("/v1/keys/key_doesnotexist000000").status_code == 404


def test_read_only_key_can_list_but_not_create(node):
    reader = node.create_key(["sandboxes:read"])["key"]
    assert node.get("/v1/sandboxes", key=reader).status_code == 200
    err = error_of(node.post("/v1/sandboxes", key=reader, json={}), 403)
    assert "sandboxes:write" in err, f"403 must name the missing scope: {err}"


def test_read_only_key_cannot_change_or_run_in_a_sandbox(node, sandbox):
    sid = sandbox["id"]
    reader = node.create_key(["sandboxes:read"])["key"]
    assert node.sandbox(sid, key=reader).status_code == 200
    for method, path, body in [
        ("POST", f"/v1/sandboxes/{sid}/shell", {"cmd": "touch /tmp/x"}),
        ("POST", f"/v1/sandboxes/{sid}/pause", None),
        ("POST", f"/v1/sandboxes/{sid}/timeout", {"timeout_ms": 1000}),
        ("DELETE", f"/v1/sandboxes/{sid}", None),
    ]:
        err = error_of(node.request(method, path, key=reader, json=body), 403)
        assert "sandboxes:write" in err, f"{method} {path}: {err}"
    # Nothing happened.
    info = node.sandbox(sid).json()
    assert info["status"] == "running"
    assert node.sh(sid, "test -e /tmp/x")["exit_code"] != 0


def test_key_for_another_resource_cannot_read_sandboxes(node):
    db_key = node.create_key(["databases:read", "databases:write"])["key"]
    err = error_of(node.get("/v1/sandboxes", key=db_key), 403)
    assert "sandboxes:read" in err, err
    err = error_of(node.post("/v1/sandboxes", key=db_key, json={}), 403)
    assert "sandboxes:write" in err, err


@pytest.mark.parametrize("scopes", [["sandboxes:write"], ["sandboxes:read", "hosting:write"]])
def test_non_admin_key_cannot_manage_keys(node, scopes):
    k = node.create_key(scopes)
    for method, path, body in [
        ("GET", "/v1/keys", None),
        ("POST", "/v1/keys", {"name": "x", "scopes": ["admin"]}),
        ("DELETE", f"/v1/keys/{k['id']}", None),
    ]:
        err = error_of(node.request(method, path, key=k["key"], json=body), 403)
        assert "admin" in err, f"{method} {path}: {err}"
    # It could not delete itself either.
    assert node.get("/v1/sandboxes", key=k["key"]).status_code != 401
    assert k["id"] in {x["id"] for x in node.get("/v1/keys").json()["keys"]}


def test_every_documented_scope_is_accepted(node):
    created = node.create_key(ALL_SCOPES)
    assert sorted(created["scopes"]) == sorted(ALL_SCOPES)


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "scopes": ["sandboxes:delete"]},
        {"name": "x", "scopes": ["root"]},
        {"name": "x", "scopes": []},
        {"name": "x"},
        {"scopes": ["admin"]},
        {"name": "x", "scopes": "admin"},
        {"name": "x", "scopes": ["admin"], "role": "admin"},
    ],
)
def test_create_key_with_invalid_body_answers_400(node, body):
    r = node.post("/v1/keys", json=body)
    err = error_of(r, 400)
    if body.get("scopes") == ["sandboxes:delete"]:
        assert "sandboxes:delete" in err, err


# ---------------------------------------------------------------------------------------------
# tenants


@pytest.fixture
def two_tenants(node):
    """(key of tenant A, key of tenant B), both with sandboxes:write."""
    a = node.create_key(["sandboxes:write"], tenant="e2e-a-" + random_token(6))
    b = node.create_key(["sandboxes:write"], tenant="e2e-b-" + random_token(6))
    assert a["tenant"] != b["tenant"]
    return a["key"], b["key"]


def test_other_tenant_cannot_see_or_touch_a_sandbox(node, two_tenants):
    key_a, key_b = two_tenants
    sid = node.create_sandbox(key=key_a)["id"]
    node.run(sid, "echo mine > /home/user/owned", key=key_a)

    unknown = node.get("/v1/sandboxes/sbx_doesnotexist000000", key=key_b)
    assert unknown.status_code == 404
    for method, path, body in [
        ("GET", f"/v1/sandboxes/{sid}", None),
        ("POST", f"/v1/sandboxes/{sid}/shell", {"cmd": "rm -f /home/user/owned"}),
        ("POST", f"/v1/sandboxes/{sid}/pause", None),
        ("POST", f"/v1/sandboxes/{sid}/resume", None),
        ("POST", f"/v1/sandboxes/{sid}/timeout", {"timeout_ms": 1000}),
        ("DELETE", f"/v1/sandboxes/{sid}", None),
    ]:
        r = node.request(method, path, key=key_b, json=body)
        assert r.status_code == 404, f"tenant B {method} {path} → {r.status_code} {r.text} (want 404, never 403)"

    assert sid not in {s["id"] for s in node.get("/v1/sandboxes", key=key_b).json()["sandboxes"]}
    # The admin key of the default tenant is another tenant too.
    assert node.sandbox(sid).status_code == 404
    assert sid not in {s["id"] for s in node.get("/v1/sandboxes").json()["sandboxes"]}

    # Nothing B tried had an effect.
    info = node.sandbox(sid, key=key_a).json()
    assert info["status"] == "running"
    assert node.run(sid, "cat /home/user/owned", key=key_a) == "mine\n"
    node.delete_sandbox(sid, key=key_a)


def test_list_shows_only_the_callers_tenant(node, two_tenants):
    key_a, key_b = two_tenants
    a1 = node.create_sandbox(key=key_a)["id"]
    b1 = node.create_sandbox(key=key_b)["id"]
    seen_a = {s["id"] for s in node.get("/v1/sandboxes", key=key_a).json()["sandboxes"]}
    seen_b = {s["id"] for s in node.get("/v1/sandboxes", key=key_b).json()["sandboxes"]}
    assert seen_a == {a1}, seen_a
    assert seen_b == {b1}, seen_b
    node.delete_sandbox(a1, key=key_a)
    node.delete_sandbox(b1, key=key_b)


def test_admin_of_one_tenant_cannot_manage_another_tenants_keys(node):
    tenant = "e2e-t-" + random_token(6)
    other_admin = node.create_key(["admin"], tenant=tenant)
    assert other_admin["tenant"] == tenant
    mine = node.create_key(["sandboxes:read"])
    listed = {k["id"] for k in node.get("/v1/keys", key=other_admin["key"]).json()["keys"]}
    assert mine["id"] not in listed, "a tenant's admin lists another tenant's keys"
    assert node.delete(f"/v1/keys/{mine['id']}", key=other_admin["key"]).status_code == 404
    assert node.get("/v1/sandboxes", key=mine["key"]).status_code == 200, "the key was revoked by another tenant"


def test_admins_of_the_default_tenant_manage_every_tenants_keys(node):
    tenant = "e2e-o-" + random_token(6)
    theirs = node.create_key(["sandboxes:read"], tenant=tenant)
    listed = {k["id"]: k["tenant"] for k in node.get("/v1/keys").json()["keys"]}
    assert listed.get(theirs["id"]) == tenant
    assert node.delete(f"/v1/keys/{theirs['id']}").status_code == 204
    assert node.get("/v1/sandboxes", key=theirs["key"]).status_code == 401


def test_a_tenants_admin_cannot_create_keys_for_another_tenant(node):
    tenant_admin = node.create_key(["admin"], tenant="e2e-x-" + random_token(6))
    r = node.post("/v1/keys", key=tenant_admin["key"],
                  json={"name": "escalate", "scopes": ["admin"], "tenant": "e2e-y-" + random_token(6)})
    assert r.status_code == 403, r.text
    assert "default" in r.json()["error"]
    own = node.post("/v1/keys", key=tenant_admin["key"], json={"name": "own", "scopes": ["sandboxes:read"]})
    assert own.status_code == 201 and own.json()["tenant"] == tenant_admin["tenant"]


def test_browsers_may_call_the_api_from_any_origin_with_a_key(node):
    preflight = node.request("OPTIONS", "/v1/sandboxes", key=NO_AUTH, headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in preflight.headers["access-control-allow-headers"]
    listed = node.get("/v1/sandboxes", headers={"Origin": "https://app.example"})
    assert listed.status_code == 200 and listed.headers["access-control-allow-origin"] == "*"
    # The key is still required: CORS opens nothing without one.
    anonymous = node.get("/v1/sandboxes", key=NO_AUTH, headers={"Origin": "https://app.example"})
    assert anonymous.status_code == 401

"""Sandbox lifecycle over the HTTP API: auth, create (and its validation), list, get, delete,
timeouts and expiry, pause and resume, and what a deleted sandbox leaves on the host."""

from __future__ import annotations

import json
import os
import re
import socket
import time
from pathlib import Path

import pytest

from conftest import NO_AUTH
from e2e_util import (
    GIB,
    KEY_RE,
    MIB,
    SANDBOX_ID_RE,
    agent_pid,
    all_ai2in_cgroups,
    assert_gone_from_host,
    cgroup_dirs,
    cgroup_file,
    cgroup_v2,
    epoch,
    leftovers,
    random_token,
    wait_until,
)


def assert_error_body(r, status):
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text}"
    body = r.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"].strip(), (
        f"error body must be {{'error': '...'}}, got {body!r}"
    )
    assert isinstance(body.get("code"), str) and body["code"].islower(), (
        f"error body must name its kind in `code`, got {body!r}"
    )
    return body["error"]


def ids_of(listing):
    return {s["id"] for s in listing["sandboxes"]}


def list_sandboxes(node, query="", key=None):
    r = node.get("/v1/sandboxes" + query, key=key)
    assert r.status_code == 200, f"GET /v1/sandboxes{query} → {r.status_code} {r.text}"
    body = r.json()
    assert isinstance(body.get("sandboxes"), list), body
    return body


# ---------------------------------------------------------------------------------------------
# health and authentication


def test_healthz_answers_200_without_a_key(node):
    r = node.get("/healthz", key=NO_AUTH)
    assert r.status_code == 200, r.text


ROUTES = [
    ("GET", "/v1/sandboxes"),
    ("POST", "/v1/sandboxes"),
    ("GET", "/v1/sandboxes/sbx_doesnotexist000000"),
    ("DELETE", "/v1/sandboxes/sbx_doesnotexist000000"),
    ("POST", "/v1/sandboxes/sbx_doesnotexist000000/shell"),
    ("POST", "/v1/sandboxes/sbx_doesnotexist000000/pause"),
    ("GET", "/v1/keys"),
    ("POST", "/v1/keys"),
]


@pytest.mark.parametrize("method,path", ROUTES)
def test_request_without_a_key_answers_401(node, method, path):
    r = node.request(method, path, key=NO_AUTH, json={})
    assert_error_body(r, 401)


@pytest.mark.parametrize(
    "header",
    [
        "Bearer ai2in_live_" + "A" * 40,  # well-formed, unknown
        "Bearer not-a-key",
        "Bearer ",
        "Basic YWRtaW46YWRtaW4=",
        "ai2in_live_" + "A" * 40,  # no scheme
    ],
)
def test_request_with_a_bad_key_answers_401(node, header):
    r = node.get("/v1/sandboxes", key=NO_AUTH, headers={"Authorization": header})
    assert_error_body(r, 401)


def test_admin_key_is_accepted_and_has_the_documented_shape(node):
    assert KEY_RE.match(node.admin_key), f"admin key {node.admin_key!r} is not ai2in_live_ + 32+ base62"
    assert node.get("/v1/sandboxes").status_code == 200


# ---------------------------------------------------------------------------------------------
# create


def test_a_create_whose_client_goes_away_ends_running_not_half_started(node):
    # The client hangs up while its sandbox starts (a disk size of its own: its template is
    # made first, so the start takes a while): the create goes on without it, and the
    # sandbox ends up running (listed, deletable), not stuck "starting" with its room and
    # the tenant's quota held for ever.
    token = random_token(8)
    body = json.dumps({"metadata": {"gone": token}, "disk_bytes": (200 + int(token[:4], 36) % 500) * MIB}).encode()

    def listed():
        r = node.get(f"/v1/sandboxes?metadata.gone={token}")
        assert r.status_code == 200, r.text
        return r.json()["sandboxes"]

    with socket.create_connection(("127.0.0.1", node.port)) as s:
        s.sendall(b"POST /v1/sandboxes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                  + node.admin_key.encode() + b"\r\nContent-Type: application/json\r\n"
                  + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        starting = wait_until(lambda: [x for x in listed() if x["status"] == "starting"], 10,
                              lambda: f"the create never showed as starting: {listed()}", interval=0.002)
    sid = starting[0]["id"]
    wait_until(lambda: [x["status"] for x in listed()] == ["running"], 15,
               lambda: f"the create did not end running: {listed()}")
    assert node.run(sid, "echo alive") == "alive\n"
    node.delete_sandbox(sid)
    assert listed() == []


def test_a_delete_whose_client_goes_away_still_ends_the_sandbox(node):
    # Each client hangs up while its delete runs: the sandboxes end all the same, none is
    # left "stopping" (hidden from lists, yet holding its room and the tenant's quota).
    def stopping():
        r = node.get("/metrics")
        assert r.status_code == 200, r.text
        return int(re.search(r'^ai2in_sandboxes\{status="stopping"\} (\d+)$', r.text, re.M).group(1))

    assert wait_until(lambda: stopping() == 0, 15, "sandboxes of earlier tests are still stopping")
    sids = [node.create_sandbox()["id"] for _ in range(4)]
    for i, sid in enumerate(sids):
        with socket.create_connection(("127.0.0.1", node.port)) as s:
            s.sendall(f"DELETE /v1/sandboxes/{sid} HTTP/1.1\r\nHost: x\r\n"
                      f"Authorization: Bearer {node.admin_key}\r\n\r\n".encode())
            time.sleep(0.002 * (i + 1))
    wait_until(lambda: stopping() == 0, 15, lambda: f"{stopping()} sandboxes were left stopping")
    # A request the client dropped before the node read it was never a delete.
    ended = [sid for sid in sids if node.sandbox(sid).json().get("status") != "running"]
    assert ended, "no delete reached the node before its client hung up"
    for sid in ended:
        node.created.pop(sid, None)
        assert not cgroup_dirs(sid), cgroup_dirs(sid)


def test_create_with_empty_body_returns_a_running_sandbox_object(node):
    before = time.time()
    sbx = node.create_sandbox()
    assert SANDBOX_ID_RE.match(sbx["id"]), f"bad id {sbx['id']!r}"
    assert sbx["status"] == "running"
    assert sbx["image"] == "host"
    assert sbx["desktop"] is False
    assert isinstance(sbx["node_id"], str) and sbx["node_id"]
    assert sbx["metadata"] == {}
    assert sbx["resources"] == {"cpu": 1.0, "memory_bytes": 512 * MIB, "disk_bytes": 2 * GIB}, sbx["resources"]
    created, end = epoch(sbx["created_at"]), epoch(sbx["end_at"])
    assert before - 5 <= created <= time.time() + 5, f"created_at {sbx['created_at']} is not now"
    assert abs((end - created) - 300) < 5, f"default lifetime must be 300 s: {sbx['created_at']} → {sbx['end_at']}"
    assert "env" not in sbx or not sbx["env"], "env must not be echoed"

    r = node.sandbox(sbx["id"])
    assert r.status_code == 200, r.text
    got = r.json()
    for field in ("id", "status", "image", "desktop", "created_at", "end_at", "node_id", "metadata", "resources"):
        assert got[field] == sbx[field], f"GET differs from create in {field}: {got[field]!r} vs {sbx[field]!r}"
    node.delete_sandbox(sbx["id"])


def test_create_with_options_applies_them_and_never_echoes_env(node):
    secret = "s3cr3t-" + random_token()
    sbx = node.create_sandbox(
        env={"E2E_SECRET": secret},
        metadata={"team": "blue", "purpose": "e2e"},
        timeout_ms=60_000,
        cpu=0.5,
        memory_bytes=256 * MIB,
        disk_bytes=64 * MIB,
    )
    sid = sbx["id"]
    assert sbx["metadata"] == {"team": "blue", "purpose": "e2e"}
    assert sbx["resources"] == {"cpu": 0.5, "memory_bytes": 256 * MIB, "disk_bytes": 64 * MIB}
    assert abs((epoch(sbx["end_at"]) - epoch(sbx["created_at"])) - 60) < 3, (sbx["created_at"], sbx["end_at"])
    for r in (node.sandbox(sid), node.get("/v1/sandboxes")):
        assert r.status_code == 200
        assert secret not in r.text, f"env value echoed by {r.request.method} {r.request.path_url}"
    assert node.run(sid, "printf %s \"$E2E_SECRET\"") == secret, "env given at create must reach commands"
    if not cgroup_v2():
        limit = int(cgroup_file(sid, "memory", "memory.limit_in_bytes").read_text())
        assert limit == 256 * MIB, f"memory cgroup limit {limit} != requested {256 * MIB}"
    node.delete_sandbox(sid)


def test_create_with_a_desktop_of_a_bad_size_answers_400_naming_it(node):
    r = node.post("/v1/sandboxes", json={"desktop": {"width": 100}})
    assert_error_body(r, 400)
    assert "desktop.width" in r.json()["error"], r.text


def test_create_with_desktop_false_is_accepted(node):
    sbx = node.create_sandbox(desktop=False)
    assert sbx["desktop"] is False
    node.delete_sandbox(sbx["id"])


def test_create_with_an_image_name_that_does_not_parse_answers_400(node):
    err = assert_error_body(node.post("/v1/sandboxes", json={"image": "No Such Image"}), 400)
    assert "image" in err.lower(), err


def test_create_with_unknown_field_answers_400_naming_it(node):
    err = assert_error_body(node.post("/v1/sandboxes", json={"imagee": "host"}), 400)
    assert "imagee" in err, f"error must name the unknown field: {err}"


@pytest.mark.parametrize(
    "body",
    [
        {"timeout_ms": "300000"},
        {"timeout_ms": -1},
        {"timeout_ms": 1.5},
        {"env": "A=B"},
        {"env": {"A": 1}},
        {"metadata": ["a"]},
        {"desktop": "no"},
        {"cpu": "1"},
        {"memory_bytes": "512MiB"},
        {"image": 7},
    ],
    ids=lambda b: json.dumps(b),
)
def test_create_with_a_wrongly_typed_field_answers_400(node, body):
    assert_error_body(node.post("/v1/sandboxes", json=body), 400)


def test_create_with_malformed_json_answers_400(node):
    r = node.post("/v1/sandboxes", data=b'{"image": "host",', headers={"Content-Type": "application/json"})
    assert_error_body(r, 400)


def test_create_with_a_json_array_body_answers_400(node):
    # serde would read a struct from an array: [null, null] is a valid create otherwise.
    r = node.post("/v1/sandboxes", json=[None, None])
    assert_error_body(r, 400)
    assert "JSON object" in r.json()["error"]


def test_create_with_non_json_content_type_answers_415(node):
    r = node.post("/v1/sandboxes", data=b"{}", headers={"Content-Type": "text/plain"})
    assert_error_body(r, 415)


def test_create_with_body_over_1_mib_answers_413(node):
    body = json.dumps({"metadata": {"big": "x" * (1 << 20)}}).encode()
    r = node.post("/v1/sandboxes", data=body, headers={"Content-Type": "application/json"})
    assert_error_body(r, 413)


@pytest.mark.parametrize("timeout_ms", [0, 86_400_001])
def test_create_with_timeout_out_of_range_answers_400(node, timeout_ms):
    err = assert_error_body(node.post("/v1/sandboxes", json={"timeout_ms": timeout_ms}), 400)
    assert "timeout_ms" in err, err


@pytest.mark.parametrize(
    "field,value",
    [
        ("memory_bytes", 8 * GIB + 1),
        ("memory_bytes", 1),
        ("cpu", 1000.0),
        ("cpu", 0),
        ("disk_bytes", 16 * GIB + 1),
        ("disk_bytes", 1),
    ],
)
def test_create_with_resources_out_of_limits_answers_400_naming_the_field(node, field, value):
    err = assert_error_body(node.post("/v1/sandboxes", json={field: value}), 400)
    assert field in err, f"error must name {field}: {err}"


def test_rejected_creates_leave_no_sandbox_behind(node):
    before = ids_of(list_sandboxes(node))
    sandboxes_dir = Path(node.state_dir) / "sandboxes"
    dirs_before = set(os.listdir(sandboxes_dir))
    for body in ({"desktop": {"width": 100}}, {"image": "Not A Reference"}, {"timeout_ms": 0}, {"memory_bytes": 1}, {"bogus": 1}):
        assert node.post("/v1/sandboxes", json=body).status_code == 400
    assert ids_of(list_sandboxes(node)) == before
    assert set(os.listdir(sandboxes_dir)) <= dirs_before, "a rejected create left a sandbox directory"


# ---------------------------------------------------------------------------------------------
# list and get


def test_list_shows_created_sandboxes_and_filters_by_status_and_metadata(node):
    tag = random_token(8)
    a = node.create_sandbox(metadata={"e2e": tag, "role": "a"})
    b = node.create_sandbox(metadata={"e2e": tag, "role": "b"})
    listing = list_sandboxes(node)
    assert {a["id"], b["id"]} <= ids_of(listing)
    item = next(s for s in listing["sandboxes"] if s["id"] == a["id"])
    assert item["status"] == "running" and item["metadata"] == {"e2e": tag, "role": "a"}
    assert set(item) >= {"id", "status", "image", "desktop", "created_at", "end_at", "node_id", "metadata", "resources"}

    assert ids_of(list_sandboxes(node, f"?metadata.e2e={tag}")) == {a["id"], b["id"]}
    assert ids_of(list_sandboxes(node, f"?metadata.e2e={tag}&metadata.role=b")) == {b["id"]}
    assert ids_of(list_sandboxes(node, "?metadata.e2e=no-such-" + tag)) == set()

    r = node.post(f"/v1/sandboxes/{b['id']}/pause")
    assert r.status_code == 200, r.text
    running = ids_of(list_sandboxes(node, "?status=running"))
    paused = ids_of(list_sandboxes(node, "?status=paused"))
    assert a["id"] in running and a["id"] not in paused
    assert b["id"] in paused and b["id"] not in running
    assert all(s["status"] == "paused" for s in list_sandboxes(node, "?status=paused")["sandboxes"])

    for s in (a, b):
        node.delete_sandbox(s["id"])
    assert not ({a["id"], b["id"]} & ids_of(list_sandboxes(node))), "deleted sandboxes still listed"


def test_get_unknown_sandbox_answers_404(node):
    assert_error_body(node.sandbox("sbx_doesnotexist000000"), 404)


@pytest.mark.parametrize("bad_id", ["abc", "sbx_", "key_abcdef", "sbx_..%2F..%2Fetc"])
def test_get_malformed_sandbox_id_answers_404_or_400(node, bad_id):
    r = node.sandbox(bad_id)
    assert r.status_code in (400, 404), f"{bad_id!r} → {r.status_code} {r.text}"


def test_delete_answers_204_then_410_and_get_answers_410(node):
    sid = node.create_sandbox()["id"]
    r = node.delete(f"/v1/sandboxes/{sid}")
    assert r.status_code == 204, r.text
    assert r.content == b"", "204 must have no body"
    assert_error_body(node.delete(f"/v1/sandboxes/{sid}"), 410)
    assert_error_body(node.sandbox(sid), 410)
    assert_error_body(node.shell_raw(sid, "true"), 410)
    assert_error_body(node.post(f"/v1/sandboxes/{sid}/pause"), 410)
    assert_error_body(node.post(f"/v1/sandboxes/{sid}/timeout", json={"timeout_ms": 10_000}), 410)


def test_deleted_sandbox_leaves_nothing_on_the_host(node):
    sid = node.create_sandbox()["id"]
    node.run(sid, "echo data > /home/user/f && sleep 300 </dev/null >/dev/null 2>&1 &")
    assert cgroup_dirs(sid), "a running sandbox must have cgroups (precondition)"
    node.delete_sandbox(sid)
    assert_gone_from_host(node.state_dir, [sid])


# ---------------------------------------------------------------------------------------------
# timeout and expiry


def test_set_timeout_moves_end_at_to_now_plus_timeout(node, sandbox):
    sid = sandbox["id"]
    for timeout_ms in (120_000, 3_600_000, 30_000):  # longer, then shorter
        before = time.time()
        r = node.post(f"/v1/sandboxes/{sid}/timeout", json={"timeout_ms": timeout_ms})
        after = time.time()
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["id"] == sid and body["status"] == "running"
        end = epoch(body["end_at"])
        assert before + timeout_ms / 1000 - 2 <= end <= after + timeout_ms / 1000 + 2, (
            f"end_at {body['end_at']} is not now + {timeout_ms} ms"
        )
        assert node.sandbox(sid).json()["end_at"] == body["end_at"]


@pytest.mark.parametrize("body", [{"timeout_ms": 0}, {"timeout_ms": 86_400_001}, {"timeout_ms": "5"}, {}, {"timeout": 5000}])
def test_set_timeout_with_invalid_body_answers_400(node, sandbox, body):
    assert_error_body(node.post(f"/v1/sandboxes/{sandbox['id']}/timeout", json=body), 400)


def test_set_timeout_on_unknown_sandbox_answers_404(node):
    assert_error_body(node.post("/v1/sandboxes/sbx_doesnotexist000000/timeout", json={"timeout_ms": 5000}), 404)


def wait_ended(node, sid, end_at, grace=10.0):
    remaining = max(0.0, epoch(end_at) - time.time())
    wait_until(
        lambda: node.sandbox(sid).status_code == 410,
        remaining + grace,
        f"sandbox {sid} still answers after its end_at {end_at}",
        interval=0.2,
    )


def test_sandbox_created_with_short_timeout_is_destroyed_after_end_at(node):
    sbx = node.create_sandbox(timeout_ms=2000)
    sid = sbx["id"]
    assert cgroup_dirs(sid), "precondition: the sandbox has cgroups"
    wait_ended(node, sid, sbx["end_at"])
    assert time.time() >= epoch(sbx["end_at"]) - 0.5, "destroyed before its end_at"
    assert sid not in ids_of(list_sandboxes(node))
    assert_gone_from_host(node.state_dir, [sid])


def test_create_with_a_1_ms_lifetime_answers_201_then_ends(node):
    # The lifetime may end while the sandbox is still starting: the create finishes first.
    for _ in range(5):
        r = node.post("/v1/sandboxes", json={"timeout_ms": 1})
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        wait_until(lambda: node.sandbox(sid).status_code == 410, 10, f"{sid} did not end")
        assert_gone_from_host(node.state_dir, [sid])


def test_shortened_timeout_destroys_the_sandbox(node):
    sid = node.create_sandbox()["id"]
    r = node.post(f"/v1/sandboxes/{sid}/timeout", json={"timeout_ms": 2000})
    assert r.status_code == 200, r.text
    wait_ended(node, sid, r.json()["end_at"])
    assert_gone_from_host(node.state_dir, [sid])


def test_paused_sandbox_is_destroyed_at_end_at_too(node):
    sid = node.create_sandbox()["id"]
    assert node.post(f"/v1/sandboxes/{sid}/pause").status_code == 200
    r = node.post(f"/v1/sandboxes/{sid}/timeout", json={"timeout_ms": 2000})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "paused"
    wait_ended(node, sid, r.json()["end_at"])
    assert_gone_from_host(node.state_dir, [sid])


# ---------------------------------------------------------------------------------------------
# pause and resume


def freezer_state(sid):
    if cgroup_v2():
        return "FROZEN" if cgroup_file(sid, "", "cgroup.freeze").read_text().strip() == "1" else "THAWED"
    return cgroup_file(sid, "freezer", "freezer.state").read_text().strip()


def test_pause_then_shell_answers_409_and_resume_keeps_files(node, sandbox):
    sid = sandbox["id"]
    node.run(sid, "echo before-pause > /home/user/state.txt")

    for _ in range(2):  # idempotent
        r = node.post(f"/v1/sandboxes/{sid}/pause")
        assert r.status_code == 200, r.text
        assert r.json()["id"] == sid and r.json()["status"] == "paused"
    assert node.sandbox(sid).json()["status"] == "paused"
    assert freezer_state(sid) == "FROZEN", "pause must freeze the sandbox's cgroup"

    r = node.shell_raw(sid, "echo hi")
    err = assert_error_body(r, 409)
    assert r.json()["code"] == "sandbox_paused", r.text
    assert "paus" in err.lower(), err

    for _ in range(2):  # idempotent
        r = node.post(f"/v1/sandboxes/{sid}/resume")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "running"
    assert node.sandbox(sid).json()["status"] == "running"
    assert freezer_state(sid) == "THAWED"
    assert node.run(sid, "cat /home/user/state.txt") == "before-pause\n"


def test_pause_freezes_running_processes_until_resume(node, sandbox):
    sid = sandbox["id"]
    # A counter that ticks every 20 ms in the background.
    node.run(
        sid,
        "nohup sh -c 'i=0; while true; do i=$((i+1)); echo $i > /tmp/tick; sleep 0.02; done' "
        "</dev/null >/dev/null 2>&1 &",
    )
    # The host reads the sandbox's file through its agent's root, which needs no process of
    # the sandbox to run.
    tick = Path(f"/proc/{agent_pid(sid)}/root/tmp/tick")

    def read_tick():
        text = tick.read_text().strip()
        return int(text) if text else 0

    wait_until(read_tick, 10, "the counter never ticked")
    assert node.post(f"/v1/sandboxes/{sid}/pause").status_code == 200
    assert freezer_state(sid) == "FROZEN"
    frozen = read_tick()
    time.sleep(0.5)
    assert read_tick() == frozen, "processes of a paused sandbox kept running"
    assert node.post(f"/v1/sandboxes/{sid}/resume").status_code == 200
    wait_until(lambda: read_tick() > frozen, 10, "the counter did not continue after resume")


def test_pause_and_resume_of_unknown_sandbox_answer_404(node):
    for action in ("pause", "resume"):
        assert_error_body(node.post(f"/v1/sandboxes/sbx_doesnotexist000000/{action}"), 404)


# ---------------------------------------------------------------------------------------------
# leaks


def test_thirty_create_delete_cycles_leave_nothing_behind(node_factory):
    n = node_factory()
    ids = []
    for i in range(30):
        sid = n.create_sandbox(timeout_ms=120_000)["id"]
        ids.append(sid)
        if i % 5 == 0:
            assert n.run(sid, "echo alive; sleep 100 </dev/null >/dev/null 2>&1 &") == "alive\n"
        if i % 7 == 3:
            assert n.post(f"/v1/sandboxes/{sid}/pause").status_code == 200
        n.delete_sandbox(sid)

    assert_gone_from_host(n.state_dir, ids, timeout=30)
    sandboxes_dir = Path(n.state_dir) / "sandboxes"
    wait_until(
        lambda: not list(sandboxes_dir.glob("*")),
        10,
        lambda: f"sandbox directories left in {sandboxes_dir}: {sorted(p.name for p in sandboxes_dir.glob('*'))}",
    )
    leaked = [c for c in all_ai2in_cgroups() if any(c.endswith("/" + i) for i in ids)]
    assert not leaked, f"cgroups left: {leaked}"
    assert not [i for i in ids if leftovers(n.state_dir, i)]
    assert n.healthy()

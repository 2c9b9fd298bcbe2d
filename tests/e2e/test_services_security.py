"""Attacks from a service's sandbox (issue 14): a service runs in a sandbox like any other and
must have the same isolation. The security suite's attacks (test_security.py) run unchanged
against a running service's sandbox (exec through its `sandbox_id`); then what is new with
services: the service's own process (its start_cmd) probing the node's API and the host, a
service of another tenant reachable only through its public URL, and a `kill -9 -1` inside
that the supervisor survives.

Services here belong to the default tenant (the admin key's), because the reused attacks use
that key; the other tenant's service is a fresh tenant's. Nothing can harm the host even if a
layer is missing (see test_security.py).
"""

from __future__ import annotations

import json
import re

import pytest

import test_security as attacks
from e2e_util import pid_alive, random_token, wait_until
from test_network import Listener, connect, host_addr
from test_security import host_process, host_secrets  # noqa: F401 - fixtures of these tests too
from test_services import (
    SERVICES,
    action,
    all_logs,
    app_body,
    app_pid,
    deploy_raw,
    get_service,
    log_text,
    tenant_key,
    unique,
    via_url,
    wait_serving,
    wait_status,
)


def deploy_running(node, key=None, **body) -> dict:
    r = deploy_raw(node, key, **body)
    assert r.status_code == 201, f"deploy {body.get('name')} → {r.status_code} {r.text}"
    svc = wait_status(node, r.json()["id"], "running", key)
    wait_serving(node, svc)
    return svc


@pytest.fixture(scope="module")
def attacked(node):
    """A running service of the default tenant: the service (its `sandbox_id` is where the
    attacks run)."""
    svc = deploy_running(node, **app_body(unique("attacked"), version="attacked"))
    yield svc
    node.delete(f"{SERVICES}/{svc['id']}")


@pytest.fixture(scope="module")
def victim(attacked) -> str:
    return attacked["sandbox_id"]


@pytest.fixture(scope="module")
def plain_sandbox(node):
    """An ordinary sandbox of the same tenant, the service's neighbour."""
    s = node.create_sandbox(timeout_ms=1_800_000)
    yield s["id"]
    node.delete(f"/v1/sandboxes/{s['id']}")


@pytest.fixture
def own_service(node):
    """`make(name_prefix)` → a running service of the default tenant, deleted afterwards."""
    made = []

    def make(prefix: str, **body) -> dict:
        name = unique(prefix)
        svc = deploy_running(node, **app_body(name, **body))
        made.append(svc["id"])
        return svc

    yield make
    for sid in made:
        node.delete(f"{SERVICES}/{sid}")


# ---------------------------------------------------------------------------------------------
# the security suite, in a service's sandbox


SAME_ATTACKS = [
    attacks.test_sandbox_root_is_not_the_host_root,
    attacks.test_sandbox_cannot_escape_via_dotdot_symlinks_or_chroot,
    attacks.test_sandbox_cannot_write_the_hosts_usr,
    attacks.test_sandbox_cannot_mount_the_host_disk,
    attacks.test_sandbox_cannot_create_device_nodes,
    attacks.test_sandbox_cannot_trigger_sysrq_or_read_kernel_memory,
    attacks.test_sandbox_cannot_load_kernel_modules,
    attacks.test_sandbox_processes_have_no_dangerous_capabilities_and_seccomp,
    attacks.test_seccomp_refuses_dangerous_syscalls_with_eperm,
    attacks.test_sandbox_network_has_only_its_own_links_and_cannot_reach_host_services,
]


@pytest.mark.parametrize("attack", SAME_ATTACKS, ids=lambda f: f.__name__.removeprefix("test_"))
def test_the_security_suites_attack_fails_in_a_services_sandbox(node, attacked, victim, attack):
    attack(node, victim)
    # The service itself was not disturbed by what ran beside it.
    assert get_service(node, attacked["id"])["sandbox_id"] == victim


def test_a_services_sandbox_cannot_read_host_files(node, victim, host_secrets):
    attacks.test_sandbox_cannot_read_host_files(node, victim, host_secrets)


def test_a_nested_user_namespace_in_a_services_sandbox_gains_nothing(node, victim, host_secrets):
    attacks.test_nested_user_namespace_gains_nothing_on_the_host(node, victim, host_secrets)


def test_a_services_sandbox_cannot_see_or_kill_host_processes(node, victim, host_process):
    attacks.test_sandbox_cannot_see_or_kill_host_processes(node, victim, host_process)


def test_root_in_a_services_sandbox_is_an_unprivileged_uid_on_the_host(node, victim, plain_sandbox):
    # Every process of the service's sandbox (its app too) runs as a mapped uid; its range
    # is not its neighbour's.
    attacks.test_root_inside_is_an_unprivileged_uid_on_the_host_distinct_per_sandbox(node, victim, plain_sandbox)


def test_a_service_and_a_sandbox_cannot_see_each_others_files_or_processes(node, victim, plain_sandbox):
    attacks.test_sandbox_cannot_read_another_sandboxs_files_or_see_its_processes(node, victim, plain_sandbox)
    attacks.test_sandbox_cannot_read_another_sandboxs_files_or_see_its_processes(node, plain_sandbox, victim)


# ---------------------------------------------------------------------------------------------
# what is new with services


@pytest.fixture(scope="module")
def other_tenant_service(node):
    """A running service of another tenant: (service, key, its sandbox's address, marker on
    its app's command line)."""
    key = tenant_key(node)
    marker = "app-other-" + random_token(10).lower()
    svc = deploy_running(node, key, **app_body("other", version="other", marker=marker))
    out = node.run(svc["sandbox_id"], "ip -4 -o addr show dev eth0", key=key)
    addr = re.search(r"inet (\S+)/", out).group(1)
    yield svc, key, addr, marker
    node.delete(f"{SERVICES}/{svc['id']}", key=key)


def test_a_service_reaches_another_tenants_service_only_through_its_url(node, victim, other_tenant_service):
    svc, key, addr, marker = other_tenant_service
    # Controls: the other service listens on its sandbox's address (it reaches itself there),
    # and its URL answers from the host through the node's proxy.
    probe = ("import socket\ntry:\n    socket.create_connection(({!r}, 8000), 3).close(); print('connected')\n"
             "except Exception as e:\n    print('ERROR', repr(e))\n").format(addr)
    assert node.sh(svc["sandbox_id"], "python3 -", key=key, stdin=probe)["stdout"].strip() == "connected"
    status, body, _ = via_url(svc, node)
    assert (status, body) == (200, b"version other\n")
    # The attack: straight to its sandbox, from the service's sandbox.
    assert connect(node, victim, addr, 8000).startswith("ERROR"), "a service reached another tenant's service directly"
    # Nor does it see the other's processes (control: the other sees its own app), nor get
    # at its sandbox through the API with its tenant's key.
    assert marker in node.run(svc["sandbox_id"], "ps -eo args", key=key)
    listing = node.sh(victim, "ps -eo args; cat /proc/[0-9]*/cmdline | tr '\\0' ' '; echo END")
    assert "END" in listing["stdout"] and marker not in attacks.outputs(listing), \
        "a service's sandbox sees another tenant's service's process"
    assert node.sandbox(svc["sandbox_id"]).status_code == 404


# Run as the service's own process: connects to each target of $TARGETS (the gateway is read
# from the routing table), then to a listener of its own (the control), prints one JSON line.
PROBE = r'''
import json, os, socket, struct
def gateway():
    for line in open("/proc/net/route").read().splitlines()[1:]:
        f = line.split()
        if f[1] == "00000000":
            return socket.inet_ntoa(struct.pack("<L", int(f[2], 16)))
gw = gateway()
out = {"gateway": gw}
own = socket.socket(); own.bind(("127.0.0.1", 0)); own.listen(1)
targets = json.loads(os.environ["TARGETS"]) + [["own_listener", "127.0.0.1", own.getsockname()[1]]]
for name, host, port in targets:
    s = socket.socket(); s.settimeout(3)
    try:
        s.connect((gw if host == "GATEWAY" else host, port)); out[name] = "connected"
    except OSError as e:
        out[name] = type(e).__name__
    finally:
        s.close()
print("probe " + json.dumps(out), flush=True)
'''


def test_a_services_own_process_cannot_reach_the_node_api_the_host_or_another_tenants_service(
        node, other_tenant_service):
    _svc, _key, other_addr, _marker = other_tenant_service
    public = Listener("0.0.0.0")
    try:
        targets = [
            ["node_api_loopback", "127.0.0.1", node.port],
            ["node_api_gateway", "GATEWAY", node.port],
            ["node_api_host", host_addr(), node.port],
            ["host_listener_gateway", "GATEWAY", public.port],
            ["host_listener_host", host_addr(), public.port],
            ["other_tenant_service", other_addr, 8000],
        ]
        r = deploy_raw(node, name=unique("probe"), image="host",
                       start_cmd='python3 -c "$PROBE"; exec sleep 1000',
                       env={"PROBE": PROBE, "TARGETS": json.dumps(targets)})
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        try:
            line = wait_until(
                lambda: next((l["line"] for l in all_logs(node, sid) if l["line"].startswith("probe ")), None),
                30, lambda: f"the probe printed nothing:\n{log_text(node, sid)}")
        finally:
            node.delete(f"{SERVICES}/{sid}")
    finally:
        public.close()
    result = json.loads(line[len("probe "):])
    assert result["own_listener"] == "connected", f"the probe's control failed: {result}"
    assert result["gateway"], result
    reached = [name for name, *_ in targets if result[name] == "connected"]
    assert not reached, f"a service's process reached {reached}: {result}"
    assert public.accepted == 0, "the host's listener accepted a connection from a service"


def test_kill_all_inside_a_services_sandbox_spares_the_host_and_the_supervisor_restarts_it(
        node, own_service, host_process):
    hostpid, _marker, proc = host_process
    svc = own_service("killall", version="k", marker="app-killall")
    sid = svc["sandbox_id"]
    pid = app_pid(sid, "app-killall")
    res = node.sh(sid, "kill -9 -1; kill -9 1; echo survived")
    assert "survived" in res["stdout"], res
    # The app died with everything else inside (it is root's too); the agent, the host and
    # the node did not.
    wait_until(lambda: not pid_alive(pid), 10, "kill -9 -1 inside spared the app")
    assert proc.poll() is None and pid_alive(hostpid), "kill -1 inside killed a host process"
    assert node.running and node.healthy(), "kill -1 inside hurt the node"
    # The supervisor saw the exit, by signal 9, and restarted it.
    back = wait_until(lambda: (x := get_service(node, svc["id"])) and x["restarts"] >= 1 and x["status"] == "running" and x,
                      30, lambda: f"the service did not come back: {get_service(node, svc['id'])}\n{log_text(node, svc['id'])}")
    assert back["last_exit"] and back["last_exit"]["exit_code"] is None and back["last_exit"].get("signal") == 9, back
    assert wait_serving(node, back) == b"version k\n"


def test_a_service_cannot_stop_or_delete_itself_through_its_sandbox(node, own_service):
    # Its sandbox belongs to the service: the sandbox routes refuse to end it.
    svc = own_service("pinned")
    sid = svc["sandbox_id"]
    for method, path in [("DELETE", f"/v1/sandboxes/{sid}"), ("POST", f"/v1/sandboxes/{sid}/pause")]:
        r = node.request(method, path)
        assert r.status_code == 409, f"{method} {path} → {r.status_code} {r.text}"
    assert action(node, svc["id"], "stop")["status"] == "stopped"
    assert node.sandbox(sid).status_code in (404, 410)

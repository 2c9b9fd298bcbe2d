"""Sandboxes outlive the node: kill -9 and SIGTERM of the node, restart on the same state
dir, reattachment, lifetimes enforced across restarts, and clean-up of what died while the
node was down."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

from conftest import binary_path, free_port
from e2e_util import (
    V1_CONTROLLERS,
    agent_pid,
    assert_gone_from_host,
    cgroup_dirs,
    cgroup_file,
    cgroup_pids,
    cgroup_v2,
    epoch,
    leftovers,
    pid_alive,
    random_token,
    wait_until,
)


def listed(n):
    r = n.get("/v1/sandboxes")
    assert r.status_code == 200, r.text
    return {s["id"]: s for s in r.json()["sandboxes"]}


def test_node_killed_with_sigkill_reattaches_to_running_and_paused_sandboxes(node_factory):
    n = node_factory()
    a = n.create_sandbox()["id"]
    b = n.create_sandbox()["id"]
    n.run(a, "echo survived > /home/user/marker")
    n.run(b, "echo paused-state > /tmp/p")
    assert n.post(f"/v1/sandboxes/{b}/pause").status_code == 200
    short = n.create_sandbox(timeout_ms=3000)
    agents = {sid: agent_pid(sid) for sid in (a, b, short["id"])}

    n.kill9()
    for sid, pid in agents.items():
        assert pid_alive(pid), f"sandbox {sid}'s agent (pid {pid}) died with the node"

    n.restart()
    sandboxes = listed(n)
    assert sandboxes.get(a, {}).get("status") == "running", sandboxes.get(a)
    assert sandboxes.get(b, {}).get("status") == "paused", sandboxes.get(b)
    assert agent_pid(a) == agents[a], "the node must reattach to the running agent, not start a new one"

    assert n.run(a, "cat /home/user/marker") == "survived\n"
    assert n.shell_raw(b, "true").status_code == 409, "a paused sandbox must stay paused across a restart"
    assert n.post(f"/v1/sandboxes/{b}/resume").status_code == 200
    assert n.run(b, "cat /tmp/p") == "paused-state\n"

    # The lifetime of the short one is enforced by the new node.
    remaining = max(0.0, epoch(short["end_at"]) - time.time())
    wait_until(
        lambda: n.sandbox(short["id"]).status_code in (404, 410),
        remaining + 10,
        f"sandbox {short['id']} outlived its end_at {short['end_at']} across the restart",
        interval=0.2,
    )
    assert_gone_from_host(n.state_dir, [short["id"]])
    assert not pid_alive(agents[short["id"]])
    assert n.run(a, "echo ok") == "ok\n"


def test_sandbox_whose_agent_died_while_the_node_was_down_is_cleaned_up(node_factory):
    n = node_factory()
    dead = n.create_sandbox()["id"]
    alive = n.create_sandbox()["id"]
    n.run(alive, "echo kept > /home/user/kept")
    dead_agent = agent_pid(dead)

    n.kill9()
    # Kill the whole sandbox from the host: every process of its cgroup.
    for pid in cgroup_pids(dead):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_until(lambda: not pid_alive(dead_agent), 10, f"agent {dead_agent} did not die")

    n.restart()
    wait_until(
        lambda: n.sandbox(dead).status_code in (404, 410),
        20,
        f"the sandbox {dead} with a dead agent still answers after the restart",
        interval=0.2,
    )
    assert dead not in listed(n)
    assert_gone_from_host(n.state_dir, [dead])
    assert listed(n)[alive]["status"] == "running"
    assert n.run(alive, "cat /home/user/kept") == "kept\n"


def test_agent_killed_from_the_host_while_the_node_runs_ends_the_sandbox(node_factory):
    n = node_factory()
    sid = n.create_sandbox()["id"]
    pid = agent_pid(sid)
    os.kill(pid, signal.SIGKILL)
    wait_until(
        lambda: n.sandbox(sid).status_code in (404, 410),
        20,
        f"the node did not notice that sandbox {sid}'s agent died",
        interval=0.2,
    )
    assert_gone_from_host(n.state_dir, [sid])
    assert n.healthy()


def test_sigterm_stops_the_node_with_status_0_and_sandboxes_keep_running(node_factory):
    n = node_factory()
    sid = n.create_sandbox()["id"]
    n.run(sid, "echo before-sigterm > /home/user/f")
    pid = agent_pid(sid)

    started = time.monotonic()
    code = n.stop(timeout=10)
    assert code == 0, f"the node exited with {code} on SIGTERM (None = did not exit within 10 s)"
    assert time.monotonic() - started < 10
    assert pid_alive(pid), "SIGTERM of the node must not kill sandboxes"
    assert cgroup_dirs(sid), "the sandbox's cgroups must survive the node"

    n.restart()
    info = listed(n).get(sid)
    assert info and info["status"] == "running", info
    assert agent_pid(sid) == pid
    assert n.run(sid, "cat /home/user/f") == "before-sigterm\n"


def test_restart_removes_leftovers_unknown_to_the_store(node_factory):
    n = node_factory()
    n.create_sandbox()  # makes sure the cgroup parents exist
    assert n.stop() == 0
    ghost = "sbx_e2eghost" + random_token(12)
    n.created[ghost] = n.admin_key  # forced clean-up if the node leaves it
    Path(n.state_dir, "sandboxes", ghost, "root").mkdir(parents=True)
    if cgroup_v2():
        cgroup_file(ghost, "", "").mkdir()
    else:
        for controller in V1_CONTROLLERS:
            cgroup_file(ghost, controller, "").mkdir()
    assert leftovers(n.state_dir, ghost), "precondition: the ghost exists"

    n.restart()
    assert_gone_from_host(n.state_dir, [ghost], timeout=20)
    assert n.sandbox(ghost).status_code == 404


def test_starting_another_node_on_the_host_leaves_this_nodes_sandboxes_alone(node_factory):
    # Sandbox cgroups of every node on a host live under the same `ai2in` parent; a node's
    # start-up clean-up must only remove what belongs to its own state dir.
    first = node_factory()
    sid = first.create_sandbox()["id"]
    first.run(sid, "echo mine > /home/user/f")
    pid = agent_pid(sid)

    second = node_factory()
    assert second.healthy()
    assert pid_alive(pid), "starting a second node killed the first node's sandbox"
    assert cgroup_dirs(sid), "starting a second node removed the first node's sandbox cgroups"
    assert first.run(sid, "cat /home/user/f") == "mine\n"
    assert second.sandbox(sid).status_code == 404


def test_a_second_node_on_the_same_state_dir_refuses_to_start(node_factory):
    first = node_factory()
    second = subprocess.run(
        [str(binary_path()), "serve", "--state-dir", first.state_dir, "--listen", f"127.0.0.1:{free_port()}"],
        capture_output=True, text=True, timeout=30)
    assert second.returncode != 0
    assert "another node is running on the state directory" in second.stderr, second.stderr
    assert first.healthy()


def test_the_store_is_readable_by_root_only(node_factory):
    n = node_factory()
    for name in ("ai2in.db", "ai2in.db-wal", "node.lock"):
        mode = os.stat(os.path.join(n.state_dir, name)).st_mode & 0o777
        assert mode == 0o600, f"{name} has mode {mode:o}"


def fake_agent(path: str, version: int) -> socket.socket:
    """A Unix socket at `path` that answers every request frame with a pong of `version`, as
    an agent of another release would (frames: u32 header length, u32 data length, JSON)."""
    os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen()

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                prefix = conn.recv(8, socket.MSG_WAITALL)
                if len(prefix) == 8:
                    header_len, data_len = struct.unpack(">II", prefix)
                    conn.recv(header_len + data_len, socket.MSG_WAITALL)
                    pong = json.dumps({"type": "pong", "version": version}).encode()
                    conn.sendall(struct.pack(">II", len(pong), 0) + pong)
    threading.Thread(target=serve, daemon=True).start()
    return server


def test_a_sandbox_whose_agent_speaks_another_protocol_is_destroyed_at_restart(node_factory):
    n = node_factory()
    old = n.create_sandbox()["id"]
    current = n.create_sandbox()["id"]
    assert n.stop() == 0
    # What an upgrade leaves: the agent of the older release, still running, still serving.
    server = fake_agent(os.path.join(n.state_dir, "sandboxes", old, "agent.sock"), version=1)
    try:
        n.restart()
        assert n.sandbox(old).status_code == 410
        wait_until(lambda: not cgroup_dirs(old), 10, f"{old} was not destroyed")
        assert "speaks another protocol" in n.log_tail(200)
        assert n.run(current, "echo still here").strip() == "still here"
    finally:
        server.close()

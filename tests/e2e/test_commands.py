"""Background commands: start, list, logs with offsets, kill (issue 3)."""

from __future__ import annotations

import pytest

from e2e_util import MIB, wait_until


def start(node, sid, cmd, **extra) -> dict:
    r = node.post(f"/v1/sandboxes/{sid}/commands", json={"cmd": cmd, **extra})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["command_id"].startswith("cmd_") and body["pid"] > 1
    return body


def logs(node, sid, cid, **offsets) -> dict:
    r = node.post(f"/v1/sandboxes/{sid}/commands/{cid}/logs", json=offsets)
    assert r.status_code == 200, r.text
    return r.json()


def finished(node, sid, cid, timeout=15.0) -> dict:
    return wait_until(
        lambda: (l := logs(node, sid, cid))["status"] != "running" and l,
        timeout,
        f"command {cid} did not finish",
    )


def test_command_output_status_and_exit_code(node, sandbox):
    sid = sandbox["id"]
    c = start(node, sid, "echo out; echo err >&2; sleep 0.2; exit 3")
    done = finished(node, sid, c["command_id"])
    assert done["stdout"] == "out\n" and done["stderr"] == "err\n"
    assert done["status"] == "exited" and done["exit_code"] == 3
    assert done["stdout_offset"] == 4 and done["stderr_offset"] == 4 and done["dropped_bytes"] == 0
    listed = node.get(f"/v1/sandboxes/{sid}/commands").json()["commands"]
    mine = [x for x in listed if x["command_id"] == c["command_id"]]
    assert len(mine) == 1
    assert mine[0]["cmd"] == "echo out; echo err >&2; sleep 0.2; exit 3"
    assert mine[0]["pid"] == c["pid"] and mine[0]["exit_code"] == 3
    assert mine[0]["started_at"].endswith("Z") and mine[0]["ended_at"].endswith("Z")


def test_command_runs_with_cwd_env_and_user(node, sandbox):
    sid = sandbox["id"]
    c = start(node, sid, 'echo "$(pwd) $GREETING $(id -u)"', cwd="/tmp", env={"GREETING": "hi"}, user="user")
    assert finished(node, sid, c["command_id"])["stdout"] == "/tmp hi 1000\n"


def test_logs_with_offsets_return_each_byte_once(node, sandbox):
    sid = sandbox["id"]
    c = start(node, sid, "for i in $(seq 1 20); do echo line-$i; sleep 0.05; done")
    cid = c["command_id"]
    collected, offset = "", 0
    while True:
        part = logs(node, sid, cid, stdout_offset=offset)
        collected += part["stdout"]
        offset = part["stdout_offset"]
        if part["status"] != "running" and part["stdout"] == "":
            break
    assert collected == "".join(f"line-{i}\n" for i in range(1, 21))


def test_an_offset_past_the_end_of_the_output_is_400(node, sandbox):
    sid = sandbox["id"]
    cid = start(node, sid, "echo four")["command_id"]
    wait_until(lambda: logs(node, sid, cid)["status"] == "exited", 10, "the command did not end")
    r = node.post(f"/v1/sandboxes/{sid}/commands/{cid}/logs", json={"stdout_offset": 999})
    assert r.status_code == 400, r.text
    assert "stdout_offset" in r.json()["error"] and "5 bytes" in r.json()["error"]
    assert logs(node, sid, cid, stdout_offset=5)["stdout"] == ""  # the end itself is fine


def test_output_past_the_bound_reports_dropped_bytes(node, sandbox):
    sid = sandbox["id"]
    total = 3 * MIB
    c = start(node, sid, f"head -c {total} /dev/zero | tr '\\0' a")
    done = finished(node, sid, c["command_id"])
    assert len(done["stdout"]) == 1 * MIB, "each stream keeps its last 1 MiB"
    assert done["dropped_bytes"] == total - MIB
    assert done["stdout_offset"] == total


def test_kill_ends_the_whole_process_group(node, sandbox):
    sid = sandbox["id"]
    c = start(node, sid, "sleep 300 & sleep 301 & wait")
    wait_until(lambda: node.run(sid, "pgrep -c -x sleep || true").strip() == "2", 10, "sleeps did not start")
    r = node.post(f"/v1/sandboxes/{sid}/commands/{c['command_id']}/kill")
    assert r.status_code == 204, r.text
    done = finished(node, sid, c["command_id"])
    assert done["status"] == "killed" and done["exit_code"] is None
    wait_until(lambda: node.run(sid, "pgrep -c -x sleep || true").strip() == "0", 10, "children survived the kill")


def test_kill_with_a_named_signal(node, sandbox):
    sid = sandbox["id"]
    c = start(node, sid, "trap 'echo got-term; exit 7' TERM; while true; do sleep 0.1; done")
    wait_until(lambda: logs(node, sid, c["command_id"])["status"] == "running", 5, "not running")
    import time

    time.sleep(0.3)  # let the shell install its trap
    r = node.post(f"/v1/sandboxes/{sid}/commands/{c['command_id']}/kill", json={"signal": "SIGTERM"})
    assert r.status_code == 204, r.text
    done = finished(node, sid, c["command_id"])
    assert "got-term" in done["stdout"] and done["exit_code"] == 7


def test_command_errors_are_clear(node, sandbox):
    sid = sandbox["id"]
    r = node.post(f"/v1/sandboxes/{sid}/commands/cmd_0000000000000000/logs")
    assert r.status_code == 404 and "cmd_0000000000000000" in r.json()["error"]
    c = start(node, sid, "sleep 5")
    r = node.post(f"/v1/sandboxes/{sid}/commands/{c['command_id']}/kill", json={"signal": "SIGNOPE"})
    assert r.status_code == 400 and "signal" in r.json()["error"]
    r = node.post(f"/v1/sandboxes/{sid}/commands", json={"cmd": "true", "cwd": "/does/not/exist"})
    assert r.status_code == 400 and "/does/not/exist" in r.json()["error"]
    r = node.post(f"/v1/sandboxes/{sid}/commands", json={"command": "true"})
    assert r.status_code == 400


def test_a_missing_working_directory_is_400_every_time(node, sandbox):
    # The child fails before its exec and std waits for it: the agent, as PID 1, must not
    # reap it first (that made the agent's task panic: a 500).
    sid = sandbox["id"]
    for i in range(30):
        r = node.post(f"/v1/sandboxes/{sid}/commands", json={"cmd": "true", "cwd": f"/gone/{i}"})
        assert r.status_code == 400 and f"/gone/{i}" in r.json()["error"], r.text
        r = node.post(f"/v1/sandboxes/{sid}/shell", json={"cmd": "true", "cwd": f"/gone/{i}"})
        assert r.status_code == 400, r.text
    assert node.run(sid, "echo ok").strip() == "ok"


def test_paused_sandbox_answers_409_to_commands(node, sandbox):
    sid = sandbox["id"]
    c = start(node, sid, "sleep 30")
    assert node.post(f"/v1/sandboxes/{sid}/pause").status_code == 200
    try:
        assert node.post(f"/v1/sandboxes/{sid}/commands", json={"cmd": "true"}).status_code == 409
        assert node.get(f"/v1/sandboxes/{sid}/commands").status_code == 409
        assert node.post(f"/v1/sandboxes/{sid}/commands/{c['command_id']}/logs").status_code == 409
        assert node.post(f"/v1/sandboxes/{sid}/commands/{c['command_id']}/kill").status_code == 409
    finally:
        assert node.post(f"/v1/sandboxes/{sid}/resume").status_code == 200


def test_command_logs_survive_a_node_restart(node_factory):
    n = node_factory()
    sid = n.create_sandbox()["id"]
    c = start(n, sid, "echo before; sleep 1; echo after")
    wait_until(lambda: logs(n, sid, c["command_id"])["stdout"] == "before\n", 10, "no output yet")
    n.kill9()
    n.restart()
    done = finished(n, sid, c["command_id"])
    assert done["stdout"] == "before\nafter\n" and done["exit_code"] == 0

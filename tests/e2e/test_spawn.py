"""How the agent starts the workload's processes (issue 17): through the spawner, one clone
+ exec each, born in the `work` cgroup as children of the agent, with clean descriptors and
signals; failures before the exec reported as sentences, also when the sandbox cannot make
another process; a killed spawner replaced."""

from __future__ import annotations

import json
import threading
import time

from e2e_util import wait_until


def shell(node, sid, cmd, **body):
    return node.post(f"/v1/sandboxes/{sid}/shell", json={"cmd": cmd, **body})


def test_processes_are_the_agent_s_children_in_the_work_cgroup(node, sandbox):
    sid = sandbox["id"]
    # The shell itself ($$), started by the spawner.
    out = node.run(sid, "cat /proc/$$/cgroup; grep -E '^(PPid|SigBlk|SigIgn):' /proc/$$/status; "
                        "cat /proc/$$/oom_score_adj; echo fds:; ls /proc/$$/fd")
    lines = out.split("\n")
    cgroups = [l for l in lines if l.count(":") >= 2 and "/" in l]
    assert [l for l in cgroups if ":memory:" in l or ":pids:" in l], out
    assert all(l.endswith(":/work") for l in cgroups if ":memory:" in l or ":pids:" in l), out
    status = dict(l.split(":\t") for l in lines if l.startswith(("PPid", "SigBlk", "SigIgn")))
    # The shell's parent is the agent (PID 1), not the spawner; nothing blocked or ignored.
    assert status["PPid"] == "1", out
    assert status["SigBlk"] == "0000000000000000" and status["SigIgn"] == "0000000000000000", out
    assert "0" in lines, f"the OOM score is not the normal one: {out}"
    # Only standard input, output and error: nothing of the agent's or the spawner's.
    fds = lines[lines.index("fds:") + 1:]
    assert [f for f in fds if f] == ["0", "1", "2"], out


def test_exec_failures_are_sentences(node, sandbox, registry):
    sid = sandbox["id"]
    r = shell(node, sid, "true", cwd="/no/such/dir")
    assert r.status_code == 400 and r.json()["error"] == "the working directory /no/such/dir does not exist", r.text
    # The directory is entered as the account: one it may not enter is refused.
    node.run(sid, "mkdir -p /tmp/locked && chmod 700 /tmp/locked", user="root")
    r = shell(node, sid, "true", cwd="/tmp/locked", user="user")
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith("cannot enter the working directory /tmp/locked: Permission denied"), r.text
    assert node.run(sid, "pwd", cwd="/tmp/locked", user="root") == "/tmp/locked\n"
    # The shell's own program, in sandboxes of an image whose files root may change: not
    # executable, then missing.
    for breaking, error in [("chmod a-x", "Permission denied"), ("rm -f", "No such file or directory")]:
        broken = node.create_sandbox(image=registry.refs["busybox"])["id"]
        try:
            node.run(broken, f"{breaking} \"$(readlink -f /bin/sh)\"", user="root")
            r = shell(node, broken, "true")
            assert r.status_code == 400, r.text
            assert r.json()["error"].startswith(f"failed to start /bin/sh: {error}"), r.text
        finally:
            node.delete_sandbox(broken)


def test_a_killed_spawner_is_replaced(node, sandbox):
    sid = sandbox["id"]
    assert node.run(sid, "echo one") == "one\n"
    # Kills every process of the sandbox but PID 1: the spawner too.
    shell(node, sid, "kill -9 -1", user="root")
    wait_until(lambda: shell(node, sid, "echo two").json().get("stdout") == "two\n", 10,
               "no process starts after the spawner was killed")


def test_a_fork_bomb_gets_clear_answers_and_does_not_hang_the_agent(node):
    sid = node.create_sandbox()["id"]
    try:
        bomb = node.post(f"/v1/sandboxes/{sid}/commands",
                         json={"cmd": "b() { b | b & }; b"})
        assert bomb.status_code == 200, bomb.text
        answers = []

        def ask():
            r = shell(node, sid, "echo alive", timeout_ms=5000)
            answers.append((r.status_code, r.text))

        threads = [threading.Thread(target=ask) for _ in range(5)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert time.monotonic() - started < 60, "the agent hung under a fork bomb"
        for status, text in answers:
            # It ran, timed out, or could not make a process: said so, not a 500.
            assert status in (200, 400), text
            if status == 400:
                assert "cannot make another process" in text or "failed to start" in text, text
        assert node.post(f"/v1/sandboxes/{sid}/commands/{bomb.json()['command_id']}/kill").status_code == 204
        node.post(f"/v1/sandboxes/{sid}/shell", json={"cmd": "kill -9 -1", "user": "root"})
        wait_until(lambda: shell(node, sid, "echo calm").json().get("stdout") == "calm\n", 30,
                   "processes do not start after the fork bomb ended")
    finally:
        node.delete_sandbox(sid)


def test_the_workload_cannot_read_or_trace_the_spawner(node, sandbox):
    sid = sandbox["id"]
    node.run(sid, "true")  # the spawner is running
    probe = r"""
import ctypes, json, os
pid = next(p for p in os.listdir('/proc') if p.isdigit()
           and open(f'/proc/{p}/comm').read().strip() == 'ai2in-spawner')
out = {}
for what in ('environ', 'mem', 'maps'):
    try:
        with open(f'/proc/{pid}/{what}', 'rb') as f:
            f.read(1)
        out[what] = 'read'
    except OSError as e:
        out[what] = e.strerror
libc = ctypes.CDLL(None, use_errno=True)
out['ptrace'] = 'attached' if libc.ptrace(16, int(pid), 0, 0) == 0 else os.strerror(ctypes.get_errno())
print(json.dumps(out))
"""
    assert node.post(f"/v1/sandboxes/{sid}/fs/write", json={"path": "/tmp/probe.py", "content": probe}).status_code == 200
    # The first spawner (a fork of the agent), then the one started after it was killed.
    for _ in range(2):
        got = json.loads(node.run(sid, "python3 /tmp/probe.py", user="root"))
        assert got == {"environ": "Permission denied", "mem": "Permission denied", "maps": "Permission denied",
                       "ptrace": "Operation not permitted"}, got
        shell(node, sid, "pkill -9 -x ai2in-spawner", user="root")

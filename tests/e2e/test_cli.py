"""The `ai2in` command line, driven as a user would: exec, commands, cp/fs, keys, and the
interactive `ai2in shell` in a real terminal (tmux)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid

import pytest

from conftest import binary_path
from e2e_util import wait_until


def cli(node, *args, input=None, check=True) -> subprocess.CompletedProcess:
    env = dict(os.environ, AI2IN_BASE_URL=node.url, AI2IN_STATE_DIR=node.state_dir)
    env.pop("AI2IN_API_KEY", None)
    p = subprocess.run([str(binary_path()), *args], env=env, input=input, capture_output=True, text=True, timeout=60)
    if check:
        assert p.returncode == 0, f"ai2in {' '.join(args)} → {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def test_exec_passes_output_and_exit_code_through(node, sandbox):
    p = cli(node, "exec", sandbox["id"], "--", "sh", "-c", "echo out; echo err >&2; exit 7", check=False)
    assert p.returncode == 7
    assert p.stdout == "out\n" and p.stderr == "err\n"
    p = cli(node, "exec", sandbox["id"], "--", "echo", "a b", "it's")
    assert p.stdout == "a b it's\n"


def test_commands_start_logs_and_kill(node, sandbox):
    sid = sandbox["id"]
    cid = cli(node, "commands", "start", sid, "--", "sh", "-c", "echo started; sleep 60").stdout.strip()
    assert cid.startswith("cmd_")
    wait_until(lambda: cli(node, "commands", "logs", sid, cid).stdout == "started\n", 10, "no output")
    listed = json.loads(cli(node, "commands", "ls", sid, "--json").stdout)["commands"]
    assert any(c["command_id"] == cid and c["status"] == "running" for c in listed)
    cli(node, "commands", "kill", sid, cid)
    wait_until(
        lambda: any(c["command_id"] == cid and c["status"] == "killed" for c in json.loads(cli(node, "commands", "ls", sid, "--json").stdout)["commands"]),
        10,
        "not killed",
    )


def test_cp_round_trips_a_directory_tree(node, sandbox, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha")
    (src / "sub" / "b.bin").write_bytes(os.urandom(3 << 20))
    (src / "empty").mkdir()
    cli(node, "cp", str(src), f"{sandbox['id']}:/home/user/tree")
    listing = cli(node, "fs", "ls", sandbox["id"], "/home/user/tree").stdout
    assert "a.txt" in listing and "sub" in listing and "empty" in listing
    back = tmp_path / "back"
    cli(node, "cp", f"{sandbox['id']}:/home/user/tree", str(back))
    assert (back / "a.txt").read_text() == "alpha"
    assert (back / "sub" / "b.bin").read_bytes() == (src / "sub" / "b.bin").read_bytes()
    assert cli(node, "fs", "cat", sandbox["id"], "/home/user/tree/a.txt").stdout == "alpha"


def test_keys_create_list_revoke(node):
    created = json.loads(cli(node, "keys", "create", "cli-test", "--scope", "sandboxes:read", "--json").stdout)
    assert created["key"].startswith("ai2in_live_")
    listed = cli(node, "keys", "list").stdout
    assert created["id"] in listed and "cli-test" in listed
    cli(node, "keys", "revoke", created["id"])
    assert created["id"] not in cli(node, "keys", "list").stdout


def test_errors_are_one_sentence_and_a_failure_status(node):
    p = cli(node, "exec", "sbx_doesnotexist0000000", "--", "true", check=False)
    assert p.returncode != 0
    assert "no sandbox sbx_doesnotexist0000000" in p.stderr


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_interactive_shell_in_a_real_terminal(node, sandbox):
    session = f"ai2in-{uuid.uuid4().hex[:8]}"
    env = f"AI2IN_BASE_URL={node.url} AI2IN_STATE_DIR={node.state_dir}"
    command = f"{env} {binary_path()} shell {sandbox['id']}; echo SHELL-EXIT=$?; sleep 60"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "30", command], check=True)

    def screen() -> str:
        return subprocess.run(["tmux", "capture-pane", "-t", session, "-p", "-S", "-100"], capture_output=True, text=True).stdout

    def keys(*k):
        subprocess.run(["tmux", "send-keys", "-t", session, *k], check=True)

    try:
        wait_until(lambda: ":/home/user#" in screen(), 15, lambda: f"no prompt: {screen()}")
        keys("stty size", "Enter")
        wait_until(lambda: "30 100" in screen(), 10, lambda: f"wrong size: {screen()}")
        subprocess.run(["tmux", "resize-window", "-t", session, "-x", "120", "-y", "40"], check=True)
        time.sleep(0.3)
        keys("stty size", "Enter")
        wait_until(lambda: "40 120" in screen(), 10, lambda: f"resize not seen: {screen()}")
        # A full-screen program draws on the alternate screen and gives it back.
        keys("vi /tmp/full-screen-test", "Enter")
        wait_until(lambda: '"/tmp/full-screen-test"' in screen(), 10, lambda: f"vi did not draw: {screen()}")
        # Escape on its own: vi reads a quick Escape+':' as one Alt key.
        keys("Escape")
        time.sleep(0.5)
        keys(":q!", "Enter")

        def vi_gone():
            visible = subprocess.run(["tmux", "capture-pane", "-t", session, "-p"], capture_output=True, text=True).stdout
            lines = [l for l in visible.splitlines() if l.strip()]
            return lines and lines[-1].endswith("/home/user#") and not any(l.startswith("~") for l in lines)

        wait_until(vi_gone, 10, lambda: f"vi did not leave: {screen()}")
        # Back at the prompt (vi has fully exited) before Ctrl-D goes to the shell.
        keys("echo back-from-vi", "Enter")
        wait_until(lambda: "\nback-from-vi" in screen(), 10, lambda: f"no prompt after vi: {screen()}")
        keys("C-d")
        wait_until(lambda: "SHELL-EXIT=0" in screen(), 10, lambda: f"Ctrl-D did not end the shell: {screen()}")
        # The local terminal is back in cooked mode: typed text echoes and a line is a line.
        keys("echo cooked", "Enter")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)

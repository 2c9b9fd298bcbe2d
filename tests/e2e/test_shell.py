"""`POST /v1/sandboxes/:id/shell`: commands to completion, their output, environment, users,
working directories, stdin, timeouts and the output cap; and what a sandbox looks like from
inside (tools, hostname, writable directories, no host files)."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from e2e_util import random_token

SBX_ENV = {"SBX_VAR": "from-create", "SBX_SPACES": "a b  c"}


@pytest.fixture(scope="module")
def sbx(node):
    s = node.create_sandbox(env=SBX_ENV, timeout_ms=1_800_000)
    yield s["id"]
    node.delete(f"/v1/sandboxes/{s['id']}")


def test_shell_returns_stdout_stderr_and_exit_code(node, sbx):
    res = node.sh(sbx, "echo out; echo err >&2; exit 3")
    assert res["stdout"] == "out\n"
    assert res["stderr"] == "err\n"
    assert res["exit_code"] == 3
    assert res["truncated"] is False
    assert isinstance(res["duration_ms"], (int, float)) and res["duration_ms"] >= 0
    assert not res.get("error"), res


def test_failing_command_reports_its_exit_code(node, sbx):
    assert node.sh(sbx, "false")["exit_code"] == 1
    res = node.sh(sbx, "no-such-command-e2e")
    assert res["exit_code"] == 127 and "not found" in res["stderr"], res


def test_shell_runs_under_bin_sh_c(node, sbx):
    # `$0` of `sh -c` is the shell itself.
    out = node.run(sbx, 'echo "$0"; readlink -f /proc/$$/exe')
    first, exe = out.splitlines()
    assert first in ("/bin/sh", "sh"), out
    assert os.path.basename(exe) in ("dash", "sh", "bash"), out


def test_default_cwd_is_home_user(node, sbx):
    assert node.run(sbx, "pwd") == "/home/user\n"


def test_cwd_option_sets_the_working_directory(node, sbx):
    assert node.run(sbx, "pwd", cwd="/tmp") == "/tmp\n"
    node.run(sbx, "mkdir -p /home/user/sub")
    assert node.run(sbx, "pwd", cwd="/home/user/sub") == "/home/user/sub\n"


def test_cwd_that_does_not_exist_is_an_error_not_a_hang(node, sbx):
    r = node.shell_raw(sbx, "pwd", cwd="/no/such/dir")
    if r.status_code == 200:
        assert r.json()["exit_code"] != 0, r.json()
    else:
        assert r.status_code == 400, r.text
        assert "error" in r.json()


def test_default_user_is_root_inside(node, sbx):
    assert node.run(sbx, "id -u; id -g") == "0\n0\n"


def test_user_option_user_runs_as_uid_1000(node, sbx):
    assert node.run(sbx, "id -u", user="user") == "1000\n"
    assert node.run(sbx, "touch /home/user/owned-by-user && stat -c %u /home/user/owned-by-user", user="user") == "1000\n"


def test_unknown_user_answers_400(node, sbx):
    r = node.shell_raw(sbx, "id", user="nobody-e2e")
    assert r.status_code == 400, r.text


def test_env_from_create_and_per_call_env_are_visible(node, sbx):
    out = node.run(sbx, 'printf "%s|%s|%s" "$SBX_VAR" "$SBX_SPACES" "$CALL_VAR"', env={"CALL_VAR": "per-call"})
    assert out == "from-create|a b  c|per-call"
    # Per-call env does not stick to the sandbox.
    assert node.run(sbx, 'printf "%s" "${CALL_VAR-unset}"') == "unset"
    # The create-time env reaches the non-root user too.
    assert node.run(sbx, 'printf "%s" "$SBX_VAR"', user="user") == "from-create"


def test_stdin_is_fed_to_the_command(node, sbx):
    data = "hello\nworld\n" + "ü" * 10
    assert node.run(sbx, "cat", stdin=data) == data
    assert node.run(sbx, "wc -l", stdin="a\nb\nc\n").strip() == "3"


def test_command_without_stdin_sees_end_of_file(node, sbx):
    res = node.sh(sbx, "cat; echo done", timeout_ms=10_000)
    assert res["exit_code"] == 0 and res["stdout"] == "done\n", res


def test_timeout_kills_a_never_ending_command_and_the_sandbox_stays_usable(node, sbx):
    res = node.sh(sbx, "sleep 1000 & sleep 1000", timeout_ms=1000)
    assert res["exit_code"] is None, res
    assert isinstance(res.get("error"), str) and res["error"], f"a timeout must come with an error: {res}"
    assert res["duration_ms"] < 60_000
    assert node.run(sbx, "echo still-here") == "still-here\n"
    # The whole process group was killed, the background sleep included.
    left = node.run(sbx, "ps -eo args= | grep -c '^sleep 1000' || true").strip()
    assert left == "0", f"{left} 'sleep 1000' processes survived the timeout"


@pytest.mark.parametrize("timeout_ms", [0, 86_400_001])
def test_shell_timeout_out_of_range_answers_400(node, sbx, timeout_ms):
    assert node.shell_raw(sbx, "true", timeout_ms=timeout_ms).status_code == 400


def test_output_over_16_mib_is_truncated(node, sbx):
    res = node.sh(sbx, "head -c 20000000 /dev/zero | tr '\\0' a", timeout_ms=120_000)
    assert res["truncated"] is True, {k: v for k, v in res.items() if k != "stdout"}
    n = len(res["stdout"])
    assert 1 << 20 <= n <= 16 * (1 << 20), f"stdout length {n} not within the 16 MiB cap"
    assert set(res["stdout"]) == {"a"}
    assert node.run(sbx, "echo ok") == "ok\n"


def test_output_below_the_cap_is_complete(node, sbx):
    res = node.sh(sbx, "head -c 3000000 /dev/zero | tr '\\0' b")
    assert res["truncated"] is False and len(res["stdout"]) == 3_000_000


def test_missing_cmd_or_unknown_field_answers_400(node, sbx):
    assert node.post(f"/v1/sandboxes/{sbx}/shell", json={}).status_code == 400
    r = node.post(f"/v1/sandboxes/{sbx}/shell", json={"cmd": "true", "cwdd": "/"})
    assert r.status_code == 400 and "cwdd" in r.json()["error"], r.text
    assert node.post(f"/v1/sandboxes/{sbx}/shell", json={"cmd": ["ls"]}).status_code == 400


def test_shell_in_unknown_sandbox_answers_404(node):
    assert node.shell_raw("sbx_doesnotexist000000", "true").status_code == 404


def test_two_shell_calls_run_concurrently(node, sbx):
    flag = f"/tmp/flag-{random_token(8)}"
    waiter = {}

    def wait_for_flag():
        waiter["res"] = node.sh(
            sbx, f"for i in $(seq 200); do [ -e {flag} ] && echo seen && exit 0; sleep 0.1; done; exit 1",
            timeout_ms=60_000,
        )

    t = threading.Thread(target=wait_for_flag)
    t.start()
    try:
        node.run(sbx, f"touch {flag}")
    finally:
        t.join(90)
    assert waiter.get("res", {}).get("stdout") == "seen\n", f"the first call never saw the second: {waiter}"


# ---------------------------------------------------------------------------------------------
# the world inside


def test_python_node_and_bash_run_inside(node, sbx):
    assert node.run(sbx, "python3 -c 'print(1+1)'") == "2\n"
    assert node.run(sbx, "node -e 'console.log(1+1)'") == "2\n"
    assert node.run(sbx, "bash -c 'echo $BASH_VERSION'").strip()


def test_hostname_is_the_sandbox_not_the_host(node, sbx):
    inside = node.run(sbx, "hostname").strip()
    assert inside, "empty hostname"
    assert inside != socket.gethostname(), "the sandbox sees the host's hostname"
    assert inside == sbx or sbx.startswith(inside) or inside.startswith(sbx), (
        f"hostname {inside!r} should be the sandbox id {sbx!r}"
    )


@pytest.mark.parametrize("directory", ["/tmp", "/root", "/home/user"])
def test_standard_directories_exist_and_are_writable_by_root(node, sbx, directory):
    name = f"{directory}/w-{random_token(6)}"
    assert node.run(sbx, f"echo x > {name} && cat {name}") == "x\n"


@pytest.mark.parametrize("directory", ["/tmp", "/home/user"])
def test_user_can_write_tmp_and_home(node, sbx, directory):
    name = f"{directory}/u-{random_token(6)}"
    assert node.run(sbx, f"echo x > {name} && cat {name}", user="user") == "x\n"


def test_user_cannot_write_root_home(node, sbx):
    assert node.sh(sbx, "touch /root/by-user", user="user")["exit_code"] != 0


def test_files_persist_between_shell_calls(node, sbx):
    content = random_token(32)
    node.run(sbx, f"mkdir -p /home/user/p && echo {content} > /home/user/p/f")
    assert node.run(sbx, "cat /home/user/p/f") == content + "\n"
    assert node.run(sbx, "cat p/f", cwd="/home/user") == content + "\n"


def test_root_listing_shows_none_of_the_hosts_private_directories(node, sbx):
    assert os.path.isdir("/work"), "precondition: the host has /work"
    out = node.run(sbx, "for p in /work /var/lib/ai2in " + node.state_dir + "; do [ -e $p ] && echo present:$p; done; true")
    assert out == "", f"host paths visible inside: {out}"
    root_entries = set(node.run(sbx, "ls -A /root").split())
    # Skeleton files an image may legitimately have in root's home are not host leaks.
    host_root = set(os.listdir("/root")) - {".bashrc", ".profile", ".bash_logout", ".cache", ".config"}
    assert not (root_entries & host_root), f"host /root entries visible inside: {root_entries & host_root}"
    top = set(node.run(sbx, "ls -A /").split())
    assert "work" not in top, top

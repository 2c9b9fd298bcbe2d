"""Shell commands: to completion, and in the background (logs, wait, kill, list)."""

from __future__ import annotations

import time

import pytest

import ai2in
from ai2in import Sandbox


def test_run_to_completion(sbx: Sandbox) -> None:
    r = sbx.commands.run("echo out; echo err >&2; exit 3")
    assert (r.stdout, r.stderr, r.exit_code) == ("out\n", "err\n", 3)
    assert r.duration_ms >= 0 and not r.truncated and r.error is None


def test_run_options(sbx: Sandbox) -> None:
    r = sbx.commands.run("pwd; echo $X; cat; id -un", cwd="/tmp", env={"X": "y"}, stdin="in\n")
    assert r.stdout.splitlines()[:3] == ["/tmp", "y", "in"]
    assert sbx.commands.run("id -u", user="user").stdout.strip() != "0"


def test_run_timeout_kills(sbx: Sandbox) -> None:
    r = sbx.commands.run("sleep 10", timeout_ms=300)
    assert r.exit_code is None and r.error is not None and "timed out" in r.error


def test_background_logs_wait_and_list(sbx: Sandbox) -> None:
    handle = sbx.commands.run("echo first; sleep 0.4; echo second; echo oops >&2", background=True)
    assert handle.id.startswith("cmd_") and handle.pid > 0
    out: list[str] = []
    err: list[str] = []
    result = handle.wait(timeout=20, on_stdout=out.append, on_stderr=err.append)
    assert result.exit_code == 0 and result.error is None
    assert result.stdout == "first\nsecond\n" == "".join(out)
    assert result.stderr == "oops\n" == "".join(err)
    logs = handle.logs()
    assert not logs.running and logs.stdout == "first\nsecond\n" and logs.exit_code == 0
    info = next(c for c in sbx.commands.list() if c.id == handle.id)
    assert info.status == "exited" and info.pid == handle.pid and info.ended_at is not None


def test_background_kill(sbx: Sandbox) -> None:
    handle = sbx.commands.run("echo started; exec sleep 30", background=True)
    deadline = time.monotonic() + 10
    while "started" not in handle.logs().stdout and time.monotonic() < deadline:
        time.sleep(0.05)
    handle.kill("TERM")
    result = handle.wait(timeout=10)
    assert result.stdout == "started\n" and result.exit_code is None
    assert result.error is not None and "killed" in result.error
    assert next(c for c in sbx.commands.list() if c.id == handle.id).status == "killed"


def test_wait_timeout_raises_and_command_goes_on(sbx: Sandbox) -> None:
    handle = sbx.commands.run("sleep 30", background=True)
    started = time.monotonic()
    with pytest.raises(ai2in.RequestTimeoutError):
        handle.wait(timeout=0.3)
    assert time.monotonic() - started < 3
    assert handle.logs().running
    handle.kill()


def test_background_refuses_foreground_options(sbx: Sandbox) -> None:
    with pytest.raises(ValueError):
        sbx.commands.run("true", background=True, timeout_ms=5)  # type: ignore[call-overload]


def test_connect_to_a_command_from_another_client(sbx: Sandbox) -> None:
    script = "for i in 1 2 3 4 5; do echo line $i; sleep 0.2; done; echo done >&2; exit 7"
    handle = sbx.commands.run(script, background=True)
    time.sleep(0.3)  # some output comes before the second client connects
    other = Sandbox.connect(sbx.id)  # not in ``with``: that would destroy the shared sandbox
    try:
        same = other.commands.connect(handle.id)
        assert (same.id, same.pid) == (handle.id, handle.pid)
        out: list[str] = []
        result = same.wait(timeout=20, on_stdout=out.append)
        expected = "".join(f"line {i}\n" for i in range(1, 6))
        assert result.stdout == expected == "".join(out)
        assert (result.stderr, result.exit_code) == ("done\n", 7)
        assert 500 <= result.duration_ms < 20_000
        assert same.logs().stdout == expected
        # Connected after the end: the duration is the node's, not counted up to now.
        late = other.commands.connect(handle.id).wait(timeout=5)
        assert (late.stdout, late.exit_code) == (expected, 7)
        assert late.duration_ms <= result.duration_ms + 50
    finally:
        other.close()


def test_connect_to_an_unknown_command(sbx: Sandbox) -> None:
    with pytest.raises(ai2in.NotFoundError) as e:
        sbx.commands.connect("cmd_0000000000000000")
    assert e.value.status == 404 and "cmd_0000000000000000" in e.value.message

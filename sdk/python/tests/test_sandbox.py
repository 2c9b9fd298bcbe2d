"""Sandbox lifecycle: create, connect, list, info, pause/resume, timeout, metrics, expose, kill,
and configuration from the environment."""

from __future__ import annotations

import datetime as dt
import time

import httpx
import pytest

import ai2in
from ai2in import Sandbox

from conftest import Node


def test_create_with_options_and_info() -> None:
    with Sandbox.create(
        env={"SECRET": "s3"},
        timeout_ms=120_000,
        metadata={"owner": "sdk-test", "case": "options"},
        cpu=0.5,
        memory_bytes=256 << 20,
        disk_bytes=512 << 20,
        egress="deny",
    ) as sbx:
        info = sbx.info()
        assert info.id == sbx.id and info.id.startswith("sbx_")
        assert info.status == "running" and info.image == "host" and not info.desktop
        assert info.metadata == {"owner": "sdk-test", "case": "options"}
        assert info.resources == ai2in.Resources(0.5, memory_bytes=256 << 20, disk_bytes=512 << 20)
        assert info.egress == "deny"
        lifetime = info.end_at - info.created_at
        assert dt.timedelta(seconds=119) < lifetime <= dt.timedelta(seconds=121)
        assert sbx.commands.run("echo $SECRET").stdout == "s3\n"


def test_with_block_destroys_the_sandbox(node: Node) -> None:
    with Sandbox.create() as sbx:
        sid = sbx.id
    with node.admin() as admin:
        assert admin.get(f"/v1/sandboxes/{sid}").status_code in (404, 410)


def test_kill_then_calls_fail_as_ended() -> None:
    sbx = Sandbox.create()
    sbx.kill()
    with pytest.raises(ai2in.SandboxEndedError) as e:
        sbx.info()
    assert e.value.status == 410 and "has ended" in e.value.message
    sbx.close()


def test_unknown_sandbox_is_not_found() -> None:
    with pytest.raises(ai2in.NotFoundError) as e:
        Sandbox.connect("sbx_doesnotexist0000000000")
    assert e.value.status == 404 and isinstance(e.value, ai2in.ApiError)


def test_connect_and_list_with_filters(sbx: Sandbox) -> None:
    other = Sandbox.connect(sbx.id)
    try:
        assert other.run_code("'connected'").text == "'connected'"
    finally:
        other.close()
    mine = Sandbox.list(metadata={"suite": "sdk-python"})
    assert [s.id for s in mine] == [sbx.id]
    assert sbx.id in [s.id for s in Sandbox.list(status="running")]
    assert sbx.id not in [s.id for s in Sandbox.list(status="paused")]


def test_pause_answers_409_until_resumed() -> None:
    with Sandbox.create() as sbx:
        assert sbx.pause().status == "paused"
        assert sbx.info().status == "paused"
        with pytest.raises(ai2in.SandboxPausedError) as e:
            sbx.commands.run("true")
        assert e.value.status == 409 and "resume" in e.value.message
        assert sbx.resume().status == "running"
        assert sbx.commands.run("echo back").stdout == "back\n"


def test_set_timeout_moves_the_end(sbx: Sandbox) -> None:
    before = dt.datetime.now(dt.timezone.utc)
    info = sbx.set_timeout(90_000)
    assert dt.timedelta(seconds=85) < info.end_at - before < dt.timedelta(seconds=95)
    sbx.set_timeout(600_000)


def test_metrics(sbx: Sandbox) -> None:
    m = sbx.metrics()
    assert m.cpu_count >= 1 and m.pids >= 1
    assert 0 < m.mem_used_bytes <= m.mem_limit_bytes
    assert m.disk_limit_bytes > 0 and m.timestamp.tzinfo is not None


def test_expose_gives_a_url_the_proxy_serves(sbx: Sandbox, node: Node) -> None:
    sbx.commands.run("cd /tmp && python3 -m http.server 8123 >/dev/null 2>&1", background=True)
    url = sbx.expose(8123)
    # The sandbox by its id without `sbx_` (an underscore is not valid in a DNS name).
    assert url.startswith(f"http://8123-{sbx.id[4:]}.")
    # The URL's host is `*.localhost`: send it as the Host header to the node's address.
    parsed = httpx.URL(url)
    for _ in range(50):
        r = httpx.get(f"http://127.0.0.1:{parsed.port}/", headers={"Host": parsed.netloc.decode()})
        if r.status_code == 200:
            break
        time.sleep(0.1)
    assert r.status_code == 200 and "Directory listing" in r.text


def test_environment_configures_and_arguments_win(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AI2IN_BASE_URL", "http://127.0.0.1:9")  # nothing listens
    with pytest.raises(ai2in.Ai2inConnectionError):
        Sandbox.list()
    assert isinstance(Sandbox.list(base_url=node.url), list)
    monkeypatch.delenv("AI2IN_API_KEY")
    with pytest.raises(ai2in.Ai2inError, match="AI2IN_API_KEY"):
        Sandbox.list(base_url=node.url)
    with pytest.raises(ai2in.AuthenticationError) as e:
        Sandbox.list(base_url=node.url, api_key="ai2in_live_" + "x" * 32)
    assert e.value.status == 401

"""Hosted services against the real node: deploy, wait until running and fetch the URL
through the node's proxy; list and get; logs (streams, system lines, cursors) and following
them live; redeploy (and one that fails); stop and start; delete; crashes; the errors (a taken name, a bad name,
scopes); and the async client. Every test deletes the services it deployed."""

from __future__ import annotations

import asyncio
import datetime as dt
import queue
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import closing
from typing import Any

import httpx
import pytest

import ai2in
from ai2in import (
    AlreadyExistsError,
    AsyncClient,
    AsyncService,
    Client,
    ConflictError,
    LogLine,
    Sandbox,
    Service,
)

from conftest import Node

#: A web app on port 8000 that answers ``$GREETING`` at ``/`` (and logs each request on
#: stderr, as http.server does).
WEB_CMD = (
    "mkdir -p /tmp/www && cd /tmp/www && printf '%s' \"$GREETING\" > index.html"
    " && exec python3 -m http.server 8000"
)


def unique(prefix: str) -> str:
    """A service name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 120))


def until(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Polls ``check`` until it answers something truthy, for up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def fetch(node: Node, url: str, path: str = "/") -> httpx.Response:
    """GET ``path`` of a service's ``url`` through the node's proxy: the URL's host is
    ``*.localhost``, so the request goes to the node's own address with it as Host."""
    host = httpx.URL(url).netloc.decode()
    return httpx.get(f"{node.url}{path}", headers={"Host": host}, timeout=30)


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with Client() as c:
        yield c


@pytest.fixture
def deploy(client: Client) -> Iterator[Callable[..., Service]]:
    """Deploys services (``deploy(prefix, **options)``, the host image by default) and
    deletes them after the test, if the test did not."""
    made: list[Service] = []

    def _deploy(prefix: str, **options: Any) -> Service:
        options.setdefault("image", "host")
        svc = client.services.deploy(unique(prefix), **options)
        made.append(svc)
        return svc

    yield _deploy
    for svc in made:
        try:
            svc.delete()
        except ai2in.NotFoundError:
            pass


def web(deploy: Callable[..., Service], greeting: str = "hello") -> Service:
    return deploy(
        "py-web", internal_port=8000, start_cmd=WEB_CMD, env={"GREETING": greeting}
    )


def test_deploy_wait_and_serve(client: Client, deploy: Callable[..., Service], node: Node) -> None:
    before = dt.datetime.now(dt.timezone.utc)
    svc = web(deploy)
    assert svc.id.startswith("svc_") and svc.name.startswith("py-web-")
    assert svc.status == "deploying" and svc.image == "host" and svc.image_digest is None
    assert svc.internal_port == 8000 and svc.start_cmd == WEB_CMD and svc.health_path is None
    assert svc.url == f"http://{svc.name}-{svc.id[4:]}.localhost:{httpx.URL(node.url).port}/"
    assert svc.restarts == 0 and svc.last_exit is None and svc.volumes == []
    assert svc.resources.cpu > 0 and svc.resources.memory_bytes > 0
    assert before - dt.timedelta(seconds=5) <= svc.created_at <= before + dt.timedelta(minutes=1)

    assert svc.wait_until_running() is svc
    assert svc.status == "running" and svc.info.status == "running"
    assert svc.sandbox_id is not None and svc.sandbox_id.startswith("sbx_")
    assert svc.deployed_at is not None and svc.deployed_at >= svc.created_at
    assert svc.url is not None
    r = fetch(node, svc.url)
    assert r.status_code == 200 and r.text == "hello"
    r = fetch(node, svc.url, "/index.html")
    assert r.status_code == 200 and r.text == "hello"

    # Listed and found by id, by name and by the object.
    assert svc.id in [s.id for s in client.services.list()]
    for key in (svc.id, svc.name, svc, svc.info):
        got = client.services.get(key)
        assert isinstance(got, Service)
        assert (got.id, got.name, got.url, got.status, got.sandbox_id, got.created_at) == (
            svc.id, svc.name, svc.url, "running", svc.sandbox_id, svc.created_at
        )
    assert svc.refresh() is svc and svc.status == "running"

    # Its sandbox takes exec and files like any other, is not listed, and cannot be killed.
    assert svc.sandbox_id not in [s.id for s in Sandbox.list()]
    inside = Sandbox.connect(svc.sandbox_id)
    try:
        assert inside.files.read("/tmp/www/index.html") == "hello"
        assert inside.commands.run("echo from exec").stdout == "from exec\n"
        with pytest.raises(ConflictError) as e:
            inside.kill()
        assert svc.name in e.value.message or svc.id in e.value.message
    finally:
        inside.close()
    assert fetch(node, svc.url).status_code == 200


def test_logs_have_streams_system_lines_and_cursors(
    client: Client, deploy: Callable[..., Service]
) -> None:
    svc = deploy("py-logs", start_cmd="echo out-1; echo err-1 >&2; echo out-2; exec sleep 600")
    assert svc.url is None and svc.internal_port is None
    svc.wait_until_running()

    def printed() -> ai2in.ServiceLogs | None:
        logs = svc.logs()
        ours = [(x.stream, x.line) for x in logs if x.stream != "system"]
        return logs if len(ours) >= 3 else None

    logs = until(printed, what="the start command's lines")
    ours = [(x.stream, x.line) for x in logs if x.stream != "system"]
    # Two pipes: the order within a stream is kept, not the interleaving across them.
    assert [line for stream, line in ours if stream == "stdout"] == ["out-1", "out-2"]
    assert [line for stream, line in ours if stream == "stderr"] == ["err-1"]
    system = [x.line for x in logs if x.stream == "system"]
    assert any(line.startswith("started") for line in system), system
    assert all(isinstance(x, LogLine) for x in logs) and len(logs) == len(logs.logs)
    seqs = [x.seq for x in logs]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert logs.next_since >= seqs[-1]
    for x in logs:
        assert x.timestamp.tzinfo is not None and x.stream in ("stdout", "stderr", "system")

    # Cursors: nothing after the end; the lines after a line's seq; the most recent `limit`.
    assert svc.logs(since=logs.next_since).logs == []
    after_first = svc.logs(since=seqs[0])
    assert [x.seq for x in after_first] == seqs[1:]
    last = svc.logs(limit=1)
    assert [x.seq for x in last] == [seqs[-1]] and last.next_since == logs.next_since
    # The namespace, by name, answers the same.
    assert client.services.logs(svc.name).logs == logs.logs
    with pytest.raises(ai2in.BadRequestError):
        svc.logs(limit=1001)


def test_follow_logs_yields_lines_written_after_it_began(
    client: Client, deploy: Callable[..., Service], node: Node
) -> None:
    svc = web(deploy).wait_until_running()
    assert svc.url is not None
    last = until(lambda: svc.logs().logs, what="a first log line")[-1]
    lines: queue.Queue[LogLine | BaseException] = queue.Queue()
    marker = f"/follow-{uuid.uuid4().hex}"

    def follow() -> None:
        # From just before the last line: the first line yielded shows the stream is open.
        try:
            with closing(client.services.follow_logs(svc.name, since=last.seq - 1)) as stream:
                for line in stream:
                    lines.put(line)
                    if marker in line.line:
                        return
        except BaseException as e:  # handed to the test
            lines.put(e)

    threading.Thread(target=follow, daemon=True).start()
    first = lines.get(timeout=15)
    assert isinstance(first, LogLine) and first.seq == last.seq, first

    # http.server logs each request on stderr: a line written now, while following.
    assert fetch(node, svc.url, marker).status_code == 404
    deadline = time.monotonic() + 15
    while True:
        got = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        assert isinstance(got, LogLine), got
        assert got.seq > last.seq
        if marker in got.line:
            assert got.stream == "stderr" and "GET" in got.line
            break


def test_redeploy_with_a_new_env_changes_the_answer(
    client: Client, deploy: Callable[..., Service], node: Node
) -> None:
    svc = web(deploy).wait_until_running()
    assert svc.url is not None
    assert fetch(node, svc.url).text == "hello"
    old_sandbox, old_deployed = svc.sandbox_id, svc.deployed_at
    assert old_deployed is not None

    assert svc.redeploy(env={"GREETING": "bonjour"}) is svc
    assert svc.status == "running" and svc.url is not None
    assert svc.sandbox_id is not None and svc.sandbox_id != old_sandbox
    assert svc.deployed_at is not None and svc.deployed_at >= old_deployed
    r = fetch(node, svc.url)
    assert r.status_code == 200 and r.text == "bonjour"
    assert any(x.stream == "system" and "redeployed" in x.line for x in svc.logs(limit=1000))

    # Through the namespace, by name: the environment is replaced whole.
    again = client.services.redeploy(svc.name, env={"GREETING": "hola"})
    assert again.id == svc.id and again.status == "running"
    assert fetch(node, svc.url).text == "hola"


def test_a_redeploy_that_never_runs_is_deploy_failed(
    client: Client, deploy: Callable[..., Service], node: Node
) -> None:
    svc = web(deploy).wait_until_running()
    assert svc.url is not None
    before = svc.sandbox_id
    with pytest.raises(ai2in.DeployFailedError) as e:
        svc.redeploy(start_cmd="echo failing; exit 1")
    assert e.value.status == 422 and "old one keeps serving" in e.value.message
    # The old instance keeps serving, unchanged.
    svc.refresh()
    assert svc.status == "running" and svc.sandbox_id == before and svc.start_cmd == WEB_CMD
    r = fetch(node, svc.url)
    assert r.status_code == 200 and r.text == "hello"
    assert ("stdout", "failing") in [(x.stream, x.line) for x in svc.logs()]


def test_stop_answers_503_and_start_runs_again(
    client: Client, deploy: Callable[..., Service], node: Node
) -> None:
    svc = web(deploy).wait_until_running()
    assert svc.url is not None and fetch(node, svc.url).status_code == 200

    assert svc.stop() is svc
    assert svc.status == "stopped" and svc.sandbox_id is None
    assert svc.refresh().status == "stopped"
    r = fetch(node, svc.url)
    assert r.status_code == 503, r.text
    assert "stopped" in r.json()["error"]
    assert any(x.stream == "system" and "stopped" in x.line for x in svc.logs())

    assert svc.start() is svc and svc.status == "deploying"
    svc.wait_until_running()
    assert svc.status == "running" and svc.sandbox_id is not None
    r = fetch(node, svc.url)
    assert r.status_code == 200 and r.text == "hello"

    # The namespace's forms, by name.
    assert client.services.stop(svc.name).status == "stopped"
    assert client.services.start(svc.name).status == "deploying"
    assert client.services.get(svc.name).wait_until_running().status == "running"


def test_delete_forgets_it(client: Client, deploy: Callable[..., Service]) -> None:
    svc = deploy("py-del", start_cmd="exec sleep 600")
    svc.delete()
    with pytest.raises(ai2in.NotFoundError):
        client.services.get(svc.id)
    with pytest.raises(ai2in.NotFoundError):
        svc.refresh()
    with pytest.raises(ai2in.NotFoundError):
        client.services.delete(svc.name)
    assert svc.id not in [s.id for s in client.services.list()]

    # Its name is free again; `with` deletes at the end of the block.
    with client.services.deploy(svc.name, "host", start_cmd="exec sleep 600") as again:
        assert again.name == svc.name and again.id != svc.id
    with pytest.raises(ai2in.NotFoundError):
        client.services.get(again.id)


def test_a_crashing_service_restarts_and_wait_times_out(
    deploy: Callable[..., Service],
) -> None:
    svc = deploy("py-crash", start_cmd="echo bye; exit 3")
    crashed = until(lambda: svc.refresh().last_exit, what="the first exit")
    assert crashed.exit_code == 3 and crashed.signal is None
    with pytest.raises(ai2in.RequestTimeoutError) as e:
        svc.wait_until_running(timeout=2)
    assert svc.name in str(e.value) and svc.status in str(e.value)
    assert any(
        x.stream == "system" and "exited with status 3" in x.line for x in svc.logs()
    ), svc.logs().logs
    until(lambda: svc.refresh().restarts >= 1, timeout=20, what="a restart")


def test_a_taken_name_is_already_exists(
    client: Client, deploy: Callable[..., Service]
) -> None:
    svc = deploy("py-dup", start_cmd="exec sleep 600")
    with pytest.raises(AlreadyExistsError) as e:
        client.services.deploy(svc.name, "host", start_cmd="exec sleep 600")
    assert isinstance(e.value, ConflictError) and e.value.status == 409
    assert e.value.body.get("code") == "already_exists"
    assert [s.id for s in client.services.list() if s.name == svc.name] == [svc.id]


def test_bad_requests(client: Client) -> None:
    for name in ("Web", "-web", "web-", "we_b", "a" * 41, "", "web.app"):
        with pytest.raises(ai2in.BadRequestError) as e:
            client.services.deploy(name, "host", start_cmd="exec sleep 600")
        assert "name" in e.value.message, e.value.message
    # The host image has no entrypoint or cmd: a start command is needed.
    with pytest.raises(ai2in.BadRequestError):
        client.services.deploy(unique("py-nocmd"), "host")
    with pytest.raises(ai2in.NotFoundError):
        client.services.get("svc_doesnotexist0000000")
    with pytest.raises(ai2in.NotFoundError):
        client.services.logs("no-such-service")
    assert not [s for s in client.services.list() if s.name.startswith("py-nocmd-")]


def test_scopes(client: Client, deploy: Callable[..., Service], read_only_key: str) -> None:
    svc = deploy("py-scopes", start_cmd="exec sleep 600")
    reader = client.keys.create("hosting-reader", ["hosting:read"])
    other = client.keys.create("other-hosting", ["admin"], tenant="hosting-other")
    try:
        with Client(api_key=read_only_key) as none:  # sandboxes:read only
            with pytest.raises(ai2in.PermissionDeniedError):
                none.services.list()
        with Client(api_key=reader.key) as ro:
            assert svc.id in [s.id for s in ro.services.list()]
            assert ro.services.get(svc.name).id == svc.id
            assert isinstance(ro.services.logs(svc.id).next_since, int)
            with pytest.raises(ai2in.PermissionDeniedError):
                ro.services.deploy(unique("py-ro"), "host", start_cmd="exec sleep 600")
            with pytest.raises(ai2in.PermissionDeniedError):
                ro.services.stop(svc.id)
            with pytest.raises(ai2in.PermissionDeniedError):
                ro.services.delete(svc.id)
        with Client(api_key=other.key) as stranger:
            assert svc.id not in [s.id for s in stranger.services.list()]
            with pytest.raises(ai2in.NotFoundError):
                stranger.services.get(svc.id)
            with pytest.raises(ai2in.NotFoundError):
                stranger.services.delete(svc.name)
    finally:
        client.keys.revoke(reader.id)
        client.keys.revoke(other.id)
    assert client.services.get(svc.id).name == svc.name


def test_async_services(node: Node) -> None:
    async def main() -> None:
        async with AsyncClient() as client:
            name = unique("py-async")
            svc = await client.services.deploy(
                name, "host", internal_port=8000, start_cmd=WEB_CMD, env={"GREETING": "async"}
            )
            async with svc:
                assert isinstance(svc, AsyncService) and svc.status == "deploying"
                assert await svc.wait_until_running() is svc and svc.status == "running"
                assert svc.url is not None
                r = await asyncio.to_thread(fetch, node, svc.url)
                assert r.status_code == 200 and r.text == "async"
                assert svc.id in [s.id for s in await client.services.list()]
                got = await client.services.get(name)
                assert isinstance(got, AsyncService) and got.id == svc.id
                with pytest.raises(AlreadyExistsError):
                    await client.services.deploy(name, "host", start_cmd="exec sleep 600")

                logs = await svc.logs()
                assert any(x.stream == "system" for x in logs)
                stream = svc.follow_logs(since=logs.logs[-1].seq - 1)
                try:
                    first = await asyncio.wait_for(stream.__anext__(), 15)
                    assert first.seq == logs.logs[-1].seq
                    marker = f"/async-{uuid.uuid4().hex}"
                    await asyncio.to_thread(fetch, node, svc.url, marker)

                    async def the_marker() -> LogLine:
                        async for line in stream:
                            if marker in line.line:
                                return line
                        raise AssertionError("the stream ended")
                    line = await asyncio.wait_for(the_marker(), 15)
                    assert line.stream == "stderr" and line.seq > first.seq
                finally:
                    await stream.aclose()

                await svc.redeploy(env={"GREETING": "encore"})
                assert svc.status == "running"
                assert (await asyncio.to_thread(fetch, node, svc.url)).text == "encore"
                assert (await svc.stop()).status == "stopped"
                assert (await asyncio.to_thread(fetch, node, svc.url)).status_code == 503
                assert (await svc.start()).status == "deploying"
                await svc.wait_until_running()
                assert (await svc.refresh()).status == "running"
            # `async with` deleted it.
            with pytest.raises(ai2in.NotFoundError):
                await client.services.get(svc.id)

    run(main)

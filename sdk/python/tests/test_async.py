"""The asyncio client against the real node: the same surface as the sync one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

import ai2in
from ai2in import AsyncClient, AsyncSandbox

from conftest import Node


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 60))


def test_lifecycle() -> None:
    async def main() -> None:
        async with AsyncSandbox.create(metadata={"suite": "async"}, timeout_ms=100_000) as sbx:
            info = await sbx.info()
            assert info.status == "running" and info.metadata == {"suite": "async"}
            assert [s.id for s in await AsyncSandbox.list(metadata={"suite": "async"})] == [sbx.id]
            other = await AsyncSandbox.connect(sbx.id)
            assert (await other.info()).id == sbx.id
            await other.close()
            assert (await sbx.pause()).status == "paused"
            with pytest.raises(ai2in.SandboxPausedError):
                await sbx.run_code("1")
            assert (await sbx.resume()).status == "running"
            await sbx.set_timeout(200_000)
            assert (await sbx.metrics()).mem_limit_bytes > 0
            # The URL names the sandbox by its id without `sbx_` (not valid in a DNS name).
            assert f"8080-{sbx.id[4:]}." in await sbx.expose(8080)
        with pytest.raises(ai2in.SandboxEndedError):
            await AsyncSandbox.connect(sbx.id)

        plain = await AsyncSandbox.create()
        await plain.kill()
        with pytest.raises(ai2in.SandboxEndedError):
            await plain.info()
        await plain.close()

    run(main)


def test_run_code_stream_and_contexts() -> None:
    async def main() -> None:
        async with AsyncSandbox.create() as sbx:
            assert (await sbx.run_code("1 + 1")).text == "2"
            seen: list[tuple[str, str | None]] = []

            async def on_stdout(text: str) -> None:  # coroutine callbacks are awaited
                await asyncio.sleep(0)
                seen.append(("out", text))

            ex = await sbx.run_code(
                "import sys\nprint('a')\nprint('b', file=sys.stderr)\n5",
                on_stdout=on_stdout,
                on_stderr=lambda t: seen.append(("err", t)),
                on_result=lambda r: seen.append(("result", r.text)),
            )
            assert seen == [("out", "a\n"), ("err", "b\n"), ("result", "5")] and ex.text == "5"
            events = [ev async for ev in sbx.run_code_stream("print(1)\n1/0")]
            assert events[0] == ai2in.StdoutEvent("1\n")
            assert isinstance(events[1], ai2in.ErrorEvent)
            assert isinstance(events[-1], ai2in.DoneEvent) and events[-1].execution.error
            ctx = await sbx.create_context()
            await sbx.run_code("v = 'kept'", context=ctx)
            assert (await sbx.run_code("v", context=ctx)).text == "'kept'"
            assert ctx.id in [c.id for c in await sbx.list_contexts()]
            await sbx.restart_context(ctx)
            assert (await sbx.run_code("v", context=ctx)).error is not None
            await sbx.delete_context(ctx)

    run(main)


def test_commands_files_watch_pty() -> None:
    async def main() -> None:
        async with AsyncSandbox.create() as sbx:
            r = await sbx.commands.run("echo $A", env={"A": "b"})
            assert r.stdout == "b\n" and r.exit_code == 0
            handle = await sbx.commands.run("echo x; sleep 0.3; echo y", background=True)
            chunks: list[str] = []
            result = await handle.wait(timeout=20, on_stdout=chunks.append)
            assert result.stdout == "x\ny\n" == "".join(chunks)
            assert (await handle.logs()).status == "exited"
            assert handle.id in [c.id for c in await sbx.commands.list()]
            sleeper = await sbx.commands.run("sleep 30", background=True)
            await sleeper.kill()
            assert (await sleeper.wait(timeout=10)).exit_code is None

            await sbx.files.write("t.txt", "text")
            await sbx.files.write("b.bin", b"\x00\x01")
            assert await sbx.files.read("t.txt") == "text"
            assert await sbx.files.read_bytes("b.bin") == b"\x00\x01"
            assert {"t.txt", "b.bin"} <= {e.name for e in await sbx.files.list(".")}
            assert await sbx.files.exists("t.txt") and not await sbx.files.exists("nope")

            async with await sbx.files.watch("/home/user") as w:
                await sbx.commands.run("touch /home/user/polled")
                deadline = time.monotonic() + 10
                polled: list[str] = []
                while "/home/user/polled" not in polled and time.monotonic() < deadline:
                    polled += [e.path for e in await w.poll()]
                    await asyncio.sleep(0.05)
                await sbx.commands.run("touch /home/user/streamed")
                async for event in w:
                    if event.path == "/home/user/streamed":
                        break

            pty = await sbx.pty.create(cols=90, rows=20)
            await pty.send_input("stty size\n")
            out = b""
            while b"20 90" not in out and time.monotonic() < deadline:
                out += (await pty.read()).data
                await asyncio.sleep(0.05)
            await pty.resize(100, 30)
            await pty.kill()

    run(main)


def test_connect_to_a_command() -> None:
    async def main() -> None:
        async with AsyncSandbox.create() as sbx:
            script = "for i in 1 2 3 4 5; do echo line $i; sleep 0.2; done; exit 7"
            handle = await sbx.commands.run(script, background=True)
            sleeper = await sbx.commands.run("sleep 30", background=True)
            await asyncio.sleep(0.3)  # some output comes before the second client connects
            other = await AsyncSandbox.connect(sbx.id)  # not ``async with``: sbx's block ends it
            try:
                same = await other.commands.connect(handle.id)
                assert (same.id, same.pid) == (handle.id, handle.pid)
                out: list[str] = []

                async def collect(text: str) -> None:
                    out.append(text)

                result = await same.wait(timeout=20, on_stdout=collect)
                expected = "".join(f"line {i}\n" for i in range(1, 6))
                assert result.stdout == expected == "".join(out) and result.exit_code == 7
                assert (await same.logs()).status == "exited"

                await (await other.commands.connect(sleeper.id)).kill()
                assert (await sleeper.wait(timeout=10)).error is not None
                with pytest.raises(ai2in.NotFoundError):
                    await other.commands.connect("cmd_0000000000000000")
            finally:
                await other.close()

    run(main)


def test_keys() -> None:
    async def main() -> None:
        async with AsyncClient() as client:
            created = await client.keys.create("async", ["sandboxes:read"])
            assert created.id in [k.id for k in await client.keys.list()]
            await client.keys.revoke(created.id)
            assert created.id not in [k.id for k in await client.keys.list()]

    run(main)


def test_nodes(own_node: Node) -> None:
    async def main() -> None:
        async with AsyncClient(api_key=own_node.admin_key, base_url=own_node.url) as client:
            (me,) = await client.nodes.list()
            assert me.status == "ready"
            with pytest.raises(ai2in.NotFoundError):
                await client.nodes.drain("no-such-node")
            drained = await client.nodes.drain(me.id)
            assert (drained.id, drained.status) == (me.id, "draining")
            with pytest.raises(ai2in.NodeAtCapacityError, match="draining"):
                await AsyncSandbox.create(api_key=own_node.admin_key, base_url=own_node.url)
            assert [n.status for n in await client.nodes.list()] == ["draining"]

    run(main)

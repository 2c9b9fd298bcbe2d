"""The asyncio client: :class:`AsyncSandbox`, the same surface as :class:`ai2in.Sandbox` with
coroutines and async iterators. Callbacks may be plain functions or coroutine functions.

Example::

    import asyncio
    from ai2in import AsyncSandbox

    async def main() -> None:
        async with AsyncSandbox.create() as sbx:      # destroyed when the block ends
            print((await sbx.run_code("1 + 1")).text)

    asyncio.run(main())

``sbx = await AsyncSandbox.create()`` works too (then ``await sbx.kill()`` yourself).
"""

from __future__ import annotations

import asyncio
import builtins
import inspect
import os
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Mapping,
    Sequence,
)
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, overload

from . import _api
from ._config import resolve
from ._download import Destination, async_save
from ._flows import (
    CommandClock,
    LogFollower,
    RunCollector,
    check_background,
    check_chunk_size,
    context_id,
    split_path,
)
from ._transport import AsyncTransport
from ._upload import CHUNK_BYTES, AsyncUpload, async_body
from .errors import NotFoundError, SandboxEndedError
from .models import (
    CommandInfo,
    CommandLogs,
    CommandResult,
    CommandStarted,
    Context,
    DesktopInfo,
    DesktopOptions,
    DesktopStream,
    EntryInfo,
    Execution,
    ExecutionError,
    FsEvent,
    Image,
    MouseButton,
    PtyOutput,
    Result,
    RunEvent,
    SandboxInfo,
    SandboxMetrics,
    ScrollDirection,
    VolumeMount,
    VolumeMountDict,
    Window,
    WriteInfo,
)


async def _settle(values: Iterable[Any]) -> None:
    """Awaits what callbacks returned when it is awaitable."""
    for value in values:
        if inspect.isawaitable(value):
            await value


class SandboxStarting:
    """What :meth:`AsyncSandbox.create` and :meth:`AsyncSandbox.connect` answer: await it for
    the sandbox, or use it in ``async with`` to have the sandbox destroyed at the end."""

    def __init__(self, start: Callable[[], Awaitable[AsyncSandbox]]) -> None:
        self._start = start
        self._sandbox: AsyncSandbox | None = None

    def __await__(self) -> Generator[Any, None, AsyncSandbox]:
        return self._start().__await__()

    async def __aenter__(self) -> AsyncSandbox:
        self._sandbox = await self._start()
        return self._sandbox

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._sandbox is not None:
            await self._sandbox.__aexit__(exc_type, exc, tb)


class AsyncSandbox:
    """A sandbox on an ai2in node, driven with asyncio. See :class:`ai2in.Sandbox` for what
    each method does."""

    def __init__(self, sandbox_id: str, transport: AsyncTransport) -> None:
        self.id = sandbox_id
        self._t = transport
        self.commands = AsyncCommands(sandbox_id, transport)
        self.files = AsyncFiles(sandbox_id, transport)
        self.pty = AsyncPty(sandbox_id, transport)
        self.desktop = AsyncDesktop(sandbox_id, transport)

    def __repr__(self) -> str:
        return f"AsyncSandbox(id={self.id!r})"

    @classmethod
    def create(
        cls,
        image: str | Image | None = None,
        *,
        env: Mapping[str, str] | None = None,
        timeout_ms: int | None = None,
        metadata: Mapping[str, str] | None = None,
        cpu: float | None = None,
        memory_bytes: int | None = None,
        disk_bytes: int | None = None,
        egress: Literal["allow", "deny"] | None = None,
        volumes: Sequence[VolumeMount | VolumeMountDict] | None = None,
        desktop: bool | DesktopOptions | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
    ) -> SandboxStarting:
        """Creates a sandbox: ``await AsyncSandbox.create()`` or
        ``async with AsyncSandbox.create() as sbx``. Arguments as :meth:`Sandbox.create`."""
        call = _api.create_sandbox(
            image, env, timeout_ms, metadata, cpu, memory_bytes, disk_bytes, egress, volumes,
            desktop,
        )
        return SandboxStarting(lambda: cls._start(call, api_key, base_url))

    @classmethod
    def connect(
        cls, sandbox_id: str, *, api_key: str | None = None, base_url: str | None = None
    ) -> SandboxStarting:
        """Attaches to an existing sandbox (``NotFoundError`` if there is none); in
        ``async with`` it is destroyed at the end, as a created one."""
        return SandboxStarting(
            lambda: cls._start(_api.get_sandbox(sandbox_id), api_key, base_url)
        )

    @classmethod
    async def _start(
        cls, call: _api.Call[SandboxInfo], api_key: str | None, base_url: str | None
    ) -> AsyncSandbox:
        transport = AsyncTransport(resolve(api_key, base_url))
        try:
            info = await transport.call(call)
        except BaseException:
            await transport.close()
            raise
        return cls(info.id, transport)

    @staticmethod
    async def list(
        status: str | None = None,
        metadata: Mapping[str, str] | None = None,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
    ) -> builtins.list[SandboxInfo]:
        """The key's live sandboxes, filtered by ``status`` and ``metadata`` labels."""
        transport = AsyncTransport(resolve(api_key, base_url))
        try:
            return await transport.call(_api.list_sandboxes(status, metadata))
        finally:
            await transport.close()

    async def info(self) -> SandboxInfo:
        """The sandbox object."""
        return await self._t.call(_api.get_sandbox(self.id))

    async def kill(self) -> None:
        """Destroys the sandbox."""
        await self._t.call(_api.delete_sandbox(self.id))

    async def pause(self) -> SandboxInfo:
        """Freezes the sandbox."""
        return await self._t.call(_api.pause(self.id))

    async def resume(self) -> SandboxInfo:
        """Thaws a paused sandbox."""
        return await self._t.call(_api.resume(self.id))

    async def set_timeout(self, timeout_ms: int) -> SandboxInfo:
        """Sets the sandbox to end ``timeout_ms`` from now."""
        return await self._t.call(_api.set_timeout(self.id, timeout_ms))

    async def metrics(self) -> SandboxMetrics:
        """Live resource figures."""
        return await self._t.call(_api.metrics(self.id))

    async def expose(self, port: int) -> str:
        """The public URL of ``port`` inside the sandbox."""
        return await self._t.call(_api.expose(self.id, port))

    async def snapshot(self, ref: str | None = None) -> Image:
        """Saves the sandbox's files as a new image (see :meth:`ai2in.Sandbox.snapshot`)."""
        return await self._t.call(_api.snapshot(self.id, ref))

    async def run_code(
        self,
        code: str,
        language: str | None = None,
        *,
        context: Context | str | None = None,
        timeout_ms: int | None = None,
        env: Mapping[str, str] | None = None,
        on_stdout: Callable[[str], Any] | None = None,
        on_stderr: Callable[[str], Any] | None = None,
        on_result: Callable[[Result], Any] | None = None,
        on_error: Callable[[ExecutionError], Any] | None = None,
    ) -> Execution:
        """Runs code and answers its Execution; with callbacks the run is streamed."""
        cid = context_id(context)
        if not (on_stdout or on_stderr or on_result or on_error):
            return await self._t.call(_api.run(self.id, code, language, cid, timeout_ms, env))
        collector = RunCollector(on_stdout, on_stderr, on_result, on_error)
        call = _api.run_stream(self.id, code, language, cid, timeout_ms, env)
        async for event in self._t.stream(call):
            await _settle([collector.feed(event)])
        return collector.execution()

    def run_code_stream(
        self,
        code: str,
        language: str | None = None,
        *,
        context: Context | str | None = None,
        timeout_ms: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> AsyncGenerator[RunEvent, None]:
        """Runs code; ``async for`` over its events, ``DoneEvent`` last. ``await
        stream.aclose()`` after leaving the loop early interrupts the run at once."""
        call = _api.run_stream(self.id, code, language, context_id(context), timeout_ms, env)
        return self._t.stream(call)

    async def create_context(self, language: str = "python", cwd: str | None = None) -> Context:
        """A new stateful interpreter."""
        return await self._t.call(_api.create_context(self.id, language, cwd))

    async def list_contexts(self) -> builtins.list[Context]:
        """The sandbox's contexts."""
        return await self._t.call(_api.list_contexts(self.id))

    async def delete_context(self, context: Context | str) -> None:
        """Ends and forgets a context."""
        await self._t.call(_api.delete_context(self.id, context_id(context)))

    async def restart_context(self, context: Context | str) -> Context:
        """Restarts a context's interpreter; its state is lost."""
        return await self._t.call(_api.restart_context(self.id, context_id(context)))

    async def close(self) -> None:
        """Closes this client's connections; the sandbox keeps running."""
        await self._t.close()

    async def __aenter__(self) -> AsyncSandbox:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.kill()
        except (NotFoundError, SandboxEndedError):
            pass  # already gone
        finally:
            await self.close()


class AsyncCommands:
    """Shell commands: ``sbx.commands``."""

    def __init__(self, sandbox_id: str, transport: AsyncTransport) -> None:
        self._id = sandbox_id
        self._t = transport

    @overload
    async def run(
        self,
        cmd: str,
        *,
        background: Literal[False] = False,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout_ms: int | None = None,
        stdin: str | None = None,
        user: str | None = None,
    ) -> CommandResult: ...

    @overload
    async def run(
        self,
        cmd: str,
        *,
        background: Literal[True],
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
    ) -> AsyncCommandHandle: ...

    async def run(
        self,
        cmd: str,
        *,
        background: bool = False,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout_ms: int | None = None,
        stdin: str | None = None,
        user: str | None = None,
    ) -> CommandResult | AsyncCommandHandle:
        """Runs ``/bin/sh -c cmd`` to completion, or in the background."""
        if background:
            check_background(timeout_ms, stdin)
            started = await self._t.call(_api.start_command(self._id, cmd, cwd, env, user))
            return AsyncCommandHandle(self._id, self._t, started)
        return await self._t.call(_api.shell(self._id, cmd, cwd, env, timeout_ms, stdin, user))

    async def list(self) -> builtins.list[CommandInfo]:
        """The background commands, oldest first."""
        return await self._t.call(_api.list_commands(self._id))

    async def connect(self, command_id: str) -> AsyncCommandHandle:
        """A handle for a background command started earlier, by this client or another
        (``NotFoundError`` if there is none); ``wait()`` delivers all its output."""
        info = await self._t.call(_api.get_command(self._id, command_id))
        return AsyncCommandHandle(self._id, self._t, info)


class AsyncCommandHandle:
    """A command running in the background, from ``commands.run(..., background=True)`` or
    :meth:`AsyncCommands.connect`."""

    def __init__(
        self,
        sandbox_id: str,
        transport: AsyncTransport,
        command: CommandStarted | CommandInfo,
    ) -> None:
        self._sandbox_id = sandbox_id
        self._t = transport
        self.id = command.id
        self.pid = command.pid
        self._clock = CommandClock.of(command)

    def __repr__(self) -> str:
        return f"AsyncCommandHandle(id={self.id!r}, pid={self.pid})"

    async def logs(self) -> CommandLogs:
        """Everything it printed so far, and whether it still runs."""
        return await self._t.call(_api.command_logs(self._sandbox_id, self.id))

    async def wait(
        self,
        timeout: float | None = None,
        on_stdout: Callable[[str], Any] | None = None,
        on_stderr: Callable[[str], Any] | None = None,
    ) -> CommandResult:
        """Waits until the command ends (``timeout`` in seconds), calling the callbacks with
        new output."""
        follower = LogFollower(
            self._sandbox_id, self.id, self._clock, timeout, on_stdout, on_stderr
        )
        while True:
            await _settle(follower.feed(await self._t.call(follower.next_call())))
            if follower.finished:
                return follower.result()
            await asyncio.sleep(follower.delay())

    async def kill(self, signal: int | str | None = None) -> None:
        """Sends ``signal`` (default SIGKILL) to the command's process group."""
        await self._t.call(_api.kill_command(self._sandbox_id, self.id, signal))


class AsyncFiles:
    """The filesystem: ``sbx.files``; each call acts as ``user`` unless ``user="root"``."""

    def __init__(self, sandbox_id: str, transport: AsyncTransport) -> None:
        self._id = sandbox_id
        self._t = transport

    async def read(self, path: str, user: str | None = None) -> str:
        """A text file's contents."""
        return await self._t.call(_api.fs_read(self._id, path, user))

    async def read_bytes(
        self,
        path: str,
        user: str | None = None,
        *,
        offset: int = 0,
        length: int | None = None,
    ) -> bytes:
        """A file's bytes, or ``length`` of them from ``offset``."""
        if length == 0:
            return b""
        return await self._t.call(_api.read_file(self._id, path, user, offset, length))

    async def write(self, path: str, data: str | bytes, user: str | None = None) -> WriteInfo:
        """Replaces the file with ``data`` (text or bytes)."""
        if isinstance(data, bytes):
            return await self.upload(path, data, user)
        return await self._t.call(_api.fs_write(self._id, path, data, user))

    async def upload(self, path: str, source: AsyncUpload, user: str | None = None) -> WriteInfo:
        """Replaces the file with ``source``, streamed: a local file's path, bytes, a binary
        file object (read in a worker thread) or an (async) iterable of byte chunks."""
        async with async_body(source) as (content, length):
            return await self._t.call(_api.write_file(self._id, path, content, length, user))

    async def download(self, path: str, dest: Destination, user: str | None = None) -> int:
        """Writes the file to ``dest`` (a local path or a binary file object) as it arrives,
        and answers its size."""
        return await async_save(self.iter_bytes(path, CHUNK_BYTES, user), dest)

    def iter_bytes(
        self, path: str, chunk_size: int = CHUNK_BYTES, user: str | None = None
    ) -> AsyncGenerator[bytes, None]:
        """``async for`` over the file's bytes as they arrive, ``chunk_size`` at a time.
        ``await chunks.aclose()`` after leaving the loop early ends the transfer at once."""
        check_chunk_size(chunk_size)
        return self._t.stream_bytes(_api.read_file(self._id, path, user), chunk_size)

    async def list(self, path: str = ".", user: str | None = None) -> builtins.list[EntryInfo]:
        """The entries of a directory."""
        return await self._t.call(_api.fs_list(self._id, path, user))

    async def exists(self, path: str, user: str | None = None) -> bool:
        """Whether ``path`` exists."""
        parent, name = split_path(path)
        try:
            return any(e.name == name for e in await self.list(parent, user))
        except NotFoundError:
            return False

    async def watch(self, path: str, recursive: bool = False) -> AsyncWatchHandle:
        """Starts watching a file or directory."""
        watch_id = await self._t.call(_api.watch_start(self._id, path, recursive))
        return AsyncWatchHandle(self._id, self._t, watch_id)


class AsyncWatchHandle:
    """A running watch: ``await poll()``, or ``async for`` over live events; ``async with``
    stops it at the end."""

    def __init__(self, sandbox_id: str, transport: AsyncTransport, watch_id: str) -> None:
        self._sandbox_id = sandbox_id
        self._t = transport
        self.id = watch_id

    def __repr__(self) -> str:
        return f"AsyncWatchHandle(id={self.id!r})"

    async def poll(self) -> builtins.list[FsEvent]:
        """The events since the last poll."""
        return await self._t.call(_api.watch_poll(self._sandbox_id, self.id))

    def __aiter__(self) -> AsyncIterator[FsEvent]:
        return self._t.stream(_api.watch_events(self._sandbox_id, self.id))

    async def stop(self) -> None:
        """Stops the watch."""
        await self._t.call(_api.watch_stop(self._sandbox_id, self.id))

    async def __aenter__(self) -> AsyncWatchHandle:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.stop()
        except (NotFoundError, SandboxEndedError):
            pass  # the watch or the sandbox is already gone


class AsyncPty:
    """Interactive terminals: ``sbx.pty``."""

    def __init__(self, sandbox_id: str, transport: AsyncTransport) -> None:
        self._id = sandbox_id
        self._t = transport

    async def create(
        self,
        cmd: str | None = None,
        cols: int = 80,
        rows: int = 24,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> AsyncPtyHandle:
        """Opens a terminal running ``cmd`` (default: the login shell)."""
        started = await self._t.call(_api.pty_create(self._id, cmd, cols, rows, cwd, env))
        return AsyncPtyHandle(self._id, self._t, started.id, started.pid)


class AsyncPtyHandle:
    """A terminal."""

    def __init__(self, sandbox_id: str, transport: AsyncTransport, pty_id: str, pid: int):
        self._sandbox_id = sandbox_id
        self._t = transport
        self.id = pty_id
        self.pid = pid

    def __repr__(self) -> str:
        return f"AsyncPtyHandle(id={self.id!r}, pid={self.pid})"

    async def send_input(self, data: bytes | str) -> None:
        """Types ``data``."""
        await self._t.call(_api.pty_input(self._sandbox_id, self.pid, data))

    async def read(self) -> PtyOutput:
        """What the terminal printed since the last read."""
        return await self._t.call(_api.pty_output(self._sandbox_id, self.pid))

    async def resize(self, cols: int, rows: int) -> None:
        """Changes the terminal's size."""
        await self._t.call(_api.pty_resize(self._sandbox_id, self.pid, cols, rows))

    async def kill(self, signal: int | str | None = None) -> None:
        """Ends the terminal's program (default SIGKILL)."""
        await self._t.call(_api.pty_kill(self._sandbox_id, self.pid, signal))


class AsyncDesktop:
    """The graphical desktop of a sandbox created with ``desktop=True``: ``sbx.desktop``.
    See :class:`ai2in.Desktop` for what each method does."""

    def __init__(self, sandbox_id: str, transport: AsyncTransport) -> None:
        self._id = sandbox_id
        self._t = transport

    async def info(self) -> DesktopInfo:
        """The display, the screen's size and dpi, and the live view if one runs."""
        return await self._t.call(_api.desktop_info(self._id))

    async def screenshot(self, path: str | os.PathLike[str] | None = None) -> bytes:
        """The whole screen as PNG bytes; with ``path``, also written to that file."""
        png = await self._t.call(_api.desktop_screenshot(self._id))
        if path is not None:
            await asyncio.to_thread(Path(path).write_bytes, png)
        return png

    async def click(
        self, x: int | None = None, y: int | None = None, button: MouseButton = "left"
    ) -> None:
        """Clicks ``button`` at ``x``, ``y`` (both or neither: where the pointer is)."""
        await self._t.call(_api.desktop_mouse(self._id, "click", x, y, button))

    async def double_click(
        self, x: int | None = None, y: int | None = None, button: MouseButton = "left"
    ) -> None:
        """Clicks twice at ``x``, ``y``."""
        await self._t.call(_api.desktop_mouse(self._id, "double_click", x, y, button))

    async def right_click(self, x: int | None = None, y: int | None = None) -> None:
        """Clicks the right button at ``x``, ``y``."""
        await self._t.call(_api.desktop_mouse(self._id, "click", x, y, "right"))

    async def move(self, x: int, y: int) -> None:
        """Moves the pointer to ``x``, ``y``."""
        await self._t.call(_api.desktop_mouse(self._id, "move", x, y))

    async def drag(
        self, x: int, y: int, to_x: int, to_y: int, button: MouseButton = "left"
    ) -> None:
        """Presses ``button`` at ``x``, ``y``, moves to ``to_x``, ``to_y`` and releases it."""
        await self._t.call(_api.desktop_mouse(self._id, "drag", x, y, button, to_x, to_y))

    async def mouse_down(self, button: MouseButton = "left") -> None:
        """Presses ``button`` where the pointer is, and holds it."""
        await self._t.call(_api.desktop_mouse(self._id, "down", button=button))

    async def mouse_up(self, button: MouseButton = "left") -> None:
        """Releases ``button`` where the pointer is."""
        await self._t.call(_api.desktop_mouse(self._id, "up", button=button))

    async def scroll(
        self,
        direction: ScrollDirection = "down",
        amount: int = 1,
        x: int | None = None,
        y: int | None = None,
    ) -> None:
        """Turns the wheel ``amount`` clicks ``direction`` (at ``x``, ``y`` when given)."""
        await self._t.call(
            _api.desktop_mouse(self._id, "scroll", x, y, direction=direction, amount=amount)
        )

    async def cursor(self) -> tuple[int, int]:
        """Where the pointer is: ``(x, y)``."""
        return await self._t.call(_api.desktop_cursor(self._id))

    async def type(self, text: str) -> None:
        """Types ``text`` as is (any Unicode)."""
        await self._t.call(_api.desktop_type(self._id, text))

    async def press(self, *keys: str) -> None:
        """Presses each key combination in turn (``"ctrl+a"``, ``"Delete"``)."""
        await self._t.call(_api.desktop_press(self._id, keys))

    async def launch(
        self, cmd: str, cwd: str | None = None, env: Mapping[str, str] | None = None
    ) -> AsyncCommandHandle:
        """Starts a graphical program in the background (a background command)."""
        started = await self._t.call(_api.desktop_launch(self._id, cmd, cwd, env))
        return AsyncCommandHandle(self._id, self._t, started)

    async def windows(self) -> builtins.list[Window]:
        """The top-level windows, from the bottom of the stack to the top."""
        return await self._t.call(_api.desktop_windows(self._id))

    async def stream(self, view_only: bool = False) -> DesktopStream:
        """Starts (or replaces) the live view: a noVNC url and its password."""
        return await self._t.call(_api.desktop_stream(self._id, view_only))

    async def stop_stream(self) -> None:
        """Stops the live view (``NotFoundError`` if none runs)."""
        await self._t.call(_api.desktop_stop_stream(self._id))

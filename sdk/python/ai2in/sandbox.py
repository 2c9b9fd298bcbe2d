"""The blocking client: :class:`Sandbox` and what hangs off it (commands, files, terminals).

Example::

    from ai2in import Sandbox

    with Sandbox.create() as sbx:          # destroyed when the block ends
        print(sbx.run_code("1 + 1").text)  # 2
        print(sbx.commands.run("uname -s").stdout)

:class:`ai2in.AsyncSandbox` has the same surface with coroutines.
"""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, overload

from . import _api
from ._config import resolve
from ._download import Destination, save
from ._flows import (
    CommandClock,
    LogFollower,
    RunCollector,
    check_background,
    check_chunk_size,
    context_id,
    split_path,
)
from ._transport import SyncTransport
from ._upload import CHUNK_BYTES, Upload, sync_body
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


class Sandbox:
    """A sandbox on an ai2in node.

    Get one with :meth:`create` or :meth:`connect`. Used as a context manager it is destroyed
    when the block ends. ``commands``, ``files`` and ``pty`` run shell commands, move files
    and open terminals; ``desktop`` drives the screen, mouse and keyboard of a sandbox
    created with ``desktop=True``.
    """

    def __init__(self, sandbox_id: str, transport: SyncTransport) -> None:
        self.id = sandbox_id
        self._t = transport
        self.commands = Commands(sandbox_id, transport)
        self.files = Files(sandbox_id, transport)
        self.pty = Pty(sandbox_id, transport)
        self.desktop = Desktop(sandbox_id, transport)

    def __repr__(self) -> str:
        return f"Sandbox(id={self.id!r})"

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
    ) -> Sandbox:
        """Creates a sandbox and answers once it can run code.

        Args:
            image: the image to start from: a reference (pulled if the tenant lacks it), an
                image id, an :class:`~ai2in.Image`, or ``"host"``; the node's default when
                ``None``.
            env: environment variables of every process in the sandbox.
            timeout_ms: lifetime; the sandbox is destroyed after it (node default 5 minutes).
            metadata: free-form labels, usable as :meth:`list` filters.
            cpu, memory_bytes, disk_bytes: resource limits (node defaults when ``None``).
            egress: ``"deny"`` cuts the sandbox off from the outside network.
            volumes: volumes to mount: :class:`~ai2in.VolumeMount` objects (e.g.
                ``volume.mount("/data")``) or dicts ``{"volume_id": ..., "path": ...,
                "read_only": ...}`` (the volume by id or name; ``read_only`` defaults to
                ``False``).
            desktop: ``True`` for a graphical desktop (an X display of 1280×800 at 96 dpi
                with a window manager, driven through :attr:`desktop`), or its screen as a
                dict ``{"width": ..., "height": ..., "dpi": ...}`` (each optional).
            api_key, base_url: override ``AI2IN_API_KEY`` and ``AI2IN_BASE_URL``.

        Example::

            sbx = Sandbox.create(metadata={"job": "42"}, timeout_ms=60_000)
            data = Sandbox.create(volumes=[{"volume_id": "results", "path": "/data"}])
            gui = Sandbox.create(desktop={"width": 1024, "height": 768})
        """
        call = _api.create_sandbox(
            image, env, timeout_ms, metadata, cpu, memory_bytes, disk_bytes, egress, volumes,
            desktop,
        )
        transport = SyncTransport(resolve(api_key, base_url))
        try:
            info = transport.call(call)
        except BaseException:
            transport.close()
            raise
        return cls(info.id, transport)

    @classmethod
    def connect(
        cls, sandbox_id: str, *, api_key: str | None = None, base_url: str | None = None
    ) -> Sandbox:
        """Attaches to an existing sandbox (``NotFoundError`` if there is none). Used in
        ``with``, it is destroyed at the end; :meth:`close` just lets it be."""
        transport = SyncTransport(resolve(api_key, base_url))
        try:
            transport.call(_api.get_sandbox(sandbox_id))
        except BaseException:
            transport.close()
            raise
        return cls(sandbox_id, transport)

    @staticmethod
    def list(
        status: str | None = None,
        metadata: Mapping[str, str] | None = None,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
    ) -> builtins.list[SandboxInfo]:
        """The key's live sandboxes, optionally only those with ``status`` (``running``,
        ``paused``...) and every ``metadata`` label given."""
        transport = SyncTransport(resolve(api_key, base_url))
        try:
            return transport.call(_api.list_sandboxes(status, metadata))
        finally:
            transport.close()

    def info(self) -> SandboxInfo:
        """The sandbox object: status, end time, metadata, resources."""
        return self._t.call(_api.get_sandbox(self.id))

    def kill(self) -> None:
        """Destroys the sandbox."""
        self._t.call(_api.delete_sandbox(self.id))

    def pause(self) -> SandboxInfo:
        """Freezes the sandbox; everything but info, resume and kill answers 409 until
        :meth:`resume`. Its lifetime keeps running."""
        return self._t.call(_api.pause(self.id))

    def resume(self) -> SandboxInfo:
        """Thaws a paused sandbox."""
        return self._t.call(_api.resume(self.id))

    def set_timeout(self, timeout_ms: int) -> SandboxInfo:
        """Sets the sandbox to end ``timeout_ms`` from now (at most 24 h; may shorten)."""
        return self._t.call(_api.set_timeout(self.id, timeout_ms))

    def metrics(self) -> SandboxMetrics:
        """Live CPU, memory, disk, process and network figures."""
        return self._t.call(_api.metrics(self.id))

    def expose(self, port: int) -> str:
        """The public URL that reaches ``port`` inside the sandbox through the node's proxy."""
        return self._t.call(_api.expose(self.id, port))

    def snapshot(self, ref: str | None = None) -> Image:
        """Saves the sandbox's files (its image plus everything it wrote; not its volumes) as
        a new image named ``ref`` (``name:tag``; ``localhost/snapshots/{id}:{unix ms}`` when
        ``None``). The sandbox is frozen for the moment it takes and keeps running after.
        Start sandboxes from the image as from any other: each is a fork of these files.

        Example::

            sbx.commands.run("pip install requests")
            image = sbx.snapshot("with-requests:1")
            with Sandbox.create(image) as fork:
                fork.run_code("import requests")
        """
        return self._t.call(_api.snapshot(self.id, ref))

    def run_code(
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
        """Runs code as a notebook cell and answers its Execution.

        ``language`` is ``python`` (the default), ``javascript`` or ``bash``; with a
        ``context`` the context's language applies. With any ``on_*`` callback the run is
        streamed and each callback is called as its events arrive. An error raised by the
        code is reported in ``Execution.error``, not raised.

        Example::

            ex = sbx.run_code("print('hi')\\n6 * 7", on_stdout=print)
            assert ex.text == "42"
        """
        cid = context_id(context)
        if not (on_stdout or on_stderr or on_result or on_error):
            return self._t.call(_api.run(self.id, code, language, cid, timeout_ms, env))
        collector = RunCollector(on_stdout, on_stderr, on_result, on_error)
        for event in self._t.stream(_api.run_stream(self.id, code, language, cid, timeout_ms, env)):
            collector.feed(event)
        return collector.execution()

    def run_code_stream(
        self,
        code: str,
        language: str | None = None,
        *,
        context: Context | str | None = None,
        timeout_ms: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Generator[RunEvent, None, None]:
        """Runs code and yields its events as they come: ``StdoutEvent``, ``StderrEvent``,
        ``ResultEvent``, ``ErrorEvent``, and last ``DoneEvent`` with the whole Execution.
        Closing the generator early (or dropping it) interrupts the run."""
        call = _api.run_stream(self.id, code, language, context_id(context), timeout_ms, env)
        return self._t.stream(call)

    def create_context(self, language: str = "python", cwd: str | None = None) -> Context:
        """A new interpreter whose state persists between the runs given it as ``context``."""
        return self._t.call(_api.create_context(self.id, language, cwd))

    def list_contexts(self) -> builtins.list[Context]:
        """The sandbox's contexts, the default ones included once used."""
        return self._t.call(_api.list_contexts(self.id))

    def delete_context(self, context: Context | str) -> None:
        """Ends a context's interpreter and forgets it."""
        self._t.call(_api.delete_context(self.id, context_id(context)))

    def restart_context(self, context: Context | str) -> Context:
        """Restarts a context's interpreter; its state is lost."""
        return self._t.call(_api.restart_context(self.id, context_id(context)))

    def close(self) -> None:
        """Closes this client's connections; the sandbox keeps running."""
        self._t.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.kill()
        except (NotFoundError, SandboxEndedError):
            pass  # already gone
        finally:
            self.close()


class Commands:
    """Shell commands in a sandbox: ``sbx.commands``."""

    def __init__(self, sandbox_id: str, transport: SyncTransport) -> None:
        self._id = sandbox_id
        self._t = transport

    @overload
    def run(
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
    def run(
        self,
        cmd: str,
        *,
        background: Literal[True],
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
    ) -> CommandHandle: ...

    def run(
        self,
        cmd: str,
        *,
        background: bool = False,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout_ms: int | None = None,
        stdin: str | None = None,
        user: str | None = None,
    ) -> CommandResult | CommandHandle:
        """Runs ``/bin/sh -c cmd``.

        By default waits for it and answers a :class:`CommandResult` (a non-zero exit is not
        an exception; ``timeout_ms`` kills it, node default 60 s). With ``background=True``
        answers a :class:`CommandHandle` at once. ``user`` is ``root`` (default) or ``user``.

        Example::

            r = sbx.commands.run("echo $GREETING", env={"GREETING": "hi"})
            assert r.stdout == "hi\\n" and r.exit_code == 0
        """
        if background:
            check_background(timeout_ms, stdin)
            started = self._t.call(_api.start_command(self._id, cmd, cwd, env, user))
            return CommandHandle(self._id, self._t, started)
        return self._t.call(_api.shell(self._id, cmd, cwd, env, timeout_ms, stdin, user))

    def list(self) -> builtins.list[CommandInfo]:
        """The background commands of the sandbox, oldest first."""
        return self._t.call(_api.list_commands(self._id))

    def connect(self, command_id: str) -> CommandHandle:
        """A handle for a background command started earlier, by this client or another
        (``NotFoundError`` if the sandbox has no such command). The node keeps the output,
        so :meth:`CommandHandle.wait` still delivers all of it.

        Example::

            job = Sandbox.connect(sandbox_id).commands.connect(command_id)
            print(job.wait(on_stdout=print).exit_code)
        """
        info = self._t.call(_api.get_command(self._id, command_id))
        return CommandHandle(self._id, self._t, info)


class CommandHandle:
    """A command running in the background: read its logs, wait for it, or kill it. From
    ``commands.run(..., background=True)`` or :meth:`Commands.connect`."""

    def __init__(
        self,
        sandbox_id: str,
        transport: SyncTransport,
        command: CommandStarted | CommandInfo,
    ) -> None:
        self._sandbox_id = sandbox_id
        self._t = transport
        self.id = command.id
        self.pid = command.pid
        self._clock = CommandClock.of(command)

    def __repr__(self) -> str:
        return f"CommandHandle(id={self.id!r}, pid={self.pid})"

    def logs(self) -> CommandLogs:
        """Everything it printed so far (the node keeps each stream's last 1 MiB), and
        whether it still runs."""
        return self._t.call(_api.command_logs(self._sandbox_id, self.id))

    def wait(
        self,
        timeout: float | None = None,
        on_stdout: Callable[[str], Any] | None = None,
        on_stderr: Callable[[str], Any] | None = None,
    ) -> CommandResult:
        """Waits until the command ends, calling ``on_stdout``/``on_stderr`` with new output
        as it is polled, and answers its result. ``timeout`` is in seconds
        (``RequestTimeoutError`` past it; the command keeps running)."""
        follower = LogFollower(
            self._sandbox_id, self.id, self._clock, timeout, on_stdout, on_stderr
        )
        while True:
            follower.feed(self._t.call(follower.next_call()))
            if follower.finished:
                return follower.result()
            time.sleep(follower.delay())

    def kill(self, signal: int | str | None = None) -> None:
        """Sends ``signal`` (default SIGKILL; a number or a name like ``"TERM"``) to the
        command's process group."""
        self._t.call(_api.kill_command(self._sandbox_id, self.id, signal))


class Files:
    """The sandbox's filesystem: ``sbx.files``. Paths are absolute, or relative to
    ``/home/user``. Each call acts as ``user`` (the default: its permissions apply and it
    owns what it writes) or, with ``user="root"``, as root (e.g. in a volume, which root
    owns).

    Bytes move as they are, of any size: :meth:`upload`, :meth:`download` and
    :meth:`iter_bytes` stream them, never holding a whole file in memory.
    """

    def __init__(self, sandbox_id: str, transport: SyncTransport) -> None:
        self._id = sandbox_id
        self._t = transport

    def read(self, path: str, user: str | None = None) -> str:
        """A text file's contents (``UnsupportedMediaTypeError`` when it is not UTF-8: use
        :meth:`read_bytes`)."""
        return self._t.call(_api.fs_read(self._id, path, user))

    def read_bytes(
        self,
        path: str,
        user: str | None = None,
        *,
        offset: int = 0,
        length: int | None = None,
    ) -> bytes:
        """A file's bytes, whatever its size (held in memory: :meth:`download` and
        :meth:`iter_bytes` stream them). With ``offset`` and/or ``length``, only those bytes
        (fewer at the end of the file); an ``offset`` at or past its end raises
        :class:`~ai2in.ApiError` with status 416.

        Example::

            header = sbx.files.read_bytes("data.bin", length=16)
            tail = sbx.files.read_bytes("data.bin", offset=1 << 20)
        """
        if length == 0:
            return b""
        return self._t.call(_api.read_file(self._id, path, user, offset, length))

    def write(self, path: str, data: str | bytes, user: str | None = None) -> WriteInfo:
        """Replaces the file atomically with ``data`` (text up to 32 MiB, or bytes of any
        size), creating missing parent directories.

        Example::

            sbx.files.write("data/in.txt", "hello")
            sbx.files.write("data/blob.bin", b"\\x00\\x01")
        """
        if isinstance(data, bytes):
            return self.upload(path, data, user)
        return self._t.call(_api.fs_write(self._id, path, data, user))

    def upload(self, path: str, source: Upload, user: str | None = None) -> WriteInfo:
        """Replaces the file atomically with ``source``, creating missing parent
        directories: a local file's path, bytes, a binary file object or an iterable of
        byte chunks, streamed, never read whole into memory. A full disk raises
        :class:`~ai2in.InsufficientStorageError` and leaves the file as it was.

        Example::

            sbx.files.upload("data/train.csv", "train.csv")      # a local file
            with open("model.bin", "rb") as f:
                sbx.files.upload("/tmp/model.bin", f)
        """
        with sync_body(source) as (content, length):
            return self._t.call(_api.write_file(self._id, path, content, length, user))

    def download(self, path: str, dest: Destination, user: str | None = None) -> int:
        """Writes the file to ``dest`` as it arrives, and answers its size: a local path
        (created, or replaced; left as it was when the node answers an error) or a binary
        file object (written from its position, left open).

        Example::

            size = sbx.files.download("out/result.tar", "result.tar")
        """
        return save(self.iter_bytes(path, CHUNK_BYTES, user), dest)

    def iter_bytes(
        self, path: str, chunk_size: int = CHUNK_BYTES, user: str | None = None
    ) -> Generator[bytes, None, None]:
        """Yields the file's bytes as they arrive, ``chunk_size`` at a time (the last chunk
        may be shorter). Errors (a missing file...) raise at the first iteration; closing
        the generator early (or dropping it) ends the transfer.

        Example::

            digest = hashlib.sha256()
            for chunk in sbx.files.iter_bytes("big.bin"):
                digest.update(chunk)
        """
        check_chunk_size(chunk_size)
        return self._t.stream_bytes(_api.read_file(self._id, path, user), chunk_size)

    def list(self, path: str = ".", user: str | None = None) -> builtins.list[EntryInfo]:
        """The entries of a directory, sorted by name (default: the home directory)."""
        return self._t.call(_api.fs_list(self._id, path, user))

    def exists(self, path: str, user: str | None = None) -> bool:
        """Whether ``path`` exists (by listing its directory)."""
        parent, name = split_path(path)
        try:
            return any(e.name == name for e in self.list(parent, user))
        except NotFoundError:
            return False

    def watch(self, path: str, recursive: bool = False) -> WatchHandle:
        """Starts watching a file or directory (``recursive``: every directory below too).

        Example::

            with sbx.files.watch("/home/user") as w:
                sbx.files.write("new.txt", "x")
                for event in w:          # blocks until events come
                    print(event.type, event.path)
                    break
        """
        watch_id = self._t.call(_api.watch_start(self._id, path, recursive))
        return WatchHandle(self._id, self._t, watch_id)


class WatchHandle:
    """A running watch. :meth:`poll` drains the queued events; iterating follows them live
    (Server-Sent Events) until the watch stops. A context manager stops it at the end."""

    def __init__(self, sandbox_id: str, transport: SyncTransport, watch_id: str) -> None:
        self._sandbox_id = sandbox_id
        self._t = transport
        self.id = watch_id

    def __repr__(self) -> str:
        return f"WatchHandle(id={self.id!r})"

    def poll(self) -> builtins.list[FsEvent]:
        """The events since the last poll, oldest first."""
        return self._t.call(_api.watch_poll(self._sandbox_id, self.id))

    def __iter__(self) -> Iterator[FsEvent]:
        return self._t.stream(_api.watch_events(self._sandbox_id, self.id))

    def stop(self) -> None:
        """Stops the watch; a live iteration then ends."""
        self._t.call(_api.watch_stop(self._sandbox_id, self.id))

    def __enter__(self) -> WatchHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.stop()
        except (NotFoundError, SandboxEndedError):
            pass  # the watch or the sandbox is already gone


class Pty:
    """Interactive terminals: ``sbx.pty``."""

    def __init__(self, sandbox_id: str, transport: SyncTransport) -> None:
        self._id = sandbox_id
        self._t = transport

    def create(
        self,
        cmd: str | None = None,
        cols: int = 80,
        rows: int = 24,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> PtyHandle:
        """Opens a terminal running ``cmd`` (default: the login shell)."""
        started = self._t.call(_api.pty_create(self._id, cmd, cols, rows, cwd, env))
        return PtyHandle(self._id, self._t, started.id, started.pid)


class PtyHandle:
    """A terminal: type into it, read what it printed, resize or kill it."""

    def __init__(self, sandbox_id: str, transport: SyncTransport, pty_id: str, pid: int):
        self._sandbox_id = sandbox_id
        self._t = transport
        self.id = pty_id
        self.pid = pid

    def __repr__(self) -> str:
        return f"PtyHandle(id={self.id!r}, pid={self.pid})"

    def send_input(self, data: bytes | str) -> None:
        """Types ``data`` (text is sent as UTF-8)."""
        self._t.call(_api.pty_input(self._sandbox_id, self.pid, data))

    def read(self) -> PtyOutput:
        """What the terminal printed since the last read (may be empty)."""
        return self._t.call(_api.pty_output(self._sandbox_id, self.pid))

    def resize(self, cols: int, rows: int) -> None:
        """Changes the terminal's size."""
        self._t.call(_api.pty_resize(self._sandbox_id, self.pid, cols, rows))

    def kill(self, signal: int | str | None = None) -> None:
        """Ends the terminal's program (default SIGKILL)."""
        self._t.call(_api.pty_kill(self._sandbox_id, self.pid, signal))


class Desktop:
    """The graphical desktop of a sandbox created with ``desktop=True``: ``sbx.desktop``.

    Take screenshots, move and click the mouse, type and press keys, start graphical
    programs, list their windows, and share a live view. Coordinates are pixels from the
    top-left corner of the screen (``0 <= x < width``). A sandbox without a desktop raises
    :class:`~ai2in.BadRequestError` for every call.

    Example::

        with Sandbox.create(desktop=True) as sbx:
            sbx.desktop.launch("xterm")
            sbx.desktop.click(100, 100)
            sbx.desktop.type("echo hi")
            sbx.desktop.press("Return")
            sbx.desktop.screenshot("screen.png")
    """

    def __init__(self, sandbox_id: str, transport: SyncTransport) -> None:
        self._id = sandbox_id
        self._t = transport

    def info(self) -> DesktopInfo:
        """The display, the screen's size and dpi, and the live view if one runs."""
        return self._t.call(_api.desktop_info(self._id))

    def screenshot(self, path: str | os.PathLike[str] | None = None) -> bytes:
        """The whole screen as PNG bytes; with ``path``, also written to that file."""
        png = self._t.call(_api.desktop_screenshot(self._id))
        if path is not None:
            Path(path).write_bytes(png)
        return png

    def click(
        self, x: int | None = None, y: int | None = None, button: MouseButton = "left"
    ) -> None:
        """Clicks ``button`` at ``x``, ``y`` (both or neither: where the pointer is)."""
        self._t.call(_api.desktop_mouse(self._id, "click", x, y, button))

    def double_click(
        self, x: int | None = None, y: int | None = None, button: MouseButton = "left"
    ) -> None:
        """Clicks twice at ``x``, ``y`` (both or neither: where the pointer is)."""
        self._t.call(_api.desktop_mouse(self._id, "double_click", x, y, button))

    def right_click(self, x: int | None = None, y: int | None = None) -> None:
        """Clicks the right button at ``x``, ``y`` (both or neither: where the pointer is)."""
        self._t.call(_api.desktop_mouse(self._id, "click", x, y, "right"))

    def move(self, x: int, y: int) -> None:
        """Moves the pointer to ``x``, ``y``."""
        self._t.call(_api.desktop_mouse(self._id, "move", x, y))

    def drag(self, x: int, y: int, to_x: int, to_y: int, button: MouseButton = "left") -> None:
        """Presses ``button`` at ``x``, ``y``, moves to ``to_x``, ``to_y`` and releases it."""
        self._t.call(_api.desktop_mouse(self._id, "drag", x, y, button, to_x, to_y))

    def mouse_down(self, button: MouseButton = "left") -> None:
        """Presses ``button`` where the pointer is (and holds it: see :meth:`mouse_up`)."""
        self._t.call(_api.desktop_mouse(self._id, "down", button=button))

    def mouse_up(self, button: MouseButton = "left") -> None:
        """Releases ``button`` where the pointer is."""
        self._t.call(_api.desktop_mouse(self._id, "up", button=button))

    def scroll(
        self,
        direction: ScrollDirection = "down",
        amount: int = 1,
        x: int | None = None,
        y: int | None = None,
    ) -> None:
        """Turns the wheel ``amount`` clicks (1 to 100) ``direction``, after moving the
        pointer to ``x``, ``y`` when given."""
        self._t.call(
            _api.desktop_mouse(self._id, "scroll", x, y, direction=direction, amount=amount)
        )

    def cursor(self) -> tuple[int, int]:
        """Where the pointer is: ``(x, y)``."""
        return self._t.call(_api.desktop_cursor(self._id))

    def type(self, text: str) -> None:
        """Types ``text`` as is: any Unicode, up to 10,000 characters. Keys that are not
        characters (``Return``, ``ctrl+c``) are for :meth:`press`."""
        self._t.call(_api.desktop_type(self._id, text))

    def press(self, *keys: str) -> None:
        """Presses each key combination in turn: X keysym names (``Return``, ``Tab``,
        ``BackSpace``, ``F5``, ``a``...) joined by ``+`` with modifiers (``ctrl``,
        ``shift``, ``alt``, ``super``).

        Example::

            sbx.desktop.press("ctrl+a", "Delete")
        """
        self._t.call(_api.desktop_press(self._id, keys))

    def launch(
        self, cmd: str, cwd: str | None = None, env: Mapping[str, str] | None = None
    ) -> CommandHandle:
        """Starts a graphical program (``/bin/sh -c cmd``, on the display) in the
        background; it is a background command like those of ``sbx.commands``."""
        started = self._t.call(_api.desktop_launch(self._id, cmd, cwd, env))
        return CommandHandle(self._id, self._t, started)

    def windows(self) -> builtins.list[Window]:
        """The top-level windows, from the bottom of the stack to the top."""
        return self._t.call(_api.desktop_windows(self._id))

    def stream(self, view_only: bool = False) -> DesktopStream:
        """Starts a live view of the screen: a noVNC page (``url``) that asks for
        ``password``; with ``view_only`` viewers cannot send input. A second call replaces
        the view (a new password; the old viewers are cut)."""
        return self._t.call(_api.desktop_stream(self._id, view_only))

    def stop_stream(self) -> None:
        """Stops the live view and cuts its viewers (``NotFoundError`` if none runs)."""
        self._t.call(_api.desktop_stop_stream(self._id))

"""The API's routes as data: each function builds one request and says how to parse its answer.

Nothing here does I/O. A :class:`Call` is one request with a JSON answer; a
:class:`StreamCall` is one request answered with Server-Sent Events. The sync and async
transports (``_transport``) send them, so both clients share every route, body and parser.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, Union
from urllib.parse import quote

from .errors import Ai2inError, NotFoundError, error_for
from .models import (
    CommandInfo,
    CommandLogs,
    CommandResult,
    CommandStarted,
    Context,
    CreatedKey,
    DatabaseInfo,
    DesktopInfo,
    DesktopOptions,
    DesktopStream,
    DoneEvent,
    EngineInfo,
    EntryInfo,
    ErrorEvent,
    Execution,
    ExecutionError,
    FsEvent,
    Image,
    KeyInfo,
    LogLine,
    NodeInfo,
    PtyOutput,
    PtyStarted,
    PullProgress,
    Result,
    ResultEvent,
    RunEvent,
    SandboxInfo,
    SandboxMetrics,
    ServiceInfo,
    ServiceLogs,
    StderrEvent,
    StdoutEvent,
    Volume,
    VolumeMount,
    VolumeMountDict,
    Window,
    WriteInfo,
)

T = TypeVar("T")

#: Seconds an ordinary call may wait for its answer.
DEFAULT_READ_S = 60.0
#: Seconds added to a run's or command's own ``timeout_ms`` before the client gives up: the
#: node needs a moment to interrupt the code and answer.
MARGIN_S = 30.0


def long_read_timeout(timeout_ms: int | None) -> float | None:
    """Seconds to wait for a call that runs up to ``timeout_ms`` on the node. Without
    ``timeout_ms`` the node applies its own limit, so the client waits as long as it takes."""
    return None if timeout_ms is None else timeout_ms / 1000 + MARGIN_S


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request whose JSON answer (``None`` when empty) ``parse`` turns into a T; with
    ``raw``, an answer that is not JSON (an image, a file), whose bytes ``parse`` gets as
    they came.

    The request body is ``body`` as JSON or, for uploads, ``content``: bytes or an iterable
    (sync) or async iterable (async) of bytes, streamed, with ``headers`` saying what it is.
    """

    method: str
    path: str
    parse: Callable[[Any], T]
    body: Mapping[str, Any] | None = None
    params: Mapping[str, str] | None = None
    #: Seconds to wait for the answer; ``None`` waits as long as it takes.
    read_timeout: float | None = DEFAULT_READ_S
    content: Any = None
    headers: Mapping[str, str] | None = None
    raw: bool = False


@dataclass(frozen=True)
class StreamCall(Generic[T]):
    """One request answered with Server-Sent Events; ``parse_event(event, data)`` gives a T,
    or ``None`` for an event to skip."""

    method: str
    path: str
    parse_event: Callable[[str, Any], T | None]
    body: Mapping[str, Any] | None = None
    params: Mapping[str, str] | None = None
    #: Streams wait for events as long as they come.
    read_timeout: float | None = None


def _sandbox_path(sandbox_id: str, *rest: str) -> str:
    return "/".join(["/v1/sandboxes", *(quote(p, safe="") for p in (sandbox_id, *rest))])


def _fields(**fields: Any) -> dict[str, Any]:
    """A JSON body of the fields that are set."""
    return {k: v for k, v in fields.items() if v is not None}


def _nothing(_: Any) -> None:
    return None


def _b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def _upload_headers(media_type: str, length: int | None) -> dict[str, str]:
    """The headers of a raw upload: its type and, when known, its length (else it is sent
    chunked)."""
    headers = {"Content-Type": media_type}
    if length is not None:
        headers["Content-Length"] = str(length)
    return headers


# -- sandboxes --------------------------------------------------------------------------------


#: A volume to mount in a new sandbox: a :class:`VolumeMount` or its dict.
Mount = Union[VolumeMount, VolumeMountDict]


def _mount(mount: Mount) -> dict[str, Any]:
    if isinstance(mount, VolumeMount):
        return mount.to_api()
    if isinstance(mount, Mapping):
        return VolumeMount(
            volume_id=mount["volume_id"],
            path=mount["path"],
            read_only=bool(mount.get("read_only", False)),
        ).to_api()
    raise TypeError(
        "a volume mount is a VolumeMount (e.g. volume.mount('/data')) or a dict "
        f"{{'volume_id': ..., 'path': ..., 'read_only': ...}}, not {type(mount).__name__}"
    )


def _desktop(desktop: bool | DesktopOptions | None) -> bool | dict[str, object] | None:
    if desktop is None or isinstance(desktop, bool):
        return desktop
    if isinstance(desktop, Mapping):
        return dict(desktop)
    raise TypeError(
        "desktop is True or a dict {'width': ..., 'height': ..., 'dpi': ...}, "
        f"not {type(desktop).__name__}"
    )


def create_sandbox(
    image: str | Image | None,
    env: Mapping[str, str] | None,
    timeout_ms: int | None,
    metadata: Mapping[str, str] | None,
    cpu: float | None,
    memory_bytes: int | None,
    disk_bytes: int | None,
    egress: str | None,
    volumes: Sequence[Mount] | None = None,
    desktop: bool | DesktopOptions | None = None,
) -> Call[SandboxInfo]:
    body = _fields(
        image=image.id if isinstance(image, Image) else image,
        desktop=_desktop(desktop),
        env=dict(env) if env is not None else None,
        timeout_ms=timeout_ms,
        metadata=dict(metadata) if metadata is not None else None,
        cpu=cpu,
        memory_bytes=memory_bytes,
        disk_bytes=disk_bytes,
        network={"egress": egress} if egress is not None else None,
        volumes=[_mount(m) for m in volumes] if volumes is not None else None,
    )
    return Call("POST", "/v1/sandboxes", SandboxInfo.from_api, body)


def list_sandboxes(
    status: str | None, metadata: Mapping[str, str] | None
) -> Call[list[SandboxInfo]]:
    params = {f"metadata.{k}": v for k, v in (metadata or {}).items()}
    if status is not None:
        params["status"] = status
    return Call(
        "GET",
        "/v1/sandboxes",
        lambda d: [SandboxInfo.from_api(s) for s in d["sandboxes"]],
        params=params,
    )


def get_sandbox(sandbox_id: str) -> Call[SandboxInfo]:
    return Call("GET", _sandbox_path(sandbox_id), SandboxInfo.from_api)


def delete_sandbox(sandbox_id: str) -> Call[None]:
    return Call("DELETE", _sandbox_path(sandbox_id), _nothing)


def set_timeout(sandbox_id: str, timeout_ms: int) -> Call[SandboxInfo]:
    return Call(
        "POST", _sandbox_path(sandbox_id, "timeout"), SandboxInfo.from_api,
        {"timeout_ms": timeout_ms},
    )


def pause(sandbox_id: str) -> Call[SandboxInfo]:
    return Call("POST", _sandbox_path(sandbox_id, "pause"), SandboxInfo.from_api)


def resume(sandbox_id: str) -> Call[SandboxInfo]:
    return Call("POST", _sandbox_path(sandbox_id, "resume"), SandboxInfo.from_api)


def metrics(sandbox_id: str) -> Call[SandboxMetrics]:
    return Call("GET", _sandbox_path(sandbox_id, "metrics"), SandboxMetrics.from_api)


def expose(sandbox_id: str, port: int) -> Call[str]:
    return Call("POST", _sandbox_path(sandbox_id, "expose"), lambda d: d["url"], {"port": port})


def snapshot(sandbox_id: str, ref: str | None) -> Call[Image]:
    # Packing the sandbox's writes takes as long as their size makes it.
    return Call(
        "POST", _sandbox_path(sandbox_id, "snapshot"), Image.from_api, _fields(ref=ref),
        read_timeout=None,
    )


# -- code -------------------------------------------------------------------------------------


def _run_body(
    code: str,
    language: str | None,
    context_id: str | None,
    timeout_ms: int | None,
    env: Mapping[str, str] | None,
) -> dict[str, Any]:
    # A context knows its language; the default language applies only without one.
    if language is None and context_id is None:
        language = "python"
    return _fields(
        code=code,
        language=language,
        context_id=context_id,
        timeout_ms=timeout_ms,
        env=dict(env) if env is not None else None,
    )


def run(
    sandbox_id: str,
    code: str,
    language: str | None,
    context_id: str | None,
    timeout_ms: int | None,
    env: Mapping[str, str] | None,
) -> Call[Execution]:
    return Call(
        "POST",
        _sandbox_path(sandbox_id, "run"),
        Execution.from_api,
        _run_body(code, language, context_id, timeout_ms, env),
        read_timeout=long_read_timeout(timeout_ms),
    )


def parse_run_event(event: str, data: Any) -> RunEvent | None:
    """One event of ``run/stream``. A ``done`` event without an execution reports a failure
    of the node after the stream began, raised as :class:`Ai2inError`."""
    if event == "stdout":
        return StdoutEvent(data["text"])
    if event == "stderr":
        return StderrEvent(data["text"])
    if event == "result":
        return ResultEvent(Result.from_api(data["result"]))
    if event == "error":
        return ErrorEvent(ExecutionError.from_api(data))
    if event == "done":
        if data.get("execution") is None:
            raise Ai2inError(f"the run failed: {data.get('error', 'no execution')}")
        return DoneEvent(Execution.from_api(data["execution"]))
    return None


def run_stream(
    sandbox_id: str,
    code: str,
    language: str | None,
    context_id: str | None,
    timeout_ms: int | None,
    env: Mapping[str, str] | None,
) -> StreamCall[RunEvent]:
    return StreamCall(
        "POST",
        _sandbox_path(sandbox_id, "run", "stream"),
        parse_run_event,
        _run_body(code, language, context_id, timeout_ms, env),
    )


def create_context(sandbox_id: str, language: str, cwd: str | None) -> Call[Context]:
    return Call(
        "POST", _sandbox_path(sandbox_id, "contexts"), Context.from_api,
        _fields(language=language, cwd=cwd),
    )


def list_contexts(sandbox_id: str) -> Call[list[Context]]:
    return Call(
        "GET",
        _sandbox_path(sandbox_id, "contexts"),
        lambda d: [Context.from_api(c) for c in d["contexts"]],
    )


def delete_context(sandbox_id: str, context_id: str) -> Call[None]:
    return Call("DELETE", _sandbox_path(sandbox_id, "contexts", context_id), _nothing)


def restart_context(sandbox_id: str, context_id: str) -> Call[Context]:
    return Call(
        "POST", _sandbox_path(sandbox_id, "contexts", context_id, "restart"), Context.from_api
    )


# -- commands ---------------------------------------------------------------------------------


def shell(
    sandbox_id: str,
    cmd: str,
    cwd: str | None,
    env: Mapping[str, str] | None,
    timeout_ms: int | None,
    stdin: str | None,
    user: str | None,
) -> Call[CommandResult]:
    body = _fields(
        cmd=cmd,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        timeout_ms=timeout_ms,
        stdin=stdin,
        user=user,
    )
    return Call(
        "POST", _sandbox_path(sandbox_id, "shell"), CommandResult.from_api, body,
        read_timeout=long_read_timeout(timeout_ms),
    )


def start_command(
    sandbox_id: str,
    cmd: str,
    cwd: str | None,
    env: Mapping[str, str] | None,
    user: str | None,
) -> Call[CommandStarted]:
    body = _fields(cmd=cmd, cwd=cwd, env=dict(env) if env is not None else None, user=user)
    return Call("POST", _sandbox_path(sandbox_id, "commands"), CommandStarted.from_api, body)


def list_commands(sandbox_id: str) -> Call[list[CommandInfo]]:
    return Call(
        "GET",
        _sandbox_path(sandbox_id, "commands"),
        lambda d: [CommandInfo.from_api(c) for c in d["commands"]],
    )


def _the_command(command_id: str, data: Any) -> CommandInfo:
    for c in data["commands"]:
        if c["command_id"] == command_id:
            return CommandInfo.from_api(c)
    # The node's own words for a command it does not have (as its logs route answers).
    raise NotFoundError(404, f"no command {command_id}")


def get_command(sandbox_id: str, command_id: str) -> Call[CommandInfo]:
    """One background command, found in the list (the node has no route for a single one);
    an unknown id raises :class:`NotFoundError`."""
    return Call(
        "GET", _sandbox_path(sandbox_id, "commands"), lambda d: _the_command(command_id, d)
    )


def command_logs(
    sandbox_id: str, command_id: str, stdout_offset: int = 0, stderr_offset: int = 0
) -> Call[CommandLogs]:
    return Call(
        "POST",
        _sandbox_path(sandbox_id, "commands", command_id, "logs"),
        CommandLogs.from_api,
        {"stdout_offset": stdout_offset, "stderr_offset": stderr_offset},
    )


def kill_command(sandbox_id: str, command_id: str, signal: int | str | None) -> Call[None]:
    return Call(
        "POST",
        _sandbox_path(sandbox_id, "commands", command_id, "kill"),
        _nothing,
        _fields(signal=signal),
    )


# -- files ------------------------------------------------------------------------------------


def _fs(sandbox_id: str, op: str, parse: Callable[[Any], T], **body: Any) -> Call[T]:
    return Call("POST", _sandbox_path(sandbox_id, "fs", op), parse, body)


def _as(user: str | None) -> dict[str, str]:
    """The ``user`` of a file operation (a body field, or a query parameter of a raw
    transfer), when one is named (the node's default is ``user``)."""
    return {} if user is None else {"user": user}


def fs_list(sandbox_id: str, path: str, user: str | None = None) -> Call[list[EntryInfo]]:
    return _fs(
        sandbox_id,
        "list",
        lambda d: [EntryInfo.from_api(e) for e in d["entries"]],
        path=path,
        **_as(user),
    )


def fs_read(sandbox_id: str, path: str, user: str | None = None) -> Call[str]:
    return _fs(sandbox_id, "read", lambda d: d["content"], path=path, **_as(user))


def fs_write(
    sandbox_id: str, path: str, content: str, user: str | None = None
) -> Call[WriteInfo]:
    return _fs(
        sandbox_id, "write", WriteInfo.from_api, path=path, content=content, **_as(user)
    )


#: The media type of a file's raw bytes.
OCTETS = "application/octet-stream"


def _file_params(path: str, user: str | None) -> dict[str, str]:
    return {"path": path, **_as(user)}


def _byte_range(offset: int, length: int | None) -> dict[str, str] | None:
    """The ``Range`` header asking for ``length`` bytes (all the rest when ``None``) from
    ``offset``; none for the whole file."""
    if offset < 0 or (length is not None and length < 1):
        raise ValueError(
            f"a part of a file is an offset >= 0 and a length >= 1, not {offset} and {length}"
        )
    if offset == 0 and length is None:
        return None
    last = "" if length is None else str(offset + length - 1)
    return {"Range": f"bytes={offset}-{last}"}


def read_file(
    sandbox_id: str,
    path: str,
    user: str | None = None,
    offset: int = 0,
    length: int | None = None,
) -> Call[bytes]:
    """A file's raw bytes, or ``length`` of them from ``offset``: whole as the call's answer,
    or a chunk at a time with the transports' ``stream_bytes``."""
    return Call(
        "GET",
        _sandbox_path(sandbox_id, "files"),
        bytes,
        params=_file_params(path, user),
        headers=_byte_range(offset, length),
        raw=True,
    )


def write_file(
    sandbox_id: str, path: str, content: Any, length: int | None, user: str | None = None
) -> Call[WriteInfo]:
    """Replaces a file with ``content`` (bytes or an iterable of chunks, ``length`` bytes
    when known, else sent chunked)."""
    # The node answers once the whole file is on its disk (synced): as long as its size
    # makes it.
    return Call(
        "PUT",
        _sandbox_path(sandbox_id, "files"),
        WriteInfo.from_api,
        params=_file_params(path, user),
        read_timeout=None,
        content=content,
        headers=_upload_headers(OCTETS, length),
    )


def watch_start(sandbox_id: str, path: str, recursive: bool) -> Call[str]:
    return _fs(sandbox_id, "watch", lambda d: d["watch_id"], path=path, recursive=recursive)


def _watch_path(sandbox_id: str, watch_id: str, op: str) -> str:
    return _sandbox_path(sandbox_id, "fs", "watch", watch_id, op)


def watch_poll(sandbox_id: str, watch_id: str) -> Call[list[FsEvent]]:
    return Call(
        "POST",
        _watch_path(sandbox_id, watch_id, "poll"),
        lambda d: [FsEvent.from_api(e) for e in d["events"]],
    )


def watch_stop(sandbox_id: str, watch_id: str) -> Call[None]:
    return Call("POST", _watch_path(sandbox_id, watch_id, "stop"), _nothing)


def parse_watch_event(event: str, data: Any) -> FsEvent | None:
    """One event of ``fs/watch/:wid/events``; an ``error`` event is raised."""
    if event == "fs":
        return FsEvent.from_api(data)
    if event == "error":
        raise Ai2inError(f"the watch failed: {data.get('error')}")
    return None


def watch_events(sandbox_id: str, watch_id: str) -> StreamCall[FsEvent]:
    return StreamCall("GET", _watch_path(sandbox_id, watch_id, "events"), parse_watch_event)


# -- terminals --------------------------------------------------------------------------------


def pty_create(
    sandbox_id: str,
    cmd: str | None,
    cols: int,
    rows: int,
    cwd: str | None,
    env: Mapping[str, str] | None,
) -> Call[PtyStarted]:
    body = _fields(
        cmd=cmd, cols=cols, rows=rows, cwd=cwd, env=dict(env) if env is not None else None
    )
    return Call("POST", _sandbox_path(sandbox_id, "pty"), PtyStarted.from_api, body)


def _pty(sandbox_id: str, pid: int, op: str, parse: Callable[[Any], T], **body: Any) -> Call[T]:
    return Call("POST", _sandbox_path(sandbox_id, "pty", str(pid), op), parse, body or None)


def pty_input(sandbox_id: str, pid: int, data: bytes | str) -> Call[None]:
    return _pty(sandbox_id, pid, "input", _nothing, data_b64=_b64(data))


def pty_output(sandbox_id: str, pid: int) -> Call[PtyOutput]:
    return _pty(sandbox_id, pid, "output", PtyOutput.from_api)


def pty_resize(sandbox_id: str, pid: int, cols: int, rows: int) -> Call[None]:
    return _pty(sandbox_id, pid, "resize", _nothing, cols=cols, rows=rows)


def pty_kill(sandbox_id: str, pid: int, signal: int | str | None) -> Call[None]:
    return _pty(sandbox_id, pid, "kill", _nothing, **_fields(signal=signal))


# -- desktops ---------------------------------------------------------------------------------


def _desktop_path(sandbox_id: str, *rest: str) -> str:
    return _sandbox_path(sandbox_id, "desktop", *rest)


def desktop_info(sandbox_id: str) -> Call[DesktopInfo]:
    return Call("GET", _desktop_path(sandbox_id), DesktopInfo.from_api)


def desktop_screenshot(sandbox_id: str) -> Call[bytes]:
    return Call(
        "GET",
        _desktop_path(sandbox_id, "screenshot"),
        bytes,
        headers={"Accept": "image/png"},
        raw=True,
    )


def desktop_mouse(
    sandbox_id: str,
    action: str,
    x: int | None = None,
    y: int | None = None,
    button: str | None = None,
    to_x: int | None = None,
    to_y: int | None = None,
    direction: str | None = None,
    amount: int | None = None,
) -> Call[None]:
    body = _fields(
        action=action,
        x=x,
        y=y,
        button=button,
        to_x=to_x,
        to_y=to_y,
        direction=direction,
        amount=amount,
    )
    return Call("POST", _desktop_path(sandbox_id, "mouse"), _nothing, body)


def desktop_cursor(sandbox_id: str) -> Call[tuple[int, int]]:
    return Call("GET", _desktop_path(sandbox_id, "cursor"), lambda d: (d["x"], d["y"]))


def desktop_type(sandbox_id: str, text: str) -> Call[None]:
    return Call("POST", _desktop_path(sandbox_id, "keyboard"), _nothing, {"text": text})


def desktop_press(sandbox_id: str, keys: Sequence[str]) -> Call[None]:
    if not keys:
        raise ValueError("press needs at least one key, e.g. press(\"Return\")")
    return Call("POST", _desktop_path(sandbox_id, "keyboard"), _nothing, {"keys": list(keys)})


def desktop_launch(
    sandbox_id: str, cmd: str, cwd: str | None, env: Mapping[str, str] | None
) -> Call[CommandStarted]:
    body = _fields(cmd=cmd, cwd=cwd, env=dict(env) if env is not None else None)
    return Call("POST", _desktop_path(sandbox_id, "launch"), CommandStarted.from_api, body)


def desktop_windows(sandbox_id: str) -> Call[list[Window]]:
    return Call(
        "GET",
        _desktop_path(sandbox_id, "windows"),
        lambda d: [Window.from_api(w) for w in d["windows"]],
    )


def desktop_stream(sandbox_id: str, view_only: bool) -> Call[DesktopStream]:
    return Call(
        "POST", _desktop_path(sandbox_id, "stream"), DesktopStream.from_api,
        {"view_only": view_only},
    )


def desktop_stop_stream(sandbox_id: str) -> Call[None]:
    return Call("DELETE", _desktop_path(sandbox_id, "stream"), _nothing)


# -- images -----------------------------------------------------------------------------------


def _image_path(key: str) -> str:
    # A reference holds '/' and ':': percent-encoded, it is one path segment.
    return f"/v1/images/{quote(key, safe='')}"


def pull_image(ref: str) -> Call[Image]:
    # A pull takes as long as the registry and the image's size make it.
    return Call("POST", "/v1/images", Image.from_api, {"ref": ref}, read_timeout=None)


def parse_pull_event(event: str, data: Any) -> PullProgress | Image | None:
    """One event of a streamed pull: progress, then the image (``done``). An ``error`` event
    is raised as the error its ``status`` maps to, as the unstreamed pull would."""
    if event == "progress":
        return PullProgress.from_api(data)
    if event == "done":
        return Image.from_api(data["image"])
    if event == "error":
        message = str(data.get("error") or "the pull failed")
        raise error_for(int(data.get("status") or 502), message, {"error": message})
    return None


def pull_image_stream(ref: str) -> StreamCall[PullProgress | Image]:
    return StreamCall("POST", "/v1/images", parse_pull_event, {"ref": ref})


#: The media type of an image archive upload.
TAR = "application/x-tar"


def import_image(content: Any, length: int | None, ref: str | None) -> Call[Image]:
    """Uploads the archive ``content`` (bytes or an iterable of chunks, ``length`` bytes
    when known, else sent chunked)."""
    return Call(
        "POST",
        "/v1/images/import",
        Image.from_api,
        params={"ref": ref} if ref is not None else None,
        read_timeout=None,
        content=content,
        headers=_upload_headers(TAR, length),
    )


def list_images() -> Call[list[Image]]:
    return Call("GET", "/v1/images", lambda d: [Image.from_api(i) for i in d["images"]])


def get_image(key: str) -> Call[Image]:
    return Call("GET", _image_path(key), Image.from_api)


def delete_image(key: str) -> Call[None]:
    return Call("DELETE", _image_path(key), _nothing)


# -- volumes ----------------------------------------------------------------------------------


def _volume_path(key: str) -> str:
    return f"/v1/volumes/{quote(key, safe='')}"


def create_volume(size_bytes: int, name: str | None) -> Call[Volume]:
    return Call(
        "POST", "/v1/volumes", Volume.from_api, _fields(name=name, size_bytes=size_bytes)
    )


def list_volumes() -> Call[list[Volume]]:
    return Call("GET", "/v1/volumes", lambda d: [Volume.from_api(v) for v in d["volumes"]])


def get_volume(key: str) -> Call[Volume]:
    return Call("GET", _volume_path(key), Volume.from_api)


def delete_volume(key: str) -> Call[None]:
    return Call("DELETE", _volume_path(key), _nothing)


# -- hosting ----------------------------------------------------------------------------------


def _service_path(key: str, *rest: str) -> str:
    return "/".join(["/v1/hosting/services", *(quote(p, safe="") for p in (key, *rest))])


def deploy_service(
    name: str,
    image: str | Image,
    internal_port: int | None,
    env: Mapping[str, str] | None,
    start_cmd: str | None,
    health_path: str | None,
    cpu: float | None,
    memory_bytes: int | None,
    disk_bytes: int | None,
    volumes: Sequence[Mount] | None,
) -> Call[ServiceInfo]:
    body = _fields(
        name=name,
        image=image.id if isinstance(image, Image) else image,
        internal_port=internal_port,
        env=dict(env) if env is not None else None,
        start_cmd=start_cmd,
        health_path=health_path,
        cpu=cpu,
        memory_bytes=memory_bytes,
        disk_bytes=disk_bytes,
        volumes=[_mount(m) for m in volumes] if volumes is not None else None,
    )
    # The node answers once the process started, after pulling the image if it must.
    return Call(
        "POST", "/v1/hosting/services", ServiceInfo.from_api, body, read_timeout=None
    )


def list_services() -> Call[list[ServiceInfo]]:
    return Call(
        "GET",
        "/v1/hosting/services",
        lambda d: [ServiceInfo.from_api(s) for s in d["services"]],
    )


def get_service(key: str) -> Call[ServiceInfo]:
    return Call("GET", _service_path(key), ServiceInfo.from_api)


def service_logs(key: str, since: int | None, limit: int | None) -> Call[ServiceLogs]:
    return Call(
        "POST", _service_path(key, "logs"), ServiceLogs.from_api, _fields(since=since, limit=limit)
    )


def parse_log_event(event: str, data: Any) -> LogLine | None:
    """One event of ``logs/stream``; an ``error`` event is raised."""
    if event == "log":
        return LogLine.from_api(data)
    if event == "error":
        raise Ai2inError(f"the log stream failed: {data.get('error')}")
    return None


def follow_service_logs(key: str, since: int | None) -> StreamCall[LogLine]:
    return StreamCall(
        "GET",
        _service_path(key, "logs", "stream"),
        parse_log_event,
        params={"since": str(since)} if since is not None else None,
    )


def redeploy_service(
    key: str,
    image: str | Image | None,
    env: Mapping[str, str] | None,
    start_cmd: str | None,
    internal_port: int | None,
    health_path: str | None,
) -> Call[ServiceInfo]:
    body = _fields(
        image=image.id if isinstance(image, Image) else image,
        env=dict(env) if env is not None else None,
        start_cmd=start_cmd,
        internal_port=internal_port,
        health_path=health_path,
    )
    # The node answers once the new instance is current: after a pull and up to its start
    # timeout (60 s by default).
    return Call(
        "POST", _service_path(key, "redeploy"), ServiceInfo.from_api, body, read_timeout=None
    )


def stop_service(key: str) -> Call[ServiceInfo]:
    return Call("POST", _service_path(key, "stop"), ServiceInfo.from_api)


def start_service(key: str) -> Call[ServiceInfo]:
    return Call("POST", _service_path(key, "start"), ServiceInfo.from_api)


def delete_service(key: str) -> Call[None]:
    return Call("DELETE", _service_path(key), _nothing)


# -- databases --------------------------------------------------------------------------------


def _database_path(database_id: str, *rest: str) -> str:
    return "/".join(["/v1/databases", *(quote(p, safe="") for p in (database_id, *rest))])


def create_database(
    engine: str,
    version: str | None,
    name: str | None,
    memory_bytes: int | None,
    disk_bytes: int | None,
) -> Call[DatabaseInfo]:
    body = _fields(
        engine=engine,
        version=version,
        name=name,
        memory_bytes=memory_bytes,
        disk_bytes=disk_bytes,
    )
    # The node answers once the server accepts connections (about a second).
    return Call("POST", "/v1/databases", DatabaseInfo.from_api, body)


def list_databases() -> Call[list[DatabaseInfo]]:
    return Call(
        "GET",
        "/v1/databases",
        lambda d: [DatabaseInfo.from_api(x) for x in d["databases"]],
    )


def database_engines() -> Call[list[EngineInfo]]:
    return Call(
        "GET",
        "/v1/databases/engines",
        lambda d: [EngineInfo.from_api(e) for e in d["engines"]],
    )


def get_database(database_id: str) -> Call[DatabaseInfo]:
    return Call("GET", _database_path(database_id), DatabaseInfo.from_api)


def reset_database_password(database_id: str) -> Call[DatabaseInfo]:
    return Call(
        "POST", _database_path(database_id, "reset_password"), DatabaseInfo.from_api
    )


def delete_database(database_id: str) -> Call[None]:
    return Call("DELETE", _database_path(database_id), _nothing)


# -- keys -------------------------------------------------------------------------------------


def create_key(name: str, scopes: list[str], tenant: str | None) -> Call[CreatedKey]:
    return Call(
        "POST", "/v1/keys", CreatedKey.from_api, _fields(name=name, scopes=scopes, tenant=tenant)
    )


def list_keys() -> Call[list[KeyInfo]]:
    return Call("GET", "/v1/keys", lambda d: [KeyInfo.from_api(k) for k in d["keys"]])


def revoke_key(key_id: str) -> Call[None]:
    return Call("DELETE", f"/v1/keys/{quote(key_id, safe='')}", _nothing)


# -- nodes ------------------------------------------------------------------------------------


def list_nodes() -> Call[list[NodeInfo]]:
    return Call("GET", "/v1/nodes", lambda d: [NodeInfo.from_api(n) for n in d["nodes"]])


def drain_node(node_id: str) -> Call[NodeInfo]:
    return Call("POST", f"/v1/nodes/{quote(node_id, safe='')}/drain", NodeInfo.from_api)

"""Typed objects of the ai2in API, parsed from the node's JSON answers.

Each class has a ``from_api`` constructor that takes the decoded JSON. Times are timezone-aware
``datetime`` objects in UTC; durations are milliseconds (``*_ms``) and sizes bytes
(``*_bytes``), as on the wire.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypedDict, Union


_FRACTION = re.compile(r"\.(\d+)")


def parse_time(value: str) -> datetime:
    """An RFC 3339 UTC timestamp of the API (``2026-01-02T03:04:05.678Z``) as a datetime.
    (Python 3.10's ``fromisoformat`` takes neither ``Z`` nor every length of fraction.)"""
    value = value.replace("Z", "+00:00")
    value = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), value, count=1)
    return datetime.fromisoformat(value)


def _optional_time(value: str | None) -> datetime | None:
    return parse_time(value) if value is not None else None


# -- volumes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VolumeMount:
    """A volume mounted in a sandbox: give a list of them as ``volumes`` to
    ``Sandbox.create``; :attr:`SandboxInfo.volumes` lists them back.

    ``volume_id`` is the volume's id or name (the node answers with its id), ``path`` the
    absolute directory inside the sandbox. A volume is mounted read-write by one live sandbox
    at a time, read-only by any number.
    """

    volume_id: str
    path: str
    read_only: bool = False

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> VolumeMount:
        return cls(
            volume_id=d["volume_id"], path=d["path"], read_only=bool(d.get("read_only", False))
        )

    def to_api(self) -> dict[str, Any]:
        """The mount as the node's create request takes it."""
        return {"volume_id": self.volume_id, "path": self.path, "read_only": self.read_only}


class _VolumeMountKeys(TypedDict):
    volume_id: str
    path: str


class VolumeMountDict(_VolumeMountKeys, total=False):
    """A :class:`VolumeMount` as a dict: ``{"volume_id": ..., "path": ..., "read_only": ...}``
    (``read_only`` is optional, default ``False``)."""

    read_only: bool


@dataclass(frozen=True)
class Volume:
    """A persistent filesystem of the caller's tenant that outlives sandboxes.

    ``size_bytes`` bounds it (a write past it fails inside with ENOSPC), ``used_bytes`` is
    what its files take, ``attached_to`` the ids of the live sandboxes that mount it.
    """

    id: str
    name: str
    size_bytes: int
    used_bytes: int
    created_at: datetime
    attached_to: list[str]

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> Volume:
        return cls(
            id=d["id"],
            name=d["name"],
            size_bytes=d["size_bytes"],
            used_bytes=d["used_bytes"],
            created_at=parse_time(d["created_at"]),
            attached_to=list(d.get("attached_to") or []),
        )

    def mount(self, path: str, read_only: bool = False) -> VolumeMount:
        """This volume at ``path`` inside a sandbox, for ``Sandbox.create(volumes=[...])``.

        Example::

            with Sandbox.create(volumes=[volume.mount("/data")]) as sbx:
                sbx.files.write("/data/kept.txt", "outlives the sandbox", user="root")
        """
        return VolumeMount(volume_id=self.id, path=path, read_only=read_only)


# -- sandboxes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resources:
    """The limits of a sandbox: CPU cores, memory and writable disk."""

    cpu: float
    memory_bytes: int
    disk_bytes: int

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> Resources:
        return cls(cpu=d["cpu"], memory_bytes=d["memory_bytes"], disk_bytes=d["disk_bytes"])


@dataclass(frozen=True)
class SandboxInfo:
    """The sandbox object (``GET /v1/sandboxes/:id``).

    ``status`` is ``"running"``, ``"paused"``, ``"starting"`` or ``"stopping"``; ``egress``
    is ``"allow"`` or ``"deny"``. ``image_digest`` is the manifest digest of the image it
    runs (``None`` for the ``host`` image). ``volumes`` are the volumes it mounts, each
    ``volume_id`` the volume's id. Environment variables are never echoed back.
    """

    id: str
    status: str
    image: str
    desktop: bool
    created_at: datetime
    end_at: datetime
    node_id: str
    metadata: dict[str, str]
    resources: Resources
    egress: str
    image_digest: str | None = None
    volumes: list[VolumeMount] = field(default_factory=list)

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> SandboxInfo:
        return cls(
            id=d["id"],
            status=d["status"],
            image=d["image"],
            desktop=d["desktop"],
            created_at=parse_time(d["created_at"]),
            end_at=parse_time(d["end_at"]),
            node_id=d["node_id"],
            metadata=dict(d.get("metadata") or {}),
            resources=Resources.from_api(d["resources"]),
            egress=(d.get("network") or {}).get("egress", "allow"),
            image_digest=d.get("image_digest"),
            volumes=[VolumeMount.from_api(v) for v in d.get("volumes") or []],
        )


@dataclass(frozen=True)
class SandboxMetrics:
    """Live figures of a sandbox, read from the kernel's accounting."""

    timestamp: datetime
    cpu_count: int
    cpu_used_pct: float
    mem_used_bytes: int
    mem_limit_bytes: int
    disk_used_bytes: int
    disk_limit_bytes: int
    pids: int
    net_rx_bytes: int
    net_tx_bytes: int

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> SandboxMetrics:
        return cls(timestamp=parse_time(d["timestamp"]), **{
            k: d[k] for k in (
                "cpu_count", "cpu_used_pct", "mem_used_bytes", "mem_limit_bytes",
                "disk_used_bytes", "disk_limit_bytes", "pids", "net_rx_bytes", "net_tx_bytes",
            )
        })


# -- running code -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """One result of a run: a MIME bundle, as a notebook cell shows it.

    The properties give each representation when the object has it (else ``None``); ``data``
    holds them all as sent (``image/png`` base64, ``application/json`` a value). In Jupyter a
    ``Result`` displays itself richly through its ``_repr_*_`` methods.
    """

    data: dict[str, Any]
    is_main_result: bool

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> Result:
        return cls(data=dict(d["data"]), is_main_result=bool(d["is_main_result"]))

    def _str(self, mime: str) -> str | None:
        value = self.data.get(mime)
        return value if isinstance(value, str) else None

    def _b64(self, mime: str) -> bytes | None:
        value = self._str(mime)
        return base64.b64decode(value) if value is not None else None

    @property
    def text(self) -> str | None:
        """``text/plain``: the ``repr`` of the value."""
        return self._str("text/plain")

    @property
    def html(self) -> str | None:
        """``text/html``."""
        return self._str("text/html")

    @property
    def markdown(self) -> str | None:
        """``text/markdown``."""
        return self._str("text/markdown")

    @property
    def latex(self) -> str | None:
        """``text/latex``."""
        return self._str("text/latex")

    @property
    def svg(self) -> str | None:
        """``image/svg+xml``."""
        return self._str("image/svg+xml")

    @property
    def png(self) -> bytes | None:
        """``image/png``, decoded."""
        return self._b64("image/png")

    @property
    def jpeg(self) -> bytes | None:
        """``image/jpeg``, decoded."""
        return self._b64("image/jpeg")

    @property
    def json(self) -> Any:
        """``application/json``, as a Python value (``None`` when absent)."""
        return self.data.get("application/json")

    def formats(self) -> list[str]:
        """The MIME types this result has."""
        return list(self.data)

    def __str__(self) -> str:
        return self.text or ""

    def _repr_html_(self) -> str | None:
        return self.html

    def _repr_markdown_(self) -> str | None:
        return self.markdown

    def _repr_latex_(self) -> str | None:
        return self.latex

    def _repr_svg_(self) -> str | None:
        return self.svg

    def _repr_png_(self) -> bytes | None:
        return self.png

    def _repr_jpeg_(self) -> bytes | None:
        return self.jpeg

    def _repr_json_(self) -> Any:
        return self.json


@dataclass(frozen=True)
class Logs:
    """What the code printed, chunk by chunk as it came."""

    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ExecutionError:
    """An error the user's code raised (e.g. ``ZeroDivisionError``)."""

    name: str
    value: str
    traceback: str

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> ExecutionError:
        return cls(name=d["name"], value=d["value"], traceback=d["traceback"])


@dataclass(frozen=True)
class Execution:
    """The outcome of ``run_code``.

    ``error`` is set when the code raised; that is not an exception of the SDK. ``exit_code``
    is the exit status of a ``bash`` snippet (``None`` for other languages).
    """

    results: list[Result]
    logs: Logs
    error: ExecutionError | None
    execution_count: int
    duration_ms: float
    context_id: str
    exit_code: int | None = None

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> Execution:
        logs = d.get("logs") or {}
        return cls(
            results=[Result.from_api(r) for r in d["results"]],
            logs=Logs(stdout=list(logs.get("stdout", [])), stderr=list(logs.get("stderr", []))),
            error=ExecutionError.from_api(d["error"]) if d.get("error") else None,
            execution_count=d["execution_count"],
            duration_ms=d["duration_ms"],
            context_id=d["context_id"],
            exit_code=d.get("exit_code"),
        )

    @property
    def text(self) -> str | None:
        """The main result's ``text/plain`` (the value of the last expression), if any."""
        for result in self.results:
            if result.is_main_result:
                return result.text
        return None


@dataclass(frozen=True)
class Context:
    """A code context: an interpreter whose variables, imports and cwd persist between runs."""

    id: str
    language: str
    cwd: str
    alive: bool

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> Context:
        return cls(id=d["context_id"], language=d["language"], cwd=d["cwd"], alive=d["alive"])


@dataclass(frozen=True)
class StdoutEvent:
    """Text the code wrote to standard output."""

    text: str


@dataclass(frozen=True)
class StderrEvent:
    """Text the code wrote to standard error."""

    text: str


@dataclass(frozen=True)
class ResultEvent:
    """A result (the main one or a displayed one)."""

    result: Result


@dataclass(frozen=True)
class ErrorEvent:
    """The error the code raised."""

    error: ExecutionError


@dataclass(frozen=True)
class DoneEvent:
    """The last event of a run: the whole Execution."""

    execution: Execution


#: One event of ``run_code_stream``, in the order the code produced them; ``DoneEvent`` last.
RunEvent = Union[StdoutEvent, StderrEvent, ResultEvent, ErrorEvent, DoneEvent]


# -- commands ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandResult:
    """The outcome of a shell command.

    ``exit_code`` is ``None`` when the command was killed (by a signal or its timeout), and
    ``error`` then says why. ``truncated`` is true when output was cut at the node's cap.
    """

    stdout: str
    stderr: str
    exit_code: int | None
    duration_ms: float
    truncated: bool = False
    error: str | None = None

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> CommandResult:
        return cls(
            stdout=d["stdout"],
            stderr=d["stderr"],
            exit_code=d["exit_code"],
            duration_ms=d["duration_ms"],
            truncated=d["truncated"],
            error=d.get("error"),
        )


@dataclass(frozen=True)
class CommandInfo:
    """A background command as listed; ``status`` is ``running``, ``exited`` or ``killed``."""

    id: str
    pid: int
    cmd: str
    status: str
    exit_code: int | None
    started_at: datetime
    ended_at: datetime | None

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> CommandInfo:
        return cls(
            id=d["command_id"],
            pid=d["pid"],
            cmd=d["cmd"],
            status=d["status"],
            exit_code=d["exit_code"],
            started_at=parse_time(d["started_at"]),
            ended_at=_optional_time(d.get("ended_at")),
        )


@dataclass(frozen=True)
class CommandLogs:
    """A background command's output from the requested offsets, and where it is.

    Pass ``stdout_offset``/``stderr_offset`` back to get only what came since.
    ``dropped_bytes`` counts output lost because each stream keeps its last 1 MiB.
    """

    stdout: str
    stderr: str
    status: str
    exit_code: int | None
    stdout_offset: int
    stderr_offset: int
    dropped_bytes: int

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> CommandLogs:
        return cls(
            stdout=d["stdout"],
            stderr=d["stderr"],
            status=d["status"],
            exit_code=d["exit_code"],
            stdout_offset=d["stdout_offset"],
            stderr_offset=d["stderr_offset"],
            dropped_bytes=d.get("dropped_bytes", 0),
        )

    @property
    def running(self) -> bool:
        """Whether the command still runs."""
        return self.status == "running"


@dataclass(frozen=True)
class CommandStarted:
    """The ids of a command just started in the background."""

    id: str
    pid: int

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> CommandStarted:
        return cls(id=d["command_id"], pid=d["pid"])


# -- files ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EntryInfo:
    """One entry of a directory; ``type`` is ``file``, ``dir``, ``symlink`` or ``other``."""

    name: str
    path: str
    type: str
    size_bytes: int
    mode: int
    modified_at: datetime

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> EntryInfo:
        return cls(
            name=d["name"],
            path=d["path"],
            type=d["type"],
            size_bytes=d["size_bytes"],
            mode=d["mode"],
            modified_at=parse_time(d["modified_at"]),
        )


@dataclass(frozen=True)
class WriteInfo:
    """What a write wrote: the absolute path and its size."""

    path: str
    size_bytes: int

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> WriteInfo:
        return cls(path=d["path"], size_bytes=d["size_bytes"])


@dataclass(frozen=True)
class FsEvent:
    """A change seen by a watch.

    ``type`` is ``create``, ``modify``, ``delete``, ``rename`` (``path`` is the new name) or
    ``overflow`` (events were lost; ``path`` is empty).
    """

    type: str
    path: str
    timestamp: datetime

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> FsEvent:
        return cls(type=d["type"], path=d["path"], timestamp=parse_time(d["timestamp"]))


# -- terminals --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PtyOutput:
    """What a terminal printed since the last read.

    ``alive`` turns false once the program ended and everything was read; ``exit_code`` is
    then its status (128 + n for signal n).
    """

    data: bytes
    alive: bool
    exit_code: int | None

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> PtyOutput:
        return cls(
            data=base64.b64decode(d["data_b64"]), alive=d["alive"], exit_code=d["exit_code"]
        )


@dataclass(frozen=True)
class PtyStarted:
    """The ids of a terminal just opened."""

    id: str
    pid: int

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> PtyStarted:
        return cls(id=d["pty_id"], pid=d["pid"])


# -- desktops ---------------------------------------------------------------------------------


#: A mouse button of the desktop calls.
MouseButton = Literal["left", "middle", "right"]

#: Which way :meth:`Desktop.scroll` turns the wheel: ``up`` shows earlier content.
ScrollDirection = Literal["up", "down"]


class DesktopOptions(TypedDict, total=False):
    """The screen of a desktop sandbox, as ``desktop`` of ``Sandbox.create``: ``width``
    (320 to 3840 pixels, default 1280), ``height`` (240 to 2160, default 800) and ``dpi``
    (48 to 384, default 96); each optional."""

    width: int
    height: int
    dpi: int


@dataclass(frozen=True)
class Window:
    """A top-level window of a desktop, as :meth:`Desktop.windows` lists them.

    ``id`` is its X window id, ``class_`` its class (``XTerm``, ``Chromium``...: the
    ``class`` of the wire), ``x``/``y`` its position on the screen and ``width``/``height``
    its size in pixels; ``focused`` whether it has the keyboard focus.
    """

    id: int
    title: str
    class_: str
    x: int
    y: int
    width: int
    height: int
    focused: bool

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> Window:
        return cls(
            id=d["id"],
            title=d["title"],
            class_=d["class"],
            x=d["x"],
            y=d["y"],
            width=d["width"],
            height=d["height"],
            focused=d["focused"],
        )


@dataclass(frozen=True)
class DesktopStream:
    """A live view of a desktop just started by :meth:`Desktop.stream`: ``url`` is a noVNC
    page served through the node's proxy, which asks for ``password`` (or takes it as
    ``&password=`` in the url); ``view_only`` viewers watch without sending input."""

    url: str
    password: str
    view_only: bool

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> DesktopStream:
        return cls(url=d["url"], password=d["password"], view_only=d["view_only"])


@dataclass(frozen=True)
class DesktopStreamInfo:
    """The live view running on a desktop, as :attr:`DesktopInfo.stream` describes it (the
    node never echoes its password back)."""

    url: str
    view_only: bool

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> DesktopStreamInfo:
        return cls(url=d["url"], view_only=d["view_only"])


@dataclass(frozen=True)
class DesktopInfo:
    """A sandbox's desktop (``GET /v1/sandboxes/:id/desktop``): its X ``display`` (``:0``,
    ``DISPLAY`` of every process of the sandbox), the screen's ``width`` and ``height`` in
    pixels and its ``dpi``, and the live view while one runs (``stream``, else ``None``)."""

    display: str
    width: int
    height: int
    dpi: int
    stream: DesktopStreamInfo | None

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> DesktopInfo:
        stream = d.get("stream")
        return cls(
            display=d["display"],
            width=d["width"],
            height=d["height"],
            dpi=d["dpi"],
            stream=DesktopStreamInfo.from_api(stream) if stream else None,
        )


# -- images -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageConfig:
    """What an image's config says about running it: the environment of every process,
    the default working directory and user (``None`` when the image names none), its
    entrypoint and command, and the TCP ports it declares."""

    env: dict[str, str]
    workdir: str | None
    user: str | None
    entrypoint: list[str]
    cmd: list[str]
    exposed_ports: list[int]

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> ImageConfig:
        return cls(
            env=dict(d.get("env") or {}),
            workdir=d.get("workdir"),
            user=d.get("user"),
            entrypoint=list(d.get("entrypoint") or []),
            cmd=list(d.get("cmd") or []),
            exposed_ports=list(d.get("exposed_ports") or []),
        )


@dataclass(frozen=True)
class Image:
    """An image of the caller's tenant, ready to start sandboxes from.

    ``ref`` is the normalised reference (``python`` → ``docker.io/library/python:latest``),
    ``digest`` its manifest's digest, ``size_bytes`` what its layers take unpacked.
    ``source`` is ``"pull"``, ``"import"`` or ``"snapshot"``. Pass the image (or its ``id``
    or ``ref``) as ``image`` to ``Sandbox.create``.
    """

    id: str
    ref: str
    digest: str
    size_bytes: int
    layers: int
    source: str
    created_at: datetime
    last_used_at: datetime
    config: ImageConfig

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> Image:
        return cls(
            id=d["id"],
            ref=d["ref"],
            digest=d["digest"],
            size_bytes=d["size_bytes"],
            layers=d["layers"],
            source=d["source"],
            created_at=parse_time(d["created_at"]),
            last_used_at=parse_time(d["last_used_at"]),
            config=ImageConfig.from_api(d.get("config") or {}),
        )


@dataclass(frozen=True)
class PullProgress:
    """How far a pull has fetched one layer: ``done_bytes`` of its ``total_bytes``
    (compressed, as the registry sends them). A layer the node already has reports
    ``done_bytes == total_bytes`` at once."""

    layer: str
    done_bytes: int
    total_bytes: int

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> PullProgress:
        return cls(layer=d["layer"], done_bytes=d["done_bytes"], total_bytes=d["total_bytes"])


#: Another name of :class:`PullProgress`.
Progress = PullProgress


# -- hosting ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceExit:
    """How a service's process last ended: ``exit_code`` (``None`` when a signal ended it),
    ``signal`` (the signal's number, if one did) and when."""

    exit_code: int | None
    signal: int | None
    at: datetime

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> ServiceExit:
        return cls(exit_code=d.get("exit_code"), signal=d.get("signal"), at=parse_time(d["at"]))


@dataclass(frozen=True)
class ServiceInfo:
    """The service object (``GET /v1/hosting/services/:id``).

    ``status`` is ``"deploying"`` (its port does not accept connections yet, or its health
    path fails), ``"running"``, ``"crashed"`` (its process exited; it restarts at
    ``next_restart_at``) or ``"stopped"``. ``url`` is its public URL, stable for its whole
    life (``None`` without an ``internal_port``). ``sandbox_id`` is the sandbox of its current
    instance (for ``exec``, files and metrics) while one runs; ``restarts`` counts the restarts
    after an exit, ``last_exit`` says how its process last ended. ``image_digest`` is ``None``
    for the ``host`` image. Environment variables are never echoed back.
    """

    id: str
    name: str
    image: str
    image_digest: str | None
    status: str
    url: str | None
    internal_port: int | None
    start_cmd: str | None
    health_path: str | None
    created_at: datetime
    deployed_at: datetime | None
    restarts: int
    last_exit: ServiceExit | None
    next_restart_at: datetime | None
    sandbox_id: str | None
    resources: Resources
    volumes: list[VolumeMount] = field(default_factory=list)

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> ServiceInfo:
        last_exit = d.get("last_exit")
        return cls(
            id=d["id"],
            name=d["name"],
            image=d["image"],
            image_digest=d.get("image_digest"),
            status=d["status"],
            url=d.get("url"),
            internal_port=d.get("internal_port"),
            start_cmd=d.get("start_cmd"),
            health_path=d.get("health_path"),
            created_at=parse_time(d["created_at"]),
            deployed_at=_optional_time(d.get("deployed_at")),
            restarts=d.get("restarts", 0),
            last_exit=ServiceExit.from_api(last_exit) if last_exit else None,
            next_restart_at=_optional_time(d.get("next_restart_at")),
            sandbox_id=d.get("sandbox_id"),
            resources=Resources.from_api(d["resources"]),
            volumes=[VolumeMount.from_api(v) for v in d.get("volumes") or []],
        )


@dataclass(frozen=True)
class LogLine:
    """One line of a service's log.

    ``seq`` is its position in the log (increasing, never reused: pass it as ``since`` to
    get the lines after it), ``stream`` is ``"stdout"``, ``"stderr"`` or ``"system"`` (what
    the node did: started, exited, restarting, ready, redeployed, stopped), ``line`` the text
    without its newline (non-UTF-8 bytes show as U+FFFD; a line over 8 KiB is cut and ends
    with ``… [N bytes cut]``).
    """

    seq: int
    timestamp: datetime
    stream: str
    line: str

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> LogLine:
        return cls(
            seq=d["seq"], timestamp=parse_time(d["timestamp"]), stream=d["stream"], line=d["line"]
        )


@dataclass(frozen=True)
class ServiceLogs:
    """Lines of a service's log, oldest first, and ``next_since``: the cursor to pass as
    ``since`` for the lines that follow."""

    logs: list[LogLine]
    next_since: int

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> ServiceLogs:
        return cls(logs=[LogLine.from_api(x) for x in d["logs"]], next_since=d["next_since"])

    def __iter__(self) -> Iterator[LogLine]:
        return iter(self.logs)

    def __len__(self) -> int:
        return len(self.logs)


# -- databases --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatabaseResources:
    """What a database's server may use: the memory of its sandbox (the engine's caches are
    sized to it) and the size of the volume holding its data."""

    memory_bytes: int
    disk_bytes: int

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> DatabaseResources:
        return cls(memory_bytes=d["memory_bytes"], disk_bytes=d["disk_bytes"])


@dataclass(frozen=True)
class DatabaseInfo:
    """The database object (``GET /v1/databases/:id``).

    ``engine`` is ``"postgres"``, ``"mysql"`` or ``"redis"``, ``version`` the server's
    (``"15"``, ``"7.0"``). ``status`` is ``"creating"``, ``"available"`` (it accepts
    connections), ``"restarting"`` (its server died and is being started again, the data
    kept) or ``"failed"``. ``url`` is the connection string, password included
    (``postgres://USER:PASSWORD@HOST:PORT/NAME``, ``redis://USER:PASSWORD@HOST:PORT/0``): the
    same from the host, other machines and the tenant's sandboxes; ``host``, ``port``,
    ``username`` and ``password`` are its parts. ``name`` is the database's name inside the
    server (``"app"`` by default; Redis uses database 0).
    """

    id: str
    engine: str
    version: str
    name: str
    status: str
    url: str
    host: str
    port: int
    username: str
    password: str
    created_at: datetime
    resources: DatabaseResources

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> DatabaseInfo:
        return cls(
            id=d["id"],
            engine=d["engine"],
            version=d["version"],
            name=d["name"],
            status=d["status"],
            url=d["url"],
            host=d["host"],
            port=d["port"],
            username=d["username"],
            password=d["password"],
            created_at=parse_time(d["created_at"]),
            resources=DatabaseResources.from_api(d["resources"]),
        )


@dataclass(frozen=True)
class EngineInfo:
    """An engine the node serves (``GET /v1/databases/engines``): its name (``"postgres"``,
    ``"mysql"`` or ``"redis"``), the ``versions`` it can run and the ``default`` one, which a
    create without a version gets; ``image`` is the image its servers run from (``None``: the
    host's packages)."""

    engine: str
    versions: list[str]
    default: str
    image: str | None = None

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> EngineInfo:
        return cls(engine=d["engine"], versions=list(d["versions"]), default=d["default"],
                   image=d.get("image"))


# -- keys -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyInfo:
    """An API key as listed (never with its secret)."""

    id: str
    name: str
    scopes: list[str]
    tenant: str
    created_at: datetime

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> KeyInfo:
        return cls(
            id=d["id"],
            name=d["name"],
            scopes=list(d["scopes"]),
            tenant=d["tenant"],
            created_at=parse_time(d["created_at"]),
        )


@dataclass(frozen=True)
class CreatedKey:
    """A key just created: its description and ``key``, the secret (shown only this once)."""

    info: KeyInfo
    key: str

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> CreatedKey:
        return cls(info=KeyInfo.from_api(d), key=d["key"])

    @property
    def id(self) -> str:
        """The key's id, ``key_…``."""
        return self.info.id


# -- nodes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeResources:
    """What a node holds at most, or how much of it is taken: ``sandboxes`` (services'
    instances and databases' servers included), ``memory_bytes`` (memory limits, summed) and
    ``cpu`` (CPU quotas in cores, summed)."""

    sandboxes: int
    memory_bytes: int
    cpu: float

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> NodeResources:
        return cls(sandboxes=d["sandboxes"], memory_bytes=d["memory_bytes"], cpu=float(d["cpu"]))


@dataclass(frozen=True)
class NodeInfo:
    """A node of the cluster (``GET /v1/nodes``); a node on its own is a cluster of one.

    ``status`` is ``"ready"`` (it takes new sandboxes, databases and services),
    ``"draining"`` (it serves what it holds and takes nothing new) or ``"down"`` (it has not
    reported for too long). ``address`` is where the gateways reach its API (``host:port``),
    ``capacity`` what it holds at most, ``used`` what is taken, ``last_seen_at`` its last
    report.
    """

    id: str
    address: str
    status: str
    capacity: NodeResources
    used: NodeResources
    last_seen_at: datetime

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> NodeInfo:
        return cls(
            id=d["id"],
            address=d["address"],
            status=d["status"],
            capacity=NodeResources.from_api(d["capacity"]),
            used=NodeResources.from_api(d["used"]),
            last_seen_at=parse_time(d["last_seen_at"]),
        )

"""Multi-step operations as state machines without I/O, shared by the sync and async clients:
collecting a streamed run, following a background command's logs until it ends, and
waiting for a service to run.

Callbacks are called here; their return values are handed back so that the async client can
await the ones that are coroutines.
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, overload

from . import _api
from ._api import Call
from .errors import Ai2inConnectionError, RequestTimeoutError
from .models import (
    CommandInfo,
    CommandLogs,
    CommandResult,
    CommandStarted,
    Context,
    DoneEvent,
    ErrorEvent,
    Execution,
    ExecutionError,
    Result,
    ResultEvent,
    RunEvent,
    ServiceInfo,
    StderrEvent,
    StdoutEvent,
)

#: Home of the sandbox's user: relative paths start there.
HOME = "/home/user"

_FIRST_POLL_S = 0.02
_MAX_POLL_S = 0.5


class RunCollector:
    """Calls a run's handlers as its events arrive and keeps the final Execution."""

    def __init__(
        self,
        on_stdout: Callable[[str], Any] | None,
        on_stderr: Callable[[str], Any] | None,
        on_result: Callable[[Result], Any] | None,
        on_error: Callable[[ExecutionError], Any] | None,
    ) -> None:
        self._on_stdout = on_stdout
        self._on_stderr = on_stderr
        self._on_result = on_result
        self._on_error = on_error
        self._execution: Execution | None = None

    def feed(self, event: RunEvent) -> Any:
        """Handles one event; answers what its handler returned (``None`` without one)."""
        if isinstance(event, StdoutEvent) and self._on_stdout:
            return self._on_stdout(event.text)
        if isinstance(event, StderrEvent) and self._on_stderr:
            return self._on_stderr(event.text)
        if isinstance(event, ResultEvent) and self._on_result:
            return self._on_result(event.result)
        if isinstance(event, ErrorEvent) and self._on_error:
            return self._on_error(event.error)
        if isinstance(event, DoneEvent):
            self._execution = event.execution
        return None

    def execution(self) -> Execution:
        """The run's Execution, once the stream has ended."""
        if self._execution is None:
            raise Ai2inConnectionError("the run's event stream ended before its done event")
        return self._execution


@dataclass(frozen=True)
class CommandClock:
    """When a background command started, and ended if that is known already, as
    ``time.monotonic()`` values: what ``duration_ms`` of its result is measured with."""

    started: float
    ended: float | None = None

    @classmethod
    def of(cls, command: CommandStarted | CommandInfo) -> CommandClock:
        """The clock of a command just started (it starts now), or of one found in the
        node's list: its start is placed ``now - started_at`` ago by the client's wall clock,
        and an end already known ``ended_at - started_at`` after it."""
        if isinstance(command, CommandStarted):
            return cls(time.monotonic())
        elapsed = (datetime.now(timezone.utc) - command.started_at).total_seconds()
        started = time.monotonic() - max(0.0, elapsed)
        if command.ended_at is None:
            return cls(started)
        return cls(started, started + (command.ended_at - command.started_at).total_seconds())

    def duration_ms(self) -> float:
        """From the start to the end, or to now while the end is not known."""
        ended = time.monotonic() if self.ended is None else self.ended
        return max(0.0, ended - self.started) * 1000


class LogFollower:
    """Polls a background command's logs from where the last poll stopped (from its first
    byte at first, so output produced before the wait is handed over too), hands new output
    to the handlers, and builds the CommandResult once the command has ended.

    ``timeout`` (seconds) bounds the whole wait; past it :meth:`next_call` raises
    :class:`RequestTimeoutError`. ``duration_ms`` of the result is measured by the client with
    ``clock``.
    """

    def __init__(
        self,
        sandbox_id: str,
        command_id: str,
        clock: CommandClock,
        timeout: float | None,
        on_stdout: Callable[[str], Any] | None,
        on_stderr: Callable[[str], Any] | None,
    ) -> None:
        self._sandbox_id = sandbox_id
        self._command_id = command_id
        self._clock = clock
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._on_stdout = on_stdout
        self._on_stderr = on_stderr
        self._stdout: list[str] = []
        self._stderr: list[str] = []
        self._last: CommandLogs | None = None
        self._dropped = 0
        self._delay = _FIRST_POLL_S

    def next_call(self) -> Call[CommandLogs]:
        """The next poll, from the offsets reached so far."""
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise RequestTimeoutError(f"command {self._command_id} did not end in time")
        last = self._last
        return _api.command_logs(
            self._sandbox_id,
            self._command_id,
            last.stdout_offset if last else 0,
            last.stderr_offset if last else 0,
        )

    def feed(self, logs: CommandLogs) -> list[Any]:
        """Takes one poll's answer; answers what the handlers returned."""
        self._last = logs
        self._dropped += logs.dropped_bytes
        returned = []
        for text, chunks, handler in (
            (logs.stdout, self._stdout, self._on_stdout),
            (logs.stderr, self._stderr, self._on_stderr),
        ):
            if text:
                chunks.append(text)
                if handler:
                    returned.append(handler(text))
        return returned

    @property
    def finished(self) -> bool:
        """Whether the command has ended (its output is then all read)."""
        return self._last is not None and not self._last.running

    def delay(self) -> float:
        """Seconds to wait before the next poll: short at first, longer as the wait goes on."""
        delay, self._delay = self._delay, min(self._delay * 2, _MAX_POLL_S)
        if self._deadline is not None:
            delay = max(0.0, min(delay, self._deadline - time.monotonic()))
        return delay

    def result(self) -> CommandResult:
        """The whole output and how the command ended."""
        assert self._last is not None, "result() before the first poll"
        killed = self._last.status == "killed"
        return CommandResult(
            stdout="".join(self._stdout),
            stderr="".join(self._stderr),
            exit_code=self._last.exit_code,
            duration_ms=self._clock.duration_ms(),
            truncated=self._dropped > 0,
            error="the command was killed by a signal" if killed else None,
        )


_FIRST_SERVICE_POLL_S = 0.1
_MAX_SERVICE_POLL_S = 1.0


class RunningWait:
    """Polls a service until its status is ``running``, whatever it passes through on the
    way (``deploying``, ``crashed`` and restarted...), for up to ``timeout`` seconds; past
    it :meth:`check` raises :class:`RequestTimeoutError` naming the last status seen."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._deadline = time.monotonic() + timeout
        self._delay = _FIRST_SERVICE_POLL_S

    def check(self, info: ServiceInfo) -> bool:
        """Whether ``info`` is running; raises once the time is up and it is not."""
        if info.status == "running":
            return True
        if time.monotonic() >= self._deadline:
            how = f"it is {info.status}"
            if info.last_exit is not None:
                ended = (
                    f"signal {info.last_exit.signal}"
                    if info.last_exit.exit_code is None
                    else f"status {info.last_exit.exit_code}"
                )
                how += f"; its process last exited with {ended}"
            raise RequestTimeoutError(
                f"service {info.name} was not running after {self._timeout:g} s: {how} "
                "(its logs say why)"
            )
        return False

    def delay(self) -> float:
        """Seconds to wait before the next poll."""
        delay, self._delay = self._delay, min(self._delay * 2, _MAX_SERVICE_POLL_S)
        return max(0.0, min(delay, self._deadline - time.monotonic()))


def split_path(path: str) -> tuple[str, str]:
    """The directory holding ``path`` and its name (relative paths start at the home)."""
    absolute = posixpath.normpath(posixpath.join(HOME, path))
    return posixpath.dirname(absolute), posixpath.basename(absolute)


@overload
def context_id(context: Context | str) -> str: ...
@overload
def context_id(context: None) -> None: ...
def context_id(context: Context | str | None) -> str | None:
    """The id of a context given as a :class:`Context` or as its id."""
    return context.id if isinstance(context, Context) else context


def check_background(timeout_ms: int | None, stdin: str | None) -> None:
    """Refuses the options that only foreground commands have."""
    if timeout_ms is not None or stdin is not None:
        raise ValueError("timeout_ms and stdin apply to foreground commands only")


def check_chunk_size(chunk_size: int) -> None:
    """Refuses a download chunk size that is not a positive number of bytes."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size is a number of bytes >= 1, not {chunk_size}")

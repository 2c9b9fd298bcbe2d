"""Sending :mod:`._api` calls over HTTP: one thin sync and one thin async transport.

Both share the error mapping, the answer parsing and the Server-Sent Events decoder; they
differ only in how they wait. An answer is parsed whole (``call``), followed as events
(``stream``) or passed on a chunk at a time as it arrives (``stream_bytes``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

import httpx

from ._api import Call, StreamCall
from ._config import Config
from ._version import __version__
from .errors import Ai2inConnectionError, Ai2inError, RequestTimeoutError, error_for_status

T = TypeVar("T")


@contextmanager
def _translated() -> Iterator[None]:
    """Turns httpx's transport failures into the SDK's exceptions."""
    try:
        yield
    except httpx.TimeoutException as e:
        raise RequestTimeoutError(f"the node did not answer in time: {e}") from e
    except httpx.TransportError as e:
        raise Ai2inConnectionError(f"could not reach the node: {e}") from e


def _parse(call: Call[T], status: int, content: bytes) -> T:
    if status >= 400:
        raise error_for_status(status, content)
    try:
        if call.raw:
            return call.parse(content)
        return call.parse(json.loads(content) if content.strip() else None)
    except (ValueError, KeyError, TypeError) as e:
        raise Ai2inError(f"unexpected answer to {call.method} {call.path}: {e!r}") from e


#: Seconds allowed to connect, to send a request and to wait for a pooled connection.
CONNECT_S = 10.0
WRITE_S = 60.0


def _request_args(call: Call[Any] | StreamCall[Any]) -> dict[str, Any]:
    timeout = httpx.Timeout(WRITE_S, connect=CONNECT_S, read=call.read_timeout)
    args: dict[str, Any] = {"timeout": timeout}
    if isinstance(call, StreamCall):
        args["headers"] = {"Accept": "text/event-stream"}
    elif call.headers:
        args["headers"] = dict(call.headers)
    if isinstance(call, Call) and call.content is not None:
        args["content"] = call.content
    else:
        args["json"] = call.body
    if call.params:
        args["params"] = dict(call.params)
    return args


def _client_args(config: Config) -> dict[str, Any]:
    return {
        "base_url": config.base_url,
        "headers": {
            "Authorization": f"Bearer {config.api_key}",
            "User-Agent": f"ai2in-python/{__version__}",
        },
    }


class SseDecoder:
    """Server-Sent Events, line by line: :meth:`feed` answers ``(event, data)`` when a line
    completes an event. Comments (keep-alives) are skipped; ``data`` is decoded JSON."""

    def __init__(self) -> None:
        self._event = "message"
        self._data: list[str] = []

    def feed(self, line: str) -> tuple[str, Any] | None:
        if not line:
            if not self._data:
                return None
            event, data = self._event, "\n".join(self._data)
            self._event, self._data = "message", []
            try:
                return event, json.loads(data)
            except ValueError as e:
                raise Ai2inError(f"the node sent a {event!r} event that is not JSON") from e
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None


class SyncTransport:
    """Blocking calls over one ``httpx.Client``."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._client = httpx.Client(**_client_args(config))

    def call(self, call: Call[T]) -> T:
        """Sends ``call`` and parses its answer; error statuses raise ``ApiError``s."""
        with _translated():
            r = self._client.request(call.method, call.path, **_request_args(call))
        return _parse(call, r.status_code, r.content)

    @contextmanager
    def _answer(self, call: Call[Any] | StreamCall[Any]) -> Iterator[httpx.Response]:
        """Sends ``call`` and gives its answer, the body still to read; an error status
        raises."""
        with _translated(), self._client.stream(
            call.method, call.path, **_request_args(call)
        ) as r:
            if r.status_code >= 400:
                raise error_for_status(r.status_code, r.read())
            yield r

    def stream(self, call: StreamCall[T]) -> Generator[T, None, None]:
        """Sends ``call`` and yields its events as they arrive; closing the generator closes
        the connection."""
        decoder = SseDecoder()
        with self._answer(call) as r:
            for line in r.iter_lines():
                event = decoder.feed(line)
                item = call.parse_event(*event) if event else None
                if item is not None:
                    yield item

    def stream_bytes(self, call: Call[Any], chunk_size: int) -> Generator[bytes, None, None]:
        """Sends ``call`` and yields its answer's bytes as they arrive, ``chunk_size`` at a
        time (the last chunk may be shorter); closing the generator closes the connection."""
        with self._answer(call) as r:
            yield from r.iter_bytes(chunk_size)

    def close(self) -> None:
        """Closes the connections."""
        self._client.close()


class AsyncTransport:
    """Coroutine calls over one ``httpx.AsyncClient``."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._client = httpx.AsyncClient(**_client_args(config))

    async def call(self, call: Call[T]) -> T:
        """Sends ``call`` and parses its answer; error statuses raise ``ApiError``s."""
        with _translated():
            r = await self._client.request(call.method, call.path, **_request_args(call))
        return _parse(call, r.status_code, r.content)

    @asynccontextmanager
    async def _answer(self, call: Call[Any] | StreamCall[Any]) -> AsyncIterator[httpx.Response]:
        """Sends ``call`` and gives its answer, the body still to read; an error status
        raises."""
        with _translated():
            async with self._client.stream(call.method, call.path, **_request_args(call)) as r:
                if r.status_code >= 400:
                    raise error_for_status(r.status_code, await r.aread())
                yield r

    async def stream(self, call: StreamCall[T]) -> AsyncGenerator[T, None]:
        """Sends ``call`` and yields its events as they arrive; closing the generator closes
        the connection."""
        decoder = SseDecoder()
        async with self._answer(call) as r:
            async for line in r.aiter_lines():
                event = decoder.feed(line)
                item = call.parse_event(*event) if event else None
                if item is not None:
                    yield item

    async def stream_bytes(self, call: Call[Any], chunk_size: int) -> AsyncGenerator[bytes, None]:
        """Sends ``call`` and yields its answer's bytes as they arrive, ``chunk_size`` at a
        time (the last chunk may be shorter); closing the generator closes the connection."""
        async with self._answer(call) as r:
            async for chunk in r.aiter_bytes(chunk_size):
                yield chunk

    async def close(self) -> None:
        """Closes the connections."""
        await self._client.aclose()

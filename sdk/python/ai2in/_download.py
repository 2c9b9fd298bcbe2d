"""Answers written where they go as they arrive, not held in memory: a file of a sandbox
downloaded to a local path or a binary file object, a chunk at a time.

A local path is opened only once the node's answer began, so an error answer (a missing
file...) leaves it as it was. The async client writes a blocking file in a worker thread
and awaits an asyncio file's (aiofiles, anyio...) own ``write``.
"""

from __future__ import annotations

import asyncio
import inspect
import io
import os
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterable
from contextlib import aclosing, closing
from typing import Any, Protocol, Union, runtime_checkable


@runtime_checkable
class BinaryWritable(Protocol):
    """A binary file object open for writing (``open(path, "wb")``, ``io.BytesIO``, a
    socket's ``makefile("wb")``...): only ``write(data)`` is needed."""

    def write(self, data: bytes, /) -> object: ...


#: Where ``files.download`` writes: a local path (``str`` or ``os.PathLike``; created, or
#: replaced) or a binary file object, written from its position and left open.
Destination = Union[str, "os.PathLike[str]", BinaryWritable]


def _check_destination(dest: object) -> None:
    """Raises ``TypeError`` for what is not a :data:`Destination`, before anything is sent."""
    if isinstance(dest, (str, os.PathLike)):
        return
    if isinstance(dest, io.TextIOBase):
        raise TypeError("a download is written as bytes: open the file in binary mode ('wb')")
    if not isinstance(dest, BinaryWritable):
        raise TypeError(
            f"a download goes to a path or a binary file object, not {type(dest).__name__}"
        )


def _copy(first: bytes, rest: Iterable[bytes], write: Callable[[bytes], object]) -> int:
    write(first)
    size = len(first)
    for chunk in rest:
        write(chunk)
        size += len(chunk)
    return size


def save(chunks: Generator[bytes, None, None], dest: Destination) -> int:
    """Writes ``chunks`` (a download, not yet begun) to ``dest`` as they arrive and answers
    how many bytes were written; the download is closed at the end."""
    _check_destination(dest)
    with closing(chunks):
        first = next(chunks, b"")  # an error answer raises here, before dest is touched
        if isinstance(dest, (str, os.PathLike)):
            with open(dest, "wb") as f:
                return _copy(first, chunks, f.write)
        return _copy(first, chunks, dest.write)


def _open_for_writing(path: str | os.PathLike[str]) -> io.BufferedWriter:
    return open(path, "wb")


def _async_write(f: Any) -> Callable[[bytes], Awaitable[object]]:
    """``f.write`` as a coroutine function: an asyncio file's own, a blocking one's run in
    a worker thread."""
    if inspect.iscoroutinefunction(f.write):
        write: Callable[[bytes], Awaitable[object]] = f.write
        return write
    return lambda chunk: asyncio.to_thread(f.write, chunk)


async def async_save(chunks: AsyncGenerator[bytes, None], dest: Destination) -> int:
    """Writes ``chunks`` (a download, not yet begun) to ``dest`` as they arrive and answers
    how many bytes were written; the download is closed at the end."""
    _check_destination(dest)
    async with aclosing(chunks):
        first = await anext(chunks, b"")  # an error answer raises here
        if isinstance(dest, (str, os.PathLike)):
            f = await asyncio.to_thread(_open_for_writing, dest)
            try:
                return await _async_copy(first, chunks, _async_write(f))
            finally:
                await asyncio.to_thread(f.close)
        return await _async_copy(first, chunks, _async_write(dest))


async def _async_copy(
    first: bytes, rest: AsyncGenerator[bytes, None], write: Callable[[bytes], Awaitable[object]]
) -> int:
    await write(first)
    size = len(first)
    async for chunk in rest:
        await write(chunk)
        size += len(chunk)
    return size

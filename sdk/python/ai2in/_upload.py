"""Request bodies that are streamed, not held in memory: an image archive or a file's
content given as a path, bytes, a binary file or chunks, read a chunk at a time as the
request is sent.

The sync client sends an iterator of chunks, the async client an async iterator (a file's
blocking reads then run in a worker thread). The length is sent when it is known (bytes, a
regular file, a seekable stream), so the upload is not chunked.
"""

from __future__ import annotations

import asyncio
import inspect
import io
import os
import stat
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Protocol, Union, runtime_checkable

#: Bytes read from a file per chunk of an upload (and, by default, per chunk of a download).
CHUNK_BYTES = 1 << 20


@runtime_checkable
class BinaryReadable(Protocol):
    """A binary file object (``open(path, "rb")``, ``io.BytesIO``, a socket's or a
    response's raw stream...): only ``read(n)`` is needed."""

    def read(self, size: int, /) -> bytes: ...


#: What ``images.import_`` and ``files.upload`` send: a local file's path (``str`` or
#: ``os.PathLike``), the bytes themselves, a binary file object, or an iterable of byte chunks.
Upload = Union[
    str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryReadable, Iterable[bytes]
]
#: What the async client sends: the same, or an async iterable of bytes.
AsyncUpload = Union[Upload, AsyncIterable[bytes]]

#: A body and its length in bytes (``None`` when unknown: the upload is then chunked).
Body = tuple[Any, Union[int, None]]


def _remaining(f: Any) -> int | None:
    """Bytes left from the position of ``f`` to its end, when that can be known."""
    try:
        st = os.fstat(f.fileno())
        if stat.S_ISREG(st.st_mode):
            return max(0, st.st_size - int(f.tell()))
        return None  # a pipe or socket: its size says nothing
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        pass
    try:
        if f.seekable():
            here = f.tell()
            end = f.seek(0, os.SEEK_END)
            f.seek(here)
            return max(0, int(end) - int(here))
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        pass
    return None


_TEXT_MODE = "an upload must be read as bytes: open it in binary mode ('rb')"


def _checked(chunk: Any) -> bytes:
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, (bytearray, memoryview)):
        return bytes(chunk)
    if isinstance(chunk, str):
        raise TypeError(_TEXT_MODE)
    raise TypeError(f"an upload's chunks must be bytes, not {type(chunk).__name__}")


def _chunks(f: BinaryReadable) -> Iterator[bytes]:
    while chunk := f.read(CHUNK_BYTES):
        yield _checked(chunk)


def _unsupported(source: object) -> TypeError:
    if isinstance(source, io.TextIOBase):
        return TypeError(_TEXT_MODE)
    return TypeError(
        "an upload is a path, bytes, a binary file object or an iterable of bytes, "
        f"not {type(source).__name__}"
    )


@contextmanager
def sync_body(source: Upload) -> Iterator[Body]:
    """The upload of ``source`` for the sync client; a path is opened here and closed at
    the end of the block."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            yield _chunks(f), _remaining(f)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        yield data, len(data)
    elif isinstance(source, BinaryReadable) and not isinstance(source, io.TextIOBase):
        yield _chunks(source), _remaining(source)
    elif isinstance(source, Iterable) and not isinstance(source, io.TextIOBase):
        yield (_checked(c) for c in source), None
    else:
        raise _unsupported(source)


def _open_binary(path: str | os.PathLike[str]) -> io.BufferedReader:
    return open(path, "rb")


async def _async_file_chunks(f: Any) -> AsyncIterator[bytes]:
    if inspect.iscoroutinefunction(f.read):  # an asyncio file (aiofiles, anyio...)
        while chunk := await f.read(CHUNK_BYTES):
            yield _checked(chunk)
    else:  # a blocking one: each read in a worker thread
        while chunk := await asyncio.to_thread(f.read, CHUNK_BYTES):
            yield _checked(chunk)


async def _async_chunks(chunks: AsyncIterable[Any]) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        yield _checked(chunk)


async def _sync_chunks(chunks: Iterable[Any]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield _checked(chunk)


@asynccontextmanager
async def async_body(source: AsyncUpload) -> AsyncIterator[Body]:
    """The upload of ``source`` for the async client."""
    if isinstance(source, (str, os.PathLike)):
        f = await asyncio.to_thread(_open_binary, source)
        try:
            yield _async_file_chunks(f), _remaining(f)
        finally:
            f.close()
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        yield data, len(data)
    elif isinstance(source, BinaryReadable) and not isinstance(source, io.TextIOBase):
        yield _async_file_chunks(source), (
            None if inspect.iscoroutinefunction(source.read) else _remaining(source)
        )
    elif isinstance(source, AsyncIterable):
        yield _async_chunks(source), None
    elif isinstance(source, Iterable) and not isinstance(source, io.TextIOBase):
        yield _sync_chunks(source), None
    else:
        raise _unsupported(source)

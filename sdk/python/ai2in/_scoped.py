"""``with`` / ``async with`` for the objects of resources the client made (services,
databases): the resource is deleted at the end of the block; one already gone is fine."""

from __future__ import annotations

from types import TracebackType
from typing import TypeVar

from .errors import NotFoundError

_S = TypeVar("_S", bound="DeletedOnExit")
_A = TypeVar("_A", bound="AsyncDeletedOnExit")


class DeletedOnExit:
    """``with`` deletes the resource at the end."""

    def delete(self) -> None:
        raise NotImplementedError

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.delete()
        except NotFoundError:
            pass  # already gone


class AsyncDeletedOnExit:
    """``async with`` deletes the resource at the end."""

    async def delete(self) -> None:
        raise NotImplementedError

    async def __aenter__(self: _A) -> _A:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.delete()
        except NotFoundError:
            pass  # already gone

"""``with`` / ``async with`` for the objects of resources the client made (services,
databases): the resource is deleted at the end of the block; one already gone is fine."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import TypeVar

from .errors import NotFoundError

_S = TypeVar("_S", bound="DeletedOnExit")
_A = TypeVar("_A", bound="AsyncDeletedOnExit")


class DeletedOnExit(ABC):
    """``with`` deletes the resource at the end."""

    @abstractmethod
    def delete(self) -> None:
        """Deletes the resource."""

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


class AsyncDeletedOnExit(ABC):
    """``async with`` deletes the resource at the end."""

    @abstractmethod
    async def delete(self) -> None:
        """Deletes the resource."""

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

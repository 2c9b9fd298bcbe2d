"""Managed databases: :class:`Database` and :class:`AsyncDatabase`, what
``client.databases`` answers.

A database is a PostgreSQL, MySQL or Redis server the node runs for the tenant in a sandbox
of its own, its data on a volume, reached at a ``url`` that holds its password. Example::

    from ai2in import Client

    with Client() as client:
        db = client.databases.create("postgres")
        print(db.url)                   # postgres://u_…:…@10.0.0.5:21000/app
        db.reset_password()             # the old password fails at once
        db.delete()
"""

from __future__ import annotations

from datetime import datetime
from typing import Union

from . import _api
from ._scoped import AsyncDeletedOnExit, DeletedOnExit
from ._transport import AsyncTransport, SyncTransport
from .models import DatabaseInfo, DatabaseResources


class _DatabaseState:
    """The last known state of a database, as :attr:`info`, with its fields as properties."""

    info: DatabaseInfo

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(id={self.id!r}, engine={self.engine!r}, "
            f"name={self.name!r}, status={self.status!r})"
        )

    @property
    def id(self) -> str:
        """``db_…``: what names it (its name need not be unique)."""
        return self.info.id

    @property
    def engine(self) -> str:
        """``postgres``, ``mysql`` or ``redis``."""
        return self.info.engine

    @property
    def version(self) -> str:
        """The server's version (``15``, ``7.0``)."""
        return self.info.version

    @property
    def name(self) -> str:
        """The database's name inside the server (``app`` by default; Redis: ``0``)."""
        return self.info.name

    @property
    def status(self) -> str:
        """``creating``, ``available``, ``restarting`` or ``failed`` (as last fetched: see
        :meth:`Database.refresh`)."""
        return self.info.status

    @property
    def url(self) -> str:
        """The connection string, password included: the same from the host, other machines
        and the tenant's sandboxes."""
        return self.info.url

    @property
    def host(self) -> str:
        """The address it is reached at."""
        return self.info.host

    @property
    def port(self) -> int:
        """Its port there, fixed for its life."""
        return self.info.port

    @property
    def username(self) -> str:
        """The user its url logs in as."""
        return self.info.username

    @property
    def password(self) -> str:
        """That user's password (also in :attr:`url`)."""
        return self.info.password

    @property
    def created_at(self) -> datetime:
        """When it was created."""
        return self.info.created_at

    @property
    def resources(self) -> DatabaseResources:
        """Its memory and disk."""
        return self.info.resources


#: A database, by its object (a :class:`Database`, :class:`AsyncDatabase` or
#: :class:`~ai2in.DatabaseInfo`) or its id (``db_…``).
DatabaseRef = Union[_DatabaseState, DatabaseInfo, str]


def database_key(database: DatabaseRef) -> str:
    """The id of a database given as an object, or the id given."""
    return database if isinstance(database, str) else database.id


class Database(_DatabaseState, DeletedOnExit):
    """A managed database: its last known state (:attr:`info`, and the same fields as
    properties: ``id``, ``engine``, ``url``, ``status``...) and what can be done to it. From
    ``client.databases.create``, ``get`` or ``list``; :meth:`refresh` and
    :meth:`reset_password` update it in place. Used in ``with``, it is deleted when the block
    ends.
    """

    def __init__(self, info: DatabaseInfo, transport: SyncTransport) -> None:
        self.info = info
        self._t = transport

    def _set(self, info: DatabaseInfo) -> Database:
        self.info = info
        return self

    def refresh(self) -> Database:
        """Fetches its current state (``NotFoundError`` once deleted)."""
        return self._set(self._t.call(_api.get_database(self.id)))

    def reset_password(self) -> Database:
        """Gives its user a new password, in :attr:`url` and :attr:`password`; the old one
        fails at once."""
        return self._set(self._t.call(_api.reset_database_password(self.id)))

    def delete(self) -> None:
        """Deletes it: its server, its data and its port."""
        self._t.call(_api.delete_database(self.id))



class AsyncDatabase(_DatabaseState, AsyncDeletedOnExit):
    """A managed database, driven with asyncio: from ``AsyncClient().databases``. See
    :class:`Database`; ``async with`` deletes it at the end."""

    def __init__(self, info: DatabaseInfo, transport: AsyncTransport) -> None:
        self.info = info
        self._t = transport

    def _set(self, info: DatabaseInfo) -> AsyncDatabase:
        self.info = info
        return self

    async def refresh(self) -> AsyncDatabase:
        """Fetches its current state."""
        return self._set(await self._t.call(_api.get_database(self.id)))

    async def reset_password(self) -> AsyncDatabase:
        """Gives its user a new password; the old one fails at once."""
        return self._set(await self._t.call(_api.reset_database_password(self.id)))

    async def delete(self) -> None:
        """Deletes it: its server, its data and its port."""
        await self._t.call(_api.delete_database(self.id))


"""Node-wide operations that belong to no sandbox: API keys (admin scope).

Example::

    from ai2in import Client

    with Client() as client:
        created = client.keys.create("ci", ["sandboxes:read"])
        print(created.key)              # the secret, shown only now
        client.keys.revoke(created.id)
"""

from __future__ import annotations

import builtins
from types import TracebackType

from . import _api
from ._config import resolve
from ._transport import AsyncTransport, SyncTransport
from .models import CreatedKey, KeyInfo


class Keys:
    """API keys of the node: ``client.keys`` (needs an admin key)."""

    def __init__(self, transport: SyncTransport) -> None:
        self._t = transport

    def create(
        self, name: str, scopes: builtins.list[str], tenant: str | None = None
    ) -> CreatedKey:
        """A new key with ``scopes`` (e.g. ``["sandboxes:read"]``) for ``tenant`` (the
        caller's by default). Its secret is ``.key``, shown only here."""
        return self._t.call(_api.create_key(name, scopes, tenant))

    def list(self) -> builtins.list[KeyInfo]:
        """The keys that are not revoked (without secrets)."""
        return self._t.call(_api.list_keys())

    def revoke(self, key_id: str) -> None:
        """Revokes a key, effective at once."""
        self._t.call(_api.revoke_key(key_id))


class Client:
    """A connection to a node for what is not a sandbox's: ``keys``.

    ``api_key`` and ``base_url`` override ``AI2IN_API_KEY`` and ``AI2IN_BASE_URL``.
    """

    def __init__(self, api_key: str | None = None, base_url: str | None = None) -> None:
        self._t = SyncTransport(resolve(api_key, base_url))
        self.keys = Keys(self._t)

    def close(self) -> None:
        """Closes the connections."""
        self._t.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncKeys:
    """API keys of the node, with coroutines: ``client.keys``."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def create(
        self, name: str, scopes: builtins.list[str], tenant: str | None = None
    ) -> CreatedKey:
        """A new key; its secret is ``.key``, shown only here."""
        return await self._t.call(_api.create_key(name, scopes, tenant))

    async def list(self) -> builtins.list[KeyInfo]:
        """The keys that are not revoked."""
        return await self._t.call(_api.list_keys())

    async def revoke(self, key_id: str) -> None:
        """Revokes a key."""
        await self._t.call(_api.revoke_key(key_id))


class AsyncClient:
    """The asyncio form of :class:`Client`; ``async with AsyncClient() as client``."""

    def __init__(self, api_key: str | None = None, base_url: str | None = None) -> None:
        self._t = AsyncTransport(resolve(api_key, base_url))
        self.keys = AsyncKeys(self._t)

    async def close(self) -> None:
        """Closes the connections."""
        await self._t.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

"""Node-wide operations that belong to no sandbox: images, volumes and API keys.

Example::

    from ai2in import Client, Sandbox

    with Client() as client:
        image = client.images.pull("python:3.12-slim")
        volume = client.volumes.create(1 << 30, name="cache")
        with Sandbox.create(image, volumes=[volume.mount("/cache")]) as sbx:
            print(sbx.commands.run("python3 --version").stdout)

        created = client.keys.create("ci", ["sandboxes:read"])   # an admin key only
        print(created.key)              # the secret, shown only now
        client.keys.revoke(created.id)
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from contextlib import aclosing, closing
from types import TracebackType
from typing import Any

from . import _api
from ._config import resolve
from ._transport import AsyncTransport, SyncTransport
from ._upload import AsyncImageArchive, ImageArchive, async_body, sync_body
from .async_sandbox import _settle
from .errors import Ai2inConnectionError
from .models import CreatedKey, Image, KeyInfo, PullProgress, Volume


def _image_key(image: Image | str) -> str:
    return image.id if isinstance(image, Image) else image


def _volume_key(volume: Volume | str) -> str:
    return volume.id if isinstance(volume, Volume) else volume


def _no_done() -> Ai2inConnectionError:
    return Ai2inConnectionError("the pull's event stream ended before its done event")


class Images:
    """The images of the key's tenant: ``client.images``.

    An image is named by its id (``img_…``) or by its reference (``python:3.12`` is
    ``docker.io/library/python:3.12``); ``Sandbox.create`` takes either, or the
    :class:`~ai2in.Image` itself.
    """

    def __init__(self, transport: SyncTransport) -> None:
        self._t = transport

    def pull(
        self, ref: str, on_progress: Callable[[PullProgress], Any] | None = None
    ) -> Image:
        """Pulls ``ref`` from its registry, or finds it if the tenant has it already.

        ``on_progress`` is called with a :class:`~ai2in.PullProgress` as each layer's bytes
        arrive. Errors: a reference that does not parse raises ``BadRequestError``, one the
        registry does not have ``NotFoundError``, a registry that fails ``UpstreamError``.

        Example::

            image = client.images.pull(
                "python:3.12-slim",
                on_progress=lambda p: print(p.layer[:19], p.done_bytes, "/", p.total_bytes),
            )
        """
        if on_progress is None:
            return self._t.call(_api.pull_image(ref))
        with closing(self._t.stream(_api.pull_image_stream(ref))) as events:
            for event in events:
                if isinstance(event, Image):
                    return event
                on_progress(event)
        raise _no_done()

    def import_(self, source: ImageArchive, ref: str | None = None) -> Image:
        """Imports an image archive: a ``docker save`` tar or a tarred OCI image layout.

        ``source`` is a path, the archive's bytes, a binary file object or an iterable of
        byte chunks; it is streamed to the node, never read whole into memory. ``ref``
        (``name:tag``) names the image; without it, the archive's own name is used.

        Example::

            image = client.images.import_("app.tar", ref="app:1")
        """
        with sync_body(source) as (content, length):
            return self._t.call(_api.import_image(content, length, ref))

    def list(self) -> builtins.list[Image]:
        """The tenant's images."""
        return self._t.call(_api.list_images())

    def get(self, image: Image | str) -> Image:
        """One image, by id or reference (``NotFoundError`` if the tenant has none)."""
        return self._t.call(_api.get_image(_image_key(image)))

    def delete(self, image: Image | str) -> None:
        """Deletes an image (by id or reference). ``ConflictError`` while a sandbox uses it."""
        self._t.call(_api.delete_image(_image_key(image)))


class Volumes:
    """The volumes of the key's tenant: ``client.volumes``.

    A volume is a persistent filesystem of a fixed size that outlives sandboxes. It is named
    by its id (``vol_…``) or its name; mount it with ``Sandbox.create(volumes=[...])``.

    Example::

        volume = client.volumes.create(64 * 2**20, name="results")
        with Sandbox.create(volumes=[volume.mount("/data")]) as sbx:
            sbx.commands.run("echo 42 > /data/answer")
        with Sandbox.create(volumes=[volume.mount("/data", read_only=True)]) as sbx:
            print(sbx.files.read("/data/answer"))     # 42
        client.volumes.delete(volume)
    """

    def __init__(self, transport: SyncTransport) -> None:
        self._t = transport

    def create(self, size_bytes: int, name: str | None = None) -> Volume:
        """A new, empty volume of ``size_bytes`` (at least 16 MiB) named ``name`` (1 to 63 of
        ``a-z 0-9 - _ .``; its id when ``None``). ``AlreadyExistsError`` when the tenant has a
        volume of that name, ``BadRequestError`` for a size or name out of bounds,
        ``QuotaExceededError`` past the tenant's quota."""
        return self._t.call(_api.create_volume(size_bytes, name))

    def list(self) -> builtins.list[Volume]:
        """The tenant's volumes, oldest first."""
        return self._t.call(_api.list_volumes())

    def get(self, volume: Volume | str) -> Volume:
        """One volume, by id or name (``NotFoundError`` if the tenant has none)."""
        return self._t.call(_api.get_volume(_volume_key(volume)))

    def delete(self, volume: Volume | str) -> None:
        """Deletes a volume and its files (by id or name). ``ConflictError`` while a sandbox
        mounts it."""
        self._t.call(_api.delete_volume(_volume_key(volume)))


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
    """A connection to a node for what is not a sandbox's: ``images``, ``volumes`` and
    ``keys``.

    ``api_key`` and ``base_url`` override ``AI2IN_API_KEY`` and ``AI2IN_BASE_URL``.
    """

    def __init__(self, api_key: str | None = None, base_url: str | None = None) -> None:
        self._t = SyncTransport(resolve(api_key, base_url))
        self.images = Images(self._t)
        self.volumes = Volumes(self._t)
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


class AsyncImages:
    """The images of the key's tenant, with coroutines: ``client.images``. See
    :class:`Images`."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def pull(
        self, ref: str, on_progress: Callable[[PullProgress], Any] | None = None
    ) -> Image:
        """Pulls ``ref``, or finds it; ``on_progress`` (a function or a coroutine function)
        gets each :class:`~ai2in.PullProgress`."""
        if on_progress is None:
            return await self._t.call(_api.pull_image(ref))
        async with aclosing(self._t.stream(_api.pull_image_stream(ref))) as events:
            async for event in events:
                if isinstance(event, Image):
                    return event
                await _settle([on_progress(event)])
        raise _no_done()

    async def import_(self, source: AsyncImageArchive, ref: str | None = None) -> Image:
        """Imports a ``docker save`` or OCI layout archive: a path, bytes, a binary file
        object (read in a worker thread) or an (async) iterable of byte chunks, streamed."""
        async with async_body(source) as (content, length):
            return await self._t.call(_api.import_image(content, length, ref))

    async def list(self) -> builtins.list[Image]:
        """The tenant's images."""
        return await self._t.call(_api.list_images())

    async def get(self, image: Image | str) -> Image:
        """One image, by id or reference."""
        return await self._t.call(_api.get_image(_image_key(image)))

    async def delete(self, image: Image | str) -> None:
        """Deletes an image; ``ConflictError`` while a sandbox uses it."""
        await self._t.call(_api.delete_image(_image_key(image)))


class AsyncVolumes:
    """The volumes of the key's tenant, with coroutines: ``client.volumes``. See
    :class:`Volumes`."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def create(self, size_bytes: int, name: str | None = None) -> Volume:
        """A new, empty volume of ``size_bytes`` named ``name`` (its id when ``None``)."""
        return await self._t.call(_api.create_volume(size_bytes, name))

    async def list(self) -> builtins.list[Volume]:
        """The tenant's volumes, oldest first."""
        return await self._t.call(_api.list_volumes())

    async def get(self, volume: Volume | str) -> Volume:
        """One volume, by id or name."""
        return await self._t.call(_api.get_volume(_volume_key(volume)))

    async def delete(self, volume: Volume | str) -> None:
        """Deletes a volume; ``ConflictError`` while a sandbox mounts it."""
        await self._t.call(_api.delete_volume(_volume_key(volume)))


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
        self.images = AsyncImages(self._t)
        self.volumes = AsyncVolumes(self._t)
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

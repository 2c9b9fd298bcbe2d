"""Node-wide operations that belong to no sandbox: images, volumes, hosted services, managed
databases, API keys and the cluster's nodes.

Example::

    from ai2in import Client, Sandbox

    with Client() as client:
        image = client.images.pull("python:3.12-slim")
        volume = client.volumes.create(1 << 30, name="cache")
        with Sandbox.create(image, volumes=[volume.mount("/cache")]) as sbx:
            print(sbx.commands.run("python3 --version").stdout)

        web = client.services.deploy(
            "web", "host", internal_port=8000, start_cmd="python3 -m http.server 8000"
        )
        print(web.wait_until_running().url)

        db = client.databases.create("postgres")
        print(db.url)                   # postgres://u_…:…@HOST:PORT/app

        created = client.keys.create("ci", ["sandboxes:read"])   # an admin key only
        print(created.key)              # the secret, shown only now
        client.keys.revoke(created.id)

        for node in client.nodes.list():   # an admin key only; a node on its own lists itself
            print(node.id, node.status, node.used.sandboxes, node.capacity.sandboxes)
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncGenerator, Callable, Generator, Mapping, Sequence
from contextlib import aclosing, closing
from types import TracebackType
from typing import Any

from . import _api
from ._config import resolve
from ._transport import AsyncTransport, SyncTransport
from ._upload import AsyncUpload, Upload, async_body, sync_body
from .async_sandbox import _settle
from .databases import AsyncDatabase, Database, DatabaseRef, database_key
from .errors import Ai2inConnectionError
from .models import (
    CreatedKey,
    EngineInfo,
    Image,
    KeyInfo,
    LogLine,
    NodeInfo,
    PullProgress,
    ServiceLogs,
    Volume,
    VolumeMount,
    VolumeMountDict,
)
from .services import AsyncService, Service, ServiceRef, service_key


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

    def import_(self, source: Upload, ref: str | None = None) -> Image:
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


class Services:
    """The hosted services of the key's tenant: ``client.services``.

    A service is a process the node keeps running (restarting it after an exit, with a
    backoff) in a sandbox of its own and, with an ``internal_port``, serves at a stable
    public URL through its proxy. It is named by its id (``svc_…``) or its name; the calls
    answer :class:`~ai2in.Service` objects, which have the same operations as methods.

    Example::

        web = client.services.deploy(
            "web", "host", internal_port=8000, start_cmd="python3 -m http.server 8000"
        )
        web.wait_until_running()
        print(web.url)                                  # http://web-….localhost:4747/
        web.redeploy(env={"MODE": "production"})        # blue-green: 422 if it never runs
        for line in client.services.logs("web"):
            print(line.seq, line.stream, line.line)
        client.services.delete("web")
    """

    def __init__(self, transport: SyncTransport) -> None:
        self._t = transport

    def deploy(
        self,
        name: str,
        image: str | Image,
        *,
        internal_port: int | None = None,
        env: Mapping[str, str] | None = None,
        start_cmd: str | None = None,
        health_path: str | None = None,
        cpu: float | None = None,
        memory_bytes: int | None = None,
        disk_bytes: int | None = None,
        volumes: Sequence[VolumeMount | VolumeMountDict] | None = None,
    ) -> Service:
        """Deploys a new service and answers it, status ``deploying``, once its process
        started (:meth:`Service.wait_until_running` waits for its port, or its health path).

        Args:
            name: 1 to 40 of ``a-z 0-9 -``, not starting or ending with ``-``; unique among
                the tenant's services (``AlreadyExistsError`` otherwise) and part of its URL.
            image: ``"host"``, an image id, a reference (pulled if the tenant lacks it) or an
                :class:`~ai2in.Image`.
            internal_port: the port it listens on inside; it has a URL only with one.
            env: variables over the image's environment.
            start_cmd: run by ``/bin/sh -c``; the image's entrypoint and cmd when ``None``
                (an image with neither is a ``BadRequestError``).
            health_path: a path (``/healthz``) that must answer 2xx or 3xx before the service
                is ``running``; the open port is enough when ``None``.
            cpu, memory_bytes, disk_bytes: the resources of each instance (node defaults
                when ``None``); its writable layer is emptied by a restart: keep data on
                volumes.
            volumes: volumes mounted in every instance, as for ``Sandbox.create``.

        Errors: ``BadRequestError`` for a bad name or field, ``AlreadyExistsError`` for a
        name taken, ``QuotaExceededError`` past the tenant's number of services,
        ``NodeAtCapacityError`` when the node has no room, and the pull's errors.
        """
        call = _api.deploy_service(
            name, image, internal_port, env, start_cmd, health_path, cpu, memory_bytes,
            disk_bytes, volumes,
        )
        return Service(self._t.call(call), self._t)

    def list(self) -> builtins.list[Service]:
        """The tenant's services, oldest first."""
        return [Service(info, self._t) for info in self._t.call(_api.list_services())]

    def get(self, service: ServiceRef) -> Service:
        """One service, by id or name (``NotFoundError`` if the tenant has none)."""
        return Service(self._t.call(_api.get_service(service_key(service))), self._t)

    def logs(
        self, service: ServiceRef, since: int | None = None, limit: int | None = None
    ) -> ServiceLogs:
        """A service's log lines, oldest first, and the cursor after them (see
        :meth:`Service.logs`)."""
        return self._t.call(_api.service_logs(service_key(service), since, limit))

    def follow_logs(
        self, service: ServiceRef, since: int | None = None
    ) -> Generator[LogLine, None, None]:
        """A service's log lines as they are written, forever (see
        :meth:`Service.follow_logs`).

        Example::

            with closing(client.services.follow_logs("web")) as lines:
                for line in lines:
                    print(line.stream, line.line)
        """
        return self._t.stream(_api.follow_service_logs(service_key(service), since))

    def redeploy(
        self,
        service: ServiceRef,
        *,
        image: str | Image | None = None,
        env: Mapping[str, str] | None = None,
        start_cmd: str | None = None,
        internal_port: int | None = None,
        health_path: str | None = None,
    ) -> Service:
        """Redeploys a service with the changes given (see :meth:`Service.redeploy`);
        ``DeployFailedError`` when the new instance never became ready."""
        call = _api.redeploy_service(
            service_key(service), image, env, start_cmd, internal_port, health_path
        )
        return Service(self._t.call(call), self._t)

    def stop(self, service: ServiceRef) -> Service:
        """Stops a service (status ``stopped``; its URL answers 503)."""
        return Service(self._t.call(_api.stop_service(service_key(service))), self._t)

    def start(self, service: ServiceRef) -> Service:
        """Starts a stopped service again (status ``deploying``)."""
        return Service(self._t.call(_api.start_service(service_key(service))), self._t)

    def delete(self, service: ServiceRef) -> None:
        """Stops and deletes a service (by id or name)."""
        self._t.call(_api.delete_service(service_key(service)))


class Databases:
    """The managed databases of the key's tenant: ``client.databases``.

    A database is a server (PostgreSQL, MySQL or Redis: those :meth:`engines` lists) that
    the node runs in a sandbox of its own, its data on a volume, restarted when it dies. It
    is named by its id (``db_…``); the calls answer :class:`~ai2in.Database` objects, whose
    ``url`` (password included) connects from the host, other machines and the tenant's
    sandboxes.

    Example::

        with client.databases.create("postgres", name="shop") as db:
            subprocess.run(["psql", db.url, "-c", "select 1"], check=True)
            db.reset_password()             # the old url fails at once
            print(db.url)
    """

    def __init__(self, transport: SyncTransport) -> None:
        self._t = transport

    def create(
        self,
        engine: str,
        *,
        version: str | None = None,
        name: str | None = None,
        memory_bytes: int | None = None,
        disk_bytes: int | None = None,
    ) -> Database:
        """Creates a database and answers it, status ``available``, once its server accepts
        connections.

        Args:
            engine: ``"postgres"``, ``"mysql"`` or ``"redis"``: one the node serves.
            version: one of the engine's versions; its default when ``None``.
            name: the database's name inside the server, 1 to 63 of ``a-z 0-9 _`` starting
                with a letter; ``"app"`` when ``None`` (Redis ignores it).
            memory_bytes: the memory of its server (node default when ``None``).
            disk_bytes: the size of the volume holding its data (node default when ``None``).

        Errors: ``BadRequestError`` for an engine or version the node does not serve (its
        message lists what it does), a bad name or size; ``QuotaExceededError`` past the
        tenant's number of databases; ``NodeAtCapacityError`` when the node has no room or
        no free port.
        """
        call = _api.create_database(engine, version, name, memory_bytes, disk_bytes)
        return Database(self._t.call(call), self._t)

    def list(self) -> builtins.list[Database]:
        """The tenant's databases, oldest first."""
        return [Database(info, self._t) for info in self._t.call(_api.list_databases())]

    def get(self, database: DatabaseRef) -> Database:
        """One database, by id (``NotFoundError`` if the tenant has none); its url holds the
        password."""
        return Database(self._t.call(_api.get_database(database_key(database))), self._t)

    def engines(self) -> builtins.list[EngineInfo]:
        """The engines this node serves, each with its versions and default version."""
        return self._t.call(_api.database_engines())

    def reset_password(self, database: DatabaseRef) -> Database:
        """Gives a database's user a new password and answers the database with it in its
        url; the old password fails at once."""
        call = _api.reset_database_password(database_key(database))
        return Database(self._t.call(call), self._t)

    def delete(self, database: DatabaseRef) -> None:
        """Deletes a database: its server, its data and its port."""
        self._t.call(_api.delete_database(database_key(database)))


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


class Nodes:
    """The cluster's nodes: ``client.nodes`` (needs an admin key). A gateway answers for
    every node of its cluster, a node on its own for itself."""

    def __init__(self, transport: SyncTransport) -> None:
        self._t = transport

    def list(self) -> builtins.list[NodeInfo]:
        """Every node, by id: address, status, capacity, what is taken, last report."""
        return self._t.call(_api.list_nodes())

    def drain(self, node_id: str) -> NodeInfo:
        """Stops placement on node ``node_id`` and answers it, ``"draining"``: what it holds
        keeps running, and a node on its own answers its creates with
        :class:`~ai2in.NodeAtCapacityError`. An unknown id raises
        :class:`~ai2in.NotFoundError`."""
        return self._t.call(_api.drain_node(node_id))


class Client:
    """A connection to a node for what is not a sandbox's: ``images``, ``volumes``,
    ``services``, ``databases``, ``keys`` and ``nodes``.

    ``api_key`` and ``base_url`` override ``AI2IN_API_KEY`` and ``AI2IN_BASE_URL``.
    """

    def __init__(self, api_key: str | None = None, base_url: str | None = None) -> None:
        self._t = SyncTransport(resolve(api_key, base_url))
        self.images = Images(self._t)
        self.volumes = Volumes(self._t)
        self.services = Services(self._t)
        self.databases = Databases(self._t)
        self.keys = Keys(self._t)
        self.nodes = Nodes(self._t)

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

    async def import_(self, source: AsyncUpload, ref: str | None = None) -> Image:
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


class AsyncServices:
    """The hosted services of the key's tenant, with coroutines: ``client.services``. See
    :class:`Services`; the calls answer :class:`~ai2in.AsyncService` objects."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def deploy(
        self,
        name: str,
        image: str | Image,
        *,
        internal_port: int | None = None,
        env: Mapping[str, str] | None = None,
        start_cmd: str | None = None,
        health_path: str | None = None,
        cpu: float | None = None,
        memory_bytes: int | None = None,
        disk_bytes: int | None = None,
        volumes: Sequence[VolumeMount | VolumeMountDict] | None = None,
    ) -> AsyncService:
        """Deploys a new service (see :meth:`Services.deploy`)."""
        call = _api.deploy_service(
            name, image, internal_port, env, start_cmd, health_path, cpu, memory_bytes,
            disk_bytes, volumes,
        )
        return AsyncService(await self._t.call(call), self._t)

    async def list(self) -> builtins.list[AsyncService]:
        """The tenant's services, oldest first."""
        return [AsyncService(info, self._t) for info in await self._t.call(_api.list_services())]

    async def get(self, service: ServiceRef) -> AsyncService:
        """One service, by id or name."""
        return AsyncService(await self._t.call(_api.get_service(service_key(service))), self._t)

    async def logs(
        self, service: ServiceRef, since: int | None = None, limit: int | None = None
    ) -> ServiceLogs:
        """A service's log lines, oldest first, and the cursor after them."""
        return await self._t.call(_api.service_logs(service_key(service), since, limit))

    def follow_logs(
        self, service: ServiceRef, since: int | None = None
    ) -> AsyncGenerator[LogLine, None]:
        """``async for`` over a service's log lines as they are written, forever."""
        return self._t.stream(_api.follow_service_logs(service_key(service), since))

    async def redeploy(
        self,
        service: ServiceRef,
        *,
        image: str | Image | None = None,
        env: Mapping[str, str] | None = None,
        start_cmd: str | None = None,
        internal_port: int | None = None,
        health_path: str | None = None,
    ) -> AsyncService:
        """Redeploys a service with the changes given; ``DeployFailedError`` when the new
        instance never became ready."""
        call = _api.redeploy_service(
            service_key(service), image, env, start_cmd, internal_port, health_path
        )
        return AsyncService(await self._t.call(call), self._t)

    async def stop(self, service: ServiceRef) -> AsyncService:
        """Stops a service."""
        return AsyncService(await self._t.call(_api.stop_service(service_key(service))), self._t)

    async def start(self, service: ServiceRef) -> AsyncService:
        """Starts a stopped service again."""
        return AsyncService(await self._t.call(_api.start_service(service_key(service))), self._t)

    async def delete(self, service: ServiceRef) -> None:
        """Stops and deletes a service."""
        await self._t.call(_api.delete_service(service_key(service)))


class AsyncDatabases:
    """The managed databases of the key's tenant, with coroutines: ``client.databases``. See
    :class:`Databases`; the calls answer :class:`~ai2in.AsyncDatabase` objects."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def create(
        self,
        engine: str,
        *,
        version: str | None = None,
        name: str | None = None,
        memory_bytes: int | None = None,
        disk_bytes: int | None = None,
    ) -> AsyncDatabase:
        """Creates a database, answered once it accepts connections (see
        :meth:`Databases.create`)."""
        call = _api.create_database(engine, version, name, memory_bytes, disk_bytes)
        return AsyncDatabase(await self._t.call(call), self._t)

    async def list(self) -> builtins.list[AsyncDatabase]:
        """The tenant's databases, oldest first."""
        return [AsyncDatabase(i, self._t) for i in await self._t.call(_api.list_databases())]

    async def get(self, database: DatabaseRef) -> AsyncDatabase:
        """One database, by id."""
        info = await self._t.call(_api.get_database(database_key(database)))
        return AsyncDatabase(info, self._t)

    async def engines(self) -> builtins.list[EngineInfo]:
        """The engines this node serves."""
        return await self._t.call(_api.database_engines())

    async def reset_password(self, database: DatabaseRef) -> AsyncDatabase:
        """Gives a database's user a new password; the old one fails at once."""
        info = await self._t.call(_api.reset_database_password(database_key(database)))
        return AsyncDatabase(info, self._t)

    async def delete(self, database: DatabaseRef) -> None:
        """Deletes a database."""
        await self._t.call(_api.delete_database(database_key(database)))


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


class AsyncNodes:
    """The cluster's nodes, with coroutines: ``client.nodes``."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def list(self) -> builtins.list[NodeInfo]:
        """Every node, by id."""
        return await self._t.call(_api.list_nodes())

    async def drain(self, node_id: str) -> NodeInfo:
        """Stops placement on a node; answers it, ``"draining"``."""
        return await self._t.call(_api.drain_node(node_id))


class AsyncClient:
    """The asyncio form of :class:`Client`; ``async with AsyncClient() as client``."""

    def __init__(self, api_key: str | None = None, base_url: str | None = None) -> None:
        self._t = AsyncTransport(resolve(api_key, base_url))
        self.images = AsyncImages(self._t)
        self.volumes = AsyncVolumes(self._t)
        self.services = AsyncServices(self._t)
        self.databases = AsyncDatabases(self._t)
        self.keys = AsyncKeys(self._t)
        self.nodes = AsyncNodes(self._t)

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

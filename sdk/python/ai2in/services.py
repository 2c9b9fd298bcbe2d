"""Hosted services: :class:`Service` and :class:`AsyncService`, what ``client.services``
answers.

A service is a long-running process the node keeps alive (restarting it when it exits) and,
with an ``internal_port``, serves at a stable public URL through its proxy. Example::

    from ai2in import Client

    with Client() as client:
        web = client.services.deploy(
            "web", "host", internal_port=8000, start_cmd="python3 -m http.server 8000"
        )
        web.wait_until_running()
        print(web.url)                  # http://web-….localhost:4747/
        for line in web.logs():
            print(line.stream, line.line)
        web.delete()
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Generator, Mapping
from datetime import datetime
from typing import Union

from . import _api
from ._flows import RunningWait
from ._scoped import AsyncDeletedOnExit, DeletedOnExit
from ._transport import AsyncTransport, SyncTransport
from .models import (
    Image,
    LogLine,
    Resources,
    ServiceExit,
    ServiceInfo,
    ServiceLogs,
    VolumeMount,
)


class _ServiceState:
    """The last known state of a service, as :attr:`info`, with its fields as properties."""

    info: ServiceInfo

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, name={self.name!r}, status={self.status!r})"

    @property
    def id(self) -> str:
        """``svc_…``."""
        return self.info.id

    @property
    def name(self) -> str:
        """Its name: unique among the tenant's services, part of its URL."""
        return self.info.name

    @property
    def image(self) -> str:
        """The image it runs, as given."""
        return self.info.image

    @property
    def image_digest(self) -> str | None:
        """The content digest of the image's current deploy (``None`` for ``host``)."""
        return self.info.image_digest

    @property
    def status(self) -> str:
        """``deploying``, ``running``, ``crashed`` or ``stopped`` (as last fetched: see
        :meth:`Service.refresh`)."""
        return self.info.status

    @property
    def url(self) -> str | None:
        """Its public URL, stable for its whole life; ``None`` without an internal port."""
        return self.info.url

    @property
    def internal_port(self) -> int | None:
        """The port it listens on inside."""
        return self.info.internal_port

    @property
    def start_cmd(self) -> str | None:
        """Its start command (``None``: the image's entrypoint and cmd)."""
        return self.info.start_cmd

    @property
    def health_path(self) -> str | None:
        """The path that decides readiness (``None``: the open port is enough)."""
        return self.info.health_path

    @property
    def created_at(self) -> datetime:
        """When it was first deployed."""
        return self.info.created_at

    @property
    def deployed_at(self) -> datetime | None:
        """When its last deploy or redeploy became current."""
        return self.info.deployed_at

    @property
    def restarts(self) -> int:
        """How many times the node restarted its process after an exit."""
        return self.info.restarts

    @property
    def last_exit(self) -> ServiceExit | None:
        """How its process last ended."""
        return self.info.last_exit

    @property
    def next_restart_at(self) -> datetime | None:
        """When it restarts next, while crashed."""
        return self.info.next_restart_at

    @property
    def sandbox_id(self) -> str | None:
        """The sandbox of its current instance, while one runs (``Sandbox.connect`` it to
        run commands or read files there)."""
        return self.info.sandbox_id

    @property
    def resources(self) -> Resources:
        """The resources of each instance."""
        return self.info.resources

    @property
    def volumes(self) -> list[VolumeMount]:
        """The volumes mounted in each instance."""
        return self.info.volumes


#: A service, by its object (a :class:`Service`, :class:`AsyncService` or
#: :class:`~ai2in.ServiceInfo`), its id (``svc_…``) or its name.
ServiceRef = Union[_ServiceState, ServiceInfo, str]


def service_key(service: ServiceRef) -> str:
    """The id of a service given as an object, or the id or name given."""
    return service if isinstance(service, str) else service.id


class Service(_ServiceState, DeletedOnExit):
    """A hosted service: its last known state (:attr:`info`, and the same fields as
    properties: ``id``, ``name``, ``status``, ``url``, ``sandbox_id``...) and what can be done
    to it. From ``client.services.deploy``, ``get`` or ``list``; :meth:`refresh`,
    :meth:`redeploy`, :meth:`stop` and :meth:`start` update it in place. Used in ``with``,
    it is deleted when the block ends.
    """

    def __init__(self, info: ServiceInfo, transport: SyncTransport) -> None:
        self.info = info
        self._t = transport

    def _set(self, info: ServiceInfo) -> Service:
        self.info = info
        return self

    def refresh(self) -> Service:
        """Fetches its current state (``NotFoundError`` once deleted)."""
        return self._set(self._t.call(_api.get_service(self.id)))

    def wait_until_running(self, timeout: float = 60.0) -> Service:
        """Polls until its status is ``running`` (through ``deploying``, and ``crashed``
        and restarts) and answers it; past ``timeout`` seconds raises
        ``RequestTimeoutError`` naming the last status. A stopped service does not run until
        :meth:`start`."""
        wait = RunningWait(timeout)
        while not wait.check(self.refresh().info):
            time.sleep(wait.delay())
        return self

    def logs(self, since: int | None = None, limit: int | None = None) -> ServiceLogs:
        """Its log lines (``stdout``, ``stderr`` and ``system``), oldest first: those after
        the cursor ``since`` (a ``next_since`` or a line's ``seq``), else the most recent;
        at most ``limit`` (default 100, at most 1000)."""
        return self._t.call(_api.service_logs(self.id, since, limit))

    def follow_logs(self, since: int | None = None) -> Generator[LogLine, None, None]:
        """Its log lines as they are written, forever: first those after ``since`` (the
        last 100 when ``None``), then the new ones. Closing the generator (or leaving a
        ``for`` loop over it and dropping it) closes the connection."""
        return self._t.stream(_api.follow_service_logs(self.id, since))

    def redeploy(
        self,
        *,
        image: str | Image | None = None,
        env: Mapping[str, str] | None = None,
        start_cmd: str | None = None,
        internal_port: int | None = None,
        health_path: str | None = None,
    ) -> Service:
        """Deploys a new instance with the changes given (``env`` replaces the environment
        whole; the image is pulled again) and answers once it serves in place of the old
        one. ``DeployFailedError`` (422) when it never became ready: the old one keeps
        serving."""
        call = _api.redeploy_service(self.id, image, env, start_cmd, internal_port, health_path)
        return self._set(self._t.call(call))

    def stop(self) -> Service:
        """Stops its process (SIGTERM, a grace period, then SIGKILL); its URL answers 503
        until :meth:`start`."""
        return self._set(self._t.call(_api.stop_service(self.id)))

    def start(self) -> Service:
        """Starts a stopped service again (status ``deploying``; nothing when it is not
        stopped)."""
        return self._set(self._t.call(_api.start_service(self.id)))

    def delete(self) -> None:
        """Stops and deletes it; its name is free again."""
        self._t.call(_api.delete_service(self.id))



class AsyncService(_ServiceState, AsyncDeletedOnExit):
    """A hosted service, driven with asyncio: from ``AsyncClient().services``. See
    :class:`Service`; ``async with`` deletes it at the end."""

    def __init__(self, info: ServiceInfo, transport: AsyncTransport) -> None:
        self.info = info
        self._t = transport

    def _set(self, info: ServiceInfo) -> AsyncService:
        self.info = info
        return self

    async def refresh(self) -> AsyncService:
        """Fetches its current state."""
        return self._set(await self._t.call(_api.get_service(self.id)))

    async def wait_until_running(self, timeout: float = 60.0) -> AsyncService:
        """Polls until its status is ``running``; ``RequestTimeoutError`` past
        ``timeout`` seconds."""
        wait = RunningWait(timeout)
        while not wait.check((await self.refresh()).info):
            await asyncio.sleep(wait.delay())
        return self

    async def logs(self, since: int | None = None, limit: int | None = None) -> ServiceLogs:
        """Its log lines after ``since`` (else the most recent), at most ``limit``."""
        return await self._t.call(_api.service_logs(self.id, since, limit))

    def follow_logs(self, since: int | None = None) -> AsyncGenerator[LogLine, None]:
        """``async for`` over its log lines as they are written, forever; ``await
        stream.aclose()`` closes the connection."""
        return self._t.stream(_api.follow_service_logs(self.id, since))

    async def redeploy(
        self,
        *,
        image: str | Image | None = None,
        env: Mapping[str, str] | None = None,
        start_cmd: str | None = None,
        internal_port: int | None = None,
        health_path: str | None = None,
    ) -> AsyncService:
        """Deploys a new instance with the changes given; ``DeployFailedError`` when it never
        became ready (the old one keeps serving)."""
        call = _api.redeploy_service(self.id, image, env, start_cmd, internal_port, health_path)
        return self._set(await self._t.call(call))

    async def stop(self) -> AsyncService:
        """Stops its process; its URL answers 503 until :meth:`start`."""
        return self._set(await self._t.call(_api.stop_service(self.id)))

    async def start(self) -> AsyncService:
        """Starts a stopped service again."""
        return self._set(await self._t.call(_api.start_service(self.id)))

    async def delete(self) -> None:
        """Stops and deletes it."""
        await self._t.call(_api.delete_service(self.id))


"""Images against the real node and a real registry: pull (with progress), import of a
`docker save` archive, list, get, delete, sandboxes from an image, and the errors."""

from __future__ import annotations

import asyncio
import io
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import ai2in
from ai2in import AsyncClient, AsyncSandbox, Client, Image, PullProgress, Sandbox

from conftest import RssGrowth

BUSYBOX_ENV = {"AI2IN_TEST_IMAGE": "busybox", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 120))


def assert_busybox(image: Image) -> None:
    """What image_fixtures.busybox's config says, as the node reports it."""
    assert image.id.startswith("img_")
    assert image.digest.startswith("sha256:") and image.layers == 1 and image.size_bytes > 0
    assert image.config.env == BUSYBOX_ENV
    assert image.config.workdir == "/work" and image.config.user is None
    assert image.config.entrypoint == [] and image.config.cmd == ["/bin/sh"]
    assert image.config.exposed_ports == [8080]
    assert image.last_used_at >= image.created_at


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with Client() as c:
        yield c


def test_pull_reports_progress_then_the_image(client: Client, registry: Any) -> None:
    ref = registry.refs["busybox"]
    seen: list[PullProgress] = []
    image = client.images.pull(ref, on_progress=seen.append)
    assert_busybox(image)
    assert image.ref == ref and image.source == "pull"
    assert image.digest == registry.digests["busybox"]
    assert seen and all(isinstance(p, PullProgress) for p in seen)
    for p in seen:
        assert p.layer.startswith("sha256:") and 0 <= p.done_bytes <= p.total_bytes
    assert seen[-1].done_bytes == seen[-1].total_bytes > 0

    # Pulled again: the same image, found (with and without progress).
    assert client.images.pull(ref).id == image.id
    assert client.images.pull(ref, on_progress=lambda p: None).id == image.id


def test_list_get_delete(client: Client, registry: Any) -> None:
    ref = registry.refs["busybox-docker"]
    image = client.images.pull(ref)
    assert_busybox(image)
    assert image.digest == registry.digests["busybox-docker"]
    assert image.id in [i.id for i in client.images.list()]
    # By id, by reference (its '/' and ':' percent-encoded), by the object.
    for key in (image.id, ref, image):
        got = client.images.get(key)
        assert (got.id, got.ref, got.digest, got.config) == (
            image.id, image.ref, image.digest, image.config
        )
    client.images.delete(ref)
    assert image.id not in [i.id for i in client.images.list()]
    with pytest.raises(ai2in.NotFoundError):
        client.images.get(image.id)
    with pytest.raises(ai2in.NotFoundError):
        client.images.delete(image.id)


def test_sandbox_from_a_pulled_image(client: Client, registry: Any, sbx: Sandbox) -> None:
    image = client.images.pull(registry.refs["busybox"])
    with Sandbox.create(image) as box:
        assert box.commands.run("cat /etc/ai2in-test-image").stdout == "busybox\n"
        assert box.commands.run("pwd; echo $AI2IN_TEST_IMAGE").stdout == "/work\nbusybox\n"
        info = box.info()
        assert info.image_digest == image.digest
        # In use: 409, as a ConflictError (not a paused sandbox).
        with pytest.raises(ai2in.ConflictError) as e:
            client.images.delete(image)
        assert e.value.status == 409 and box.id in e.value.message
        assert not isinstance(e.value, ai2in.SandboxPausedError)
    with Sandbox.create(image.id) as box:  # by id; a reference works as well
        assert box.commands.run("cat /etc/ai2in-test-image").stdout == "busybox\n"
    assert sbx.info().image_digest is None  # the host image has no digest
    client.images.delete(image)  # no sandbox uses it any more
    with pytest.raises(ai2in.NotFoundError):
        client.images.get(image.id)


def test_import_a_docker_save_archive(client: Client, docker_archive: Path) -> None:
    image = client.images.import_(docker_archive, ref="app:1")  # a path
    assert_busybox(image)
    assert image.ref == "docker.io/library/app:1" and image.source == "import"
    assert client.images.get("app:1").id == image.id
    with Sandbox.create("app:1") as box:
        assert box.commands.run("cat /etc/ai2in-test-image").stdout == "busybox\n"

    # The same archive as a file object, as bytes and as chunks: the same image again.
    with open(docker_archive, "rb") as f:
        assert client.images.import_(f, ref="app:1").id == image.id
    data = docker_archive.read_bytes()
    assert client.images.import_(data).ref == "docker.io/library/app:1"  # the archive's name
    chunks = (data[i:i + 65536] for i in range(0, len(data), 65536))
    assert client.images.import_(chunks, ref="app:1").id == image.id
    # A seekable stream (its length is known) and a pipe (sent chunked).
    assert client.images.import_(io.BufferedReader(io.BytesIO(data)), "app:1").id == image.id
    r, w = os.pipe()

    def feed() -> None:
        with os.fdopen(w, "wb") as pipe:
            pipe.write(data)

    writer = threading.Thread(target=feed)
    writer.start()
    with os.fdopen(r, "rb") as pipe:
        assert client.images.import_(pipe, "app:1").id == image.id
    writer.join()
    client.images.delete(image)


def test_a_large_archive_is_streamed_not_held_in_memory(
    client: Client, tmp_path: Path, rss_growth: RssGrowth
) -> None:
    size = 512 * 1024 * 1024
    path = tmp_path / "big.tar"
    with open(path, "wb") as f:
        f.truncate(size)  # sparse zeros: not an archive, so the node answers 400
    with rss_growth() as grown:
        with pytest.raises(ai2in.BadRequestError):
            client.images.import_(path, ref="big:1")
    assert grown[0] < size // 4, f"RSS grew by {grown[0] >> 20} MiB"

    async def main() -> None:
        async with AsyncClient() as ac:
            with open(path, "rb") as f:
                with pytest.raises(ai2in.BadRequestError):
                    await ac.images.import_(f, ref="big:1")

    with rss_growth() as grown:
        run(main)
    assert grown[0] < size // 4, f"RSS grew by {grown[0] >> 20} MiB"


def test_errors(client: Client, registry: Any, docker_archive: Path) -> None:
    for on_progress in (None, lambda p: None):  # the JSON answer and the event stream
        with pytest.raises(ai2in.BadRequestError, match="invalid image reference"):
            client.images.pull("Not A Ref!", on_progress=on_progress)
        with pytest.raises(ai2in.NotFoundError, match="not found") as e:
            client.images.pull(f"{registry.host}/nowhere:1", on_progress=on_progress)
        assert e.value.status == 404
        with pytest.raises(ai2in.UpstreamError) as up:  # nothing listens on port 1
            client.images.pull("127.0.0.1:1/nothing:1", on_progress=on_progress)
        assert up.value.status == 502 and "127.0.0.1:1" in up.value.message
    with pytest.raises(ai2in.NotFoundError):
        client.images.get("img_nothing")
    with pytest.raises(ai2in.NotFoundError):
        client.images.get(f"{registry.host}/never-pulled:1")
    with pytest.raises(ai2in.NotFoundError):
        Sandbox.create("img_nothing")
    with pytest.raises(ai2in.BadRequestError, match="tar"):
        client.images.import_(b"not a tar archive", ref="junk:1")
    with pytest.raises(TypeError, match="binary mode"):
        with open(docker_archive) as text:  # text mode
            client.images.import_(text)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        client.images.import_(42)  # type: ignore[arg-type]


def test_read_only_key_cannot_pull(registry: Any, read_only_key: str) -> None:
    with Client(api_key=read_only_key) as ro:
        with pytest.raises(ai2in.PermissionDeniedError):
            ro.images.pull(registry.refs["busybox"])
        with pytest.raises(ai2in.PermissionDeniedError):
            ro.images.pull(registry.refs["busybox"], on_progress=lambda p: None)


def test_async_images(registry: Any, docker_archive: Path) -> None:
    async def main() -> None:
        async with AsyncClient() as client:
            seen: list[PullProgress] = []

            async def on_progress(p: PullProgress) -> None:  # coroutine callbacks are awaited
                await asyncio.sleep(0)
                seen.append(p)

            image = await client.images.pull(registry.refs["busybox-docker"], on_progress)
            assert_busybox(image)
            assert seen and seen[-1].done_bytes == seen[-1].total_bytes
            assert (await client.images.pull(image.ref)).id == image.id
            assert image.id in [i.id for i in await client.images.list()]
            got = await client.images.get(image.ref)
            assert (got.id, got.ref, got.digest) == (image.id, image.ref, image.digest)
            async with AsyncSandbox.create(image) as box:
                out = await box.commands.run("cat /etc/ai2in-test-image")
                assert out.stdout == "busybox\n"
                assert (await box.info()).image_digest == image.digest
                with pytest.raises(ai2in.ConflictError):
                    await client.images.delete(image)
            await client.images.delete(image)
            with pytest.raises(ai2in.NotFoundError):
                await client.images.get(image.id)

            data = docker_archive.read_bytes()

            async def chunks() -> AsyncIterator[bytes]:
                for i in range(0, len(data), 100_000):
                    await asyncio.sleep(0)
                    yield data[i:i + 100_000]

            imported = await client.images.import_(chunks(), ref="async-app:1")
            assert imported.ref == "docker.io/library/async-app:1" and imported.source == "import"
            assert (await client.images.import_(docker_archive, "async-app:1")).id == imported.id
            with open(docker_archive, "rb") as f:
                assert (await client.images.import_(f, "async-app:1")).id == imported.id
            assert (await client.images.import_(data, "async-app:1")).id == imported.id
            with pytest.raises(ai2in.BadRequestError):
                await client.images.pull("Not A Ref!", on_progress=on_progress)
            with pytest.raises(ai2in.NotFoundError):
                await client.images.pull(f"{registry.host}/nowhere:1")
            await client.images.delete(imported)

    run(main)

"""Volumes and snapshots against the real node: create, list, get, delete; mounts read-write
and read-only at sandbox creation; the data outliving its sandbox; the conflicts (delete while
attached, a second writer, a name taken); scopes; snapshots of a sandbox's files as images;
and the async client."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

import ai2in
from ai2in import (
    AlreadyExistsError,
    AsyncClient,
    AsyncSandbox,
    Client,
    ConflictError,
    Sandbox,
    Volume,
    VolumeMount,
)

MiB = 1 << 20


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 120))


def unique(prefix: str) -> str:
    """A volume name (or image reference) no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with Client() as c:
        yield c


@pytest.fixture
def volume(client: Client) -> Iterator[Volume]:
    """A fresh 32 MiB volume, deleted after the test (if the test did not)."""
    vol = client.volumes.create(32 * MiB, name=unique("sdk-py"))
    yield vol
    try:
        client.volumes.delete(vol)
    except ai2in.NotFoundError:
        pass


def test_create_list_get_delete(client: Client) -> None:
    name = unique("sdk-py-crud")
    before = dt.datetime.now(dt.timezone.utc)
    vol = client.volumes.create(16 * MiB, name=name)
    assert vol.id.startswith("vol_") and vol.name == name
    assert vol.size_bytes == 16 * MiB and 0 <= vol.used_bytes < vol.size_bytes
    assert vol.attached_to == []
    assert before - dt.timedelta(seconds=5) <= vol.created_at <= before + dt.timedelta(minutes=1)

    unnamed = client.volumes.create(16 * MiB)  # its name is its id
    assert unnamed.name == unnamed.id and unnamed.id != vol.id

    ids = [v.id for v in client.volumes.list()]
    assert ids.index(vol.id) < ids.index(unnamed.id)  # oldest first
    for key in (vol.id, name, vol):  # by id, by name, by the object
        got = client.volumes.get(key)
        assert (got.id, got.name, got.size_bytes, got.created_at, got.attached_to) == (
            vol.id, name, vol.size_bytes, vol.created_at, []
        )

    client.volumes.delete(name)
    client.volumes.delete(unnamed)
    ids = [v.id for v in client.volumes.list()]
    assert vol.id not in ids and unnamed.id not in ids
    with pytest.raises(ai2in.NotFoundError):
        client.volumes.get(vol.id)
    with pytest.raises(ai2in.NotFoundError):
        client.volumes.get(name)
    with pytest.raises(ai2in.NotFoundError):
        client.volumes.delete(vol)


def test_a_taken_name_is_already_exists(client: Client, volume: Volume) -> None:
    with pytest.raises(AlreadyExistsError) as e:
        client.volumes.create(16 * MiB, name=volume.name)
    assert isinstance(e.value, ConflictError) and not isinstance(e.value, ai2in.SandboxPausedError)
    assert e.value.status == 409 and e.value.body.get("code") == "already_exists"
    assert [v.id for v in client.volumes.list() if v.name == volume.name] == [volume.id]


def test_invalid_volumes_and_mounts(client: Client, volume: Volume) -> None:
    with pytest.raises(ai2in.BadRequestError):
        client.volumes.create(1 * MiB)  # under the 16 MiB minimum
    with pytest.raises(ai2in.BadRequestError):
        client.volumes.create(16 * MiB, name="Not a name!")
    with pytest.raises(ai2in.NotFoundError):
        Sandbox.create(volumes=[{"volume_id": "vol_nothing", "path": "/data"}])
    for path in ("data", "/", "/proc/x", "/data/../etc", "/data/"):
        with pytest.raises(ai2in.BadRequestError):
            Sandbox.create(volumes=[volume.mount(path)])
    with pytest.raises(ai2in.BadRequestError):  # the same volume twice
        Sandbox.create(volumes=[volume.mount("/a"), volume.mount("/b", read_only=True)])
    with pytest.raises(TypeError, match="volume mount"):
        Sandbox.create(volumes=[volume])  # type: ignore[list-item]
    assert client.volumes.get(volume).attached_to == []  # nothing was left mounting it


def test_data_outlives_its_sandbox_and_mounts_read_only(client: Client, volume: Volume) -> None:
    with Sandbox.create(volumes=[volume.mount("/data")]) as a:
        assert a.info().volumes == [VolumeMount(volume.id, "/data", read_only=False)]
        assert client.volumes.get(volume.id).attached_to == [a.id]
        # Owned by the sandbox's root, and not mounted on the host.
        assert a.commands.run("stat -c '%u %g %a' /data").stdout == "0 0 755\n"
        with open("/proc/mounts") as mounts:
            assert volume.id not in mounts.read()
        # Its root belongs to root: the default user of files.write may not write there.
        with pytest.raises(ai2in.PermissionDeniedError):
            a.files.write("/data/hello.txt", "written by A")
        assert a.commands.run("printf 'written by A' > /data/hello.txt").exit_code == 0
        r = a.commands.run("dd if=/dev/zero of=/data/blob bs=1M count=4 status=none && sync")
        assert r.exit_code == 0, r.stderr
        # Past its size, a write fails inside with ENOSPC.
        full = a.commands.run("dd if=/dev/zero of=/data/huge bs=1M count=64 status=none")
        assert full.exit_code != 0 and "No space left on device" in full.stderr
        assert a.commands.run("rm /data/huge").exit_code == 0

        # Attached: it cannot be deleted, nor mounted read-write by another sandbox.
        with pytest.raises(ConflictError) as e:
            client.volumes.delete(volume)
        assert e.value.status == 409 and a.id in e.value.message
        assert e.value.body.get("code") == "in_use"
        assert not isinstance(e.value, (AlreadyExistsError, ai2in.SandboxPausedError))
        with pytest.raises(ConflictError) as e:
            Sandbox.create(volumes=[{"volume_id": volume.name, "path": "/data"}])
        assert a.id in e.value.message

    after = client.volumes.get(volume)
    assert after.attached_to == [] and after.used_bytes >= 4 * MiB

    # Read-only in B (by name, as a dict): the file is there, and writes are refused.
    mount: ai2in.VolumeMountDict = {"volume_id": volume.name, "path": "/mnt/in", "read_only": True}
    with Sandbox.create(volumes=[mount]) as b:
        assert b.info().volumes == [VolumeMount(volume.id, "/mnt/in", read_only=True)]
        assert b.files.read("/mnt/in/hello.txt") == "written by A"
        w = b.commands.run("echo more >> /mnt/in/hello.txt")
        assert w.exit_code != 0 and "Read-only file system" in w.stderr
        assert b.files.read("/mnt/in/hello.txt") == "written by A"
        # Read-only mounts are unlimited, and one read-write mount may join them.
        with Sandbox.create(volumes=[volume.mount("/ro", read_only=True)]) as c, \
                Sandbox.create(volumes=[volume.mount("/rw")]) as d:
            assert c.files.read("/ro/hello.txt") == "written by A"
            assert d.commands.run("echo D > /rw/d.txt").exit_code == 0
            assert sorted(client.volumes.get(volume).attached_to) == sorted([b.id, c.id, d.id])
            with pytest.raises(ConflictError):
                client.volumes.delete(volume)
    assert client.volumes.get(volume).attached_to == []
    client.volumes.delete(volume)  # free now
    with pytest.raises(ai2in.NotFoundError):
        client.volumes.get(volume.id)


def test_scopes(client: Client, read_only_key: str) -> None:
    vol = client.volumes.create(16 * MiB, name=unique("sdk-py-scopes"))
    reader = client.keys.create("volumes-reader", ["sandboxes:write", "volumes:read"])
    try:
        with Client(api_key=read_only_key) as none:  # sandboxes:read only
            with pytest.raises(ai2in.PermissionDeniedError):
                none.volumes.list()
        with Client(api_key=reader.key) as ro:
            assert vol.id in [v.id for v in ro.volumes.list()]
            assert ro.volumes.get(vol.name).id == vol.id
            with pytest.raises(ai2in.PermissionDeniedError):
                ro.volumes.create(16 * MiB)
            with pytest.raises(ai2in.PermissionDeniedError):
                ro.volumes.delete(vol)
            with pytest.raises(ai2in.PermissionDeniedError):
                Sandbox.create(volumes=[vol.mount("/data")], api_key=reader.key)
            with Sandbox.create(
                volumes=[vol.mount("/data", read_only=True)], api_key=reader.key
            ) as sbx:
                assert sbx.commands.run("test -d /data").exit_code == 0
        # Another tenant does not see it.
        other = client.keys.create("other-volumes", ["admin"], tenant="volumes-other")
        with Client(api_key=other.key) as stranger:
            try:
                assert vol.id not in [v.id for v in stranger.volumes.list()]
                with pytest.raises(ai2in.NotFoundError):
                    stranger.volumes.get(vol.id)
                with pytest.raises(ai2in.NotFoundError):
                    Sandbox.create(volumes=[vol.mount("/data")], api_key=other.key)
            finally:
                stranger.keys.revoke(other.id)
    finally:
        client.keys.revoke(reader.id)
        client.volumes.delete(vol)


def test_snapshot_forks_the_sandbox_files(client: Client, volume: Volume) -> None:
    with Sandbox.create(volumes=[volume.mount("/data")]) as sbx:
        sbx.files.write("/home/user/state.txt", "before the snapshot")
        sbx.commands.run("echo not in the image > /data/on-the-volume.txt")
        r = sbx.commands.run(
            "mkdir -p /opt/app && echo hi > /opt/app/x && chmod 640 /opt/app/x"
            " && chown 1000:1000 /opt/app/x && ln -s x /opt/app/link"
            " && echo gone > /opt/app/deleted && rm /opt/app/deleted"
        )
        assert r.exit_code == 0, r.stderr
        job = sbx.commands.run("sleep 300", background=True)
        image = sbx.snapshot()
        assert image.id.startswith("img_") and image.source == "snapshot"
        assert image.ref.startswith(f"localhost/snapshots/{sbx.id}:")
        # The sandbox keeps running, its processes too.
        assert sbx.info().status == "running" and job.logs().running
        sbx.files.write("/home/user/state.txt", "after the snapshot")

        ref = unique("sdk-py-fork") + ":1"
        named = sbx.snapshot(ref)
        assert named.source == "snapshot" and named.id != image.id
        assert client.images.get(ref).id == named.id

    assert image.id in [i.id for i in client.images.list()]
    with Sandbox.create(image) as fork:
        assert fork.files.read("/home/user/state.txt") == "before the snapshot"
        out = fork.commands.run(
            "stat -c '%a %u %g' /opt/app/x; readlink /opt/app/link; cat /opt/app/x;"
            " test -e /opt/app/deleted || echo deleted; test -e /data/on-the-volume.txt || echo no"
        )
        assert out.stdout == "640 1000 1000\nx\nhi\ndeleted\nno\n", out.stderr
        # In use by the fork: the image cannot be deleted.
        with pytest.raises(ConflictError):
            client.images.delete(image)
    with Sandbox.create(ref) as fork:
        assert fork.files.read("/home/user/state.txt") == "after the snapshot"
    client.images.delete(image)
    client.images.delete(named)
    with pytest.raises(ai2in.NotFoundError):
        client.images.get(image.id)


def test_snapshot_of_a_sandbox_from_an_image(client: Client, registry: Any) -> None:
    base = client.images.pull(registry.refs["busybox"])
    with Sandbox.create(base) as sbx:
        r = sbx.commands.run("rm /etc/ai2in-test-image && echo made > /work/made.txt")
        assert r.exit_code == 0, r.stderr
        image = sbx.snapshot()
    assert image.source == "snapshot" and image.config.workdir == base.config.workdir
    with Sandbox.create(image) as fork:
        out = fork.commands.run("cat made.txt; test -e /etc/ai2in-test-image || echo deleted")
        assert out.stdout == "made\ndeleted\n", out.stderr
    client.images.delete(image)


def test_async_volumes_and_snapshot() -> None:
    async def main() -> None:
        async with AsyncClient() as client:
            vol = await client.volumes.create(16 * MiB, name=unique("sdk-py-async"))
            assert vol.size_bytes == 16 * MiB and vol.attached_to == []
            assert vol.id in [v.id for v in await client.volumes.list()]
            assert (await client.volumes.get(vol.name)).id == vol.id
            with pytest.raises(AlreadyExistsError):
                await client.volumes.create(16 * MiB, name=vol.name)

            async with AsyncSandbox.create(volumes=[vol.mount("/data")]) as sbx:
                assert (await sbx.info()).volumes == [VolumeMount(vol.id, "/data")]
                await sbx.commands.run("printf async > /data/a.txt")
                await sbx.files.write("/home/user/b.txt", "snapshotted")
                with pytest.raises(ConflictError):
                    await client.volumes.delete(vol)
                image = await sbx.snapshot()
                assert image.source == "snapshot"
            mount: ai2in.VolumeMountDict = {"volume_id": vol.id, "path": "/d", "read_only": True}
            async with AsyncSandbox.create(image, volumes=[mount]) as fork:
                assert await fork.files.read("/d/a.txt") == "async"
                assert await fork.files.read("/home/user/b.txt") == "snapshotted"

            await client.volumes.delete(vol)
            assert vol.id not in [v.id for v in await client.volumes.list()]
            with pytest.raises(ai2in.NotFoundError):
                await client.volumes.get(vol.id)
            await client.images.delete(image)

    run(main)

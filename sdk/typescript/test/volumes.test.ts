/**
 * Volumes and snapshots against the node: create, list, get, delete; mounts read-write and
 * read-only at sandbox creation; data that outlives its sandbox; the conflicts (delete while
 * attached, a second writer, a taken name); and snapshots of a sandbox's files as images.
 */

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, describe, test } from "node:test";

import {
  Ai2in,
  AlreadyExistsError,
  BadRequestError,
  ConflictError,
  NotFoundError,
  PermissionDeniedError,
  Sandbox,
  SandboxPausedError,
  type Image,
  type Volume,
} from "@ai2in/sdk";

const MiB = 2 ** 20;

/** A volume name (or image reference) no other test uses. */
function unique(prefix: string): string {
  return `${prefix}-${randomUUID().slice(0, 10)}`;
}

describe("volumes", () => {
  const ai2in = new Ai2in();
  const made: Volume[] = [];

  /** A new volume, deleted after the suite if a test did not. */
  async function newVolume(sizeBytes = 32 * MiB): Promise<Volume> {
    const volume = await ai2in.volumes.create({ sizeBytes, name: unique("sdk-ts") });
    made.push(volume);
    return volume;
  }

  after(async () => {
    for (const volume of made) await ai2in.volumes.delete(volume).catch(() => {});
  });

  test("create, list, get (by id, name or object) and delete", async () => {
    const name = unique("sdk-ts-crud");
    const before = Date.now();
    const volume = await ai2in.volumes.create({ sizeBytes: 16 * MiB, name });
    assert.match(volume.id, /^vol_[0-9a-z]+$/);
    assert.equal(volume.name, name);
    assert.equal(volume.sizeBytes, 16 * MiB);
    assert.ok(volume.usedBytes >= 0 && volume.usedBytes < volume.sizeBytes, String(volume.usedBytes));
    assert.deepEqual(volume.attachedTo, []);
    assert.ok(volume.createdAt instanceof Date);
    assert.ok(Math.abs(volume.createdAt.getTime() - before) < 60_000, volume.createdAt.toISOString());

    const unnamed = await ai2in.volumes.create({ sizeBytes: 16 * MiB }); // its name is its id
    assert.equal(unnamed.name, unnamed.id);

    const ids = (await ai2in.volumes.list()).map((v) => v.id);
    assert.ok(ids.includes(volume.id) && ids.indexOf(volume.id) < ids.indexOf(unnamed.id), "oldest first");
    for (const key of [volume.id, name, volume]) {
      const { usedBytes: _, ...got } = await ai2in.volumes.get(key);
      const { usedBytes: __, ...want } = volume;
      assert.deepEqual(got, want);
    }

    await ai2in.volumes.delete(name);
    await ai2in.volumes.delete(unnamed);
    const left = (await ai2in.volumes.list()).map((v) => v.id);
    assert.ok(!left.includes(volume.id) && !left.includes(unnamed.id));
    await assert.rejects(ai2in.volumes.get(volume.id), NotFoundError);
    await assert.rejects(ai2in.volumes.get(name), NotFoundError);
    await assert.rejects(ai2in.volumes.delete(volume), NotFoundError);
  });

  test("a taken name is AlreadyExistsError, a ConflictError", async () => {
    const volume = await newVolume(16 * MiB);
    await assert.rejects(ai2in.volumes.create({ sizeBytes: 16 * MiB, name: volume.name }), (e: unknown) => {
      assert.ok(e instanceof AlreadyExistsError && e instanceof ConflictError, String(e));
      assert.ok(!(e instanceof SandboxPausedError));
      assert.equal(e.status, 409);
      assert.equal(e.code, "already_exists");
      return true;
    });
    assert.deepEqual(
      (await ai2in.volumes.list()).filter((v) => v.name === volume.name).map((v) => v.id),
      [volume.id],
    );
  });

  test("invalid volumes and mounts are refused", async () => {
    const volume = await newVolume(16 * MiB);
    await assert.rejects(ai2in.volumes.create({ sizeBytes: MiB }), BadRequestError); // under 16 MiB
    await assert.rejects(ai2in.volumes.create({ sizeBytes: 16 * MiB, name: "Not a name!" }), BadRequestError);
    await assert.rejects(Sandbox.create({ volumes: [{ volumeId: "vol_nothing", path: "/data" }] }), NotFoundError);
    for (const path of ["data", "/", "/proc/x", "/data/../etc", "/data/"]) {
      await assert.rejects(Sandbox.create({ volumes: [{ volumeId: volume.id, path }] }), BadRequestError, path);
    }
    const twice = [
      { volumeId: volume.id, path: "/a" },
      { volumeId: volume.name, path: "/b", readOnly: true },
    ];
    await assert.rejects(Sandbox.create({ volumes: twice }), BadRequestError);
    await assert.rejects(Sandbox.create({ volumes: [volume as unknown as { volumeId: string; path: string }] }), TypeError);
    assert.deepEqual((await ai2in.volumes.get(volume)).attachedTo, []);
  });

  test("data outlives its sandbox; read-only mounts refuse writes; attached volumes cannot be deleted", async () => {
    const volume = await newVolume(32 * MiB);
    const a = await Sandbox.create({ volumes: [{ volumeId: volume.id, path: "/data" }] });
    try {
      assert.deepEqual((await a.info()).volumes, [{ volumeId: volume.id, path: "/data", readOnly: false }]);
      assert.deepEqual((await ai2in.volumes.get(volume)).attachedTo, [a.id]);
      assert.equal((await a.commands.run("stat -c '%u %g %a' /data")).stdout, "0 0 755\n");
      await a.files.write("/data/hello.txt", "written by A", { user: "root" }); // its root owns it
      const full = await a.commands.run("dd if=/dev/zero of=/data/huge bs=1M count=64 status=none");
      assert.ok(full.exitCode !== 0 && full.stderr.includes("No space left on device"), full.stderr);
      await a.commands.run("rm -f /data/huge");

      await assert.rejects(ai2in.volumes.delete(volume), (e: unknown) => {
        assert.ok(e instanceof ConflictError && !(e instanceof AlreadyExistsError), String(e));
        assert.equal(e.status, 409);
        assert.equal(e.code, "in_use");
        assert.match(e.message, new RegExp(a.id));
        return true;
      });
      // A second read-write mount is refused, naming the sandbox that has it.
      await assert.rejects(Sandbox.create({ volumes: [{ volumeId: volume.name, path: "/data" }] }), (e: unknown) => {
        assert.ok(e instanceof ConflictError, String(e));
        assert.match(e.message, new RegExp(a.id));
        return true;
      });
    } finally {
      await a.kill();
    }
    assert.deepEqual((await ai2in.volumes.get(volume)).attachedTo, []);

    // Read-only in B, by name: the file is there, writes fail.
    {
      await using b = await Sandbox.create({ volumes: [{ volumeId: volume.name, path: "/mnt/in", readOnly: true }] });
      assert.deepEqual((await b.info()).volumes, [{ volumeId: volume.id, path: "/mnt/in", readOnly: true }]);
      assert.equal(await b.files.read("/mnt/in/hello.txt"), "written by A");
      const w = await b.commands.run("echo more >> /mnt/in/hello.txt");
      assert.ok(w.exitCode !== 0 && w.stderr.includes("Read-only file system"), w.stderr);
      assert.equal(await b.files.read("/mnt/in/hello.txt"), "written by A");
      // Any number of readers, and one writer beside them.
      await using c = await Sandbox.create({ volumes: [{ volumeId: volume.id, path: "/ro", readOnly: true }] });
      await using d = await Sandbox.create({ volumes: [{ volumeId: volume.id, path: "/rw" }] });
      assert.equal(await c.files.read("/ro/hello.txt"), "written by A");
      assert.equal((await d.commands.run("echo D > /rw/d.txt")).exitCode, 0);
      assert.deepEqual((await ai2in.volumes.get(volume)).attachedTo.sort(), [b.id, c.id, d.id].sort());
      await assert.rejects(ai2in.volumes.delete(volume), ConflictError);
    }
    assert.deepEqual((await ai2in.volumes.get(volume)).attachedTo, []);
    await ai2in.volumes.delete(volume);
    await assert.rejects(ai2in.volumes.get(volume.id), NotFoundError);
  });

  test("scopes: volumes:read mounts read-only only, volumes:write creates", async () => {
    const volume = await newVolume(16 * MiB);
    const reader = await ai2in.keys.create({ name: "volumes-reader", scopes: ["sandboxes:write", "volumes:read"] });
    try {
      const ro = new Ai2in({ apiKey: reader.key });
      assert.ok((await ro.volumes.list()).some((v) => v.id === volume.id));
      assert.equal((await ro.volumes.get(volume.name)).id, volume.id);
      await assert.rejects(ro.volumes.create({ sizeBytes: 16 * MiB }), PermissionDeniedError);
      await assert.rejects(ro.volumes.delete(volume), PermissionDeniedError);
      const mount = { volumeId: volume.id, path: "/data" };
      await assert.rejects(Sandbox.create({ apiKey: reader.key, volumes: [mount] }), PermissionDeniedError);
      await using sbx = await Sandbox.create({ apiKey: reader.key, volumes: [{ ...mount, readOnly: true }] });
      assert.equal((await sbx.commands.run("test -d /data")).exitCode, 0);
    } finally {
      await ai2in.keys.revoke(reader.id);
    }
  });

  test("snapshot: an image of the sandbox's files, which keeps running", async () => {
    const volume = await newVolume(16 * MiB);
    const sbx = await Sandbox.create({ volumes: [{ volumeId: volume.id, path: "/data" }] });
    const ref = `${unique("sdk-ts-fork")}:1`;
    let image: Image;
    let named: Image;
    try {
      await sbx.files.write("/home/user/state.txt", "before the snapshot");
      await sbx.commands.run("echo not in the image > /data/on-the-volume.txt");
      const setup = await sbx.commands.run(
        "mkdir -p /opt/app && echo hi > /opt/app/x && chmod 640 /opt/app/x && ln -s x /opt/app/link" +
          " && echo gone > /opt/app/deleted && rm /opt/app/deleted",
      );
      assert.equal(setup.exitCode, 0, setup.stderr);
      const job = await sbx.commands.run("sleep 300", { background: true });
      image = await sbx.snapshot();
      assert.match(image.id, /^img_/);
      assert.equal(image.source, "snapshot");
      assert.ok(image.ref.startsWith(`localhost/snapshots/${sbx.id}:`), image.ref);
      assert.equal((await sbx.info()).status, "running");
      assert.equal((await job.logs()).status, "running");
      await sbx.files.write("/home/user/state.txt", "after the snapshot");
      named = await sbx.snapshot({ ref });
      assert.equal(named.source, "snapshot");
      assert.equal((await ai2in.images.get(ref)).id, named.id);
    } finally {
      await sbx.kill();
    }
    assert.ok((await ai2in.images.list()).some((i) => i.id === image.id));
    {
      await using fork = await Sandbox.create({ image });
      assert.equal(await fork.files.read("/home/user/state.txt"), "before the snapshot");
      const out = await fork.commands.run(
        "stat -c %a /opt/app/x; readlink /opt/app/link; cat /opt/app/x;" +
          " test -e /opt/app/deleted || echo deleted; test -e /data/on-the-volume.txt || echo no",
      );
      assert.equal(out.stdout, "640\nx\nhi\ndeleted\nno\n", out.stderr);
      await assert.rejects(ai2in.images.delete(image), ConflictError); // in use by the fork
    }
    {
      await using fork = await Sandbox.create({ image: ref });
      assert.equal(await fork.files.read("/home/user/state.txt"), "after the snapshot");
    }
    await ai2in.images.delete(image);
    await ai2in.images.delete(named);
    await assert.rejects(ai2in.images.get(image.id), NotFoundError);
  });
});

/**
 * Images against the node and a real registry (see registry.ts): pull with progress, list,
 * get, delete, import of a `docker save` archive in every form, sandboxes from an image, and
 * the errors.
 */

import assert from "node:assert/strict";
import { closeSync, createReadStream, mkdtempSync, openAsBlob, openSync, readFileSync, rmSync, ftruncateSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import type { ReadableStream as NodeReadableStream } from "node:stream/web";
import { after, before, describe, test } from "node:test";

import {
  Ai2in,
  BadRequestError,
  ConflictError,
  type Image,
  NotFoundError,
  PermissionDeniedError,
  type PullProgress,
  Sandbox,
  SandboxPausedError,
  UpstreamError,
} from "@ai2in/sdk";

import { startRegistry, type TestRegistry } from "./registry.js";

const BUSYBOX_ENV = { AI2IN_TEST_IMAGE: "busybox", PATH: "/usr/sbin:/usr/bin:/sbin:/bin" };

/** What image_fixtures.busybox's config says, as the node reports it. */
function assertBusybox(image: Image): void {
  assert.match(image.id, /^img_[0-9a-z]+$/);
  assert.match(image.digest, /^sha256:[0-9a-f]{64}$/);
  assert.equal(image.layers, 1);
  assert.ok(image.sizeBytes > 0);
  assert.ok(image.createdAt instanceof Date && image.lastUsedAt >= image.createdAt);
  assert.deepEqual(image.config, {
    env: BUSYBOX_ENV,
    workdir: "/work",
    user: null,
    entrypoint: [],
    cmd: ["/bin/sh"],
    exposedPorts: [8080],
  });
}

async function cat(sbx: Sandbox): Promise<string> {
  return (await sbx.commands.run("cat /etc/ai2in-test-image")).stdout;
}

describe("images", () => {
  let registry: TestRegistry;
  const ai2in = new Ai2in();

  before(async () => {
    registry = await startRegistry();
  });
  after(() => registry?.stop());

  test("pull reports progress, then gives the image", async () => {
    const ref = registry.refs.busybox!;
    const seen: PullProgress[] = [];
    const onProgress = async (p: PullProgress) => {
      await new Promise((ok) => setTimeout(ok, 1)); // a promise is awaited before the next event
      seen.push(p);
    };
    const image = await ai2in.images.pull(ref, { onProgress });
    assertBusybox(image);
    assert.equal(image.ref, ref);
    assert.equal(image.source, "pull");
    assert.equal(image.digest, registry.digests.busybox);
    assert.ok(seen.length > 0);
    for (const p of seen) {
      assert.match(p.layer, /^sha256:/);
      assert.ok(p.doneBytes >= 0 && p.doneBytes <= p.totalBytes, JSON.stringify(p));
    }
    const last = seen.at(-1)!;
    assert.ok(last.totalBytes > 0 && last.doneBytes === last.totalBytes);

    // Again: the same image, found, with or without progress.
    assert.equal((await ai2in.images.pull(ref)).id, image.id);
    assert.equal((await ai2in.images.pull(ref, { onProgress: () => {} })).id, image.id);
  });

  test("list, get (by id, reference or object) and delete", async () => {
    const ref = registry.refs["busybox-docker"]!;
    const image = await ai2in.images.pull(ref);
    assertBusybox(image);
    assert.equal(image.digest, registry.digests["busybox-docker"]);
    assert.ok((await ai2in.images.list()).some((i) => i.id === image.id));
    // By id, by reference (its '/' and ':' percent-encoded), by the object.
    for (const key of [image.id, ref, image]) {
      const { lastUsedAt: _, ...got } = await ai2in.images.get(key);
      const { lastUsedAt: __, ...want } = image;
      assert.deepEqual(got, want);
    }
    await ai2in.images.delete(ref);
    assert.ok(!(await ai2in.images.list()).some((i) => i.id === image.id));
    await assert.rejects(ai2in.images.get(image.id), NotFoundError);
    await assert.rejects(ai2in.images.delete(image), NotFoundError);
  });

  test("sandboxes start from a pulled image, which cannot be deleted while in use", async () => {
    const image = await ai2in.images.pull(registry.refs.busybox!);
    const sbx = await Sandbox.create({ image });
    try {
      assert.equal(await cat(sbx), "busybox\n");
      assert.equal((await sbx.commands.run("pwd; echo $AI2IN_TEST_IMAGE")).stdout, "/work\nbusybox\n");
      assert.equal((await sbx.info()).imageDigest, image.digest);
      await assert.rejects(ai2in.images.delete(image), (e: unknown) => {
        assert.ok(e instanceof ConflictError && !(e instanceof SandboxPausedError), String(e));
        assert.equal(e.status, 409);
        assert.match(e.message, new RegExp(sbx.id));
        return true;
      });
    } finally {
      await sbx.kill();
    }
    await using byId = await Sandbox.create({ image: image.id });
    assert.equal(await cat(byId), "busybox\n");
    await byId.kill();
    await using host = await Sandbox.create();
    assert.equal((await host.info()).imageDigest, null);

    await ai2in.images.delete(image); // nothing uses it now
    await assert.rejects(ai2in.images.get(image.id), NotFoundError);
  });

  test("import takes a docker save archive as a path, Blob, bytes or stream", async () => {
    const image = await ai2in.images.import(registry.archive, { ref: "app:1" });
    assertBusybox(image);
    assert.equal(image.ref, "docker.io/library/app:1");
    assert.equal(image.source, "import");
    assert.equal((await ai2in.images.get("app:1")).id, image.id);
    {
      await using sbx = await Sandbox.create({ image: "app:1" });
      assert.equal(await cat(sbx), "busybox\n");
    }
    const bytes = readFileSync(registry.archive);
    const sources = {
      blob: await openAsBlob(registry.archive),
      bytes: new Uint8Array(bytes),
      arrayBuffer: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength),
      webStream: Readable.toWeb(createReadStream(registry.archive)) as NodeReadableStream<Uint8Array> as ReadableStream<Uint8Array>,
      nodeStream: createReadStream(registry.archive),
      asyncIterable: (async function* () {
        for (let i = 0; i < bytes.length; i += 100_000) yield bytes.subarray(i, i + 100_000);
      })(),
    };
    for (const [kind, source] of Object.entries(sources)) {
      assert.equal((await ai2in.images.import(source, { ref: "app:1" })).id, image.id, kind);
    }
    // Without a ref, the archive's own name.
    assert.equal((await ai2in.images.import(bytes)).ref, "docker.io/library/app:1");
    await ai2in.images.delete(image);
  });

  test("a large archive is streamed, not held in memory", async () => {
    const size = 512 * 1024 * 1024; // a sparse file of zeros: the node answers 400
    const dir = mkdtempSync(join(tmpdir(), "ai2in-ts-big-"));
    const path = join(dir, "big.tar");
    const fd = openSync(path, "w");
    ftruncateSync(fd, size);
    closeSync(fd);
    try {
      for (const source of [path, createReadStream(path)]) {
        // The most the resident memory grows while the upload runs, sampled.
        const start = process.memoryUsage.rss();
        let grown = 0;
        const sampler = setInterval(() => (grown = Math.max(grown, process.memoryUsage.rss() - start)), 10);
        try {
          await assert.rejects(ai2in.images.import(source, { ref: "big:1" }), BadRequestError);
        } finally {
          clearInterval(sampler);
        }
        grown = Math.max(grown, process.memoryUsage.rss() - start);
        assert.ok(grown < size / 4, `RSS grew by ${Math.round(grown / 2 ** 20)} MiB`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("errors map to their classes", async () => {
    for (const onProgress of [undefined, () => {}]) {
      await assert.rejects(ai2in.images.pull("Not A Ref!", { onProgress }), (e: unknown) => {
        assert.ok(e instanceof BadRequestError && e.status === 400, String(e));
        assert.match(e.message, /invalid image reference/);
        return true;
      });
      await assert.rejects(ai2in.images.pull(`${registry.host}/nowhere:1`, { onProgress }), (e: unknown) => {
        assert.ok(e instanceof NotFoundError && e.status === 404, String(e));
        assert.match(e.message, /not found/);
        return true;
      });
      // Nothing listens on port 1.
      await assert.rejects(ai2in.images.pull("127.0.0.1:1/nothing:1", { onProgress }), (e: unknown) => {
        assert.ok(e instanceof UpstreamError && e.status === 502, String(e));
        assert.match(e.message, /127\.0\.0\.1:1/);
        return true;
      });
    }
    await assert.rejects(ai2in.images.get("img_nothing"), NotFoundError);
    await assert.rejects(ai2in.images.get(`${registry.host}/never-pulled:1`), NotFoundError);
    await assert.rejects(ai2in.images.delete("img_nothing"), NotFoundError);
    await assert.rejects(Sandbox.create({ image: "img_nothing" }), NotFoundError);
    await assert.rejects(ai2in.images.import(new TextEncoder().encode("not a tar"), { ref: "junk:1" }), BadRequestError);
    await assert.rejects(ai2in.images.import(42 as unknown as Uint8Array), TypeError);
  });

  test("a read-only key cannot pull", async () => {
    const { key, id } = await ai2in.keys.create({ name: "images-ro", scopes: ["sandboxes:read"] });
    try {
      const ro = new Ai2in({ apiKey: key });
      await assert.rejects(ro.images.pull(registry.refs.busybox!), PermissionDeniedError);
      await assert.rejects(ro.images.pull(registry.refs.busybox!, { onProgress: () => {} }), PermissionDeniedError);
    } finally {
      await ai2in.keys.revoke(id);
    }
  });

  test("a pull can be aborted", async () => {
    const controller = new AbortController();
    controller.abort(new Error("stop"));
    const call = ai2in.images.pull(registry.refs.busybox!, { signal: controller.signal, onProgress: () => {} });
    await assert.rejects(call, /stop/);
  });
});

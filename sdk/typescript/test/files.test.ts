/** Files: text and bytes, uploads and downloads of any size, listing, errors, watches. */

import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import {
  ApiError,
  BadRequestError,
  InsufficientStorageError,
  NotFoundError,
  PermissionDeniedError,
  Sandbox,
  UnsupportedMediaTypeError,
  type WatchEvent,
} from "@ai2in/sdk";

import { newSandbox, text, until } from "./util.js";

const MiB = 1024 * 1024;

/** The sha256 of `bytes`, hex. */
function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** The sha256 of a file in the sandbox, by its own `sha256sum`. */
async function sha256In(sbx: Sandbox, path: string): Promise<string> {
  return (await sbx.commands.run(`sha256sum '${path}'`)).stdout.split(" ")[0]!;
}

/** Reads `stream` to its end: its size, sha256 and number of chunks. */
async function digest(stream: ReadableStream<Uint8Array>): Promise<{ size: number; sha256: string; chunks: number }> {
  const hash = createHash("sha256");
  let size = 0;
  let chunks = 0;
  const reader = stream.getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return { size, sha256: hash.digest("hex"), chunks };
    hash.update(value);
    size += value.length;
    chunks++;
  }
}

/** `count` random chunks of `size` bytes, made as they are asked for; `hash` sees each. */
async function* randomChunks(count: number, size: number, hash: ReturnType<typeof createHash>): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < count; i++) {
    const chunk = new Uint8Array(randomBytes(size));
    hash.update(chunk);
    yield chunk;
  }
}

describe("files", () => {
  let sbx: Sandbox;
  before(async () => {
    sbx = await newSandbox();
  });
  after(() => sbx?.kill());

  test("text round trip, with parents created", async () => {
    const text = "héllo wörld ✓\nline two\n";
    const written = await sbx.files.write("deep/er/notes.txt", text);
    assert.deepEqual(written, { path: "/home/user/deep/er/notes.txt", sizeBytes: new TextEncoder().encode(text).length });
    assert.equal(await sbx.files.read("/home/user/deep/er/notes.txt"), text);
    assert.equal((await sbx.commands.run("cat deep/er/notes.txt")).stdout, text);
  });

  test("bytes round trip: every byte value, and a larger random file", async () => {
    const every = new Uint8Array(256).map((_, i) => i);
    await sbx.files.write("every.bin", every);
    assert.deepEqual(await sbx.files.readBytes("every.bin"), every);
    const big = new Uint8Array(randomBytes(3 * 1024 * 1024 + 1));
    assert.equal((await sbx.files.write("/tmp/big.bin", big)).sizeBytes, big.length);
    const back = await sbx.files.readBytes("/tmp/big.bin");
    assert.equal(back.length, big.length);
    assert.ok(back.every((b, i) => b === big[i]));
    const sum = (await sbx.commands.run("sha256sum /tmp/big.bin")).stdout.split(" ")[0];
    const { createHash } = await import("node:crypto");
    assert.equal(sum, createHash("sha256").update(big).digest("hex"));
  });

  test("raw bytes round trip: 0 bytes, 1 byte, and 40 MiB (over the old 32 MiB limit)", async () => {
    for (const size of [0, 1]) {
      const bytes = new Uint8Array(randomBytes(size));
      assert.deepEqual(await sbx.files.write(`raw/${size}.bin`, bytes), { path: `/home/user/raw/${size}.bin`, sizeBytes: size });
      assert.deepEqual(await sbx.files.readBytes(`raw/${size}.bin`), bytes);
      assert.equal((await digest(await sbx.files.download(`raw/${size}.bin`))).size, size);
    }
    const big = new Uint8Array(randomBytes(40 * MiB));
    assert.equal((await sbx.files.write("/tmp/40m.bin", big)).sizeBytes, big.length);
    assert.equal(await sha256In(sbx, "/tmp/40m.bin"), sha256(big));
    const back = await sbx.files.readBytes("/tmp/40m.bin");
    assert.equal(back.length, big.length);
    assert.equal(sha256(back), sha256(big));

    // Streamed down, a chunk at a time.
    const down = await digest(await sbx.files.download("/tmp/40m.bin"));
    assert.deepEqual({ size: down.size, sha256: down.sha256 }, { size: big.length, sha256: sha256(big) });
    assert.ok(down.chunks > 1, `${down.chunks} chunk(s)`);
    await sbx.commands.run("rm /tmp/40m.bin");
  });

  test("text over the raw route: any size, UTF-8", async () => {
    const line = "ünïcödé ✓ text\n";
    const big = line.repeat(Math.ceil((33 * MiB) / line.length));
    const written = await sbx.files.write("/tmp/33m.txt", big);
    const bytes = new TextEncoder().encode(big);
    assert.equal(written.sizeBytes, bytes.length);
    assert.equal(await sha256In(sbx, "/tmp/33m.txt"), sha256(bytes));
    await sbx.commands.run("rm /tmp/33m.txt");
  });

  test("upload from an async generator: 40 MiB never held whole", async () => {
    const hash = createHash("sha256");
    const written = await sbx.files.upload("/tmp/gen.bin", randomChunks(40, MiB, hash));
    assert.deepEqual(written, { path: "/tmp/gen.bin", sizeBytes: 40 * MiB });
    const sent = hash.digest("hex");
    assert.equal(await sha256In(sbx, "/tmp/gen.bin"), sent);
    assert.equal((await digest(await sbx.files.download("/tmp/gen.bin"))).sha256, sent);
    await sbx.commands.run("rm /tmp/gen.bin");
  });

  test("a large upload and download are streamed, not held in memory", async () => {
    const size = 256 * MiB;
    const chunk = new Uint8Array(randomBytes(MiB));
    async function* repeated() {
      for (let i = 0; i < size / MiB; i++) yield chunk;
    }
    // The most the resident memory grows while `work` runs, sampled.
    const growth = async (work: () => Promise<void>) => {
      const start = process.memoryUsage.rss();
      let grown = 0;
      const sampler = setInterval(() => (grown = Math.max(grown, process.memoryUsage.rss() - start)), 10);
      try {
        await work();
      } finally {
        clearInterval(sampler);
      }
      return Math.max(grown, process.memoryUsage.rss() - start);
    };
    const up = await growth(async () => {
      assert.equal((await sbx.files.upload("/tmp/256m.bin", repeated())).sizeBytes, size);
    });
    assert.ok(up < size / 4, `RSS grew by ${Math.round(up / MiB)} MiB during the upload`);
    const down = await growth(async () => {
      assert.equal((await digest(await sbx.files.download("/tmp/256m.bin"))).size, size);
    });
    assert.ok(down < size / 4, `RSS grew by ${Math.round(down / MiB)} MiB during the download`);
    await sbx.commands.run("rm /tmp/256m.bin");
  });

  test("a full disk is 507, and the file stays as it was", async () => {
    await using small = await Sandbox.create({ diskBytes: 8 * MiB, metadata: { suite: "sdk-typescript" } });
    await small.files.write("kept.txt", "before");
    const big = new Uint8Array(randomBytes(12 * MiB));
    for (const source of [big, new Blob([big])]) {
      await assert.rejects(small.files.upload("kept.txt", source), InsufficientStorageError);
      assert.equal(await small.files.read("kept.txt"), "before");
    }
  });

  test("upload from a ReadableStream, a Blob, an ArrayBuffer and a Node file stream", async () => {
    const pieces = [new Uint8Array(randomBytes(100_000)), new Uint8Array(0), new Uint8Array(randomBytes(3))];
    const whole = new Uint8Array(Buffer.concat(pieces));
    let pulled = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (pulled < pieces.length) controller.enqueue(pieces[pulled++]!);
        else controller.close();
      },
    });
    assert.equal((await sbx.files.upload("up/stream.bin", stream)).sizeBytes, whole.length);
    assert.deepEqual(await sbx.files.readBytes("up/stream.bin"), whole);

    assert.equal((await sbx.files.upload("up/blob.bin", new Blob([whole]))).sizeBytes, whole.length);
    assert.deepEqual(await sbx.files.readBytes("up/blob.bin"), whole);
    assert.equal((await sbx.files.upload("up/buffer.bin", whole.slice().buffer)).sizeBytes, whole.length);
    assert.deepEqual(await sbx.files.readBytes("up/buffer.bin"), whole);

    const dir = mkdtempSync(join(tmpdir(), "ai2in-ts-files-"));
    try {
      writeFileSync(join(dir, "local.bin"), whole);
      assert.equal((await sbx.files.upload("up/node.bin", createReadStream(join(dir, "local.bin")))).sizeBytes, whole.length);
    } finally {
      rmSync(dir, { recursive: true });
    }
    assert.equal(await sha256In(sbx, "/home/user/up/node.bin"), sha256(whole));

    // An upload replaces the file whole.
    await sbx.files.upload("up/node.bin", new Uint8Array([1, 2]));
    assert.deepEqual([...(await sbx.files.readBytes("up/node.bin"))], [1, 2]);
    await assert.rejects(sbx.files.upload("up/x", 42 as unknown as Uint8Array), TypeError);
  });

  test("paths with spaces and query characters, and user root", async () => {
    const path = "odd dir/a+b&c=d?#.txt";
    assert.equal((await sbx.files.upload(path, new TextEncoder().encode("odd"))).path, `/home/user/${path}`);
    assert.equal((await sbx.files.list("odd dir"))[0]?.name, "a+b&c=d?#.txt");
    assert.equal(text(await sbx.files.readBytes(path)), "odd");

    await assert.rejects(sbx.files.upload("/etc/ts-upload", new Uint8Array([1])), PermissionDeniedError);
    await sbx.files.upload("/etc/ts-upload", new Uint8Array([1]), { user: "root" });
    assert.deepEqual([...(await sbx.files.readBytes("/etc/ts-upload", { user: "root" }))], [1]);
    assert.equal((await digest(await sbx.files.download("/etc/ts-upload", { user: "root" }))).size, 1);
  });

  test("a range read: offset and length", async () => {
    const bytes = new TextEncoder().encode("0123456789");
    await sbx.files.write("range.txt", bytes);
    const read = async (options: { offset?: number; length?: number }) => text(await sbx.files.readBytes("range.txt", options));
    assert.equal(await read({ offset: 2, length: 3 }), "234");
    assert.equal(await read({ offset: 7 }), "789");
    assert.equal(await read({ length: 4 }), "0123");
    assert.equal(await read({ offset: 8, length: 100 }), "89"); // fewer at the end
    assert.equal(await read({ offset: 3, length: 0 }), "");
    await assert.rejects(sbx.files.readBytes("range.txt", { offset: 10 }), (e: unknown) => {
      assert.ok(e instanceof ApiError, String(e));
      assert.equal(e.status, 416);
      return true;
    });
    await assert.rejects(sbx.files.readBytes("range.txt", { offset: -1 }), RangeError);
    await assert.rejects(sbx.files.readBytes("range.txt", { length: 1.5 }), RangeError);

    // A file whose size the kernel does not know is read whole by the node, cut here.
    const version = await sbx.files.readBytes("/proc/version");
    assert.ok(version.length > 8);
    assert.deepEqual(await sbx.files.readBytes("/proc/version", { offset: 2, length: 5 }), version.subarray(2, 7));
  });

  test("download: errors are thrown before the stream; a stream can be cancelled or aborted", async () => {
    await assert.rejects(sbx.files.download("nope/missing.bin"), NotFoundError);
    await assert.rejects(sbx.files.readBytes("nope/missing.bin"), NotFoundError);
    await assert.rejects(sbx.files.download("/tmp"), BadRequestError);
    await assert.rejects(sbx.files.upload("/tmp", new Uint8Array([1])), BadRequestError);

    await sbx.files.write("/tmp/cancel.bin", new Uint8Array(randomBytes(8 * MiB)));
    const reader = (await sbx.files.download("/tmp/cancel.bin")).getReader();
    assert.ok(((await reader.read()).value?.length ?? 0) > 0);
    await reader.cancel();
    assert.equal((await sbx.files.readBytes("/tmp/cancel.bin", { offset: 8 * MiB - 1 })).length, 1);

    // A signal aborts a stream being read with its reason.
    const controller = new AbortController();
    const aborted = (await sbx.files.download("/tmp/cancel.bin", { signal: controller.signal })).getReader();
    await aborted.read();
    controller.abort();
    await assert.rejects(
      (async () => {
        while (!(await aborted.read()).done);
      })(),
      { name: "AbortError" },
    );
  });

  test("read of a binary file is 415; readBytes of it works", async () => {
    await sbx.files.write("bin.dat", new Uint8Array([0xff, 0xfe, 0x00, 0x80]));
    const e = await sbx.files.read("bin.dat").catch((e: unknown) => e);
    assert.ok(e instanceof UnsupportedMediaTypeError, String(e));
    assert.equal(e.status, 415);
    assert.match(e.message, /read_bytes/);
    assert.deepEqual([...(await sbx.files.readBytes("bin.dat"))], [0xff, 0xfe, 0x00, 0x80]);
  });

  test("a missing file is 404, a directory where a file is expected 400", async () => {
    await assert.rejects(sbx.files.read("nope/missing.txt"), NotFoundError);
    await assert.rejects(sbx.files.readBytes("/tmp"), BadRequestError);
  });

  test("lists a directory", async () => {
    await sbx.files.write("listed/a.txt", "aaa");
    await sbx.files.write("listed/sub/b.txt", "b");
    const entries = await sbx.files.list("listed");
    assert.deepEqual(
      entries.map((e) => [e.name, e.path, e.type]),
      [
        ["a.txt", "/home/user/listed/a.txt", "file"],
        ["sub", "/home/user/listed/sub", "dir"],
      ],
    );
    assert.equal(entries[0]!.sizeBytes, 3);
    assert.ok(entries[0]!.modifiedAt instanceof Date && entries[0]!.mode > 0);
  });

  test("root may write where the user may not", async () => {
    await assert.rejects(sbx.files.write("/etc/ts-sdk", "x"));
    await sbx.files.write("/etc/ts-sdk", "x", { user: "root" });
    assert.equal(await sbx.files.read("/etc/ts-sdk", { user: "root" }), "x");
  });

  test("watch: poll gives the changes", async () => {
    await sbx.files.write("watched/.keep", "");
    const watch = await sbx.files.watch("watched");
    assert.match(watch.id, /^wch_/);
    await sbx.commands.run("echo 1 > watched/new.txt");
    const seen: WatchEvent[] = [];
    await until(async () => {
      seen.push(...(await watch.poll()));
      return seen.some((e) => e.type === "create" && e.path === "/home/user/watched/new.txt") || undefined;
    }, 10_000, "the create event");
    assert.ok(seen.every((e) => e.timestamp instanceof Date));
    await watch.stop();
    await assert.rejects(watch.poll(), NotFoundError);
  });

  test("watch: events as they happen with for await, recursive", async () => {
    await sbx.files.write("tree/sub/.keep", "");
    const watch = await sbx.files.watch("tree", { recursive: true });
    const writer = (async () => {
      await new Promise((ok) => setTimeout(ok, 200));
      // files.write replaces atomically: a temporary file is created, then renamed.
      await sbx.files.write("tree/sub/deep.txt", "x");
    })();
    let last: WatchEvent | undefined;
    for await (const ev of watch) {
      last = ev;
      if (ev.path === "/home/user/tree/sub/deep.txt") break;
    }
    await writer;
    assert.equal(last?.type, "rename");
    assert.ok(last.timestamp instanceof Date);
    await watch.stop();
  });

  test("watch: stop ends a running stream, and a signal aborts one", async () => {
    const watch = await sbx.files.watch("/home/user");
    const consumed = (async () => {
      const seen: WatchEvent[] = [];
      for await (const ev of watch.events()) seen.push(ev);
      return seen;
    })();
    await new Promise((ok) => setTimeout(ok, 200));
    await watch.stop();
    assert.ok(Array.isArray(await consumed));

    const other = await sbx.files.watch("/home/user");
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 200);
    await assert.rejects(
      (async () => {
        for await (const _ of other.events({ signal: controller.signal })) {
          // nothing changes here
        }
      })(),
      { name: "AbortError" },
    );
    await other.stop();
  });
});

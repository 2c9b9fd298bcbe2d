/** Files: text and bytes, listing, errors, watches. */

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";

import { BadRequestError, NotFoundError, Sandbox, UnsupportedMediaTypeError, type WatchEvent } from "@ai2in/sdk";

import { newSandbox, until } from "./util.js";

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

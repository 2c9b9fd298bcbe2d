/** Interactive terminals. */

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { PtyHandle, Sandbox } from "@ai2in/sdk";

import { newSandbox, text, until } from "./util.js";

/** Reads `term` until its output so far contains `wanted`; returns all of it. */
async function readUntil(term: PtyHandle, wanted: string): Promise<string> {
  let output = "";
  return until(async () => {
    output += text((await term.read()).data);
    return output.includes(wanted) ? output : undefined;
  }, 10_000, `${JSON.stringify(wanted)} on the terminal (got ${JSON.stringify(output)})`);
}

describe("pty", () => {
  let sbx: Sandbox;
  before(async () => {
    sbx = await newSandbox();
  });
  after(() => sbx?.kill());

  test("round trip: input in, output (with echo) out, as text or bytes", async () => {
    const term = await sbx.pty.create({ cmd: "cat" });
    assert.ok(term.pid > 0);
    assert.match(term.id, /^pty_/);
    await term.sendInput("hello\n");
    await term.sendInput(new TextEncoder().encode("bytes ✓\n"));
    const output = await readUntil(term, "bytes ✓\r\nbytes ✓");
    assert.match(output, /hello\r\nhello\r\n/);
    await term.kill();
  });

  test("size, cwd and env at creation; resize", async () => {
    const term = await sbx.pty.create({ cmd: "/bin/bash --norc", cols: 100, rows: 30, cwd: "/tmp", env: { MARK: "m1" } });
    await term.sendInput("echo size=$(stty size) pwd=$PWD mark=$MARK\n");
    await readUntil(term, "size=30 100 pwd=/tmp mark=m1");
    await term.resize(120, 40);
    await term.sendInput("echo now=$(stty size)\n");
    await readUntil(term, "now=40 120");
    await term.kill();
  });

  test("reports the exit code once the program ends", async () => {
    const term = await sbx.pty.create({ cmd: "echo bye; exit 7" });
    let output = "";
    const end = await until(async () => {
      const r = await term.read();
      output += text(r.data);
      return r.alive ? undefined : r;
    });
    assert.equal(end.exitCode, 7);
    assert.match(output, /bye/);
  });

  test("kill ends the program", async () => {
    const term = await sbx.pty.create();
    await term.kill();
    const end = await until(async () => {
      const r = await term.read();
      return r.alive ? undefined : r;
    });
    assert.equal(end.exitCode, 128 + 9);
  });
});

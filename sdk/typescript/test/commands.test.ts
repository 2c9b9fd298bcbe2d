/** Shell commands: to completion, and in the background. */

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { CommandHandle, NotFoundError, Sandbox } from "@ai2in/sdk";

import { newSandbox, until } from "./util.js";

describe("commands", () => {
  let sbx: Sandbox;
  before(async () => {
    sbx = await newSandbox();
  });
  after(() => sbx?.kill());

  test("run to completion with output, exit code and duration", async () => {
    const r = await sbx.commands.run("echo out; echo err >&2; exit 3");
    assert.deepEqual([r.stdout, r.stderr, r.exitCode, r.truncated], ["out\n", "err\n", 3, false]);
    assert.ok(r.durationMs > 0);
    assert.equal(r.error, undefined);
  });

  test("take cwd, env, stdin and user", async () => {
    const r = await sbx.commands.run("pwd; echo $A; cat; id -un", { cwd: "/tmp", env: { A: "b" }, stdin: "fed\n", user: "user" });
    assert.equal(r.stdout, "/tmp\nb\nfed\nuser\n");
  });

  test("are killed at timeoutMs, with a null exit code and an error", async () => {
    const r = await sbx.commands.run("sleep 10", { timeoutMs: 300 });
    assert.equal(r.exitCode, null);
    assert.match(r.error ?? "", /timed out/);
  });

  test("in the background: waited for, with output as it comes", async () => {
    const handle = await sbx.commands.run("for i in 1 2 3; do echo $i; sleep 0.1; done; echo bad >&2; exit 4", { background: true });
    assert.ok(handle instanceof CommandHandle);
    assert.match(handle.id, /^cmd_/);
    assert.ok(handle.pid > 0);
    const out: string[] = [];
    const err: string[] = [];
    const exit = await handle.wait({ onStdout: (t) => out.push(t), onStderr: (t) => err.push(t) });
    assert.deepEqual(exit, { stdout: "1\n2\n3\n", stderr: "bad\n", status: "exited", exitCode: 4 });
    assert.equal(out.join(""), "1\n2\n3\n");
    assert.equal(err.join(""), "bad\n");
    assert.ok(out.length >= 2, "output came in pieces while it ran");
  });

  test("in the background: logs from offsets", async () => {
    const handle = await sbx.commands.run("echo first; sleep 0.3; echo second", { background: true });
    const first = await until(async () => {
      const logs = await handle.logs();
      return logs.stdout ? logs : undefined;
    });
    assert.equal(first.stdout, "first\n");
    assert.equal(first.status, "running");
    assert.equal(first.stdoutOffset, 6);
    const rest = await until(async () => {
      const logs = await handle.logs({ stdoutOffset: first.stdoutOffset });
      return logs.status === "exited" ? logs : undefined;
    });
    assert.equal(rest.stdout, "second\n");
    assert.deepEqual([rest.exitCode, rest.droppedBytes], [0, 0]);
  });

  test("in the background: killed, and listed", async () => {
    const handle = await sbx.commands.run("sleep 60", { background: true });
    const running = await sbx.commands.list();
    const mine = running.find((c) => c.id === handle.id);
    assert.ok(mine && mine.status === "running" && mine.pid === handle.pid && mine.cmd === "sleep 60");
    assert.ok(mine.startedAt instanceof Date && mine.endedAt === null);
    await handle.kill();
    const exit = await handle.wait();
    assert.equal(exit.status, "killed");
    const after = (await sbx.commands.list()).find((c) => c.id === handle.id);
    assert.ok(after?.status === "killed" && after.endedAt instanceof Date);
  });

  test("in the background: connected to by id from another Sandbox object, output from the start", async () => {
    const started = await sbx.commands.run("for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; sleep 0.2; done; exit 7", { background: true });
    await until(async () => ((await started.logs()).stdout ? true : undefined), 10_000, "first output");
    const other = await Sandbox.connect(sbx.id);
    const handle = await other.commands.connect(started.id);
    assert.ok(handle instanceof CommandHandle);
    assert.deepEqual([handle.id, handle.pid], [started.id, started.pid]);
    const out: string[] = [];
    const exit = await handle.wait({ onStdout: (t) => out.push(t) });
    const lines = (prefix: string) => [1, 2, 3, 4, 5].map((i) => `${prefix}${i}\n`).join("");
    assert.deepEqual(exit, { stdout: lines("out"), stderr: lines("err"), status: "exited", exitCode: 7 });
    assert.equal(out.join(""), lines("out"), "output produced before connect is delivered too");
  });

  test("connecting to an unknown command rejects with NotFoundError", async () => {
    await assert.rejects(sbx.commands.connect("cmd_0000000000000000"), (e) => {
      assert.ok(e instanceof NotFoundError);
      assert.equal(e.status, 404);
      assert.match(e.message, /cmd_0000000000000000/);
      return true;
    });
  });

  test("in the background: a chosen signal, and waiting stops on abort", async () => {
    const handle = await sbx.commands.run("trap 'echo got TERM; exit 0' TERM; while true; do sleep 0.05; done", { background: true });
    await assert.rejects(handle.wait({ signal: AbortSignal.timeout(200) }), { name: "TimeoutError" });
    await handle.kill("SIGTERM");
    const exit = await handle.wait();
    assert.deepEqual([exit.stdout, exit.exitCode], ["got TERM\n", 0]);
  });
});

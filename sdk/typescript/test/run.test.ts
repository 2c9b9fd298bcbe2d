/** Running code: executions, rich results, streaming, cancelling, contexts. */

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { after, before, describe, test } from "node:test";

import { BadRequestError, Execution, type ExecutionEvent, type Language, NotFoundError, Result, Sandbox } from "@ai2in/sdk";

import { newSandbox } from "./util.js";

function hasMatplotlib(): boolean {
  try {
    execFileSync("/usr/bin/python3", ["-c", "import matplotlib"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

describe("runCode", () => {
  let sbx: Sandbox;
  before(async () => {
    sbx = await newSandbox();
  });
  after(() => sbx?.kill());

  test("gives the Execution: main result, logs, count, duration", async () => {
    const ex = await sbx.runCode("print('hello')\nimport sys; print('warn', file=sys.stderr)\n6 * 7");
    assert.ok(ex instanceof Execution);
    assert.equal(ex.text, "42");
    assert.deepEqual(ex.logs, { stdout: ["hello\n"], stderr: ["warn\n"] });
    assert.equal(ex.error, null);
    assert.ok(ex.executionCount >= 1 && ex.durationMs > 0);
    assert.match(ex.contextId, /^ctx_/);
    const main = ex.results.find((r) => r.isMainResult);
    assert.ok(main instanceof Result && main.data["text/plain"] === "42");
  });

  test("keeps state between runs, and reports code errors without throwing", async () => {
    await sbx.runCode("kept = 'here'");
    assert.equal((await sbx.runCode("kept")).text, "'here'");
    const ex = await sbx.runCode("1 / 0");
    assert.equal(ex.error?.name, "ZeroDivisionError");
    assert.equal(ex.error?.value, "division by zero");
    assert.match(ex.error?.traceback ?? "", /ZeroDivisionError/);
    assert.equal(ex.text, undefined);
  });

  test("runs javascript and bash, with env", async () => {
    assert.equal((await sbx.runCode("[1, 2].map((x) => x * 2).join(',')", { language: "javascript" })).text, "'2,4'");
    const bash = await sbx.runCode("echo $WHO; (exit 3)", { language: "bash", env: { WHO: "me" } });
    assert.deepEqual(bash.logs.stdout.join(""), "me\n");
    assert.equal(bash.exitCode, 3);
  });

  test("an unknown language is a 400 naming it", async () => {
    const e = await sbx.runCode("1", { language: "cobol" as Language }).catch((e: unknown) => e);
    assert.ok(e instanceof BadRequestError, String(e));
    assert.match(e.message, /cobol/);
  });

  test("interrupts a run at timeoutMs and keeps the context", async () => {
    const ex = await sbx.runCode("import time\nwhile True: time.sleep(0.01)", { timeoutMs: 500 });
    assert.equal(ex.error?.name, "KeyboardInterrupt");
    assert.equal((await sbx.runCode("kept")).text, "'here'");
  });

  test("gives rich results: HTML, markdown, SVG, JSON, LaTeX", async () => {
    const code = [
      "class Rich:",
      "    def _repr_html_(self): return '<b>bold</b>'",
      "    def _repr_markdown_(self): return '**bold**'",
      "    def _repr_svg_(self): return '<svg xmlns=\"http://www.w3.org/2000/svg\"/>'",
      "    def _repr_json_(self): return {'a': [1, 2]}",
      "    def _repr_latex_(self): return '$x^2$'",
      "Rich()",
    ].join("\n");
    const r = (await sbx.runCode(code)).results[0]!;
    assert.equal(r.isMainResult, true);
    assert.equal(r.html, "<b>bold</b>");
    assert.equal(r.markdown, "**bold**");
    assert.match(r.svg ?? "", /^<svg/);
    assert.deepEqual(r.json, { a: [1, 2] });
    assert.equal(r.latex, "$x^2$");
    assert.ok(r.formats.includes("text/plain"));
    assert.equal(r.png, undefined);
  });

  test("gives a matplotlib figure as PNG bytes", { skip: !hasMatplotlib() && "matplotlib is not installed" }, async () => {
    const ex = await sbx.runCode("import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()", { timeoutMs: 120_000 });
    assert.equal(ex.error, null, ex.error?.traceback);
    const png = ex.results.find((r) => r.png)?.png;
    assert.ok(png instanceof Uint8Array && png.length > 1000);
    assert.deepEqual([...png.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47]);
  });
});

describe("streaming", () => {
  let sbx: Sandbox;
  before(async () => {
    sbx = await newSandbox();
  });
  after(() => sbx?.kill());

  const ordered = "import sys, time\nprint('one')\ntime.sleep(0.2)\nprint('two', file=sys.stderr)\ntime.sleep(0.2)\nprint('three')\n7";

  test("yields typed events in order, done last with the Execution", async () => {
    const events: ExecutionEvent[] = [];
    for await (const ev of sbx.runCodeStream(ordered)) events.push(ev);
    const texts = events.flatMap((e) => (e.type === "stdout" || e.type === "stderr" ? [[e.type, e.text]] : []));
    assert.deepEqual(texts, [["stdout", "one\n"], ["stderr", "two\n"], ["stdout", "three\n"]]);
    const types = events.map((e) => e.type);
    assert.ok(types.indexOf("result") > types.lastIndexOf("stdout"));
    const done = events.at(-1)!;
    assert.ok(done.type === "done");
    assert.equal(done.execution.text, "7");
    assert.deepEqual(done.execution.logs, { stdout: ["one\n", "three\n"], stderr: ["two\n"] });
    assert.equal(types.filter((t) => t === "done").length, 1);
  });

  test("yields the code's error as an event", async () => {
    const events: ExecutionEvent[] = [];
    for await (const ev of sbx.runCodeStream("raise ValueError('bad')")) events.push(ev);
    const error = events.find((e) => e.type === "error");
    assert.ok(error?.type === "error" && error.error.name === "ValueError" && error.error.value === "bad");
    const done = events.at(-1)!;
    assert.ok(done.type === "done" && done.execution.error?.name === "ValueError");
  });

  test("runCode with callbacks streams to them and resolves with the Execution", async () => {
    const seen: string[] = [];
    const ex = await sbx.runCode(ordered + "\nraise KeyError('k')", {
      onStdout: (t) => seen.push(`out:${t}`),
      onStderr: (t) => seen.push(`err:${t}`),
      onResult: (r) => seen.push(`result:${r.text}`),
      onError: (e) => seen.push(`error:${e.name}`),
    });
    assert.deepEqual(seen, ["out:one\n", "err:two\n", "out:three\n", "error:KeyError"]);
    assert.equal(ex.error?.name, "KeyError");
  });

  test("an aborted signal stops the stream and the node interrupts the run", async () => {
    const controller = new AbortController();
    const long = "import time\nfor i in range(600):\n    print(i, flush=True)\n    time.sleep(0.05)\n'finished'";
    const seen: string[] = [];
    const started = Date.now();
    await assert.rejects(
      (async () => {
        for await (const ev of sbx.runCodeStream(long, { signal: controller.signal })) {
          if (ev.type === "stdout") {
            seen.push(ev.text);
            controller.abort();
          }
        }
      })(),
      (e: unknown) => e instanceof Error && e.name === "AbortError",
    );
    assert.ok(Date.now() - started < 5_000);
    assert.deepEqual(seen, ["0\n"]);
    // The context is free again at once: the run was interrupted, not left to finish (30 s).
    const t0 = Date.now();
    assert.equal((await sbx.runCode("'free'", { timeoutMs: 20_000 })).text, "'free'");
    assert.ok(Date.now() - t0 < 5_000, `${Date.now() - t0} ms`);
  });

  test("an aborted signal also cancels runCode with callbacks, and plain runCode", async () => {
    const long = "import time\nprint('go', flush=True)\ntime.sleep(30)";
    const streamed = new AbortController();
    await assert.rejects(sbx.runCode(long, { signal: streamed.signal, onStdout: () => streamed.abort() }), { name: "AbortError" });
    await assert.rejects(sbx.runCode(long, { signal: AbortSignal.timeout(300) }), { name: "TimeoutError" });
    assert.equal((await sbx.runCode("'after'", { timeoutMs: 20_000 })).text, "'after'");
  });

  test("leaving the loop early closes the stream and interrupts the run", async () => {
    const long = "import time\nfor i in range(600):\n    print(i, flush=True)\n    time.sleep(0.05)";
    for await (const ev of sbx.runCodeStream(long)) {
      if (ev.type === "stdout") break;
    }
    const t0 = Date.now();
    assert.equal((await sbx.runCode("'free'", { timeoutMs: 20_000 })).text, "'free'");
    assert.ok(Date.now() - t0 < 5_000, `${Date.now() - t0} ms`);
  });
});

describe("contexts", () => {
  let sbx: Sandbox;
  before(async () => {
    sbx = await newSandbox();
  });
  after(() => sbx?.kill());

  test("are independent, listed, restarted and deleted", async () => {
    const a = await sbx.createContext({ language: "python", cwd: "/tmp" });
    const b = await sbx.createContext({ language: "python" });
    assert.match(a.id, /^ctx_/);
    assert.deepEqual([a.language, a.cwd, a.alive], ["python", "/tmp", true]);
    await sbx.runCode("v = 'a'", { context: a });
    assert.equal((await sbx.runCode("v", { context: b.id })).error?.name, "NameError");
    assert.equal((await sbx.runCode("import os; os.getcwd()", { context: a })).text, "'/tmp'");
    const ids = (await sbx.listContexts()).map((c) => c.id);
    assert.ok(ids.includes(a.id) && ids.includes(b.id));
    const restarted = await sbx.restartContext(a);
    assert.equal(restarted.alive, true);
    assert.equal((await sbx.runCode("v", { context: a })).error?.name, "NameError");
    await sbx.deleteContext(a);
    await sbx.deleteContext(b.id);
    await assert.rejects(sbx.runCode("1", { context: a }), NotFoundError);
    assert.ok(!(await sbx.listContexts()).some((c) => c.id === a.id));
  });

  test("of other languages keep their own state", async () => {
    const js = await sbx.createContext({ language: "javascript" });
    await sbx.runCode("var n = 41", { context: js });
    assert.equal((await sbx.runCode("n + 1", { context: js })).text, "42");
    await sbx.deleteContext(js);
  });
});

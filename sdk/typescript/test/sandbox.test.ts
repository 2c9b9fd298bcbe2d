/** Sandbox lifecycle, listing, metrics, expose, configuration and errors. */

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  Ai2in,
  Ai2inError,
  ApiError,
  AuthenticationError,
  BadRequestError,
  ConnectionError,
  NotFoundError,
  PermissionDeniedError,
  Sandbox,
  SandboxEndedError,
  SandboxPausedError,
} from "@ai2in/sdk";

import { ADMIN_KEY, BASE_URL, newSandbox, until } from "./util.js";

describe("a sandbox", () => {
  let sbx: Sandbox;
  before(async () => {
    sbx = await newSandbox();
  });
  after(() => sbx?.kill());

  test("describes itself", async () => {
    const info = await sbx.info();
    assert.equal(info.id, sbx.id);
    assert.match(info.id, /^sbx_[0-9a-z]+$/);
    assert.equal(info.status, "running");
    assert.equal(info.metadata.suite, "sdk-typescript");
    assert.ok(info.createdAt instanceof Date && info.endAt > info.createdAt);
    assert.ok(info.resources.memoryBytes > 0 && info.resources.cpu > 0);
    assert.equal(info.network.egress, "allow");
  });

  test("is listed, with status and metadata filters", async () => {
    const ids = async (opts: Parameters<typeof Sandbox.list>[0]) => (await Sandbox.list(opts)).map((s) => s.id);
    assert.ok((await ids({})).includes(sbx.id));
    assert.ok((await ids({ status: "running", metadata: { suite: "sdk-typescript" } })).includes(sbx.id));
    assert.ok(!(await ids({ metadata: { suite: "other" } })).includes(sbx.id));
    assert.ok(!(await ids({ status: "paused" })).includes(sbx.id));
  });

  test("can be connected to by id", async () => {
    const again = await Sandbox.connect(sbx.id);
    assert.equal((await again.commands.run("echo same")).stdout, "same\n");
  });

  test("gets a new lifetime", async () => {
    const before = Date.now();
    const info = await sbx.setTimeout(120_000);
    const left = info.endAt.getTime() - before;
    assert.ok(left > 110_000 && left < 130_000, `${left}`);
  });

  test("rejects a bad lifetime with a 400 naming the problem", async () => {
    const e = await sbx.setTimeout(0).catch((e: unknown) => e);
    assert.ok(e instanceof BadRequestError && e instanceof ApiError && e instanceof Ai2inError);
    assert.equal(e.status, 400);
    assert.match(e.message, /timeout_ms/);
  });

  test("reports metrics", async () => {
    const m = await sbx.metrics();
    assert.ok(m.timestamp instanceof Date);
    assert.ok(m.memUsedBytes > 0 && m.memLimitBytes >= m.memUsedBytes);
    assert.ok(m.pids > 0 && m.cpuCount >= 1);
    assert.equal(typeof m.netRxBytes, "number");
  });

  test("exposes a port as a URL that reaches a server inside", async () => {
    await sbx.commands.run("python3 -m http.server 8000 --bind 127.0.0.1", { background: true, cwd: "/tmp" });
    await sbx.files.write("/tmp/hello.txt", "from inside");
    const url = await sbx.expose(8000);
    // The sandbox by its id without `sbx_` (an underscore is not valid in a DNS name).
    assert.match(url, new RegExp(`^http://8000-${sbx.id.slice(4)}\\.`));
    // The proxy routes by Host; fetch cannot set it, so ask the API's own address with it.
    const host = new URL(url).host;
    const body = await until(() => fetchWithHost(`${BASE_URL}/hello.txt`, host).catch(() => undefined), 10_000, "the server");
    assert.equal(body, "from inside");
  });

  test("answers 409 while paused, and works again after resume", async () => {
    assert.equal((await sbx.pause()).status, "paused");
    try {
      await assert.rejects(sbx.runCode("1"), (e: unknown) => e instanceof SandboxPausedError && e.status === 409);
      await assert.rejects(sbx.files.read("x"), SandboxPausedError);
    } finally {
      assert.equal((await sbx.resume()).status, "running");
    }
    assert.equal((await sbx.runCode("1 + 1")).text, "2");
  });
});

/** GET `url` with a Host header, through a raw HTTP/1.1 request (fetch forbids Host). */
async function fetchWithHost(url: string, host: string): Promise<string> {
  const { request } = await import("node:http");
  return new Promise((ok, fail) => {
    const u = new URL(url);
    const req = request({ host: u.hostname, port: u.port, path: u.pathname, headers: { Host: host } }, (res) => {
      let data = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (data += chunk));
      res.on("end", () => (res.statusCode === 200 ? ok(data) : fail(new Error(`${res.statusCode}: ${data}`))));
    });
    req.on("error", fail);
    req.end();
  });
}

describe("killing", () => {
  test("ends the sandbox: later calls are 410, and a second kill is false", async () => {
    const sbx = await Sandbox.create({ timeoutMs: 60_000 });
    assert.equal(await sbx.kill(), true);
    const e = await sbx.info().catch((e: unknown) => e);
    assert.ok(e instanceof SandboxEndedError, String(e));
    assert.equal(e.status, 410);
    assert.equal(e.message, `sandbox ${sbx.id} has ended; create a new one`);
    await assert.rejects(sbx.runCode("1"), SandboxEndedError);
    await assert.rejects(Sandbox.connect(sbx.id), SandboxEndedError);
    assert.equal(await sbx.kill(), false);
  });

  test("an unknown sandbox is 404", async () => {
    const e = await Sandbox.connect("sbx_doesnotexist000000000").catch((e: unknown) => e);
    assert.ok(e instanceof NotFoundError && e.status === 404, String(e));
    assert.match(e.message, /sbx_doesnotexist000000000/);
  });

  test("happens at the end of an `await using` scope", async () => {
    let id: string;
    {
      await using sbx = await Sandbox.create({ egress: "deny", cpu: 0.5, memoryBytes: 256 << 20 });
      id = sbx.id;
      const info = await sbx.info();
      assert.equal(info.network.egress, "deny");
      assert.equal(info.resources.cpu, 0.5);
      assert.equal(info.resources.memoryBytes, 256 << 20);
    }
    await assert.rejects(Sandbox.connect(id), SandboxEndedError);
  });

  test("passes env to every process of the sandbox", async () => {
    await using sbx = await Sandbox.create({ env: { GREETING: "hi there" } });
    assert.equal((await sbx.commands.run("echo $GREETING")).stdout, "hi there\n");
  });
});

describe("configuration", () => {
  test("comes from AI2IN_API_KEY and AI2IN_BASE_URL when no option is given", async () => {
    // Every other test relies on this; here the explicit form gives the same answer.
    const fromEnv = (await Sandbox.list()).map((s) => s.id).sort();
    const explicit = (await Sandbox.list({ apiKey: ADMIN_KEY, baseUrl: BASE_URL })).map((s) => s.id).sort();
    assert.deepEqual(fromEnv, explicit);
  });

  test("options win over the environment", async () => {
    await assert.rejects(Sandbox.list({ apiKey: "ai2in_live_not_a_real_key_000000000000" }), AuthenticationError);
    await assert.rejects(Sandbox.list({ baseUrl: "http://127.0.0.1:1" }), ConnectionError);
  });

  test("the key never shows when a sandbox is logged", async () => {
    const { inspect } = await import("node:util");
    await using sbx = await newSandbox();
    assert.doesNotMatch(inspect(sbx, { depth: 10, showHidden: true }), new RegExp(ADMIN_KEY));
  });

  test("a trailing slash of the base URL is fine", async () => {
    assert.ok(Array.isArray(await Sandbox.list({ baseUrl: `${BASE_URL}/` })));
  });

  test("no key at all is an error before any request", async () => {
    const saved = process.env.AI2IN_API_KEY;
    delete process.env.AI2IN_API_KEY;
    try {
      assert.throws(() => new Ai2in(), (e: unknown) => e instanceof Ai2inError && /AI2IN_API_KEY/.test(e.message));
    } finally {
      process.env.AI2IN_API_KEY = saved;
    }
  });
});

describe("API keys", () => {
  const ai2in = new Ai2in();

  test("are created, listed and revoked; a revoked key is refused", async () => {
    const created = await ai2in.keys.create({ name: "ts-sdk-test", scopes: ["sandboxes:read"] });
    assert.match(created.key, /^ai2in_live_/);
    assert.deepEqual(created.scopes, ["sandboxes:read"]);
    assert.ok((await ai2in.keys.list()).some((k) => k.id === created.id && k.name === "ts-sdk-test"));
    assert.ok(Array.isArray(await Sandbox.list({ apiKey: created.key })));
    await ai2in.keys.revoke(created);
    assert.ok(!(await ai2in.keys.list()).some((k) => k.id === created.id));
    await assert.rejects(Sandbox.list({ apiKey: created.key }), (e: unknown) => e instanceof AuthenticationError && e.status === 401);
  });

  test("a read-only key gets 403 for what writes", async () => {
    const reader = await ai2in.keys.create({ name: "ts-sdk-reader", scopes: ["sandboxes:read"] });
    try {
      const e = await Sandbox.create({ apiKey: reader.key }).catch((e: unknown) => e);
      assert.ok(e instanceof PermissionDeniedError, String(e));
      assert.equal(e.status, 403);
      assert.match(e.message, /sandboxes:write/);
      await assert.rejects(new Ai2in({ apiKey: reader.key }).keys.list(), PermissionDeniedError);
    } finally {
      await ai2in.keys.revoke(reader.id);
    }
  });
});

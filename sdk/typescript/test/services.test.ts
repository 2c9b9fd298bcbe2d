/**
 * Hosted services against the node: deploy, wait until running and fetch the URL through the
 * node's proxy; list and get; logs (streams, system lines, cursors) and following them live;
 * redeploy (and one that fails); stop and start; delete; crashes; the errors (a taken name, a bad name, scopes).
 * Every service a test deploys is deleted.
 */

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, describe, test } from "node:test";

import {
  Ai2in,
  AlreadyExistsError,
  BadRequestError,
  ConflictError,
  DeployFailedError,
  NotFoundError,
  PermissionDeniedError,
  RequestTimeoutError,
  Sandbox,
  Service,
  type LogLine,
  type ServiceDeployOptions,
} from "@ai2in/sdk";

import { BASE_URL, until } from "./util.js";

/** A web app on port 8000 that answers `$GREETING` at `/` (and logs each request on stderr, as http.server does). */
const WEB_CMD =
  "mkdir -p /tmp/www && cd /tmp/www && printf '%s' \"$GREETING\" > index.html && exec python3 -m http.server 8000";

/** A service name no other test uses. */
function unique(prefix: string): string {
  return `${prefix}-${randomUUID().slice(0, 10)}`;
}

/**
 * GET `path` of a service's `url` through the node's proxy: the URL's host is `*.localhost`,
 * so the request goes to the node's own address with it as Host (which fetch cannot set).
 */
async function fetchService(url: string, path = "/"): Promise<{ status: number; body: string }> {
  const { request } = await import("node:http");
  const node = new URL(BASE_URL);
  return new Promise((ok, fail) => {
    const headers = { Host: new URL(url).host };
    const req = request({ host: node.hostname, port: node.port, path, headers }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () => ok({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", fail);
    req.end();
  });
}

describe("services", () => {
  const ai2in = new Ai2in();
  const made: Service[] = [];

  /** Deploys a service (the host image by default), deleted after the suite if a test did not. */
  async function deploy(prefix: string, options: Partial<ServiceDeployOptions> = {}): Promise<Service> {
    const service = await ai2in.services.deploy({ image: "host", ...options, name: unique(prefix) });
    made.push(service);
    return service;
  }

  function web(greeting = "hello"): Promise<Service> {
    return deploy("ts-web", { internalPort: 8000, startCmd: WEB_CMD, env: { GREETING: greeting } });
  }

  after(async () => {
    for (const service of made) await ai2in.services.delete(service).catch(() => {});
  });

  test("deploy, wait until running, serve through the proxy; list and get", async () => {
    const before = Date.now();
    const svc = await web();
    assert.match(svc.id, /^svc_[0-9a-z]+$/);
    assert.ok(svc.name.startsWith("ts-web-"));
    assert.equal(svc.status, "deploying");
    assert.equal(svc.image, "host");
    assert.equal(svc.imageDigest, null);
    assert.equal(svc.internalPort, 8000);
    assert.equal(svc.startCmd, WEB_CMD);
    assert.equal(svc.healthPath, null);
    assert.equal(svc.url, `http://${svc.name}-${svc.id.slice(4)}.localhost:${new URL(BASE_URL).port}/`);
    assert.equal(svc.restarts, 0);
    assert.equal(svc.lastExit, null);
    assert.deepEqual(svc.volumes, []);
    assert.ok(svc.resources.cpu > 0 && svc.resources.memoryBytes > 0);
    assert.ok(svc.createdAt instanceof Date && Math.abs(svc.createdAt.getTime() - before) < 60_000);

    assert.equal(await svc.waitUntilRunning(), svc);
    assert.equal(svc.status, "running");
    assert.match(svc.sandboxId ?? "", /^sbx_/);
    assert.ok(svc.deployedAt instanceof Date && svc.deployedAt >= svc.createdAt);
    assert.deepEqual(await fetchService(svc.url!), { status: 200, body: "hello" });
    assert.deepEqual(await fetchService(svc.url!, "/index.html"), { status: 200, body: "hello" });

    assert.ok((await ai2in.services.list()).some((s) => s.id === svc.id));
    for (const key of [svc.id, svc.name, svc]) {
      const got = await ai2in.services.get(key);
      assert.ok(got instanceof Service);
      assert.deepEqual(got, svc);
    }
    assert.equal(await svc.refresh(), svc);
    assert.equal(svc.status, "running");
    // A service prints and compares as its fields: the client is private.
    assert.deepEqual(Object.keys(JSON.parse(JSON.stringify(svc))).sort(), Object.keys(svc).sort());

    // Its sandbox takes commands and files like any other, is not listed, and cannot be killed.
    assert.ok(!(await Sandbox.list()).some((s) => s.id === svc.sandboxId));
    const inside = await Sandbox.connect(svc.sandboxId!);
    assert.equal(await inside.files.read("/tmp/www/index.html"), "hello");
    assert.equal((await inside.commands.run("echo from exec")).stdout, "from exec\n");
    await assert.rejects(inside.kill(), (e: unknown) => {
      assert.ok(e instanceof ConflictError, String(e));
      assert.ok(e.message.includes(svc.name) || e.message.includes(svc.id), e.message);
      return true;
    });
    assert.equal((await fetchService(svc.url!)).status, 200);
  });

  test("logs: streams, system lines, cursors and limits", async () => {
    const svc = await deploy("ts-logs", { startCmd: "echo out-1; echo err-1 >&2; echo out-2; exec sleep 600" });
    assert.equal(svc.url, null);
    assert.equal(svc.internalPort, null);
    await svc.waitUntilRunning();

    const ours = (lines: LogLine[]) => lines.filter((l) => l.stream !== "system").map((l) => [l.stream, l.line]);
    const logs = await until(async () => {
      const l = await svc.logs();
      return ours(l.logs).length >= 3 ? l : undefined;
    }, 15_000, "the start command's lines");
    // Two pipes: the order within a stream is kept, not the interleaving across them.
    const of = (stream: string) => ours(logs.logs).filter(([s]) => s === stream).map(([, l]) => l);
    assert.deepEqual(of("stdout"), ["out-1", "out-2"]);
    assert.deepEqual(of("stderr"), ["err-1"]);
    const system = logs.logs.filter((l) => l.stream === "system").map((l) => l.line);
    assert.ok(system.some((l) => l.startsWith("started")), JSON.stringify(system));
    const seqs = logs.logs.map((l) => l.seq);
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));
    assert.equal(new Set(seqs).size, seqs.length);
    assert.ok(logs.nextSince >= seqs.at(-1)!);
    for (const l of logs.logs) assert.ok(l.timestamp instanceof Date && !Number.isNaN(l.timestamp.getTime()));

    assert.deepEqual((await svc.logs({ since: logs.nextSince })).logs, []);
    assert.deepEqual((await svc.logs({ since: seqs[0] })).logs.map((l) => l.seq), seqs.slice(1));
    const last = await svc.logs({ limit: 1 });
    assert.deepEqual(last.logs.map((l) => l.seq), [seqs.at(-1)]);
    assert.equal(last.nextSince, logs.nextSince);
    assert.deepEqual((await ai2in.services.logs(svc.name)).logs, logs.logs);
    await assert.rejects(svc.logs({ limit: 1001 }), BadRequestError);
  });

  test("followLogs yields a line written after it began, and stops on abort", async () => {
    const svc = await (await web()).waitUntilRunning();
    const lastLine = (await until(async () => ((await svc.logs()).logs.at(-1)), 15_000, "a first line"));
    const controller = new AbortController();
    const marker = `/follow-${randomUUID()}`;
    // From just before the last line: the first line yielded shows the stream is open.
    const stream = ai2in.services.followLogs(svc.name, { since: lastLine.seq - 1, signal: controller.signal });
    const timer = setTimeout(() => controller.abort(new Error("no marker line within 15 s")), 15_000);
    try {
      const first = await stream.next();
      assert.equal(first.done, false);
      assert.equal((first.value as LogLine).seq, lastLine.seq);
      // http.server logs each request on stderr: a line written now, while following.
      assert.equal((await fetchService(svc.url!, marker)).status, 404);
      for await (const line of stream) {
        assert.ok(line.seq > lastLine.seq);
        if (line.line.includes(marker)) {
          assert.equal(line.stream, "stderr");
          assert.match(line.line, /GET/);
          break;
        }
      }
    } finally {
      clearTimeout(timer);
      await stream.return();
    }

    // Aborting a stream that waits for lines throws the signal's reason.
    const quiet = new AbortController();
    const reason = new Error("enough");
    setTimeout(() => quiet.abort(reason), 300);
    await assert.rejects(
      (async () => {
        for await (const _ of svc.followLogs({ since: (await svc.logs()).nextSince, signal: quiet.signal })) {
          // no line comes: nothing requests the app
        }
      })(),
      (e: unknown) => e === reason,
    );
  });

  test("redeploy with a new env changes what the app answers", async () => {
    const svc = await (await web()).waitUntilRunning();
    assert.equal((await fetchService(svc.url!)).body, "hello");
    const { sandboxId: oldSandbox, deployedAt: oldDeployed } = svc;

    assert.equal(await svc.redeploy({ env: { GREETING: "bonjour" } }), svc);
    assert.equal(svc.status, "running");
    assert.ok(svc.sandboxId && svc.sandboxId !== oldSandbox);
    assert.ok(svc.deployedAt && oldDeployed && svc.deployedAt >= oldDeployed);
    assert.deepEqual(await fetchService(svc.url!), { status: 200, body: "bonjour" });
    const lines = (await svc.logs({ limit: 1000 })).logs;
    assert.ok(lines.some((l) => l.stream === "system" && l.line.includes("redeployed")));

    const again = await ai2in.services.redeploy(svc.name, { env: { GREETING: "hola" } });
    assert.equal(again.id, svc.id);
    assert.equal(again.status, "running");
    assert.equal((await fetchService(svc.url!)).body, "hola");
  });

  test("a redeploy that never runs is DeployFailedError; the old instance keeps serving", async () => {
    const svc = await (await web()).waitUntilRunning();
    const before = svc.sandboxId;
    await assert.rejects(svc.redeploy({ startCmd: "echo failing; exit 1" }), (e: unknown) => {
      assert.ok(e instanceof DeployFailedError, String(e));
      assert.equal(e.status, 422);
      assert.match(e.message, /old one keeps serving/);
      return true;
    });
    await svc.refresh();
    assert.equal(svc.status, "running");
    assert.equal(svc.sandboxId, before);
    assert.equal(svc.startCmd, WEB_CMD);
    assert.deepEqual(await fetchService(svc.url!), { status: 200, body: "hello" });
    assert.ok((await svc.logs()).logs.some((l) => l.stream === "stdout" && l.line === "failing"));
  });

  test("stop answers 503 on the URL; start runs it again", async () => {
    const svc = await (await web()).waitUntilRunning();
    assert.equal((await fetchService(svc.url!)).status, 200);

    assert.equal(await svc.stop(), svc);
    assert.equal(svc.status, "stopped");
    assert.equal(svc.sandboxId, null);
    assert.equal((await svc.refresh()).status, "stopped");
    const r = await fetchService(svc.url!);
    assert.equal(r.status, 503, r.body);
    assert.match((JSON.parse(r.body) as { error: string }).error, /stopped/);
    assert.ok((await svc.logs()).logs.some((l) => l.stream === "system" && l.line.includes("stopped")));

    assert.equal(await svc.start(), svc);
    assert.equal(svc.status, "deploying");
    await svc.waitUntilRunning();
    assert.ok(svc.sandboxId);
    assert.deepEqual(await fetchService(svc.url!), { status: 200, body: "hello" });

    assert.equal((await ai2in.services.stop(svc.name)).status, "stopped");
    assert.equal((await ai2in.services.start(svc.name)).status, "deploying");
    assert.equal((await (await ai2in.services.get(svc.name)).waitUntilRunning()).status, "running");
  });

  test("delete: 404 afterwards, the name free again; await using deletes", async () => {
    const svc = await deploy("ts-del", { startCmd: "exec sleep 600" });
    await svc.delete();
    await assert.rejects(ai2in.services.get(svc.id), NotFoundError);
    await assert.rejects(svc.refresh(), NotFoundError);
    await assert.rejects(ai2in.services.delete(svc.name), NotFoundError);
    assert.ok(!(await ai2in.services.list()).some((s) => s.id === svc.id));

    let id: string;
    {
      await using again = await ai2in.services.deploy({ name: svc.name, image: "host", startCmd: "exec sleep 600" });
      assert.notEqual(again.id, svc.id);
      id = again.id;
    }
    await assert.rejects(ai2in.services.get(id), NotFoundError);
  });

  test("a crashing service: lastExit, restarts, and waitUntilRunning times out", async () => {
    const svc = await deploy("ts-crash", { startCmd: "echo bye; exit 3" });
    const exit = await until(async () => (await svc.refresh()).lastExit ?? undefined, 15_000, "the first exit");
    assert.equal(exit.exitCode, 3);
    assert.equal(exit.signal, null);
    assert.ok(exit.at instanceof Date);
    await assert.rejects(svc.waitUntilRunning({ timeoutMs: 2_000 }), (e: unknown) => {
      assert.ok(e instanceof RequestTimeoutError, String(e));
      assert.ok(e.message.includes(svc.name), e.message);
      return true;
    });
    const lines = (await svc.logs()).logs;
    assert.ok(lines.some((l) => l.stream === "system" && l.line.includes("exited with status 3")), JSON.stringify(lines));
    await until(async () => ((await svc.refresh()).restarts >= 1 ? true : undefined), 20_000, "a restart");
  });

  test("a taken name is AlreadyExistsError; bad names and requests are BadRequestError", async () => {
    const svc = await deploy("ts-dup", { startCmd: "exec sleep 600" });
    await assert.rejects(ai2in.services.deploy({ name: svc.name, image: "host", startCmd: "exec sleep 600" }), (e: unknown) => {
      assert.ok(e instanceof AlreadyExistsError && e instanceof ConflictError, String(e));
      assert.equal(e.status, 409);
      assert.equal(e.code, "already_exists");
      return true;
    });
    assert.deepEqual(
      (await ai2in.services.list()).filter((s) => s.name === svc.name).map((s) => s.id),
      [svc.id],
    );

    for (const name of ["Web", "-web", "web-", "we_b", "a".repeat(41), "", "web.app"]) {
      await assert.rejects(ai2in.services.deploy({ name, image: "host", startCmd: "exec sleep 600" }), (e: unknown) => {
        assert.ok(e instanceof BadRequestError, `${name}: ${e}`);
        assert.match(e.message, /name/);
        return true;
      });
    }
    // The host image has no entrypoint or cmd: a start command is needed.
    await assert.rejects(ai2in.services.deploy({ name: unique("ts-nocmd"), image: "host" }), BadRequestError);
    await assert.rejects(ai2in.services.get("svc_doesnotexist0000000"), NotFoundError);
    await assert.rejects(ai2in.services.logs("no-such-service"), NotFoundError);
  });

  test("scopes: hosting:read reads only; another tenant sees nothing", async () => {
    const svc = await deploy("ts-scopes", { startCmd: "exec sleep 600" });
    const reader = await ai2in.keys.create({ name: "hosting-reader", scopes: ["hosting:read"] });
    const none = await ai2in.keys.create({ name: "no-hosting", scopes: ["sandboxes:read"] });
    const other = await ai2in.keys.create({ name: "other-hosting", scopes: ["admin"], tenant: "hosting-other-ts" });
    try {
      await assert.rejects(new Ai2in({ apiKey: none.key }).services.list(), PermissionDeniedError);
      const ro = new Ai2in({ apiKey: reader.key });
      assert.ok((await ro.services.list()).some((s) => s.id === svc.id));
      assert.equal((await ro.services.get(svc.name)).id, svc.id);
      assert.equal(typeof (await ro.services.logs(svc.id)).nextSince, "number");
      await assert.rejects(ro.services.deploy({ name: unique("ts-ro"), image: "host", startCmd: "exec sleep 600" }), PermissionDeniedError);
      await assert.rejects(ro.services.stop(svc.id), PermissionDeniedError);
      await assert.rejects(ro.services.delete(svc.id), PermissionDeniedError);
      const stranger = new Ai2in({ apiKey: other.key });
      assert.ok(!(await stranger.services.list()).some((s) => s.id === svc.id));
      await assert.rejects(stranger.services.get(svc.id), NotFoundError);
      await assert.rejects(stranger.services.delete(svc.name), NotFoundError);
    } finally {
      for (const key of [reader, none, other]) await ai2in.keys.revoke(key.id);
    }
    assert.equal((await ai2in.services.get(svc.id)).name, svc.name);
  });
});

/**
 * One real ai2in node for the test session: started on a free port with a temporary state
 * directory, and stopped after every sandbox it holds is deleted. Only the test harness uses
 * Node APIs; the SDK itself does not.
 */

import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

const REPO = resolve(import.meta.dirname, "../../..");
const START_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 15_000;

/** A running node. */
export interface TestNode {
  baseUrl: string;
  adminKey: string;
  stateDir: string;
  process: ChildProcess;
}

/** `$AI2IN_BIN`, else the debug build of this checkout. */
export function binaryPath(): string {
  return process.env.AI2IN_BIN || join(REPO, "target/x86_64-unknown-linux-gnu/debug/ai2in");
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  const address = server.address();
  await new Promise((ok) => server.close(ok));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

/** Polls `check` every 100 ms until it gives a value, or throws `what` after `ms`. */
async function waitFor<T>(check: () => Promise<T | undefined> | T | undefined, ms: number, what: () => string): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(what());
    await sleep(100);
  }
}

/** The end of the node's log, for a failed start (the state directory is kept). */
function logTail(stateDir: string): string {
  const path = join(stateDir, "node.log");
  try {
    return `--- ${path} (tail) ---\n${readFileSync(path, "utf8").split("\n").slice(-80).join("\n")}`;
  } catch (e) {
    return `(no log at ${path}: ${e})`;
  }
}

/** Starts `ai2in serve`, waits for /healthz and the admin key. */
export async function startNode(): Promise<TestNode> {
  const binary = binaryPath();
  if (!existsSync(binary)) throw new Error(`ai2in binary not found at ${binary}: build it or set AI2IN_BIN`);
  const stateDir = mkdtempSync(join(tmpdir(), "ai2in-ts-"));
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  const log = openSync(join(stateDir, "node.log"), "a");
  const child = spawn(binary, ["serve", "--state-dir", stateDir, "--listen", `127.0.0.1:${port}`], {
    stdio: ["ignore", log, log],
    cwd: stateDir,
    detached: true, // a Ctrl-C of the test run must not kill it before the clean-up
  });
  const failed = () => `ai2in serve did not start within ${START_TIMEOUT_MS} ms\n${logTail(stateDir)}`;
  await waitFor(
    async () => {
      if (child.exitCode !== null) throw new Error(`ai2in serve exited with ${child.exitCode}\n${logTail(stateDir)}`);
      const ok = await fetch(`${baseUrl}/healthz`).then((r) => r.ok, () => false);
      return ok || undefined;
    },
    START_TIMEOUT_MS,
    failed,
  );
  const adminKey = await waitFor(
    () => {
      const key = existsSync(join(stateDir, "admin.key")) ? readFileSync(join(stateDir, "admin.key"), "utf8").trim() : "";
      return key || undefined;
    },
    5_000,
    failed,
  );
  return { baseUrl, adminKey, stateDir, process: child };
}

/**
 * Deletes every service, database and sandbox of the admin's tenant (they outlive the node),
 * stops the node, removes its state directory.
 */
export async function stopNode(node: TestNode): Promise<void> {
  const headers = { Authorization: `Bearer ${node.adminKey}` };
  try {
    const r = await fetch(`${node.baseUrl}/v1/hosting/services`, { headers });
    if (r.ok) {
      const { services } = (await r.json()) as { services: { id: string }[] };
      for (const { id } of services) {
        await fetch(`${node.baseUrl}/v1/hosting/services/${id}`, { method: "DELETE", headers });
      }
    }
  } catch (e) {
    console.error(`could not delete the test services: ${e}`);
  }
  try {
    const r = await fetch(`${node.baseUrl}/v1/databases`, { headers });
    if (r.ok) {
      const { databases } = (await r.json()) as { databases: { id: string }[] };
      for (const { id } of databases) {
        await fetch(`${node.baseUrl}/v1/databases/${id}`, { method: "DELETE", headers });
      }
    }
  } catch (e) {
    console.error(`could not delete the test databases: ${e}`);
  }
  try {
    const r = await fetch(`${node.baseUrl}/v1/sandboxes`, { headers });
    const { sandboxes } = (await r.json()) as { sandboxes: { id: string }[] };
    for (const { id } of sandboxes) {
      await fetch(`${node.baseUrl}/v1/sandboxes/${id}`, { method: "DELETE", headers });
    }
  } catch (e) {
    console.error(`could not delete the test sandboxes: ${e}`);
  }
  const child = node.process;
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((ok) => child.once("exit", ok));
    child.kill("SIGTERM");
    const stopped = await Promise.race([exited.then(() => true), sleep(STOP_TIMEOUT_MS).then(() => false)]);
    if (!stopped) {
      child.kill("SIGKILL");
      await exited;
    }
  }
  if (process.env.AI2IN_TEST_KEEP) console.error(`state kept in ${node.stateDir}`);
  else rmSync(node.stateDir, { recursive: true, force: true });
}

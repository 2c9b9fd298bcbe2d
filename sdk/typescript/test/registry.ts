/**
 * A real image registry for the image tests: the end-to-end suite's Python fixtures
 * (`tests/e2e/registry.py`: Debian's docker-registry on a loopback port;
 * `tests/e2e/image_fixtures.py`: images built by umoci and skopeo, cached on disk), run by a
 * small Python helper. It prints what it made as one JSON line, then keeps the registry up
 * until its stdin closes: when the tests stop it, or when their process ends however it ends.
 */

import { spawn, type ChildProcess } from "node:child_process";
import { resolve } from "node:path";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";

const E2E = resolve(import.meta.dirname, "../../../tests/e2e");
const START_TIMEOUT_MS = 600_000; // the first run builds the busybox image
const STOP_TIMEOUT_MS = 15_000;

const HELPER = `
import json, os, shutil, signal, sys, tempfile
sys.path.insert(0, sys.argv[1])
import image_fixtures, registry

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
reg = registry.Registry()
tmp = tempfile.mkdtemp(prefix="ai2in-ts-images-")
try:
    refs = image_fixtures.push_all(reg, ("busybox", "busybox-docker"))
    archive = image_fixtures.docker_save_archive(os.path.join(tmp, "app.tar"))
    print(json.dumps({"host": reg.host, "refs": refs, "digests": reg.digests,
                      "archive": str(archive)}), flush=True)
    sys.stdin.read()
finally:
    reg.stop()
    shutil.rmtree(tmp, ignore_errors=True)
`;

/** The running registry and what it holds. */
export interface TestRegistry {
  /** `127.0.0.1:PORT`. */
  host: string;
  /** References by name: `busybox` (OCI manifest) and `busybox-docker` (Docker schema 2). */
  refs: Record<string, string>;
  /** Their manifest digests, by the same names. */
  digests: Record<string, string>;
  /** busybox as a `docker save` archive whose image is named `app:1`. */
  archive: string;
  /** Stops the registry and removes its files. */
  stop(): Promise<void>;
}

/** Starts the registry and pushes the images. */
export async function startRegistry(): Promise<TestRegistry> {
  const child = spawn("python3", ["-c", HELPER, E2E], { stdio: ["pipe", "pipe", "inherit"] });
  const exited = new Promise<void>((ok) => child.once("exit", () => ok()));
  const lines = createInterface({ input: child.stdout! });
  const first = new Promise<string>((ok, fail) => {
    lines.once("line", ok);
    child.once("exit", (code) => fail(new Error(`the registry helper exited with ${code} before it was ready`)));
    child.once("error", fail);
  });
  let info: Omit<TestRegistry, "stop">;
  try {
    const line = await within(first, START_TIMEOUT_MS);
    if (line === undefined) throw new Error(`the registry helper was not ready within ${START_TIMEOUT_MS} ms`);
    info = JSON.parse(line);
  } catch (e) {
    await stop(child, exited);
    throw e;
  }
  lines.close();
  return { ...info, stop: () => stop(child, exited) };
}

/** What `promise` resolves to, or `undefined` after `ms` (the timer does not outlive it). */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  const done = new AbortController();
  const timeout = sleep(ms, undefined, { signal: done.signal }).catch(() => undefined);
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    done.abort();
  }
}

/** Closes the helper's stdin (it stops the registry and exits), then signals if it must. */
async function stop(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.stdin?.end();
  if ((await within(exited.then(() => true), STOP_TIMEOUT_MS)) === true) return;
  child.kill("SIGTERM");
  if ((await within(exited.then(() => true), STOP_TIMEOUT_MS)) === true) return;
  child.kill("SIGKILL");
  await exited;
}

/**
 * `npm test`: starts one ai2in node, runs every `test/*.test.ts` against it with
 * `node --test` (AI2IN_BASE_URL and AI2IN_API_KEY set to the node and its admin key), then
 * deletes the sandboxes and stops the node. Arguments are passed to `node --test`.
 */

import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";

import { startNode, stopNode } from "./node.js";

const dir = import.meta.dirname;
const files = readdirSync(dir)
  .filter((f) => f.endsWith(".test.ts"))
  .map((f) => join(dir, f));

const node = await startNode();
const child = spawn(
  process.execPath,
  ["--import", "tsx", "--test", "--test-concurrency=3", ...process.argv.slice(2), ...files],
  {
    stdio: "inherit",
    env: { ...process.env, AI2IN_BASE_URL: node.baseUrl, AI2IN_API_KEY: node.adminKey },
  },
);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => child.kill(signal));
}
const code = await new Promise<number>((ok) => child.once("exit", (c, s) => ok(c ?? (s ? 1 : 0))));
await stopNode(node);
process.exit(code);

/** The package itself: its self-reference, and a core free of Node-only APIs. */

import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { test } from "node:test";

const ROOT = resolve(import.meta.dirname, "..");
const DIST = join(ROOT, "dist");

test("@ai2in/sdk resolves to the built package through its exports", async () => {
  const url = import.meta.resolve("@ai2in/sdk");
  assert.equal(url, new URL("file://" + join(DIST, "index.js")).href);
  const sdk = await import("@ai2in/sdk");
  for (const name of ["Sandbox", "Ai2in", "Execution", "Result", "Ai2inError", "NotFoundError", "ConnectionError"]) {
    assert.equal(typeof (sdk as Record<string, unknown>)[name], "function", name);
  }
});

test("package.json: ESM only, engines, no runtime dependencies", () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
  assert.equal(pkg.type, "module");
  assert.equal(pkg.exports["."].import, "./dist/index.js");
  assert.equal(pkg.exports["."].types, "./dist/index.d.ts");
  assert.equal(pkg.engines.node, ">=20");
  assert.equal(pkg.dependencies, undefined);
});

test("dist/ uses no Node-only module or global", () => {
  const files = readdirSync(DIST).filter((f) => f.endsWith(".js") || f.endsWith(".d.ts"));
  assert.ok(files.includes("index.js") && files.includes("index.d.ts"));
  for (const file of files) {
    const code = readFileSync(join(DIST, file), "utf8");
    assert.doesNotMatch(code, /from\s+["']node:|import\(["']node:|require\(/, file);
    assert.doesNotMatch(code, /\bBuffer\s*[.(]|\bprocess\.env\b|__dirname/, file);
  }
});

/** Helpers shared by the test files (which run against the node `run.ts` started). */

import { setTimeout as sleep } from "node:timers/promises";

import { Sandbox } from "@ai2in/sdk";

/** The node of this test session (from the environment `run.ts` sets). */
export const BASE_URL = required("AI2IN_BASE_URL");
export const ADMIN_KEY = required("AI2IN_API_KEY");

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the tests with \`npm test\``);
  return value;
}

/** A sandbox shared by the tests of one suite (which kills it in its `after` hook). */
export function newSandbox(): Promise<Sandbox> {
  return Sandbox.create({ metadata: { suite: "sdk-typescript" } });
}

/** Polls `check` until it returns something other than `undefined`, for up to `ms`. */
export async function until<T>(check: () => Promise<T | undefined>, ms = 10_000, what = "condition"): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** The text of UTF-8 `bytes`. */
export function text(bytes: Uint8Array): string {
  return new TextDecoder().decode(bytes);
}

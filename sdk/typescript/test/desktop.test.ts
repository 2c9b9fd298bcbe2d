/**
 * Desktop sandboxes: a real X display driven through `sbx.desktop` (an xterm typed into,
 * screenshots, the pointer, the live view), and the error of a sandbox without one. Skipped
 * when the node cannot run desktops (no Xvfb).
 */

import assert from "node:assert/strict";
import { after, before, describe, test, type TestContext } from "node:test";

import { BadRequestError, NotFoundError, Sandbox, type DesktopWindow } from "@ai2in/sdk";

import { newSandbox, until } from "./util.js";

const WIDTH = 1024;
const HEIGHT = 768;
const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

describe("desktop", () => {
  let desk: Sandbox | undefined;
  let plain: Sandbox | undefined;
  let skipped = "";
  before(async () => {
    try {
      desk = await Sandbox.create({ desktop: { width: WIDTH, height: HEIGHT }, metadata: { suite: "sdk-typescript-desktop" } });
    } catch (e) {
      if (!(e instanceof BadRequestError && /xvfb/i.test(e.message))) throw e;
      skipped = `the node cannot run desktops: ${e.message}`;
    }
    plain = await newSandbox();
  });
  after(async () => {
    await desk?.kill();
    await plain?.kill();
  });

  /** The desktop sandbox, or undefined (the test skipped) when the node has none. */
  function need(t: TestContext): Sandbox | undefined {
    if (!desk) t.skip(skipped);
    return desk;
  }

  test("desktop: info, and DISPLAY in commands", async (t) => {
    const sbx = need(t);
    if (!sbx) return;
    assert.equal((await sbx.info()).desktop, true);
    assert.deepEqual(await sbx.desktop.info(), { display: ":0", width: WIDTH, height: HEIGHT, dpi: 96, stream: null });
    assert.equal((await sbx.commands.run("echo $DISPLAY")).stdout, ":0\n");
  });

  test("desktop: an xterm launched, clicked and typed into writes a file", async (t) => {
    const sbx = need(t);
    if (!sbx) return;
    const term = await sbx.desktop.launch("xterm");
    assert.match(term.id, /^cmd_/);
    assert.ok(term.pid > 0);
    assert.ok((await sbx.commands.list()).some((c) => c.id === term.id)); // a background command
    const window = await until<DesktopWindow>(
      async () => (await sbx.desktop.windows()).find((w) => w.className === "XTerm"),
      20_000,
      "an XTerm window",
    );
    const centre = {
      x: Math.min(window.x + Math.floor(window.width / 2), WIDTH - 1),
      y: Math.min(window.y + Math.floor(window.height / 2), HEIGHT - 1),
    };
    await sbx.desktop.click(centre.x, centre.y);
    await sbx.desktop.type("echo hi > /tmp/from-sdk");
    await sbx.desktop.press("Return");
    const written = await until(
      () => sbx.files.read("/tmp/from-sdk").then((s) => s || undefined, (e) => (e instanceof NotFoundError ? undefined : Promise.reject(e))),
      20_000,
      "/tmp/from-sdk",
    );
    assert.equal(written, "hi\n");
    await term.kill();
  });

  test("desktop: a screenshot is a PNG of the whole screen", async (t) => {
    const sbx = need(t);
    if (!sbx) return;
    const png = await sbx.desktop.screenshot();
    assert.ok(png instanceof Uint8Array);
    assert.deepEqual([...png.subarray(0, 8)], PNG_MAGIC);
    const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
    assert.equal(new TextDecoder().decode(png.subarray(12, 16)), "IHDR");
    assert.deepEqual([view.getUint32(16), view.getUint32(20)], [WIDTH, HEIGHT]);
  });

  test("desktop: the pointer goes where it is moved; keys; bad coordinates and keys are 400", async (t) => {
    const sbx = need(t);
    if (!sbx) return;
    await sbx.desktop.move(10, 20);
    assert.deepEqual(await sbx.desktop.cursor(), { x: 10, y: 20 });
    await sbx.desktop.scroll({ direction: "up", amount: 2, x: 30, y: 40 });
    assert.deepEqual(await sbx.desktop.cursor(), { x: 30, y: 40 });
    await sbx.desktop.press("ctrl+a", "Escape");
    await assert.rejects(sbx.desktop.move(WIDTH, 0), (e) => e instanceof BadRequestError && /\bx\b/.test(e.message));
    await assert.rejects(sbx.desktop.press("Return", "NoSuchKey"), (e) => e instanceof BadRequestError && /NoSuchKey/.test(e.message));
    await assert.rejects(sbx.desktop.press(), TypeError);
  });

  test("desktop: a live view starts with a url and a password, and stops", async (t) => {
    const sbx = need(t);
    if (!sbx) return;
    const stream = await sbx.desktop.stream();
    assert.match(stream.url, /^http.*vnc\.html/);
    assert.equal(stream.password.length, 8);
    assert.equal(stream.viewOnly, false);
    assert.deepEqual((await sbx.desktop.info()).stream, { url: stream.url, viewOnly: false });
    await sbx.desktop.stopStream();
    assert.equal((await sbx.desktop.info()).stream, null);
    await assert.rejects(sbx.desktop.stopStream(), NotFoundError);
  });

  test("desktop: calls on a sandbox without a desktop are BadRequestError", async () => {
    await assert.rejects(plain!.desktop.screenshot(), (e) => e instanceof BadRequestError && /has no desktop/.test(e.message));
    await assert.rejects(plain!.desktop.click(1, 1), BadRequestError);
  });
});

/** The cluster's nodes (admin): a node on its own lists itself; drained, it refuses creates. */

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { Ai2in, NodeAtCapacityError, NotFoundError, PermissionDeniedError, Sandbox } from "@ai2in/sdk";

import { startNode, stopNode, type TestNode } from "./node.js";
import { newSandbox } from "./util.js";

describe("nodes", () => {
  const ai2in = new Ai2in();
  let sbx: Sandbox;
  before(async () => {
    sbx = await newSandbox();
  });
  after(() => sbx?.kill());

  test("a node on its own lists itself, ready", async () => {
    const nodes = await ai2in.nodes.list();
    assert.deepEqual(
      nodes.map((n) => n.id),
      [(await sbx.info()).nodeId],
    );
    const me = nodes[0]!;
    assert.equal(me.status, "ready");
    assert.ok(me.address);
    assert.ok(me.used.sandboxes >= 1 && me.used.sandboxes <= me.capacity.sandboxes, JSON.stringify(me));
    assert.ok(me.capacity.memoryBytes > 0 && me.capacity.cpu > 0);
    assert.ok(me.lastSeenAt instanceof Date && !Number.isNaN(me.lastSeenAt.getTime()));
  });

  test("want an admin key; an unknown node is 404", async () => {
    const user = await ai2in.keys.create({ name: "ts-sdk-not-admin", scopes: ["sandboxes:write"] });
    try {
      const nodes = new Ai2in({ apiKey: user.key }).nodes;
      const e = await nodes.list().catch((e: unknown) => e);
      assert.ok(e instanceof PermissionDeniedError, String(e));
      assert.equal(e.status, 403);
      assert.match(e.message, /admin/);
      const me = (await ai2in.nodes.list())[0]!;
      await assert.rejects(nodes.drain(me), PermissionDeniedError);
      assert.equal((await ai2in.nodes.list())[0]!.status, "ready", "a refused drain drained the node");
    } finally {
      await ai2in.keys.revoke(user.id);
    }
    await assert.rejects(ai2in.nodes.drain("no-such-node"), NotFoundError);
  });
});

describe("a drained node", () => {
  // A node of its own: the session's node must go on taking creates.
  let own: TestNode;
  before(async () => {
    own = await startNode();
  });
  after(() => own && stopNode(own));

  test("refuses creates and lists itself draining", async () => {
    const connection = { apiKey: own.adminKey, baseUrl: own.baseUrl };
    const nodes = new Ai2in(connection).nodes;
    const me = (await nodes.list())[0]!;
    const drained = await nodes.drain(me.id);
    assert.deepEqual([drained.id, drained.status], [me.id, "draining"]);
    const e = await Sandbox.create(connection).catch((e: unknown) => e);
    assert.ok(e instanceof NodeAtCapacityError, String(e));
    assert.equal(e.status, 503);
    assert.match(e.message, /draining/);
    assert.deepEqual(
      (await nodes.list()).map((n) => n.status),
      ["draining"],
    );
  });
});

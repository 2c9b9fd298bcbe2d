/**
 * Managed databases against the node, through real clients (`psql`, `redis-cli`, `mariadb`): the
 * engines; create a PostgreSQL database and use its url (a table written and read); the
 * default and a given name; a password reset (the old url refused at once, the new one
 * working, the data kept); list and get; delete; the errors (an unknown engine, whose message
 * lists those served, a bad version or name, an unknown id); scopes; and Redis and MySQL when
 * the node serves them. Every database a test creates is deleted.
 */

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, test } from "node:test";

import {
  Ai2in,
  BadRequestError,
  Database,
  NotFoundError,
  PermissionDeniedError,
  type DatabaseCreateOptions,
  type DatabaseEngine,
  type EngineInfo,
} from "@ai2in/sdk";

const USERNAME = /^u_[a-z0-9]{12}$/;
const PASSWORD = /^[A-Za-z0-9]{32}$/;

interface Done {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `argv` to its end, whatever its exit status. */
function spawnTool(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<Done> {
  return new Promise((ok, fail) => {
    execFile(argv[0]!, argv.slice(1), { env, timeout: 30_000 }, (error, stdout, stderr) => {
      if (error && typeof error.code !== "number") fail(error); // not started, or killed
      else ok({ code: error ? Number(error.code) : 0, stdout, stderr });
    });
  });
}

/** `psql "$url" -c …` for each command: unaligned, tuples only, stopping at an error; no PG* variables help. */
function psql(url: string, ...commands: string[]): Promise<Done> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("PG")));
  env.PGCONNECT_TIMEOUT = "10";
  return spawnTool(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", url, ...commands.flatMap((c) => ["-c", c])], env);
}

/** `redis-cli -u "$url" …`. */
function redisCli(url: string, ...args: string[]): Promise<Done> {
  return spawnTool(["redis-cli", "--no-auth-warning", "-u", url, ...args]);
}

/** The `mariadb` client on `db`'s address as its user, batch mode; the password in `MYSQL_PWD`. */
function mariadb(db: Database, sql: string, password = db.password): Promise<Done> {
  const argv = ["mariadb", "--no-defaults", "--connect-timeout=10", "-h", db.host, "-P", String(db.port)];
  argv.push("-u", db.username, "-N", "-B", db.name, "-e", sql);
  return spawnTool(argv, { ...process.env, MYSQL_PWD: password });
}

/** The output of a client that must have succeeded. */
function ok(done: Done): string {
  assert.equal(done.code, 0, `${done.stdout}\n${done.stderr}`);
  return done.stdout.trim();
}

describe("databases", () => {
  const ai2in = new Ai2in();
  const made: Database[] = [];
  let engines: Map<string, EngineInfo>;

  before(async () => {
    engines = new Map((await ai2in.databases.engines()).map((e) => [e.engine, e]));
  });

  /** Creates a database, deleted after the suite if a test did not. */
  async function create(options: DatabaseCreateOptions): Promise<Database> {
    const db = await ai2in.databases.create(options);
    made.push(db);
    return db;
  }

  after(async () => {
    for (const db of made) await ai2in.databases.delete(db).catch(() => {});
  });

  test("engines lists postgres, each with its versions and default", () => {
    assert.ok(engines.has("postgres"), JSON.stringify([...engines.values()]));
    for (const e of engines.values()) {
      assert.ok(["postgres", "mysql", "redis"].includes(e.engine), e.engine);
      assert.ok(e.versions.includes(e.default), JSON.stringify(e));
      // The suite's node serves from the host's packages: no engine image.
      assert.equal(e.image, undefined, JSON.stringify(e));
    }
  });

  test("create postgres, connect with its url; list, get, reset the password, delete", async () => {
    const before = Date.now();
    const db = await create({ engine: "postgres" });
    assert.ok(db instanceof Database);
    assert.match(db.id, /^db_[0-9a-z]+$/);
    assert.deepEqual([db.engine, db.version, db.name, db.status], ["postgres", engines.get("postgres")!.default, "app", "available"]);
    assert.match(db.username, USERNAME);
    assert.match(db.password, PASSWORD);
    assert.ok(db.host && db.port > 0 && db.port < 65536);
    assert.equal(db.url, `postgres://${db.username}:${db.password}@${db.host}:${db.port}/app`);
    assert.ok(db.resources.memoryBytes > 0 && db.resources.diskBytes > 0);
    assert.ok(db.createdAt instanceof Date && Math.abs(db.createdAt.getTime() - before) < 60_000);
    // A database prints and compares as its fields: the client is private.
    assert.deepEqual(Object.keys(JSON.parse(JSON.stringify(db))).sort(), Object.keys(db).sort());

    // The url alone connects: a table written and read back.
    const out = ok(
      await psql(
        db.url,
        "create table t (id int primary key, word text)",
        "insert into t values (1, 'hello'), (2, 'world')",
        "select string_agg(word, ' ' order by id) from t",
      ),
    );
    assert.equal(out.split("\n").at(-1), "hello world");
    assert.equal(ok(await psql(db.url, "select current_database(), current_user")), `app|${db.username}`);

    assert.ok((await ai2in.databases.list()).some((d) => d.id === db.id));
    for (const key of [db.id, db]) {
      const got = await ai2in.databases.get(key);
      assert.ok(got instanceof Database);
      assert.deepEqual(got, db);
    }
    assert.equal(await db.refresh(), db);
    assert.equal(db.status, "available");

    // A new password: the old url is refused at once, the new one works, the data is kept.
    const [oldUrl, oldPassword] = [db.url, db.password];
    assert.equal(await db.resetPassword(), db);
    assert.match(db.password, PASSWORD);
    assert.notEqual(db.password, oldPassword);
    assert.equal(db.url, `postgres://${db.username}:${db.password}@${db.host}:${db.port}/app`);
    assert.deepEqual(await ai2in.databases.get(db.id), db);
    const refused = await psql(oldUrl, "select 1");
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /password authentication failed/);
    assert.equal(ok(await psql(db.url, "select count(*) from t")), "2");
    const again = await ai2in.databases.resetPassword(db.id);
    assert.ok(again instanceof Database && again.password !== db.password);
    assert.notEqual((await psql(db.url, "select 1")).code, 0);
    assert.equal(ok(await psql(again.url, "select word from t where id = 2")), "world");

    await db.delete();
    await assert.rejects(ai2in.databases.get(db.id), NotFoundError);
    await assert.rejects(db.refresh(), NotFoundError);
    await assert.rejects(ai2in.databases.delete(db.id), NotFoundError);
    assert.ok(!(await ai2in.databases.list()).some((d) => d.id === db.id));
    assert.notEqual((await psql(again.url, "select 1")).code, 0);
  });

  test("a name and a version given; await using deletes", async () => {
    const version = engines.get("postgres")!.versions.at(-1)!;
    let id: string;
    {
      await using db = await ai2in.databases.create({ engine: "postgres", version, name: "shop_2" });
      assert.deepEqual([db.name, db.version, db.status], ["shop_2", version, "available"]);
      assert.ok(db.url.endsWith(`:${db.port}/shop_2`), db.url);
      assert.equal(ok(await psql(db.url, "select current_database()")), "shop_2");
      id = db.id;
    }
    await assert.rejects(ai2in.databases.get(id), NotFoundError);
  });

  test("an unknown engine, version or a bad name is BadRequestError; an unknown id NotFoundError", async () => {
    const ids = (await ai2in.databases.list()).map((d) => d.id);
    await assert.rejects(ai2in.databases.create({ engine: "oracle" as DatabaseEngine }), (e: unknown) => {
      assert.ok(e instanceof BadRequestError, String(e));
      assert.equal(e.status, 400);
      for (const served of engines.keys()) assert.ok(e.message.includes(served), e.message);
      return true;
    });
    await assert.rejects(ai2in.databases.create({ engine: "postgres", version: "1" }), (e: unknown) => {
      assert.ok(e instanceof BadRequestError, String(e));
      assert.ok(e.message.includes(engines.get("postgres")!.default), e.message);
      return true;
    });
    for (const name of ["Shop", "1shop", "shop-1", "a".repeat(64), ""]) {
      await assert.rejects(ai2in.databases.create({ engine: "postgres", name }), (e: unknown) => {
        assert.ok(e instanceof BadRequestError, `${name}: ${e}`);
        assert.ok(e.message.includes("name"), e.message);
        return true;
      });
    }
    await assert.rejects(ai2in.databases.get("db_doesnotexist0000000"), NotFoundError);
    await assert.rejects(ai2in.databases.resetPassword("db_doesnotexist0000000"), NotFoundError);
    await assert.rejects(ai2in.databases.delete("db_doesnotexist0000000"), NotFoundError);
    assert.deepEqual((await ai2in.databases.list()).map((d) => d.id), ids);
  });

  test("scopes: databases:read reads only; another tenant sees nothing", async () => {
    const db = await create({ engine: "postgres" });
    const reader = await ai2in.keys.create({ name: "databases-reader", scopes: ["databases:read"] });
    const none = await ai2in.keys.create({ name: "no-databases", scopes: ["sandboxes:read"] });
    const other = await ai2in.keys.create({ name: "other-databases", scopes: ["admin"], tenant: "databases-other-ts" });
    try {
      await assert.rejects(new Ai2in({ apiKey: none.key }).databases.list(), PermissionDeniedError);
      const ro = new Ai2in({ apiKey: reader.key });
      assert.ok((await ro.databases.list()).some((d) => d.id === db.id));
      assert.equal((await ro.databases.get(db.id)).url, db.url);
      assert.ok((await ro.databases.engines()).some((e) => e.engine === "postgres"));
      await assert.rejects(ro.databases.create({ engine: "postgres" }), PermissionDeniedError);
      await assert.rejects(ro.databases.resetPassword(db.id), PermissionDeniedError);
      await assert.rejects(ro.databases.delete(db.id), PermissionDeniedError);
      const stranger = new Ai2in({ apiKey: other.key });
      assert.ok(!(await stranger.databases.list()).some((d) => d.id === db.id));
      await assert.rejects(stranger.databases.get(db.id), NotFoundError);
      await assert.rejects(stranger.databases.resetPassword(db.id), NotFoundError);
      await assert.rejects(stranger.databases.delete(db.id), NotFoundError);
    } finally {
      for (const key of [reader, none, other]) await ai2in.keys.revoke(key.id);
    }
    assert.equal((await ai2in.databases.get(db.id)).url, db.url);
  });

  test("redis, when the node serves it: set and get with redis-cli; a new password", async (t) => {
    if (!engines.has("redis")) {
      t.skip("this node does not serve redis");
      return;
    }
    const db = await create({ engine: "redis" });
    assert.deepEqual([db.engine, db.version, db.status], ["redis", engines.get("redis")!.default, "available"]);
    assert.match(db.username, USERNAME);
    assert.match(db.password, PASSWORD);
    assert.equal(db.url, `redis://${db.username}:${db.password}@${db.host}:${db.port}/0`);
    assert.equal(ok(await redisCli(db.url, "set", "k", "v")), "OK");
    assert.equal(ok(await redisCli(db.url, "get", "k")), "v");

    const oldUrl = db.url;
    await db.resetPassword();
    const refused = await redisCli(oldUrl, "get", "k");
    assert.ok(!refused.stdout.split(/\s+/).includes("v"), JSON.stringify(refused));
    assert.match(refused.stdout + refused.stderr, /WRONGPASS|NOAUTH|AUTH failed/);
    assert.equal(ok(await redisCli(db.url, "get", "k")), "v");
    await db.delete();
    await assert.rejects(ai2in.databases.get(db.id), NotFoundError);
  });

  test("mysql, when the node serves it: a table with the mariadb client; a new password", async (t) => {
    if (!engines.has("mysql")) {
      t.skip("this node does not serve mysql");
      return;
    }
    const served = engines.get("mysql")!.default;
    const db = await create({ engine: "mysql", name: "shop", version: served.replace(/-MariaDB$/, "") });
    assert.deepEqual([db.engine, db.version, db.name, db.status], ["mysql", served, "shop", "available"]);
    assert.equal(db.url, `mysql://${db.username}:${db.password}@${db.host}:${db.port}/shop`);
    ok(await mariadb(db, "create table t (x int); insert into t values (41), (1)"));
    assert.equal(ok(await mariadb(db, "select sum(x) from t")), "42");

    const oldPassword = db.password;
    await db.resetPassword();
    assert.notEqual(db.password, oldPassword);
    const refused = await mariadb(db, "select 1", oldPassword);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /Access denied/);
    assert.equal(ok(await mariadb(db, "select sum(x) from t")), "42");
    await db.delete();
    await assert.rejects(ai2in.databases.get(db.id), NotFoundError);
  });
});

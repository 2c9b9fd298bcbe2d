/**
 * {@link Databases}: managed databases of the key's tenant. A database is a PostgreSQL, MySQL
 * or Redis server the node runs in a sandbox of its own, its data on a volume, restarted when
 * it dies, and reached at a `url` that holds its password (the same from the host, other
 * machines and the tenant's sandboxes).
 *
 * ```ts
 * const ai2in = new Ai2in();
 * const db = await ai2in.databases.create({ engine: "postgres" });
 * console.log(db.url); // postgres://u_…:…@10.0.0.5:21000/app
 * await db.resetPassword(); // the old password fails at once
 * await db.delete();
 * ```
 *
 * @module
 */

import { NotFoundError } from "./errors.js";
import type { CallOptions, Transport } from "./http.js";

// `await using db = await ai2in.databases.create(…)` needs Symbol.asyncDispose (as in sandbox.ts).
(Symbol as { asyncDispose?: symbol }).asyncDispose ??= Symbol.for("Symbol.asyncDispose");

/** A database server the node can run. */
export type DatabaseEngine = "postgres" | "mysql" | "redis";

/**
 * Where a database is in its life: `creating` (its server is starting for the first time),
 * `available` (it accepts connections), `restarting` (its server died and is being started
 * again; the data is kept) or `failed` (its server cannot be started).
 */
export type DatabaseStatus = "creating" | "available" | "restarting" | "failed";

/** A database as the node describes it. */
export interface DatabaseInfo {
  /** `db_…`: what names it (its name need not be unique). */
  id: string;
  /** `postgres`, `mysql` or `redis`. */
  engine: string;
  /** The server's version (`15`, `7.0`). */
  version: string;
  /** The database's name inside the server (`app` by default; Redis uses database 0). */
  name: string;
  status: DatabaseStatus;
  /**
   * The connection string, password included (`postgres://USER:PASSWORD@HOST:PORT/NAME`,
   * `redis://USER:PASSWORD@HOST:PORT/0`): the same from the host, other machines and the
   * tenant's sandboxes.
   */
  url: string;
  /** The address it is reached at. */
  host: string;
  /** Its port there, fixed for its life. */
  port: number;
  /** The user its url logs in as. */
  username: string;
  /** That user's password (also in `url`). */
  password: string;
  createdAt: Date;
  /** The memory of its server and the size of the volume holding its data. */
  resources: { memoryBytes: number; diskBytes: number };
}

/** An engine this node serves. */
export interface EngineInfo {
  /** `postgres`, `mysql` or `redis`. */
  engine: string;
  /** The versions it can run. */
  versions: string[];
  /** The version a create without one gets. */
  default: string;
  /** The image its servers run from; absent when they run from the host's packages. */
  image?: string;
}

/** A database, by its object or its id (`db_…`). */
export type DatabaseRef = DatabaseInfo | string;

/** Options of {@link Databases.create}. */
export interface DatabaseCreateOptions extends CallOptions {
  /** `postgres`, `mysql` or `redis`: one the node serves ({@link Databases.engines}). */
  engine: DatabaseEngine;
  /** One of the engine's versions; its default when absent. */
  version?: string;
  /** The database's name inside the server: 1 to 63 of `a-z 0-9 _`, starting with a letter; `app` when absent (Redis ignores it). */
  name?: string;
  /** The memory of its server, in bytes (the engine's caches are sized to it). */
  memoryBytes?: number;
  /** The size of the volume holding its data, in bytes. */
  diskBytes?: number;
}

/** Wire shape of {@link DatabaseInfo}. */
interface WireDatabase {
  id: string;
  engine: string;
  version: string;
  name: string;
  status: DatabaseStatus;
  url: string;
  host: string;
  port: number;
  username: string;
  password: string;
  created_at: string;
  resources: { memory_bytes: number; disk_bytes: number };
}

/** `ai2in.databases`: create, list, get, reset the password of and delete databases; the engines served. */
export class Databases {
  constructor(private readonly transport: Transport) {}

  /**
   * Creates a database; it resolves, status `available`, once its server accepts
   * connections. Throws {@link BadRequestError} for an engine or version the node does not
   * serve (its message lists what it does), a bad name or size; {@link QuotaExceededError}
   * past the tenant's number of databases; {@link NodeAtCapacityError} when the node has no
   * room or no free port.
   */
  async create(options: DatabaseCreateOptions): Promise<Database> {
    const body = {
      engine: options.engine,
      version: options.version,
      name: options.name,
      memory_bytes: options.memoryBytes,
      disk_bytes: options.diskBytes,
    };
    return this.database(await this.transport.json<WireDatabase>("POST", "/v1/databases", body, options));
  }

  /** The tenant's databases, oldest first. */
  async list(options?: CallOptions): Promise<Database[]> {
    const { databases } = await this.transport.json<{ databases: WireDatabase[] }>("GET", "/v1/databases", undefined, options);
    return databases.map((w) => this.database(w));
  }

  /** One database, by id (its url holds the password); {@link NotFoundError} when the tenant has none. */
  async get(database: DatabaseRef, options?: CallOptions): Promise<Database> {
    return this.database(await this.transport.json<WireDatabase>("GET", databasePath(database), undefined, options));
  }

  /** The engines this node serves, each with its versions and default version. */
  async engines(options?: CallOptions): Promise<EngineInfo[]> {
    const { engines } = await this.transport.json<{ engines: EngineInfo[] }>("GET", "/v1/databases/engines", undefined, options);
    return engines.map((e) => ({
      engine: e.engine,
      versions: e.versions,
      default: e.default,
      ...(e.image === undefined ? {} : { image: e.image }),
    }));
  }

  /** Gives a database's user a new password and resolves with it in its url; the old password fails at once. */
  async resetPassword(database: DatabaseRef, options?: CallOptions): Promise<Database> {
    return this.database(await this.transport.json<WireDatabase>("POST", `${databasePath(database)}/reset_password`, undefined, options));
  }

  /** Deletes a database: its server, its data and its port. */
  async delete(database: DatabaseRef, options?: CallOptions): Promise<void> {
    await this.transport.call("DELETE", databasePath(database), undefined, options);
  }

  private database(w: WireDatabase): Database {
    return new Database(this, toDatabaseInfo(w));
  }
}

/**
 * A managed database: its last known state (the fields of {@link DatabaseInfo}) and what can
 * be done to it. From `ai2in.databases.create`, `get` or `list`; `refresh` and
 * `resetPassword` update it in place. `await using` deletes it at the end of the scope.
 */
export class Database implements DatabaseInfo {
  id!: string;
  engine!: string;
  version!: string;
  name!: string;
  status!: DatabaseStatus;
  url!: string;
  host!: string;
  port!: number;
  username!: string;
  password!: string;
  createdAt!: Date;
  resources!: { memoryBytes: number; diskBytes: number };

  /** A true private field: not enumerable, so it neither prints nor compares. */
  readonly #databases: Databases;

  /** @internal */
  constructor(databases: Databases, info: DatabaseInfo) {
    this.#databases = databases;
    Object.assign(this, info);
  }

  /** Fetches its current state ({@link NotFoundError} once deleted). */
  async refresh(options?: CallOptions): Promise<this> {
    return this.update(await this.#databases.get(this.id, options));
  }

  /** Gives its user a new password, in `url` and `password`; the old one fails at once. */
  async resetPassword(options?: CallOptions): Promise<this> {
    return this.update(await this.#databases.resetPassword(this.id, options));
  }

  /** Deletes it: its server, its data and its port. */
  async delete(options?: CallOptions): Promise<void> {
    await this.#databases.delete(this.id, options);
  }

  /** `await using db = await ai2in.databases.create(…)` deletes it at the end of the scope. */
  async [Symbol.asyncDispose](): Promise<void> {
    try {
      await this.delete();
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e;
    }
  }

  /** Takes the state of `other`, the same database as the node answered it just now. */
  private update(other: Database): this {
    Object.assign(this, other); // its own fields: the #private one is not copied
    return this;
  }
}

function databasePath(database: DatabaseRef): string {
  return `/v1/databases/${encodeURIComponent(typeof database === "string" ? database : database.id)}`;
}

function toDatabaseInfo(w: WireDatabase): DatabaseInfo {
  return {
    id: w.id,
    engine: w.engine,
    version: w.version,
    name: w.name,
    status: w.status,
    url: w.url,
    host: w.host,
    port: w.port,
    username: w.username,
    password: w.password,
    createdAt: new Date(w.created_at),
    resources: { memoryBytes: w.resources.memory_bytes, diskBytes: w.resources.disk_bytes },
  };
}

/**
 * {@link Ai2in}: node-level calls that belong to no sandbox: the tenant's images, volumes,
 * hosted services and managed databases, and the admin's API keys and cluster nodes.
 *
 * ```ts
 * const ai2in = new Ai2in();
 * const image = await ai2in.images.pull("python:3.12-slim");
 * const volume = await ai2in.volumes.create({ sizeBytes: 2 ** 30, name: "cache" });
 * const web = await ai2in.services.deploy({
 *   name: "web",
 *   image: "host",
 *   internalPort: 8000,
 *   startCmd: "python3 -m http.server 8000",
 * });
 * const db = await ai2in.databases.create({ engine: "postgres" });
 * console.log(db.url); // postgres://u_…:…@HOST:PORT/app
 *
 * // AI2IN_API_KEY must be an admin key for these:
 * const { key, id } = await ai2in.keys.create({ name: "ci", scopes: ["sandboxes:write"] });
 * await ai2in.keys.revoke(id);
 * console.log((await ai2in.nodes.list()).map((n) => `${n.id} ${n.status}`));
 * ```
 *
 * @module
 */

import { Databases } from "./databases.js";
import { type CallOptions, type ConnectionOptions, Transport } from "./http.js";
import { Images } from "./images.js";
import { Nodes } from "./nodes.js";
import { Services } from "./services.js";
import { Volumes } from "./volumes.js";

/** An API key as listed (never with its secret). */
export interface KeyInfo {
  /** `key_…`. */
  id: string;
  name: string;
  /** E.g. `sandboxes:read`, `sandboxes:write`, `admin` (which implies all). */
  scopes: string[];
  /** The tenant it acts for; what it creates belongs to that tenant. */
  tenant: string;
  createdAt: Date;
}

/** A key just created: the only time its secret is shown. */
export interface CreatedKey extends KeyInfo {
  /** The secret, `ai2in_live_…`. */
  key: string;
}

/** Options of {@link Keys.create}. */
export interface KeyCreateOptions extends CallOptions {
  name: string;
  scopes: string[];
  /** The tenant the key acts for; the caller's when absent. */
  tenant?: string;
}

interface WireKey {
  id: string;
  name: string;
  scopes: string[];
  tenant: string;
  created_at: string;
  key?: string;
}

/** A client of one node with one key. */
export class Ai2in {
  /** The tenant's images: pull, import, list, get, delete. */
  readonly images: Images;
  /** The tenant's volumes: create, list, get, delete. */
  readonly volumes: Volumes;
  /** The tenant's hosted services: deploy, list, get, logs, followLogs, redeploy, stop, start, delete. */
  readonly services: Services;
  /** The tenant's managed databases: create, list, get, engines, resetPassword, delete. */
  readonly databases: Databases;
  /** API keys (needs an admin key). */
  readonly keys: Keys;
  /** The cluster's nodes: list, drain (needs an admin key; a node on its own lists itself). */
  readonly nodes: Nodes;

  constructor(options: ConnectionOptions = {}) {
    const transport = new Transport(options);
    this.images = new Images(transport);
    this.volumes = new Volumes(transport);
    this.services = new Services(transport);
    this.databases = new Databases(transport);
    this.keys = new Keys(transport);
    this.nodes = new Nodes(transport);
  }
}

/** `ai2in.keys`: create, list and revoke API keys. */
export class Keys {
  constructor(private readonly transport: Transport) {}

  /** A new key; its secret is in `key`, shown only now. */
  async create(options: KeyCreateOptions): Promise<CreatedKey> {
    const body = { name: options.name, scopes: options.scopes, tenant: options.tenant };
    const w = await this.transport.json<WireKey & { key: string }>("POST", "/v1/keys", body, options);
    return { ...toKeyInfo(w), key: w.key };
  }

  /** The keys that are not revoked. */
  async list(options?: CallOptions): Promise<KeyInfo[]> {
    const { keys } = await this.transport.json<{ keys: WireKey[] }>("GET", "/v1/keys", undefined, options);
    return keys.map(toKeyInfo);
  }

  /** Revokes a key, effective at once. */
  async revoke(key: KeyInfo | string, options?: CallOptions): Promise<void> {
    const id = typeof key === "string" ? key : key.id;
    await this.transport.call("DELETE", `/v1/keys/${encodeURIComponent(id)}`, undefined, options);
  }
}

function toKeyInfo(w: WireKey): KeyInfo {
  return { id: w.id, name: w.name, scopes: w.scopes, tenant: w.tenant, createdAt: new Date(w.created_at) };
}

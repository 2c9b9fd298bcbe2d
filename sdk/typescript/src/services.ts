/**
 * {@link Services}: hosted services of the key's tenant. A service is a process the node
 * keeps running in a sandbox of its own (restarting it after an exit, with a backoff) and,
 * with an `internalPort`, serves at a stable public URL through its proxy.
 *
 * ```ts
 * const ai2in = new Ai2in();
 * const web = await ai2in.services.deploy({
 *   name: "web",
 *   image: "host",
 *   internalPort: 8000,
 *   startCmd: "python3 -m http.server 8000",
 * });
 * await web.waitUntilRunning();
 * console.log(web.url); // http://web-….localhost:4747/
 * for (const line of (await web.logs()).logs) console.log(line.stream, line.line);
 * await web.delete();
 * ```
 *
 * @module
 */

import { sleep } from "./commands.js";
import { Ai2inError, NotFoundError, RequestTimeoutError } from "./errors.js";
import type { CallOptions, Transport } from "./http.js";
import type { Image } from "./images.js";
import { type VolumeAttachment, type VolumeMount, type WireVolumeAttachment, toAttachment, toWireMount } from "./volumes.js";

// `await using svc = await ai2in.services.deploy(…)` needs Symbol.asyncDispose (as in sandbox.ts).
(Symbol as { asyncDispose?: symbol }).asyncDispose ??= Symbol.for("Symbol.asyncDispose");

/**
 * Where a service is in its life: `deploying` (its port does not accept connections yet, or
 * its health path fails), `running`, `crashed` (its process exited; it restarts at
 * `nextRestartAt`) or `stopped` (by its owner; `start` starts it again).
 */
export type ServiceStatus = "deploying" | "running" | "crashed" | "stopped";

/** Which stream a log line came from; `system` lines say what the node did. */
export type LogStream = "stdout" | "stderr" | "system";

/** How a service's process last ended. */
export interface ServiceExit {
  /** Its exit status; `null` when a signal ended it. */
  exitCode: number | null;
  /** The signal that ended it, if one did. */
  signal: number | null;
  at: Date;
}

/** A service as the node describes it. */
export interface ServiceInfo {
  /** `svc_…`. */
  id: string;
  /** Unique among the tenant's services; part of its URL. */
  name: string;
  /** The image it runs, as given. */
  image: string;
  /** The content digest of the image's current deploy; `null` for `host`. */
  imageDigest: string | null;
  status: ServiceStatus;
  /** Its public URL, stable for its whole life; `null` without an internal port. */
  url: string | null;
  /** The port it listens on inside. */
  internalPort: number | null;
  /** Its start command; `null`: the image's entrypoint and cmd. */
  startCmd: string | null;
  /** The path that decides readiness; `null`: the open port is enough. */
  healthPath: string | null;
  createdAt: Date;
  /** When the last deploy or redeploy became current. */
  deployedAt: Date | null;
  /** How many times the node restarted its process after an exit. */
  restarts: number;
  /** How its process last ended. */
  lastExit: ServiceExit | null;
  /** When it restarts next, while crashed. */
  nextRestartAt: Date | null;
  /**
   * The sandbox of its current instance, while one runs: `Sandbox.connect` it to run
   * commands or read files there (it is not listed, and cannot be killed or paused).
   */
  sandboxId: string | null;
  /** The resources of each instance. */
  resources: { cpu: number; memoryBytes: number; diskBytes: number };
  /** The volumes mounted in each instance. */
  volumes: VolumeAttachment[];
}

/** One line of a service's log. */
export interface LogLine {
  /** Its position in the log: increasing, never reused (a cursor for `since`). */
  seq: number;
  timestamp: Date;
  stream: LogStream;
  /**
   * The line without its newline. Bytes that are not UTF-8 show as U+FFFD; a line over
   * 8 KiB is cut and ends with `… [N bytes cut]`.
   */
  line: string;
}

/** Lines of a service's log, and the cursor after them. */
export interface ServiceLogs {
  /** Oldest first. */
  logs: LogLine[];
  /** Pass it as `since` for the lines that follow. */
  nextSince: number;
}

/** A service, by its object, id (`svc_…`) or name. */
export type ServiceRef = ServiceInfo | string;

/** Options of {@link Services.deploy}. */
export interface ServiceDeployOptions extends CallOptions {
  /** 1 to 40 of `a-z 0-9 -`, not starting or ending with `-`; unique among the tenant's services. */
  name: string;
  /** `host`, an `img_…` id, a reference (pulled if the tenant lacks it) or an {@link Image}. */
  image: string | Image;
  /** The port it listens on inside; the service has a URL only with one. */
  internalPort?: number;
  /** Variables over the image's environment (never echoed back). */
  env?: Record<string, string>;
  /** Run by `/bin/sh -c`; the image's entrypoint and cmd when absent. */
  startCmd?: string;
  /** A path (`/healthz`) that must answer 2xx or 3xx before it is `running`; the open port is enough when absent. */
  healthPath?: string;
  /** CPU cores of each instance. */
  cpu?: number;
  /** Memory of each instance, in bytes. */
  memoryBytes?: number;
  /** Disk of each instance's writable layer, in bytes (a restart empties it: keep data on volumes). */
  diskBytes?: number;
  /** Volumes mounted in every instance, as for `Sandbox.create`. */
  volumes?: VolumeMount[];
}

/** Options of {@link Services.redeploy}: the fields that change. */
export interface ServiceRedeployOptions extends CallOptions {
  /** A new image (pulled again even when unchanged: a tag may have moved). */
  image?: string | Image;
  /** A new environment: it replaces the old one whole. */
  env?: Record<string, string>;
  startCmd?: string;
  internalPort?: number;
  healthPath?: string;
}

/** Options of {@link Services.logs}. */
export interface ServiceLogsOptions extends CallOptions {
  /** Only lines after this cursor (a `nextSince` or a line's `seq`); the most recent when absent. */
  since?: number;
  /** At most this many lines (default 100, at most 1000). */
  limit?: number;
}

/** Options of {@link Services.followLogs}. */
export interface FollowLogsOptions extends CallOptions {
  /** Start after this cursor; the last 100 lines first when absent. */
  since?: number;
}

/** Options of {@link Service.waitUntilRunning}. */
export interface WaitUntilRunningOptions extends CallOptions {
  /** Give up after this many milliseconds (default 60 000). */
  timeoutMs?: number;
}

/** Wire shape of {@link ServiceInfo}. */
interface WireService {
  id: string;
  name: string;
  image: string;
  image_digest?: string | null;
  status: ServiceStatus;
  url?: string | null;
  internal_port?: number | null;
  start_cmd?: string | null;
  health_path?: string | null;
  created_at: string;
  deployed_at?: string | null;
  restarts?: number;
  last_exit?: { exit_code: number | null; signal?: number | null; at: string } | null;
  next_restart_at?: string | null;
  sandbox_id?: string | null;
  resources: { cpu: number; memory_bytes: number; disk_bytes: number };
  volumes?: WireVolumeAttachment[];
}

/** Wire shape of {@link LogLine}. */
interface WireLogLine {
  seq: number;
  timestamp: string;
  stream: LogStream;
  line: string;
}

/** How long {@link Service.waitUntilRunning} sleeps between polls: from the first, up to the last. */
const POLL_MIN_MS = 100;
const POLL_MAX_MS = 1_000;

/** `ai2in.services`: deploy, list, get, follow the logs of, redeploy, stop, start and delete services. */
export class Services {
  constructor(private readonly transport: Transport) {}

  /**
   * Deploys a new service; it resolves, status `deploying`, once its process started
   * ({@link Service.waitUntilRunning} waits for its port, or its health path). Throws
   * {@link BadRequestError} for a bad name or field (or an image with neither `startCmd`
   * nor an entrypoint or cmd), {@link AlreadyExistsError} for a name taken,
   * {@link QuotaExceededError} past the tenant's number of services,
   * {@link NodeAtCapacityError} when the node has no room, and the pull's errors.
   */
  async deploy(options: ServiceDeployOptions): Promise<Service> {
    const image = options.image;
    const body = {
      name: options.name,
      image: typeof image === "object" && image !== null ? image.id : image,
      internal_port: options.internalPort,
      env: options.env,
      start_cmd: options.startCmd,
      health_path: options.healthPath,
      cpu: options.cpu,
      memory_bytes: options.memoryBytes,
      disk_bytes: options.diskBytes,
      volumes: options.volumes?.map(toWireMount),
    };
    return this.service(await this.transport.json<WireService>("POST", "/v1/hosting/services", body, options));
  }

  /** The tenant's services, oldest first. */
  async list(options?: CallOptions): Promise<Service[]> {
    const { services } = await this.transport.json<{ services: WireService[] }>("GET", "/v1/hosting/services", undefined, options);
    return services.map((w) => this.service(w));
  }

  /** One service, by id or name; {@link NotFoundError} when the tenant has none. */
  async get(service: ServiceRef, options?: CallOptions): Promise<Service> {
    return this.service(await this.transport.json<WireService>("GET", servicePath(service), undefined, options));
  }

  /**
   * A service's log lines (`stdout`, `stderr`, `system`), oldest first: those after `since`,
   * else the most recent; and `nextSince`, the cursor for the lines that follow.
   */
  async logs(service: ServiceRef, options: ServiceLogsOptions = {}): Promise<ServiceLogs> {
    const body = { since: options.since, limit: options.limit };
    const w = await this.transport.json<{ logs: WireLogLine[]; next_since: number }>(
      "POST",
      `${servicePath(service)}/logs`,
      body,
      options,
    );
    return { logs: w.logs.map(toLogLine), nextSince: w.next_since };
  }

  /**
   * A service's log lines as they are written, forever: first those after `since` (the last
   * 100 when absent), then the new ones. Leaving the loop, or aborting `signal` (which throws
   * its reason), closes the connection.
   *
   * ```ts
   * const controller = new AbortController();
   * for await (const line of ai2in.services.followLogs("web", { signal: controller.signal })) {
   *   console.log(line.stream, line.line);
   * }
   * ```
   */
  async *followLogs(service: ServiceRef, options: FollowLogsOptions = {}): AsyncGenerator<LogLine, void, undefined> {
    const query = options.since === undefined ? "" : `?since=${encodeURIComponent(String(options.since))}`;
    for await (const sse of this.transport.events("GET", `${servicePath(service)}/logs/stream${query}`, undefined, options)) {
      if (sse.event === "log") yield toLogLine(JSON.parse(sse.data) as WireLogLine);
      else if (sse.event === "error") throw new Ai2inError(`the log stream failed: ${String(JSON.parse(sse.data).error)}`);
    }
  }

  /**
   * Deploys a new instance with the changes given and resolves once it serves in place of
   * the old one. Throws {@link DeployFailedError} (422) when the new instance never became
   * ready: the old one keeps serving.
   */
  async redeploy(service: ServiceRef, options: ServiceRedeployOptions = {}): Promise<Service> {
    const image = options.image;
    const body = {
      image: typeof image === "object" && image !== null ? image.id : image,
      env: options.env,
      start_cmd: options.startCmd,
      internal_port: options.internalPort,
      health_path: options.healthPath,
    };
    return this.service(await this.transport.json<WireService>("POST", `${servicePath(service)}/redeploy`, body, options));
  }

  /** Stops a service (SIGTERM, a grace period, SIGKILL): status `stopped`, its URL answers 503. */
  async stop(service: ServiceRef, options?: CallOptions): Promise<Service> {
    return this.service(await this.transport.json<WireService>("POST", `${servicePath(service)}/stop`, undefined, options));
  }

  /** Starts a stopped service again (status `deploying`; nothing when it is not stopped). */
  async start(service: ServiceRef, options?: CallOptions): Promise<Service> {
    return this.service(await this.transport.json<WireService>("POST", `${servicePath(service)}/start`, undefined, options));
  }

  /** Stops and deletes a service (by id or name); its name is free again. */
  async delete(service: ServiceRef, options?: CallOptions): Promise<void> {
    await this.transport.call("DELETE", servicePath(service), undefined, options);
  }

  private service(w: WireService): Service {
    return new Service(this, toServiceInfo(w));
  }
}

/**
 * A hosted service: its last known state (the fields of {@link ServiceInfo}) and what can
 * be done to it. From `ai2in.services.deploy`, `get` or `list`; `refresh`, `redeploy`,
 * `stop` and `start` update it in place. `await using` deletes it at the end of the scope.
 */
export class Service implements ServiceInfo {
  id!: string;
  name!: string;
  image!: string;
  imageDigest!: string | null;
  status!: ServiceStatus;
  url!: string | null;
  internalPort!: number | null;
  startCmd!: string | null;
  healthPath!: string | null;
  createdAt!: Date;
  deployedAt!: Date | null;
  restarts!: number;
  lastExit!: ServiceExit | null;
  nextRestartAt!: Date | null;
  sandboxId!: string | null;
  resources!: { cpu: number; memoryBytes: number; diskBytes: number };
  volumes!: VolumeAttachment[];

  /** A true private field: not enumerable, so it neither prints nor compares. */
  readonly #services: Services;

  /** @internal */
  constructor(services: Services, info: ServiceInfo) {
    this.#services = services;
    Object.assign(this, info);
  }

  /** Fetches its current state ({@link NotFoundError} once deleted). */
  async refresh(options?: CallOptions): Promise<this> {
    return this.update(await this.#services.get(this.id, options));
  }

  /**
   * Polls until its status is `running` (through `deploying`, and `crashed` and restarts)
   * and resolves with it; past `timeoutMs` (default 60 s) throws {@link RequestTimeoutError}
   * naming the last status. A stopped service does not run until {@link Service.start}.
   */
  async waitUntilRunning(options: WaitUntilRunningOptions = {}): Promise<this> {
    const timeoutMs = options.timeoutMs ?? 60_000;
    const deadline = Date.now() + timeoutMs;
    let pause = POLL_MIN_MS;
    for (;;) {
      await this.refresh(options);
      if (this.status === "running") return this;
      const left = deadline - Date.now();
      if (left <= 0) {
        let how = `it is ${this.status}`;
        if (this.lastExit) {
          const e = this.lastExit;
          how += `; its process last exited with ${e.exitCode === null ? `signal ${e.signal}` : `status ${e.exitCode}`}`;
        }
        throw new RequestTimeoutError(`service ${this.name} was not running after ${timeoutMs} ms: ${how} (its logs say why)`);
      }
      await sleep(Math.min(pause, left), options.signal);
      pause = Math.min(pause * 2, POLL_MAX_MS);
    }
  }

  /** Its log lines after `since` (else the most recent), at most `limit`; see {@link Services.logs}. */
  logs(options?: ServiceLogsOptions): Promise<ServiceLogs> {
    return this.#services.logs(this.id, options);
  }

  /** Its log lines as they are written, forever; see {@link Services.followLogs}. */
  followLogs(options?: FollowLogsOptions): AsyncGenerator<LogLine, void, undefined> {
    return this.#services.followLogs(this.id, options);
  }

  /** Redeploys it with the changes given; see {@link Services.redeploy}. */
  async redeploy(options?: ServiceRedeployOptions): Promise<this> {
    return this.update(await this.#services.redeploy(this.id, options));
  }

  /** Stops it: status `stopped`, its URL answers 503 until {@link Service.start}. */
  async stop(options?: CallOptions): Promise<this> {
    return this.update(await this.#services.stop(this.id, options));
  }

  /** Starts it again when stopped (status `deploying`). */
  async start(options?: CallOptions): Promise<this> {
    return this.update(await this.#services.start(this.id, options));
  }

  /** Stops and deletes it. */
  async delete(options?: CallOptions): Promise<void> {
    await this.#services.delete(this.id, options);
  }

  /** `await using svc = await ai2in.services.deploy(…)` deletes it at the end of the scope. */
  async [Symbol.asyncDispose](): Promise<void> {
    try {
      await this.delete();
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e;
    }
  }

  /** Takes the state of `other`, the same service as the node answered it just now. */
  private update(other: Service): this {
    Object.assign(this, other); // its own fields: the #private one is not copied
    return this;
  }
}

function servicePath(service: ServiceRef): string {
  return `/v1/hosting/services/${encodeURIComponent(typeof service === "string" ? service : service.id)}`;
}

function toServiceInfo(w: WireService): ServiceInfo {
  const exit = w.last_exit;
  return {
    id: w.id,
    name: w.name,
    image: w.image,
    imageDigest: w.image_digest ?? null,
    status: w.status,
    url: w.url ?? null,
    internalPort: w.internal_port ?? null,
    startCmd: w.start_cmd ?? null,
    healthPath: w.health_path ?? null,
    createdAt: new Date(w.created_at),
    deployedAt: optionalDate(w.deployed_at),
    restarts: w.restarts ?? 0,
    lastExit: exit ? { exitCode: exit.exit_code ?? null, signal: exit.signal ?? null, at: new Date(exit.at) } : null,
    nextRestartAt: optionalDate(w.next_restart_at),
    sandboxId: w.sandbox_id ?? null,
    resources: {
      cpu: w.resources.cpu,
      memoryBytes: w.resources.memory_bytes,
      diskBytes: w.resources.disk_bytes,
    },
    volumes: (w.volumes ?? []).map(toAttachment),
  };
}

function optionalDate(value: string | null | undefined): Date | null {
  return value === null || value === undefined ? null : new Date(value);
}

function toLogLine(w: WireLogLine): LogLine {
  return { seq: w.seq, timestamp: new Date(w.timestamp), stream: w.stream, line: w.line };
}

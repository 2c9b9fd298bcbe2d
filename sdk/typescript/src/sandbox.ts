/**
 * {@link Sandbox}: create, find and manage sandboxes, and run code in them.
 *
 * ```ts
 * import { Sandbox } from "@ai2in/sdk";
 *
 * const sbx = await Sandbox.create();
 * try {
 *   const ex = await sbx.runCode("1 + 1");
 *   console.log(ex.text); // "2"
 * } finally {
 *   await sbx.kill();
 * }
 * ```
 *
 * @module
 */

import { Commands } from "./commands.js";
import { Desktop, type DesktopOptions } from "./desktop.js";
import { Ai2inError, ConnectionError, NotFoundError, SandboxEndedError } from "./errors.js";
import { type ExecutionError, type ExecutionEvent, Execution, Result, type WireExecution, type WireResult } from "./execution.js";
import { Files } from "./files.js";
import { type CallOptions, type ConnectionOptions, Transport } from "./http.js";
import { type Image, type WireImage, toImage } from "./images.js";
import { Pty } from "./pty.js";
import type { SseEvent } from "./sse.js";
import {
  type Egress,
  type SandboxInfo,
  type SandboxMetrics,
  type SandboxStatus,
  type WireMetrics,
  type WireSandbox,
  toMetrics,
  toSandboxInfo,
} from "./types.js";
import { type VolumeMount, toWireMount } from "./volumes.js";

// `await using sbx = await Sandbox.create()` needs Symbol.asyncDispose, which Node 20.4+ and
// recent browsers have. Elsewhere this names it the way TypeScript's helpers and core-js do.
(Symbol as { asyncDispose?: symbol }).asyncDispose ??= Symbol.for("Symbol.asyncDispose");

/** Options of {@link Sandbox.create}. */
export interface SandboxCreateOptions extends ConnectionOptions, CallOptions {
  /**
   * Image to start from: a reference (pulled if the tenant lacks it), an image id, an
   * {@link Image} or `"host"`; the node's default (`host`) when absent.
   */
  image?: string | Image;
  /**
   * A graphical desktop, driven through {@link Sandbox.desktop}: `true` for an X display of
   * 1280×800 at 96 dpi with a window manager, or its screen, e.g. `{ width: 1024, height: 768 }`.
   */
  desktop?: boolean | DesktopOptions;
  /** Environment variables of every process in the sandbox (never echoed back). */
  env?: Record<string, string>;
  /** Lifetime in milliseconds (default 300 000; at most 24 h). */
  timeoutMs?: number;
  /** Free-form labels, usable as {@link Sandbox.list} filters. */
  metadata?: Record<string, string>;
  /** CPU quota in cores. */
  cpu?: number;
  /** Memory limit in bytes. */
  memoryBytes?: number;
  /** Size limit of the writable layer in bytes (a disk of its own, not counted as memory). */
  diskBytes?: number;
  /** `deny` cuts the sandbox off from the outside (default `allow`). */
  egress?: Egress;
  /**
   * Volumes to mount, e.g. `[{ volumeId: volume.id, path: "/data" }]`; `readOnly: true`
   * mounts one read-only. A volume is mounted read-write by one live sandbox at a time.
   */
  volumes?: VolumeMount[];
}

/** Options of {@link Sandbox.snapshot}. */
export interface SnapshotOptions extends CallOptions {
  /** The image's reference, `name:tag`; `localhost/snapshots/{sandbox id}:{unix ms}` when absent. */
  ref?: string;
}

/** Options of {@link Sandbox.list}. */
export interface SandboxListOptions extends ConnectionOptions, CallOptions {
  /** Only sandboxes with this status. */
  status?: SandboxStatus;
  /** Only sandboxes whose metadata has all these pairs. */
  metadata?: Record<string, string>;
}

/** A language the node runs code in (others are refused with a 400). */
export type Language = "python" | "javascript" | "bash";

/** A stateful code context: variables, imports and the cwd persist between runs. */
export interface Context {
  /** `ctx_…`. */
  id: string;
  language: string;
  /** Its starting working directory. */
  cwd: string;
  /** Whether its interpreter runs now. */
  alive: boolean;
}

/** Options of {@link Sandbox.runCode} and {@link Sandbox.runCodeStream}. */
export interface RunCodeOptions extends CallOptions {
  /** Default `python`; may be left out with a `context`. */
  language?: Language;
  /** The context to run in; the language's default context when absent. */
  context?: Context | string;
  /** Interrupt the run after this many milliseconds (the context survives). */
  timeoutMs?: number;
  /** Environment variables for this run (kept by the context). */
  env?: Record<string, string>;
}

/** Callbacks of {@link Sandbox.runCode}; any of them makes the run stream. */
export interface RunCodeCallbacks {
  onStdout?: (text: string) => void;
  onStderr?: (text: string) => void;
  onResult?: (result: Result) => void;
  onError?: (error: ExecutionError) => void;
}

interface WireContext {
  context_id: string;
  language: string;
  cwd: string;
  alive: boolean;
}

/**
 * A sandbox. Get one with {@link Sandbox.create} or {@link Sandbox.connect}; it is
 * destroyed by {@link Sandbox.kill}, at the end of its lifetime, or by `await using`.
 */
export class Sandbox {
  /** `sbx_…`. */
  readonly id: string;
  /** Shell commands, in the foreground or the background. */
  readonly commands: Commands;
  /** The sandbox's filesystem. */
  readonly files: Files;
  /** Interactive terminals. */
  readonly pty: Pty;
  /** The graphical desktop of a sandbox created with `desktop`: screen, mouse, keyboard, windows. */
  readonly desktop: Desktop;

  private readonly transport: Transport;
  private readonly path: string;

  private constructor(id: string, transport: Transport) {
    this.id = id;
    this.transport = transport;
    this.path = `/v1/sandboxes/${encodeURIComponent(id)}`;
    this.commands = new Commands(transport, this.path);
    this.files = new Files(transport, this.path);
    this.pty = new Pty(transport, this.path);
    this.desktop = new Desktop(transport, this.path);
  }

  /**
   * Creates a sandbox; it is ready to run code when this resolves.
   *
   * ```ts
   * const sbx = await Sandbox.create({ timeoutMs: 60_000, metadata: { job: "42" } });
   * const gui = await Sandbox.create({ desktop: { width: 1024, height: 768 } });
   * ```
   */
  static async create(options: SandboxCreateOptions = {}): Promise<Sandbox> {
    const volumes = options.volumes?.map(toWireMount);
    const transport = new Transport(options);
    const body = {
      image: typeof options.image === "object" ? options.image.id : options.image,
      desktop: options.desktop,
      env: options.env,
      timeout_ms: options.timeoutMs,
      metadata: options.metadata,
      cpu: options.cpu,
      memory_bytes: options.memoryBytes,
      disk_bytes: options.diskBytes,
      network: options.egress === undefined ? undefined : { egress: options.egress },
      volumes,
    };
    const info = await transport.json<WireSandbox>("POST", "/v1/sandboxes", body, options);
    return new Sandbox(info.id, transport);
  }

  /**
   * A handle on an existing sandbox; throws {@link NotFoundError} if there is none (or it is
   * another tenant's), {@link SandboxEndedError} if it has ended.
   */
  static async connect(id: string, options: ConnectionOptions & CallOptions = {}): Promise<Sandbox> {
    const sandbox = new Sandbox(id, new Transport(options));
    await sandbox.info(options);
    return sandbox;
  }

  /** The caller's live sandboxes, optionally filtered by status and metadata. */
  static async list(options: SandboxListOptions = {}): Promise<SandboxInfo[]> {
    const transport = new Transport(options);
    const query = new URLSearchParams();
    if (options.status) query.set("status", options.status);
    for (const [key, value] of Object.entries(options.metadata ?? {})) query.set(`metadata.${key}`, value);
    const path = query.toString() ? `/v1/sandboxes?${query}` : "/v1/sandboxes";
    const { sandboxes } = await transport.json<{ sandboxes: WireSandbox[] }>("GET", path, undefined, options);
    return sandboxes.map(toSandboxInfo);
  }

  /** Status, lifetime, resources and metadata. */
  async info(options?: CallOptions): Promise<SandboxInfo> {
    return toSandboxInfo(await this.transport.json<WireSandbox>("GET", this.path, undefined, options));
  }

  /** Destroys the sandbox. Resolves `false` if it had already ended (or never existed). */
  async kill(options?: CallOptions): Promise<boolean> {
    try {
      await this.transport.call("DELETE", this.path, undefined, options);
      return true;
    } catch (e) {
      if (e instanceof NotFoundError || e instanceof SandboxEndedError) return false;
      throw e;
    }
  }

  /** `await using sbx = await Sandbox.create()` kills the sandbox at the end of the scope. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.kill();
  }

  /** Freezes every process; other calls answer {@link SandboxPausedError} until resumed. */
  async pause(options?: CallOptions): Promise<SandboxInfo> {
    return this.lifecycle("/pause", undefined, options);
  }

  /** Thaws a paused sandbox. */
  async resume(options?: CallOptions): Promise<SandboxInfo> {
    return this.lifecycle("/resume", undefined, options);
  }

  /** Sets the hard lifetime to `ms` from now (it may shorten it; at most 24 h). */
  async setTimeout(ms: number, options?: CallOptions): Promise<SandboxInfo> {
    return this.lifecycle("/timeout", { timeout_ms: ms }, options);
  }

  /** Live CPU, memory, disk, process and network figures. */
  async metrics(options?: CallOptions): Promise<SandboxMetrics> {
    return toMetrics(await this.transport.json<WireMetrics>("GET", `${this.path}/metrics`, undefined, options));
  }

  /**
   * The public URL of `port` inside the sandbox, served through the node's proxy (the
   * server may listen on 127.0.0.1 only).
   */
  async expose(port: number, options?: CallOptions): Promise<string> {
    const { url } = await this.transport.json<{ url: string }>("POST", `${this.path}/expose`, { port }, options);
    return url;
  }

  /**
   * Saves the sandbox's files (its image plus everything it wrote; not its volumes) as a new
   * {@link Image}, with `source: "snapshot"`. The sandbox is frozen for the moment it takes
   * and keeps running after. Sandboxes created from the image start from a fork of these files.
   *
   * ```ts
   * await sbx.commands.run("pip install requests");
   * const image = await sbx.snapshot({ ref: "with-requests:1" });
   * await using fork = await Sandbox.create({ image });
   * ```
   */
  async snapshot(options: SnapshotOptions = {}): Promise<Image> {
    const body = { ref: options.ref };
    return toImage(await this.transport.json<WireImage>("POST", `${this.path}/snapshot`, body, options));
  }

  /**
   * Runs `code` and resolves with its {@link Execution}. An error in the code is not
   * thrown: it is `execution.error`. With any `on…` callback the run streams, and the
   * callbacks see output as it comes.
   *
   * ```ts
   * const ex = await sbx.runCode("print('hi')\n6 * 7", { onStdout: (t) => console.log(t) });
   * ex.text; // "42"
   * ```
   */
  async runCode(code: string, options: RunCodeOptions & RunCodeCallbacks = {}): Promise<Execution> {
    const { onStdout, onStderr, onResult, onError } = options;
    if (!onStdout && !onStderr && !onResult && !onError) {
      const wire = await this.transport.json<WireExecution>("POST", `${this.path}/run`, runBody(code, options), options);
      return new Execution(wire);
    }
    for await (const event of this.runCodeStream(code, options)) {
      if (event.type === "stdout") onStdout?.(event.text);
      else if (event.type === "stderr") onStderr?.(event.text);
      else if (event.type === "result") onResult?.(event.result);
      else if (event.type === "error") onError?.(event.error);
      else return event.execution;
    }
    throw new ConnectionError("the run's stream ended before its done event");
  }

  /**
   * Runs `code`, yielding its events as they happen; the last one is `done` with the whole
   * Execution. Aborting `signal`, or leaving the loop early, closes the stream, and the node
   * interrupts the run.
   *
   * ```ts
   * for await (const ev of sbx.runCodeStream("print(1)\n2")) {
   *   if (ev.type === "stdout") console.log(ev.text);
   * }
   * ```
   */
  async *runCodeStream(code: string, options: RunCodeOptions = {}): AsyncGenerator<ExecutionEvent, void, undefined> {
    const events = this.transport.events("POST", `${this.path}/run/stream`, runBody(code, options), options);
    for await (const sse of events) {
      const event = toExecutionEvent(sse);
      if (!event) continue;
      yield event;
      if (event.type === "done") return;
    }
    throw new ConnectionError("the run's stream ended before its done event");
  }

  /** A new context of `language` (default cwd `/home/user`). */
  async createContext(options: { language: Language; cwd?: string } & CallOptions): Promise<Context> {
    const body = { language: options.language, cwd: options.cwd };
    return toContext(await this.transport.json<WireContext>("POST", `${this.path}/contexts`, body, options));
  }

  /** The sandbox's contexts, the default ones included once used. */
  async listContexts(options?: CallOptions): Promise<Context[]> {
    const { contexts } = await this.transport.json<{ contexts: WireContext[] }>("GET", `${this.path}/contexts`, undefined, options);
    return contexts.map(toContext);
  }

  /** Restarts a context's interpreter: its state is lost, the context stays. */
  async restartContext(context: Context | string, options?: CallOptions): Promise<Context> {
    const path = `${this.path}/contexts/${contextId(context)}/restart`;
    return toContext(await this.transport.json<WireContext>("POST", path, undefined, options));
  }

  /** Deletes a context. */
  async deleteContext(context: Context | string, options?: CallOptions): Promise<void> {
    await this.transport.call("DELETE", `${this.path}/contexts/${contextId(context)}`, undefined, options);
  }

  private async lifecycle(suffix: string, body: object | undefined, options?: CallOptions): Promise<SandboxInfo> {
    return toSandboxInfo(await this.transport.json<WireSandbox>("POST", this.path + suffix, body, options));
  }
}

function contextId(context: Context | string): string {
  return encodeURIComponent(typeof context === "string" ? context : context.id);
}

function toContext(w: WireContext): Context {
  return { id: w.context_id, language: w.language, cwd: w.cwd, alive: w.alive };
}

function runBody(code: string, options: RunCodeOptions): object {
  const context = options.context;
  return {
    code,
    language: options.language,
    context_id: typeof context === "string" ? context : context?.id,
    timeout_ms: options.timeoutMs,
    env: options.env,
  };
}

/** The typed event of one SSE event of `run/stream` (none for unknown event names). */
function toExecutionEvent(sse: SseEvent): ExecutionEvent | undefined {
  const data = JSON.parse(sse.data);
  switch (sse.event) {
    case "stdout":
    case "stderr":
      return { type: sse.event, text: data.text as string };
    case "result":
      return { type: "result", result: new Result(data.result as WireResult) };
    case "error":
      return { type: "error", error: data as ExecutionError };
    case "done":
      if (!data.execution) throw new Ai2inError(String(data.error ?? "the run failed"));
      return { type: "done", execution: new Execution(data.execution as WireExecution) };
    default:
      return undefined;
  }
}

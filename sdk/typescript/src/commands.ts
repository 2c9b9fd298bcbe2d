/**
 * Shell commands in a sandbox (`sbx.commands`): run to completion, or start in the
 * background and follow with a {@link CommandHandle}.
 *
 * ```ts
 * const r = await sbx.commands.run("echo hi");
 * r.stdout; // "hi\n"
 * const server = await sbx.commands.run("python3 -m http.server 8000", { background: true });
 * // Later, possibly in another process (after `Sandbox.connect`), by its id:
 * const same = await sbx.commands.connect(server.id);
 * await same.kill();
 * ```
 *
 * @module
 */

import { NotFoundError } from "./errors.js";
import type { CallOptions, Transport } from "./http.js";
import type { Signal, User } from "./types.js";

/** Options of both kinds of {@link Commands.run}. */
export interface CommandOptions extends CallOptions {
  /** Working directory (default `/home/user`). */
  cwd?: string;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** `root` (default; root of the sandbox's user namespace) or `user`. */
  user?: User;
}

/** Options of a command run to completion. */
export interface ForegroundOptions extends CommandOptions {
  background?: false;
  /** Kill the command's process group after this many milliseconds. */
  timeoutMs?: number;
  /** Text fed to its standard input. */
  stdin?: string;
}

/** Options of a command started in the background. */
export interface BackgroundOptions extends CommandOptions {
  background: true;
}

/** The outcome of a command run to completion. */
export interface CommandResult {
  /** Standard output (cut at the node's cap, see `truncated`). */
  stdout: string;
  stderr: string;
  /** `null` when the command was killed by a signal or timed out. */
  exitCode: number | null;
  durationMs: number;
  /** Whether either stream was cut at the node's cap (16 MiB). */
  truncated: boolean;
  /** Why the command did not finish normally (timeout, signal), if it did not. */
  error?: string;
}

/** Where a background command is. */
export type CommandStatus = "running" | "exited" | "killed";

/** A background command as {@link Commands.list} describes it. */
export interface CommandInfo {
  /** `cmd_…`. */
  id: string;
  pid: number;
  cmd: string;
  status: CommandStatus;
  exitCode: number | null;
  startedAt: Date;
  endedAt: Date | null;
}

/** A background command's output from the requested offsets on. */
export interface CommandLogs {
  stdout: string;
  stderr: string;
  status: CommandStatus;
  exitCode: number | null;
  /** Offset to ask from next time for more standard output. */
  stdoutOffset: number;
  stderrOffset: number;
  /** Bytes lost between the requested offsets and what the node keeps (1 MiB per stream). */
  droppedBytes: number;
}

/** The end of a background command, as {@link CommandHandle.wait} gives it. */
export interface CommandExit {
  /** All standard output since the start (or since the node's buffer began). */
  stdout: string;
  stderr: string;
  status: Exclude<CommandStatus, "running">;
  /** `null` when it was killed by a signal. */
  exitCode: number | null;
}

/** Options of {@link CommandHandle.wait}. */
export interface WaitOptions extends CallOptions {
  /** Called with each new piece of standard output. */
  onStdout?: (text: string) => void;
  /** Called with each new piece of standard error. */
  onStderr?: (text: string) => void;
}

interface WireLogs {
  stdout: string;
  stderr: string;
  status: CommandStatus;
  exit_code: number | null;
  stdout_offset: number;
  stderr_offset: number;
  dropped_bytes: number;
}

interface WireCommand {
  command_id: string;
  pid: number;
  cmd: string;
  status: CommandStatus;
  exit_code: number | null;
  started_at: string;
  ended_at: string | null;
}

/** How long {@link CommandHandle.wait} sleeps between polls: from the first, up to the last. */
const POLL_MIN_MS = 20;
const POLL_MAX_MS = 500;

/** `sbx.commands`. */
export class Commands {
  constructor(
    private readonly transport: Transport,
    private readonly path: string,
  ) {}

  /** Starts `cmd` (through `/bin/sh -c`) in the background. */
  run(cmd: string, options: BackgroundOptions): Promise<CommandHandle>;
  /** Runs `cmd` (through `/bin/sh -c`) to completion. A non-zero exit is not thrown. */
  run(cmd: string, options?: ForegroundOptions): Promise<CommandResult>;
  async run(cmd: string, options: ForegroundOptions | BackgroundOptions = {}): Promise<CommandResult | CommandHandle> {
    const base = { cmd, cwd: options.cwd, env: options.env, user: options.user };
    if (options.background) {
      const started = await this.transport.json<{ command_id: string; pid: number }>("POST", `${this.path}/commands`, base, options);
      return this.handle(started.command_id, started.pid);
    }
    const body = { ...base, timeout_ms: options.timeoutMs, stdin: options.stdin };
    const r = await this.transport.json<{
      stdout: string;
      stderr: string;
      exit_code: number | null;
      duration_ms: number;
      truncated: boolean;
      error?: string;
    }>("POST", `${this.path}/shell`, body, options);
    const result: CommandResult = {
      stdout: r.stdout,
      stderr: r.stderr,
      exitCode: r.exit_code,
      durationMs: r.duration_ms,
      truncated: r.truncated,
    };
    if (r.error !== undefined) result.error = r.error;
    return result;
  }

  /** The sandbox's background commands, oldest first. */
  async list(options?: CallOptions): Promise<CommandInfo[]> {
    const { commands } = await this.transport.json<{ commands: WireCommand[] }>("GET", `${this.path}/commands`, undefined, options);
    return commands.map((c) => ({
      id: c.command_id,
      pid: c.pid,
      cmd: c.cmd,
      status: c.status,
      exitCode: c.exit_code,
      startedAt: new Date(c.started_at),
      endedAt: c.ended_at === null ? null : new Date(c.ended_at),
    }));
  }

  /**
   * A handle for the background command `commandId`, started earlier, possibly by another
   * process: its output is kept by the node, so `wait()` and `logs()` give it from the start.
   * Rejects with {@link NotFoundError} when the sandbox has no such command.
   *
   * ```ts
   * const handle = await sbx.commands.connect(commandId);
   * const { stdout, exitCode } = await handle.wait();
   * ```
   */
  async connect(commandId: string, options?: CallOptions): Promise<CommandHandle> {
    const found = (await this.list(options)).find((c) => c.id === commandId);
    if (!found) throw new NotFoundError(404, `no command ${commandId}`);
    return this.handle(found.id, found.pid);
  }

  /** The handle of command `id` of this sandbox (shared by `run` in the background and `connect`). */
  private handle(id: string, pid: number): CommandHandle {
    return new CommandHandle(this.transport, `${this.path}/commands/${encodeURIComponent(id)}`, id, pid);
  }
}

/** A background command, from {@link Commands.run} with `background: true` or {@link Commands.connect}. */
export class CommandHandle {
  /** @internal */
  constructor(
    private readonly transport: Transport,
    private readonly path: string,
    /** `cmd_…`. */
    readonly id: string,
    /** Its pid inside the sandbox. */
    readonly pid: number,
  ) {}

  /** Its output from the given byte offsets on (default: everything), and its status. */
  async logs(options: { stdoutOffset?: number; stderrOffset?: number } & CallOptions = {}): Promise<CommandLogs> {
    const body = { stdout_offset: options.stdoutOffset, stderr_offset: options.stderrOffset };
    const w = await this.transport.json<WireLogs>("POST", `${this.path}/logs`, body, options);
    return {
      stdout: w.stdout,
      stderr: w.stderr,
      status: w.status,
      exitCode: w.exit_code,
      stdoutOffset: w.stdout_offset,
      stderrOffset: w.stderr_offset,
      droppedBytes: w.dropped_bytes,
    };
  }

  /**
   * Polls its output until it ends, passing new output to the callbacks as it comes.
   * Aborting `signal` stops waiting (the command keeps running).
   */
  async wait(options: WaitOptions = {}): Promise<CommandExit> {
    const { onStdout, onStderr, signal } = options;
    let stdout = "";
    let stderr = "";
    let offsets = { stdoutOffset: 0, stderrOffset: 0 };
    let pause = POLL_MIN_MS;
    for (;;) {
      const logs = await this.logs({ ...offsets, signal });
      if (logs.stdout) onStdout?.(logs.stdout);
      if (logs.stderr) onStderr?.(logs.stderr);
      stdout += logs.stdout;
      stderr += logs.stderr;
      offsets = { stdoutOffset: logs.stdoutOffset, stderrOffset: logs.stderrOffset };
      if (logs.status !== "running") {
        return { stdout, stderr, status: logs.status, exitCode: logs.exitCode };
      }
      pause = logs.stdout || logs.stderr ? POLL_MIN_MS : Math.min(pause * 2, POLL_MAX_MS);
      await sleep(pause, signal);
    }
  }

  /** Sends `signal` (default SIGKILL) to its whole process group. */
  async kill(signal?: Signal, options?: CallOptions): Promise<void> {
    await this.transport.call("POST", `${this.path}/kill`, { signal }, options);
  }
}

/** Resolves after `ms`, or rejects with the signal's reason when it is aborted. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const done = () => {
      signal?.removeEventListener("abort", abort);
      resolve();
    };
    const timer = setTimeout(done, ms);
    const abort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", abort, { once: true });
  });
}

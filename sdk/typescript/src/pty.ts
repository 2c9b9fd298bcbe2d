/**
 * Interactive terminals (`sbx.pty`): a program on a pseudo-terminal, typed into and read
 * from over HTTP.
 *
 * ```ts
 * const term = await sbx.pty.create({ cmd: "cat" });
 * await term.sendInput("hello\n");
 * const { data } = await term.read(); // bytes, with the terminal's echo
 * await term.kill();
 * ```
 *
 * @module
 */

import { decodeBase64, encodeBase64, toBytes } from "./base64.js";
import type { CallOptions, Transport } from "./http.js";
import type { Signal, User } from "./types.js";

/** Options of {@link Pty.create}. */
export interface PtyCreateOptions extends CallOptions {
  /** Command line (through `/bin/sh -c`); the login shell when absent. */
  cmd?: string;
  /** Columns (default 80). */
  cols?: number;
  /** Rows (default 24). */
  rows?: number;
  /** Working directory (default `/home/user`). */
  cwd?: string;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** `root` (default) or `user`. */
  user?: User;
}

/** What a terminal printed since the last read. */
export interface PtyOutput {
  data: Uint8Array;
  /** False once the program ended and nothing is left to read. */
  alive: boolean;
  /** Its exit status once it ended (128 + n for signal n). */
  exitCode: number | null;
}

/** `sbx.pty`. */
export class Pty {
  constructor(
    private readonly transport: Transport,
    private readonly path: string,
  ) {}

  /** Starts a program on a new terminal. */
  async create(options: PtyCreateOptions = {}): Promise<PtyHandle> {
    const body = {
      cmd: options.cmd,
      cols: options.cols,
      rows: options.rows,
      cwd: options.cwd,
      env: options.env,
      user: options.user,
    };
    const { pty_id, pid } = await this.transport.json<{ pty_id: string; pid: number }>("POST", `${this.path}/pty`, body, options);
    return new PtyHandle(this.transport, `${this.path}/pty/${pid}`, pty_id, pid);
  }
}

/** A terminal. */
export class PtyHandle {
  /** @internal */
  constructor(
    private readonly transport: Transport,
    private readonly path: string,
    /** `pty_…`. */
    readonly id: string,
    /** Its program's pid inside the sandbox. */
    readonly pid: number,
  ) {}

  /** Types `data` (text is sent as UTF-8). */
  async sendInput(data: string | Uint8Array, options?: CallOptions): Promise<void> {
    await this.transport.call("POST", `${this.path}/input`, { data_b64: encodeBase64(toBytes(data)) }, options);
  }

  /** Drains what the terminal printed since the last read (possibly nothing yet). */
  async read(options?: CallOptions): Promise<PtyOutput> {
    const w = await this.transport.json<{ data_b64: string; alive: boolean; exit_code: number | null }>(
      "POST",
      `${this.path}/output`,
      undefined,
      options,
    );
    return { data: decodeBase64(w.data_b64), alive: w.alive, exitCode: w.exit_code };
  }

  /** Changes the terminal's size (the program gets SIGWINCH). */
  async resize(cols: number, rows: number, options?: CallOptions): Promise<void> {
    await this.transport.call("POST", `${this.path}/resize`, { cols, rows }, options);
  }

  /** Sends `signal` (default SIGKILL) to the program. */
  async kill(signal?: Signal, options?: CallOptions): Promise<void> {
    await this.transport.call("POST", `${this.path}/kill`, { signal }, options);
  }
}

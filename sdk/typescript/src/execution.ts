/**
 * What running code gives back: {@link Execution}, its rich {@link Result}s, and the events
 * of a streamed run.
 *
 * @module
 */

import { decodeBase64 } from "./base64.js";

/** An error the code raised (a normal outcome of a run, not an exception of the SDK). */
export interface ExecutionError {
  /** E.g. `ZeroDivisionError`. */
  name: string;
  /** Its message. */
  value: string;
  /** Traceback pointing at the user's lines. */
  traceback: string;
}

/** What the code printed, chunk by chunk as it came. */
export interface Logs {
  stdout: string[];
  stderr: string[];
}

/** Wire shape of a {@link Result}. */
export interface WireResult {
  is_main_result: boolean;
  data: Record<string, unknown>;
}

/** Wire shape of an {@link Execution}. */
export interface WireExecution {
  results: WireResult[];
  logs: Logs;
  error: ExecutionError | null;
  execution_count: number;
  duration_ms: number;
  context_id: string;
  exit_code?: number | null;
}

/**
 * One result: a MIME bundle. `text/plain` is always there; rich objects add HTML, images,
 * JSON… (`data` holds them all by MIME type, as the node sent them).
 *
 * ```ts
 * const ex = await sbx.runCode("import matplotlib.pyplot as plt\nplt.plot([1, 2])\nNone");
 * const png = ex.results.find((r) => r.png)?.png; // Uint8Array
 * ```
 */
export class Result {
  /** Representations by MIME type; `image/png` and `image/jpeg` are base64 here. */
  readonly data: Record<string, unknown>;
  /** Whether it is the value of the code's last expression. */
  readonly isMainResult: boolean;

  constructor(wire: WireResult) {
    this.data = wire.data;
    this.isMainResult = wire.is_main_result;
  }

  /** `text/plain`, e.g. `"2"` or `"'hello'"`. */
  get text(): string | undefined {
    return this.string("text/plain");
  }
  /** `text/html` (a pandas table, `_repr_html_`). */
  get html(): string | undefined {
    return this.string("text/html");
  }
  /** `text/markdown`. */
  get markdown(): string | undefined {
    return this.string("text/markdown");
  }
  /** `text/latex`. */
  get latex(): string | undefined {
    return this.string("text/latex");
  }
  /** `image/svg+xml`. */
  get svg(): string | undefined {
    return this.string("image/svg+xml");
  }
  /** `image/png`, decoded (starts with 0x89 `PNG`). */
  get png(): Uint8Array | undefined {
    return this.bytes("image/png");
  }
  /** `image/jpeg`, decoded. */
  get jpeg(): Uint8Array | undefined {
    return this.bytes("image/jpeg");
  }
  /** `application/json`, as a value. */
  get json(): unknown {
    return this.data["application/json"];
  }
  /** The MIME types present. */
  get formats(): string[] {
    return Object.keys(this.data);
  }

  private string(mime: string): string | undefined {
    const value = this.data[mime];
    return typeof value === "string" ? value : undefined;
  }

  private bytes(mime: string): Uint8Array | undefined {
    const value = this.string(mime);
    return value === undefined ? undefined : decodeBase64(value);
  }
}

/** The outcome of a run. */
export class Execution {
  /** Results, the main one (the last expression's value) among them. */
  readonly results: Result[];
  /** What the code printed. */
  readonly logs: Logs;
  /** The error the code raised, or `null`. */
  readonly error: ExecutionError | null;
  /** The context's count of runs. */
  readonly executionCount: number;
  /** Wall time in milliseconds. */
  readonly durationMs: number;
  /** The context it ran in (`ctx_…`). */
  readonly contextId: string;
  /** The snippet's exit status, for bash. */
  readonly exitCode: number | null;

  constructor(wire: WireExecution) {
    this.results = wire.results.map((r) => new Result(r));
    this.logs = wire.logs;
    this.error = wire.error;
    this.executionCount = wire.execution_count;
    this.durationMs = wire.duration_ms;
    this.contextId = wire.context_id;
    this.exitCode = wire.exit_code ?? null;
  }

  /** The main result's `text/plain`, if there is a main result. */
  get text(): string | undefined {
    return this.results.find((r) => r.isMainResult)?.text;
  }
}

/** One event of a streamed run, in the order the node sends them; `done` comes last. */
export type ExecutionEvent =
  | { type: "stdout"; text: string }
  | { type: "stderr"; text: string }
  | { type: "result"; result: Result }
  | { type: "error"; error: ExecutionError }
  | { type: "done"; execution: Execution };

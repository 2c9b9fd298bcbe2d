/**
 * The transport: configuration (options, else `AI2IN_API_KEY` / `AI2IN_BASE_URL`), JSON
 * requests over `fetch` with bearer auth, error mapping and Server-Sent Event streams.
 *
 * @module
 */

import { Ai2inError, ConnectionError, apiError } from "./errors.js";
import { parseSse, type SseEvent } from "./sse.js";

/** The node's address when neither the options nor `AI2IN_BASE_URL` give one. */
export const DEFAULT_BASE_URL = "http://127.0.0.1:4747";

/** Where the node is and which key to use. Options win over the environment. */
export interface ConnectionOptions {
  /** The API key (`ai2in_live_…`); default `AI2IN_API_KEY`. */
  apiKey?: string;
  /** The node's URL; default `AI2IN_BASE_URL`, else `http://127.0.0.1:4747`. */
  baseUrl?: string;
}

/** Options every call takes. */
export interface CallOptions {
  /** Aborts the call (and, for streams, closes the connection). */
  signal?: AbortSignal;
}

/** A variable of the environment, where there is one (Node, Deno, Bun; not browsers). */
function fromEnv(name: string): string | undefined {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
  return env?.[name] || undefined;
}

/** A request body: JSON, or none. */
type Body = object | undefined;

/** A raw request body (an upload) of type `contentType`, sent as is: streamed when it is a stream. */
export class RawBody {
  constructor(
    readonly body: Blob | ReadableStream<Uint8Array> | ArrayBuffer | ArrayBufferView,
    readonly contentType: string,
  ) {}
}

/** Talks to one node with one key. Shared by a sandbox and its `commands`, `files`, `pty`. */
export class Transport {
  readonly baseUrl: string;
  /** A true private field, so that logging a sandbox never prints the key. */
  readonly #apiKey: string;

  constructor(options: ConnectionOptions = {}) {
    const apiKey = options.apiKey ?? fromEnv("AI2IN_API_KEY");
    if (!apiKey) {
      throw new Ai2inError("no API key: pass apiKey or set AI2IN_API_KEY");
    }
    this.#apiKey = apiKey;
    this.baseUrl = (options.baseUrl ?? fromEnv("AI2IN_BASE_URL") ?? DEFAULT_BASE_URL).replace(/\/+$/, "");
  }

  /** `method path` with a JSON `body`; the parsed JSON answer. */
  async json<T>(method: string, path: string, body?: Body, options?: CallOptions): Promise<T> {
    const response = await this.send(method, path, body, options);
    return JSON.parse(await this.readText(response, options)) as T;
  }

  /** `method path` for its effect only (204 answers). */
  async call(method: string, path: string, body?: Body, options?: CallOptions): Promise<void> {
    const response = await this.send(method, path, body, options);
    await this.readText(response, options);
  }

  /** `method path` answered with bytes that are not JSON (an image of type `accept`). */
  async bytes(method: string, path: string, accept: string, options?: CallOptions): Promise<Uint8Array> {
    const response = await this.send(method, path, undefined, options, accept);
    try {
      return new Uint8Array(await response.arrayBuffer());
    } catch (e) {
      throw transportError(e, options?.signal);
    }
  }

  /** `method path` with a raw body (an upload); the parsed JSON answer. */
  async upload<T>(method: string, path: string, body: RawBody, options?: CallOptions): Promise<T> {
    const response = await this.send(method, path, body, options);
    return JSON.parse(await this.readText(response, options)) as T;
  }

  /** `method path` answered with Server-Sent Events, yielded as they arrive. */
  async *events(method: string, path: string, body?: Body, options?: CallOptions): AsyncGenerator<SseEvent> {
    const response = await this.send(method, path, body, options, "text/event-stream");
    if (!response.body) throw new ConnectionError(`${method} ${path} answered without a body`);
    try {
      yield* parseSse(response.body);
    } catch (e) {
      throw transportError(e, options?.signal);
    }
  }

  /** Sends the request; throws the mapped error for a non-2xx answer. */
  private async send(
    method: string,
    path: string,
    body: Body | RawBody,
    options: CallOptions | undefined,
    accept = "application/json",
  ): Promise<Response> {
    const headers: Record<string, string> = { Authorization: `Bearer ${this.#apiKey}`, Accept: accept };
    const init: RequestInit & { duplex?: "half" } = { method, headers, signal: options?.signal ?? null };
    if (body instanceof RawBody) {
      headers["Content-Type"] = body.contentType;
      init.body = body.body as BodyInit;
      // A stream is sent as it is read; fetch needs to be told so (Node, Chromium).
      if (body.body instanceof ReadableStream) init.duplex = "half";
      // Without a window and with redirects refused, fetch has no reason to keep a copy of
      // the body to send again, and Node's (undici) then keeps none: otherwise it tees the
      // body and holds all of it in memory (nodejs/undici#4058).
      init.window = null;
      init.redirect = "error";
    } else if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response: Response;
    try {
      response = await fetch(this.baseUrl + path, init);
    } catch (e) {
      throw transportError(e, options?.signal);
    }
    if (!response.ok) {
      throw apiError(response.status, await response.text().catch(() => ""));
    }
    return response;
  }

  /** The whole body as text. */
  private async readText(response: Response, options?: CallOptions): Promise<string> {
    try {
      return await response.text();
    } catch (e) {
      throw transportError(e, options?.signal);
    }
  }
}

/** An aborted call rethrows the signal's reason; anything else failed in transport. */
function transportError(e: unknown, signal: AbortSignal | undefined): unknown {
  if (signal?.aborted) return signal.reason;
  if (e instanceof Ai2inError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new ConnectionError(`could not reach the ai2in node: ${message}`, { cause: e });
}

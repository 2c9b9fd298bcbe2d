/**
 * The transport: configuration (options, else `AI2IN_API_KEY` / `AI2IN_BASE_URL`), JSON
 * requests over `fetch` with bearer auth, raw bodies of bytes both ways (streamed), error
 * mapping and Server-Sent Event streams.
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

/**
 * Bytes to upload: a `Blob` (a `File`, or `fs.openAsBlob(path)` on Node), a `ReadableStream`
 * or async iterable of bytes (a Node `fs.ReadStream`), or the bytes themselves. Blobs and
 * streams are streamed, never held in memory whole.
 */
export type UploadSource = Blob | ReadableStream<Uint8Array> | AsyncIterable<Uint8Array> | ArrayBuffer | ArrayBufferView;

/** A raw request body (an upload) of type `contentType`, sent as is: streamed when it is a stream. */
export class RawBody {
  /** What fetch sends: an async iterable becomes a stream. */
  readonly body: Blob | ReadableStream<Uint8Array> | ArrayBuffer | ArrayBufferView;

  constructor(
    source: UploadSource,
    readonly contentType: string,
  ) {
    if (source instanceof Blob || source instanceof ReadableStream) this.body = source;
    else if (source instanceof ArrayBuffer || ArrayBuffer.isView(source)) this.body = source;
    else if (source !== null && typeof source === "object" && Symbol.asyncIterator in source) this.body = streamOf(source);
    else {
      throw new TypeError(
        "an upload is a Blob, a ReadableStream or async iterable of Uint8Arrays, an ArrayBuffer or a typed array",
      );
    }
  }
}

/** A body of bytes as it arrives; from {@link Transport.stream}. */
export interface ByteStream {
  body: ReadableStream<Uint8Array>;
  /** The answer is the part a `Range` header asked for (206), not the whole. */
  partial: boolean;
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
    return readAll((await this.stream(method, path, accept, options)).body);
  }

  /**
   * `method path` answered with bytes that are not JSON (of type `accept`), read as they
   * arrive; `headers` are added to the request (a `Range`). An error answer throws here; a
   * connection that breaks later errors the stream with {@link ConnectionError}.
   */
  async stream(
    method: string,
    path: string,
    accept: string,
    options?: CallOptions,
    headers: Record<string, string> = {},
  ): Promise<ByteStream> {
    const response = await this.send(method, path, undefined, options, accept, headers);
    return { body: mapErrors(response.body, options?.signal), partial: response.status === 206 };
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
    extraHeaders: Record<string, string> = {},
  ): Promise<Response> {
    const headers: Record<string, string> = { ...extraHeaders, Authorization: `Bearer ${this.#apiKey}`, Accept: accept };
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

/** All of `stream`'s bytes, in one array. */
export async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** `body` (none is empty) passed through as it is read, its errors mapped as a call's are. */
function mapErrors(body: ReadableStream<Uint8Array> | null, signal: AbortSignal | undefined): ReadableStream<Uint8Array> {
  const reader = (body ?? new Blob().stream()).getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { value, done } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      } catch (e) {
        controller.error(transportError(e, signal));
      }
    },
    async cancel(reason) {
      await reader.cancel(reason);
    },
  });
}

/** An async iterable of byte chunks as a ReadableStream, pulled as fetch sends it. */
function streamOf(chunks: AsyncIterable<Uint8Array>): ReadableStream<Uint8Array> {
  const iterator = chunks[Symbol.asyncIterator]();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { value, done } = await iterator.next();
      if (done) controller.close();
      else if (value instanceof Uint8Array) controller.enqueue(value);
      else controller.error(new TypeError(`an upload's chunks must be Uint8Arrays, not ${typeof value}`));
    },
    async cancel(reason) {
      await iterator.return?.(reason);
    },
  });
}

/** An aborted call rethrows the signal's reason; anything else failed in transport. */
function transportError(e: unknown, signal: AbortSignal | undefined): unknown {
  if (signal?.aborted) return signal.reason;
  if (e instanceof Ai2inError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new ConnectionError(`could not reach the ai2in node: ${message}`, { cause: e });
}

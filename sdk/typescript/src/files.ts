/**
 * The sandbox's filesystem (`sbx.files`): read and write text or bytes, list directories,
 * and watch for changes. Paths are absolute, or relative to `/home/user`.
 *
 * ```ts
 * await sbx.files.write("notes/a.txt", "hello");
 * await sbx.files.read("notes/a.txt"); // "hello"
 * ```
 *
 * @module
 */

import { decodeBase64, encodeBase64 } from "./base64.js";
import { Ai2inError } from "./errors.js";
import type { CallOptions, Transport } from "./http.js";
import type { User } from "./types.js";

/** Options of the file calls. */
export interface FileOptions extends CallOptions {
  /** Whose permissions apply (and who owns written files): `user` (default) or `root`. */
  user?: User;
}

/** One entry of {@link Files.list}. */
export interface EntryInfo {
  name: string;
  /** Absolute path inside the sandbox. */
  path: string;
  /** Symbolic links are not followed. */
  type: "file" | "dir" | "symlink" | "other";
  sizeBytes: number;
  /** Permission bits (e.g. 0o644). */
  mode: number;
  modifiedAt: Date;
}

/** What a write did. */
export interface WriteInfo {
  /** The absolute path written. */
  path: string;
  sizeBytes: number;
}

/** One change a watch saw. */
export interface WatchEvent {
  /** `rename` gives the new name; `overflow` means events were lost (its path is empty). */
  type: "create" | "modify" | "delete" | "rename" | "overflow";
  path: string;
  timestamp: Date;
}

interface WireEntry {
  name: string;
  path: string;
  type: EntryInfo["type"];
  size_bytes: number;
  mode: number;
  modified_at: string;
}

interface WireWatchEvent {
  type: WatchEvent["type"];
  path: string;
  timestamp: string;
}

/** `sbx.files`. */
export class Files {
  constructor(
    private readonly transport: Transport,
    private readonly path: string,
  ) {}

  /**
   * A file's text. A file that is not UTF-8 text throws {@link UnsupportedMediaTypeError}:
   * use {@link Files.readBytes}.
   */
  async read(path: string, options: FileOptions = {}): Promise<string> {
    const { content } = await this.post<{ content: string }>("read", { path, user: options.user }, options);
    return content;
  }

  /** A file's bytes (at most 32 MiB). */
  async readBytes(path: string, options: FileOptions = {}): Promise<Uint8Array> {
    const { content_b64 } = await this.post<{ content_b64: string }>("read_bytes", { path, user: options.user }, options);
    return decodeBase64(content_b64);
  }

  /**
   * Writes text (UTF-8) or bytes, replacing the file atomically and creating missing
   * parent directories.
   */
  async write(path: string, data: string | Uint8Array, options: FileOptions = {}): Promise<WriteInfo> {
    const w =
      typeof data === "string"
        ? await this.post<{ path: string; size_bytes: number }>("write", { path, content: data, user: options.user }, options)
        : await this.post<{ path: string; size_bytes: number }>("write_bytes", { path, content_b64: encodeBase64(data), user: options.user }, options);
    return { path: w.path, sizeBytes: w.size_bytes };
  }

  /** A directory's entries, sorted by name. */
  async list(path: string, options: FileOptions = {}): Promise<EntryInfo[]> {
    const { entries } = await this.post<{ entries: WireEntry[] }>("list", { path, user: options.user }, options);
    return entries.map((e) => ({
      name: e.name,
      path: e.path,
      type: e.type,
      sizeBytes: e.size_bytes,
      mode: e.mode,
      modifiedAt: new Date(e.modified_at),
    }));
  }

  /**
   * Starts watching a file or directory (and, with `recursive`, every directory below it).
   * Read the changes with {@link WatchHandle.poll} or `for await`; end with `stop()`.
   */
  async watch(path: string, options: FileOptions & { recursive?: boolean } = {}): Promise<WatchHandle> {
    const body = { path, recursive: options.recursive ?? false, user: options.user };
    const { watch_id } = await this.post<{ watch_id: string }>("watch", body, options);
    return new WatchHandle(this.transport, `${this.path}/fs/watch/${encodeURIComponent(watch_id)}`, watch_id);
  }

  private post<T>(route: string, body: object, options: CallOptions): Promise<T> {
    return this.transport.json<T>("POST", `${this.path}/fs/${route}`, body, options);
  }
}

/**
 * A watch. Either poll it, or iterate over its events as they happen (Server-Sent Events):
 *
 * ```ts
 * const watch = await sbx.files.watch("/home/user");
 * for await (const ev of watch) {
 *   console.log(ev.type, ev.path);
 *   if (ev.path.endsWith("done")) break;
 * }
 * await watch.stop();
 * ```
 */
export class WatchHandle {
  /** @internal */
  constructor(
    private readonly transport: Transport,
    private readonly path: string,
    /** `wch_…`. */
    readonly id: string,
  ) {}

  /** The events since the last poll, oldest first (events given to a stream are not). */
  async poll(options?: CallOptions): Promise<WatchEvent[]> {
    const { events } = await this.transport.json<{ events: WireWatchEvent[] }>("POST", `${this.path}/poll`, undefined, options);
    return events.map(toWatchEvent);
  }

  /**
   * The events as they happen, until the watch stops, `signal` aborts (which throws its
   * reason), or the loop is left.
   */
  async *events(options?: CallOptions): AsyncGenerator<WatchEvent, void, undefined> {
    for await (const sse of this.transport.events("GET", `${this.path}/events`, undefined, options)) {
      if (sse.event === "fs") yield toWatchEvent(JSON.parse(sse.data) as WireWatchEvent);
      else if (sse.event === "error") throw new Ai2inError(String(JSON.parse(sse.data).error));
    }
  }

  /** `for await (const ev of watch)`: {@link WatchHandle.events} without a signal. */
  [Symbol.asyncIterator](): AsyncGenerator<WatchEvent, void, undefined> {
    return this.events();
  }

  /** Stops the watch; a running stream of its events ends. */
  async stop(options?: CallOptions): Promise<void> {
    await this.transport.call("POST", `${this.path}/stop`, undefined, options);
  }
}

function toWatchEvent(w: WireWatchEvent): WatchEvent {
  return { type: w.type, path: w.path, timestamp: new Date(w.timestamp) };
}

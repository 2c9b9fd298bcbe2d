/**
 * The sandbox's filesystem (`sbx.files`): read and write text or bytes, upload and download
 * files of any size as streams, list directories, and watch for changes. Paths are absolute,
 * or relative to `/home/user`.
 *
 * ```ts
 * await sbx.files.write("notes/a.txt", "hello");
 * await sbx.files.read("notes/a.txt"); // "hello"
 * ```
 *
 * @module
 */

import { toBytes } from "./base64.js";
import { Ai2inError } from "./errors.js";
import { type CallOptions, RawBody, readAll, type Transport, type UploadSource } from "./http.js";
import type { User } from "./types.js";

/** The type of a file's raw bytes, both ways. */
const OCTET_STREAM = "application/octet-stream";

/** Options of the file calls. */
export interface FileOptions extends CallOptions {
  /** Whose permissions apply (and who owns written files): `user` (default) or `root`. */
  user?: User;
}

/** Options of {@link Files.readBytes}: which part of the file to read (all of it by default). */
export interface ReadBytesOptions extends FileOptions {
  /**
   * The first byte to read (default 0). At or past the end of the file, the node answers
   * {@link ApiError} with status 416.
   */
  offset?: number;
  /** At most this many bytes (fewer at the end of the file); default: to the end. */
  length?: number;
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

interface WireWrite {
  path: string;
  size_bytes: number;
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
   * A file's text (at most 32 MiB). A file that is not UTF-8 text throws
   * {@link UnsupportedMediaTypeError}: use {@link Files.readBytes}.
   */
  async read(path: string, options: FileOptions = {}): Promise<string> {
    const { content } = await this.post<{ content: string }>("read", { path, user: options.user }, options);
    return content;
  }

  /**
   * A file's bytes, whatever its size, or the part `offset` and `length` name. They are held
   * in memory: stream big files with {@link Files.download}.
   *
   * ```ts
   * const head = await sbx.files.readBytes("data.bin", { offset: 0, length: 512 });
   * ```
   */
  async readBytes(path: string, options: ReadBytesOptions = {}): Promise<Uint8Array> {
    const { offset = 0, length } = options;
    checkCount("offset", offset);
    if (length !== undefined) checkCount("length", length);
    if (length === 0) return new Uint8Array(0);
    const end = length === undefined ? undefined : offset + length;
    const headers: Record<string, string> = {};
    if (offset > 0 || end !== undefined) headers.Range = `bytes=${offset}-${end === undefined ? "" : end - 1}`;
    const { body, partial } = await this.transport.stream("GET", this.filePath(path, options), OCTET_STREAM, options, headers);
    const bytes = await readAll(body);
    // An answer that is not partial is the whole file: no range was asked, or the node reads
    // the file whole because the kernel does not know its size (files of /proc).
    return partial ? bytes : bytes.subarray(offset, end);
  }

  /**
   * A file's bytes as they are read in the sandbox, whatever its size, never held in memory
   * whole. An error answer (a missing file: {@link NotFoundError}) throws here, before the
   * stream is returned; a connection that breaks while it is read errors the stream with
   * {@link ConnectionError}. Cancel the stream to stop early.
   *
   * ```ts
   * const stream = await sbx.files.download("big.bin");
   * await stream.pipeTo(Writable.toWeb(fs.createWriteStream("big.bin"))); // Node
   * ```
   */
  async download(path: string, options: FileOptions = {}): Promise<ReadableStream<Uint8Array>> {
    const { body } = await this.transport.stream("GET", this.filePath(path, options), OCTET_STREAM, options);
    return body;
  }

  /**
   * Writes text (UTF-8) or bytes, whatever their size, replacing the file atomically and
   * creating missing parent directories.
   */
  async write(path: string, data: string | Uint8Array, options: FileOptions = {}): Promise<WriteInfo> {
    return this.upload(path, toBytes(data), options);
  }

  /**
   * Writes a file from `source` (a `Blob`, `fs.openAsBlob(path)` on Node, a `ReadableStream`
   * or async iterable of bytes, or the bytes themselves: see {@link UploadSource}), sent as
   * it is read, whatever its size. The file is replaced atomically once all of it has
   * arrived; missing parent directories are created. A full disk throws
   * {@link InsufficientStorageError} and leaves the file as it was.
   *
   * ```ts
   * await sbx.files.upload("big.bin", await fs.openAsBlob("big.bin")); // Node
   * ```
   */
  async upload(path: string, source: UploadSource, options: FileOptions = {}): Promise<WriteInfo> {
    const body = new RawBody(source, OCTET_STREAM);
    const w = await this.transport.upload<WireWrite>("PUT", this.filePath(path, options), body, options);
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

  /** The route of a file's raw bytes: `…/files?path=…&user=…`. */
  private filePath(path: string, options: FileOptions): string {
    const query = new URLSearchParams({ path });
    if (options.user !== undefined) query.set("user", options.user);
    return `${this.path}/files?${query}`;
  }

  private post<T>(route: string, body: object, options: CallOptions): Promise<T> {
    return this.transport.json<T>("POST", `${this.path}/fs/${route}`, body, options);
  }
}

/** Throws a `RangeError` unless `value` is a whole number of bytes. */
function checkCount(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${name} must be a non-negative integer, not ${value}`);
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

/**
 * {@link Images}: the images of the key's tenant, pulled from a registry or imported from an
 * archive, to start sandboxes from.
 *
 * ```ts
 * const ai2in = new Ai2in();
 * const image = await ai2in.images.pull("python:3.12-slim", {
 *   onProgress: (p) => console.log(p.layer, p.doneBytes, "/", p.totalBytes),
 * });
 * await using sbx = await Sandbox.create({ image });
 * ```
 *
 * @module
 */

import { Ai2inError, ConnectionError, errorFor } from "./errors.js";
import { type CallOptions, RawBody, type Transport, type UploadSource } from "./http.js";

/** Where an image came from. */
export type ImageSource = "pull" | "import" | "snapshot";

/** What an image's config says about running it. */
export interface ImageConfig {
  /** Environment of every process (beneath a create's `env`). */
  env: Record<string, string>;
  /** Default working directory; `null` when the image names none. */
  workdir: string | null;
  /** Default user (`name`, `uid` or `uid:gid`); `null` when the image names none (root). */
  user: string | null;
  entrypoint: string[];
  cmd: string[];
  /** TCP ports the image declares. */
  exposedPorts: number[];
}

/** An image of the caller's tenant. Pass it (or its `id` or `ref`) as `image` to `Sandbox.create`. */
export interface Image {
  /** `img_…`. */
  id: string;
  /** The normalised reference: `python` is `docker.io/library/python:latest`. */
  ref: string;
  /** Digest of the image's manifest, `sha256:…`. */
  digest: string;
  /** Bytes its layers take unpacked. */
  sizeBytes: number;
  /** Number of layers. */
  layers: number;
  source: ImageSource;
  /** When the tenant got it. */
  createdAt: Date;
  /** When a sandbox last started from it. */
  lastUsedAt: Date;
  config: ImageConfig;
}

/**
 * How far a pull has fetched one layer: `doneBytes` of its `totalBytes` (compressed, as the
 * registry sends them). A layer the node already has reports `doneBytes === totalBytes` at once.
 */
export interface PullProgress {
  /** The layer's digest, `sha256:…`. */
  layer: string;
  doneBytes: number;
  totalBytes: number;
}

/** Options of {@link Images.pull}. */
export interface PullOptions extends CallOptions {
  /** Called as each layer's bytes arrive (the pull is then streamed); a promise is awaited. */
  onProgress?: (progress: PullProgress) => void | Promise<void>;
}

/** Options of {@link Images.import}. */
export interface ImportOptions extends CallOptions {
  /** The image's name, `name:tag`; the archive's own name when absent. */
  ref?: string;
}

/**
 * An image archive (a `docker save` tar or a tarred OCI image layout) for
 * {@link Images.import}: any {@link UploadSource} (a `Blob`, a `File`, `fs.openAsBlob(path)`
 * on Node, a `ReadableStream` or async iterable of bytes, the bytes themselves) or, on Node
 * 20.16+, Deno and Bun, a file's path. Blobs, paths and streams are streamed.
 */
export type ImageArchive = string | UploadSource;

/** Wire shape of {@link Image}. */
export interface WireImage {
  id: string;
  ref: string;
  digest: string;
  size_bytes: number;
  layers: number;
  source: ImageSource;
  created_at: string;
  last_used_at: string;
  config?: {
    env?: Record<string, string>;
    workdir?: string | null;
    user?: string | null;
    entrypoint?: string[];
    cmd?: string[];
    exposed_ports?: number[];
  };
}

/** Data of a streamed pull's events. */
interface WirePullEvent {
  layer?: string;
  done_bytes?: number;
  total_bytes?: number;
  image?: WireImage;
  error?: string;
  status?: number;
}

/** `ai2in.images`: pull, import, list, get and delete the tenant's images. */
export class Images {
  constructor(private readonly transport: Transport) {}

  /**
   * Pulls `ref` from its registry, or finds it when the tenant has it already. Throws
   * {@link BadRequestError} for a reference that does not parse, {@link NotFoundError} for
   * one the registry does not have, {@link UpstreamError} when the registry fails.
   */
  async pull(ref: string, options: PullOptions = {}): Promise<Image> {
    const { onProgress } = options;
    if (!onProgress) {
      return toImage(await this.transport.json<WireImage>("POST", "/v1/images", { ref }, options));
    }
    for await (const sse of this.transport.events("POST", "/v1/images", { ref }, options)) {
      const data = JSON.parse(sse.data) as WirePullEvent;
      if (sse.event === "progress") {
        await onProgress({ layer: data.layer ?? "", doneBytes: data.done_bytes ?? 0, totalBytes: data.total_bytes ?? 0 });
      } else if (sse.event === "done" && data.image) {
        return toImage(data.image);
      } else if (sse.event === "error") {
        throw errorFor(data.status ?? 502, data.error ?? "the pull failed");
      }
    }
    throw new ConnectionError("the pull's event stream ended before its done event");
  }

  /**
   * Imports an image archive (see {@link ImageArchive}); a `Blob`, a path or a stream is
   * streamed to the node, never held in memory whole.
   *
   * ```ts
   * const image = await ai2in.images.import("app.tar", { ref: "app:1" }); // Node
   * ```
   */
  async import(source: ImageArchive, options: ImportOptions = {}): Promise<Image> {
    const query = options.ref === undefined ? "" : `?ref=${encodeURIComponent(options.ref)}`;
    const body = await archiveBody(source);
    return toImage(await this.transport.upload<WireImage>("POST", `/v1/images/import${query}`, body, options));
  }

  /** The tenant's images. */
  async list(options?: CallOptions): Promise<Image[]> {
    const { images } = await this.transport.json<{ images: WireImage[] }>("GET", "/v1/images", undefined, options);
    return images.map(toImage);
  }

  /** One image, by id or reference; {@link NotFoundError} when the tenant has none. */
  async get(image: Image | string, options?: CallOptions): Promise<Image> {
    return toImage(await this.transport.json<WireImage>("GET", imagePath(image), undefined, options));
  }

  /** Deletes an image (by id or reference); {@link ConflictError} while a sandbox uses it. */
  async delete(image: Image | string, options?: CallOptions): Promise<void> {
    await this.transport.call("DELETE", imagePath(image), undefined, options);
  }
}

/** `/v1/images/{id}`; a reference's `/` and `:` are percent-encoded into one segment. */
function imagePath(image: Image | string): string {
  return `/v1/images/${encodeURIComponent(typeof image === "string" ? image : image.id)}`;
}

export function toImage(w: WireImage): Image {
  const c = w.config ?? {};
  return {
    id: w.id,
    ref: w.ref,
    digest: w.digest,
    sizeBytes: w.size_bytes,
    layers: w.layers,
    source: w.source,
    createdAt: new Date(w.created_at),
    lastUsedAt: new Date(w.last_used_at),
    config: {
      env: c.env ?? {},
      workdir: c.workdir ?? null,
      user: c.user ?? null,
      entrypoint: c.entrypoint ?? [],
      cmd: c.cmd ?? [],
      exposedPorts: c.exposed_ports ?? [],
    },
  };
}

/** The request body of `source`: a path is opened as a Blob. */
async function archiveBody(source: ImageArchive): Promise<RawBody> {
  return new RawBody(typeof source === "string" ? await openFile(source) : source, "application/x-tar");
}

/** The file at `path` as a Blob read lazily from disk, where the runtime has Node's `fs`. */
async function openFile(path: string): Promise<Blob> {
  // Looked up at run time, as the environment is in http.ts: the core imports no Node module.
  const runtime = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
  const fs = runtime?.getBuiltinModule?.("node:fs") as { openAsBlob?: (path: string) => Promise<Blob> } | undefined;
  if (typeof fs?.openAsBlob !== "function") {
    throw new Ai2inError(
      "a file path needs Node 20.16+ (or Deno, Bun); elsewhere pass a Blob (a File, or fs.openAsBlob(path))",
    );
  }
  return fs.openAsBlob(path);
}

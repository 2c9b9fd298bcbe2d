/**
 * {@link Volumes}: persistent filesystems of the key's tenant that outlive sandboxes. A
 * sandbox mounts them at creation (`Sandbox.create({ volumes })`); one sandbox at a time
 * mounts a volume read-write, any number read-only.
 *
 * ```ts
 * const ai2in = new Ai2in();
 * const volume = await ai2in.volumes.create({ sizeBytes: 64 * 2 ** 20, name: "results" });
 * {
 *   await using sbx = await Sandbox.create({ volumes: [{ volumeId: volume.id, path: "/data" }] });
 *   await sbx.files.write("/data/answer.txt", "42");
 * }
 * await using reader = await Sandbox.create({ volumes: [{ volumeId: "results", path: "/data", readOnly: true }] });
 * console.log(await reader.files.read("/data/answer.txt")); // "42"
 * ```
 *
 * @module
 */

import type { CallOptions, Transport } from "./http.js";

/** A volume of the caller's tenant. */
export interface Volume {
  /** `vol_…`. */
  id: string;
  /** Unique among the tenant's volumes; the id when none was given. */
  name: string;
  /** Its size: a write past it fails inside with ENOSPC. */
  sizeBytes: number;
  /** Bytes its files take, as `df` counts them. */
  usedBytes: number;
  createdAt: Date;
  /** The live sandboxes that mount it. */
  attachedTo: string[];
}

/** A volume to mount in {@link Sandbox.create}. */
export interface VolumeMount {
  /** The volume's id or name. */
  volumeId: string;
  /** Where it is mounted inside: an absolute path, not `/` nor under `/proc`, `/dev` or `/sys`. */
  path: string;
  /** Mount it read-only (default `false`). */
  readOnly?: boolean;
}

/** A volume a sandbox mounts, as {@link SandboxInfo.volumes} lists it. */
export interface VolumeAttachment extends VolumeMount {
  /** The volume's id. */
  volumeId: string;
  readOnly: boolean;
}

/** Options of {@link Volumes.create}. */
export interface VolumeCreateOptions extends CallOptions {
  /** Its size in bytes (the node's bounds: 16 MiB to 256 GiB by default). */
  sizeBytes: number;
  /** 1 to 63 of `a-z 0-9 - _ .`, starting with a letter or digit; the id when absent. */
  name?: string;
}

/** Wire shape of {@link Volume}. */
interface WireVolume {
  id: string;
  name: string;
  size_bytes: number;
  used_bytes: number;
  created_at: string;
  attached_to?: string[];
}

/** Wire shape of {@link VolumeAttachment}. */
export interface WireVolumeAttachment {
  volume_id: string;
  path: string;
  read_only?: boolean;
}

/** `ai2in.volumes`: create, list, get and delete the tenant's volumes. */
export class Volumes {
  constructor(private readonly transport: Transport) {}

  /**
   * A new, empty volume. Throws {@link AlreadyExistsError} when the tenant has a volume of
   * that name, {@link BadRequestError} for a size or name out of bounds,
   * {@link QuotaExceededError} past the tenant's quota.
   */
  async create(options: VolumeCreateOptions): Promise<Volume> {
    const body = { name: options.name, size_bytes: options.sizeBytes };
    return toVolume(await this.transport.json<WireVolume>("POST", "/v1/volumes", body, options));
  }

  /** The tenant's volumes, oldest first. */
  async list(options?: CallOptions): Promise<Volume[]> {
    const { volumes } = await this.transport.json<{ volumes: WireVolume[] }>("GET", "/v1/volumes", undefined, options);
    return volumes.map(toVolume);
  }

  /** One volume, by id or name; {@link NotFoundError} when the tenant has none. */
  async get(volume: Volume | string, options?: CallOptions): Promise<Volume> {
    return toVolume(await this.transport.json<WireVolume>("GET", volumePath(volume), undefined, options));
  }

  /** Deletes a volume and its files (by id or name); {@link ConflictError} while a sandbox mounts it. */
  async delete(volume: Volume | string, options?: CallOptions): Promise<void> {
    await this.transport.call("DELETE", volumePath(volume), undefined, options);
  }
}

function volumePath(volume: Volume | string): string {
  return `/v1/volumes/${encodeURIComponent(typeof volume === "string" ? volume : volume.id)}`;
}

function toVolume(w: WireVolume): Volume {
  return {
    id: w.id,
    name: w.name,
    sizeBytes: w.size_bytes,
    usedBytes: w.used_bytes,
    createdAt: new Date(w.created_at),
    attachedTo: w.attached_to ?? [],
  };
}

/** A mount as the create request takes it. */
export function toWireMount(m: VolumeMount): WireVolumeAttachment {
  if (m === null || typeof m !== "object" || typeof m.volumeId !== "string" || typeof m.path !== "string") {
    throw new TypeError("a volume mount is { volumeId, path, readOnly? }");
  }
  return { volume_id: m.volumeId, path: m.path, read_only: m.readOnly ?? false };
}

export function toAttachment(w: WireVolumeAttachment): VolumeAttachment {
  return { volumeId: w.volume_id, path: w.path, readOnly: w.read_only ?? false };
}

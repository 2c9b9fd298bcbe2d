/**
 * Objects the node answers with, in TypeScript style (camelCase, `Date` timestamps), and
 * their conversion from the wire (snake_case JSON).
 *
 * @module
 */

import { type VolumeAttachment, type WireVolumeAttachment, toAttachment } from "./volumes.js";

/** Where a sandbox is in its life. */
export type SandboxStatus = "starting" | "running" | "paused" | "stopping";

/** Whether a sandbox may open connections to the outside. */
export type Egress = "allow" | "deny";

/** A sandbox as the node describes it. */
export interface SandboxInfo {
  /** `sbx_…`. */
  id: string;
  status: SandboxStatus;
  /** The image it was created from (`host` by default). */
  image: string;
  /** The digest of that image's manifest (`sha256:…`); `null` for the `host` image. */
  imageDigest: string | null;
  desktop: boolean;
  createdAt: Date;
  /** When it is destroyed, running or paused (see `Sandbox.setTimeout`). */
  endAt: Date;
  nodeId: string;
  /** Labels given at creation. */
  metadata: Record<string, string>;
  resources: { cpu: number; memoryBytes: number; diskBytes: number };
  network: { egress: Egress };
  /** The volumes it mounts (each `volumeId` the volume's id). */
  volumes: VolumeAttachment[];
}

/** Live resource figures of a sandbox, read from the kernel. */
export interface SandboxMetrics {
  timestamp: Date;
  /** CPUs it may use (its quota, rounded up). */
  cpuCount: number;
  /** CPU used over a short window, as a percentage of the quota. */
  cpuUsedPct: number;
  memUsedBytes: number;
  memLimitBytes: number;
  diskUsedBytes: number;
  diskLimitBytes: number;
  /** Tasks (processes and threads). */
  pids: number;
  netRxBytes: number;
  netTxBytes: number;
}

/** Wire shape of {@link SandboxInfo}. */
export interface WireSandbox {
  id: string;
  status: SandboxStatus;
  image: string;
  image_digest?: string | null;
  desktop: boolean;
  created_at: string;
  end_at: string;
  node_id: string;
  metadata: Record<string, string>;
  resources: { cpu: number; memory_bytes: number; disk_bytes: number };
  network?: { egress: Egress };
  volumes?: WireVolumeAttachment[];
}

/** Wire shape of {@link SandboxMetrics}. */
export interface WireMetrics {
  timestamp: string;
  cpu_count: number;
  cpu_used_pct: number;
  mem_used_bytes: number;
  mem_limit_bytes: number;
  disk_used_bytes: number;
  disk_limit_bytes: number;
  pids: number;
  net_rx_bytes: number;
  net_tx_bytes: number;
}

export function toSandboxInfo(w: WireSandbox): SandboxInfo {
  return {
    id: w.id,
    status: w.status,
    image: w.image,
    imageDigest: w.image_digest ?? null,
    desktop: w.desktop,
    createdAt: new Date(w.created_at),
    endAt: new Date(w.end_at),
    nodeId: w.node_id,
    metadata: w.metadata,
    resources: {
      cpu: w.resources.cpu,
      memoryBytes: w.resources.memory_bytes,
      diskBytes: w.resources.disk_bytes,
    },
    network: { egress: w.network?.egress ?? "allow" },
    volumes: (w.volumes ?? []).map(toAttachment),
  };
}

export function toMetrics(w: WireMetrics): SandboxMetrics {
  return {
    timestamp: new Date(w.timestamp),
    cpuCount: w.cpu_count,
    cpuUsedPct: w.cpu_used_pct,
    memUsedBytes: w.mem_used_bytes,
    memLimitBytes: w.mem_limit_bytes,
    diskUsedBytes: w.disk_used_bytes,
    diskLimitBytes: w.disk_limit_bytes,
    pids: w.pids,
    netRxBytes: w.net_rx_bytes,
    netTxBytes: w.net_tx_bytes,
  };
}

/** A signal by number (`15`) or name (`"SIGTERM"` or `"TERM"`). */
export type Signal = number | string;

/** Whose permissions apply inside the sandbox. */
export type User = "root" | "user";

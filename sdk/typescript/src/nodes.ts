/**
 * {@link Nodes}: the cluster's nodes (admin). A gateway answers for every node of its
 * cluster; a node on its own answers for itself, a cluster of one.
 *
 * ```ts
 * const ai2in = new Ai2in(); // an admin key
 * for (const node of await ai2in.nodes.list()) {
 *   console.log(node.id, node.status, `${node.used.sandboxes}/${node.capacity.sandboxes}`);
 * }
 * await ai2in.nodes.drain("node-2"); // nothing new is placed on it
 * ```
 *
 * @module
 */

import type { CallOptions, Transport } from "./http.js";

/**
 * Whether a node takes new work: `ready` (it takes new sandboxes, databases and services),
 * `draining` (it serves what it holds and takes nothing new) or `down` (it has not reported
 * for longer than the cluster's threshold).
 */
export type NodeStatus = "ready" | "draining" | "down";

/** What a node holds at most, or how much of it is taken. */
export interface NodeResources {
  /** Sandboxes (services' instances and databases' servers included). */
  sandboxes: number;
  /** Memory limits, summed. */
  memoryBytes: number;
  /** CPU quotas in cores, summed. */
  cpu: number;
}

/** A node of the cluster. */
export interface NodeInfo {
  /** The node's id (its `node_id`, else its host name). */
  id: string;
  /** Where the gateways reach its API, `host:port`. */
  address: string;
  status: NodeStatus;
  /** What it holds at most. */
  capacity: NodeResources;
  /** What is taken. */
  used: NodeResources;
  /** Its last report. */
  lastSeenAt: Date;
}

interface WireNodeResources {
  sandboxes: number;
  memory_bytes: number;
  cpu: number;
}

interface WireNode {
  id: string;
  address: string;
  status: NodeStatus;
  capacity: WireNodeResources;
  used: WireNodeResources;
  last_seen_at: string;
}

/** `ai2in.nodes`: list and drain the cluster's nodes (needs an admin key). */
export class Nodes {
  constructor(private readonly transport: Transport) {}

  /** Every node, by id: address, status, capacity, what is taken, last report. */
  async list(options?: CallOptions): Promise<NodeInfo[]> {
    const { nodes } = await this.transport.json<{ nodes: WireNode[] }>("GET", "/v1/nodes", undefined, options);
    return nodes.map(toNodeInfo);
  }

  /**
   * Stops placement on a node and answers it, `draining`: what it holds keeps running, and a
   * node on its own answers its creates with {@link NodeAtCapacityError}. An unknown id
   * throws {@link NotFoundError}.
   */
  async drain(node: NodeInfo | string, options?: CallOptions): Promise<NodeInfo> {
    const id = typeof node === "string" ? node : node.id;
    const path = `/v1/nodes/${encodeURIComponent(id)}/drain`;
    return toNodeInfo(await this.transport.json<WireNode>("POST", path, undefined, options));
  }
}

function toResources(w: WireNodeResources): NodeResources {
  return { sandboxes: w.sandboxes, memoryBytes: w.memory_bytes, cpu: w.cpu };
}

function toNodeInfo(w: WireNode): NodeInfo {
  return {
    id: w.id,
    address: w.address,
    status: w.status,
    capacity: toResources(w.capacity),
    used: toResources(w.used),
    lastSeenAt: new Date(w.last_seen_at),
  };
}

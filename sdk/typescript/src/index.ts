/**
 * The TypeScript SDK of ai2in: sandboxes that run code, commands, files, terminals and
 * graphical desktops, the images they start from, the volumes they mount, hosted services and
 * managed databases, over the node's REST API. It uses only `fetch`, `ReadableStream`,
 * `TextDecoder` and `atob`/`btoa`, so it runs in Node 20+, Deno, Bun and browsers.
 *
 * ```ts
 * import { Sandbox } from "@ai2in/sdk";
 *
 * await using sbx = await Sandbox.create();
 * console.log((await sbx.runCode("6 * 7")).text); // "42"
 * ```
 *
 * @module
 */

export { Ai2in, Keys, type CreatedKey, type KeyCreateOptions, type KeyInfo } from "./client.js";
export {
  CommandHandle,
  Commands,
  type BackgroundOptions,
  type CommandExit,
  type CommandInfo,
  type CommandLogs,
  type CommandOptions,
  type CommandResult,
  type CommandStatus,
  type ForegroundOptions,
  type WaitOptions,
} from "./commands.js";
export {
  Database,
  Databases,
  type DatabaseCreateOptions,
  type DatabaseEngine,
  type DatabaseInfo,
  type DatabaseRef,
  type DatabaseStatus,
  type EngineInfo,
} from "./databases.js";
export {
  Desktop,
  type CursorPosition,
  type DesktopInfo,
  type DesktopOptions,
  type DesktopStream,
  type DesktopStreamInfo,
  type DesktopWindow,
  type LaunchOptions,
  type MouseButton,
  type MouseButtonOptions,
  type ScrollDirection,
  type ScrollOptions,
} from "./desktop.js";
export {
  Ai2inError,
  AlreadyExistsError,
  ApiError,
  AuthenticationError,
  BadRequestError,
  ConflictError,
  ConnectionError,
  DeployFailedError,
  InsufficientStorageError,
  NodeAtCapacityError,
  NotFoundError,
  PayloadTooLargeError,
  PermissionDeniedError,
  QuotaExceededError,
  RequestTimeoutError,
  SandboxEndedError,
  SandboxPausedError,
  UnsupportedMediaTypeError,
  UpstreamError,
} from "./errors.js";
export { Execution, Result, type ExecutionError, type ExecutionEvent, type Logs } from "./execution.js";
export {
  Files,
  WatchHandle,
  type EntryInfo,
  type FileOptions,
  type ReadBytesOptions,
  type WatchEvent,
  type WriteInfo,
} from "./files.js";
export { DEFAULT_BASE_URL, type CallOptions, type ConnectionOptions, type UploadSource } from "./http.js";
export {
  Images,
  type Image,
  type ImageArchive,
  type ImageConfig,
  type ImageSource,
  type ImportOptions,
  type PullOptions,
  type PullProgress,
} from "./images.js";
export { Nodes, type NodeInfo, type NodeResources, type NodeStatus } from "./nodes.js";
export { Pty, PtyHandle, type PtyCreateOptions, type PtyOutput } from "./pty.js";
export {
  Sandbox,
  type Context,
  type Language,
  type RunCodeCallbacks,
  type RunCodeOptions,
  type SandboxCreateOptions,
  type SandboxListOptions,
  type SnapshotOptions,
} from "./sandbox.js";
export {
  Service,
  Services,
  type FollowLogsOptions,
  type LogLine,
  type LogStream,
  type ServiceDeployOptions,
  type ServiceExit,
  type ServiceInfo,
  type ServiceLogs,
  type ServiceLogsOptions,
  type ServiceRedeployOptions,
  type ServiceRef,
  type ServiceStatus,
  type WaitUntilRunningOptions,
} from "./services.js";
export type { Egress, SandboxInfo, SandboxMetrics, SandboxStatus, Signal, User } from "./types.js";
export {
  Volumes,
  type Volume,
  type VolumeAttachment,
  type VolumeCreateOptions,
  type VolumeMount,
} from "./volumes.js";

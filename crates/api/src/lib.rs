//! Wire types of the ai2in REST API (`shared/API.md`): request and response bodies and the
//! error body. No I/O lives here; the server, the CLI and the Rust SDK share these types.
#![warn(missing_docs)]

mod body;
mod cluster;
mod commands;
mod database;
mod desktop;
mod error;
mod fs;
mod image;
mod keys;
mod network;
mod pty;
mod run;
mod sandbox;
mod service;
mod shell;
mod volume;

pub use body::parse_body;
pub use cluster::{NodeInfo, NodeList, NodeResources, NodeStatus};
pub use commands::{
    CommandInfo, CommandKillRequest, CommandList, CommandLogs, CommandLogsRequest, CommandRequest,
    CommandStarted, CommandStatus, Signal,
};
pub use database::{
    CreateDatabaseRequest, Database, DatabaseList, DatabaseResources, DatabaseStatus, EngineInfo,
    EngineList,
};
pub use desktop::{
    Cursor, DEFAULT_DPI, DEFAULT_HEIGHT, DEFAULT_WIDTH, DesktopInfo, DesktopRequest,
    KeyboardRequest, MouseAction, MouseButton, MouseRequest, ScreenRequest, ScrollDirection,
    Stream, StreamInfo, StreamRequest, Window, WindowList,
};
pub use error::ErrorBody;
pub use fs::{
    EntryType, FileQuery, FsEntry, FsListResponse, FsPathRequest, FsReadBytesResponse,
    FsReadResponse, FsWriteBytesRequest, FsWriteRequest, FsWriteResponse, WatchEvent,
    WatchEventType, WatchEvents, WatchRequest, WatchStarted,
};
pub use image::{
    Image, ImageConfig, ImageList, ImageSource, ImportImageQuery, PullEvent, PullImageRequest,
};
pub use keys::{CreateKeyRequest, CreatedKey, KeyInfo, KeyList};
pub use network::{Egress, ExposeRequest, ExposeResponse, Network, SandboxMetrics};
pub use pty::{PtyInput, PtyOutput, PtyRequest, PtyResize, PtyStarted};
pub use run::{
    ContextInfo, ContextList, ContextRequest, ExecError, ExecResult, Execution, Logs, RunRequest,
};
pub use sandbox::{
    CreateSandboxRequest, Resources, SandboxInfo, SandboxList, SandboxStatus, SetTimeoutRequest,
};
pub use service::{
    DeployServiceRequest, LogLine, LogStream, RedeployServiceRequest, Service, ServiceExit,
    ServiceList, ServiceLogs, ServiceLogsRequest, ServiceStatus,
};
pub use shell::{ShellRequest, ShellResponse};
pub use volume::{CreateVolumeRequest, SnapshotRequest, Volume, VolumeAttachment, VolumeList};

/// Largest file `fs/read_bytes` and `fs/write_bytes` carry (decoded), 32 MiB.
pub const MAX_FILE_BYTES: u64 = 32 << 20;

/// The longest lifetime a sandbox may be given, in milliseconds (24 hours).
pub const MAX_TIMEOUT_MS: u64 = 86_400_000;

//! Rust SDK of ai2in: create sandboxes on a node and run
//! code, shell commands, background commands and terminals in them, read and write
//! their files, pull or import the OCI images they start from, keep files on volumes,
//! snapshot sandboxes into images, host services the node keeps running, run managed
//! databases (PostgreSQL, MySQL, Redis), and administer keys and a cluster's nodes. Async
//! (tokio), typed on the wire types of [`ai2in_api`] (re-exported as [`api`] and at the crate
//! root).
//!
//! ```no_run
//! use ai2in_client::{Client, CreateSandbox, ExecutionExt};
//!
//! # async fn demo() -> ai2in_client::Result<()> {
//! let client = Client::from_env()?; // AI2IN_BASE_URL, AI2IN_API_KEY
//! let sandbox = client.create_sandbox(CreateSandbox::default()).await?;
//! let execution = sandbox.run("1 + 1").await?;
//! assert_eq!(execution.text(), Some("2"));
//! sandbox.kill().await?;
//! # Ok(())
//! # }
//! ```
//!
//! Every call answers [`Result`]; an error answer of the node becomes the [`Error`] variant
//! of its status, carrying the node's sentence verbatim.
#![warn(missing_docs)]

mod client;
mod commands;
mod contexts;
mod databases;
mod desktop;
mod error;
mod fs;
mod http;
mod images;
mod keys;
mod nodes;
mod pty;
mod run;
mod sandbox;
mod services;
mod shell;
mod sse;
mod volumes;

pub use ai2in_api as api;
/// The body of [`Client::create_sandbox`]: every field is optional (`..Default::default()`).
pub use ai2in_api::CreateSandboxRequest as CreateSandbox;
pub use ai2in_api::{
    CommandInfo, CommandLogs, CommandRequest, CommandStarted, CommandStatus, ContextInfo,
    CreateDatabaseRequest, CreateKeyRequest, CreatedKey, Cursor, Database, DatabaseResources,
    DatabaseStatus, DeployServiceRequest, DesktopInfo, DesktopRequest, Egress, EngineInfo,
    EntryType, ExecError, ExecResult, Execution, ExposeResponse, FsEntry, FsWriteResponse, Image,
    ImageConfig, ImageSource, KeyInfo, LogLine, LogStream, MouseButton, Network, NodeInfo,
    NodeResources, NodeStatus, PtyRequest, PtyStarted, PullEvent, RedeployServiceRequest,
    Resources, SandboxInfo, SandboxMetrics, SandboxStatus, ScreenRequest, ScrollDirection, Service,
    ServiceExit, ServiceLogs, ServiceStatus, ShellResponse, Signal, Stream, Volume,
    VolumeAttachment, WatchEvent, WatchEventType, Window,
};

pub use client::{Client, DEFAULT_BASE_URL, SandboxFilter};
pub use commands::Commands;
pub use contexts::Contexts;
pub use databases::Databases;
pub use desktop::Desktop;
pub use error::{Error, Result};
pub use fs::{Download, Fs, Watch};
pub use images::{Images, PullStream};
pub use keys::Keys;
pub use nodes::Nodes;
pub use pty::{Pty, PtyChunk};
pub use run::{ExecutionExt, Language, RunEvent, RunOptions, RunStream};
pub use sandbox::Sandbox;
pub use services::Services;
pub use shell::ShellOptions;
pub use volumes::Volumes;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST /v1/sandboxes/:id/commands`: start `/bin/sh -c cmd` in the background.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CommandRequest {
    /// The command line.
    pub cmd: String,
    /// Working directory (default `/home/user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Extra environment variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    /// `root` (default) or `user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^(root|user)$"))]
    pub user: Option<String>,
}

/// The answer to starting a command.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CommandStarted {
    /// `cmd_…`.
    pub command_id: String,
    /// Its pid inside the sandbox.
    pub pid: u32,
}

/// Where a background command is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum CommandStatus {
    /// Still running.
    Running,
    /// Exited on its own; `exit_code` says how.
    Exited,
    /// Ended by a signal.
    Killed,
}

/// A background command.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CommandInfo {
    /// `cmd_…`.
    pub command_id: String,
    /// Its pid inside the sandbox.
    pub pid: u32,
    /// The command line.
    pub cmd: String,
    /// Where it is.
    pub status: CommandStatus,
    /// Its exit status once it exited.
    pub exit_code: Option<i32>,
    /// Start, RFC 3339 UTC.
    pub started_at: String,
    /// End, RFC 3339 UTC.
    pub ended_at: Option<String>,
}

/// `GET /v1/sandboxes/:id/commands`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CommandList {
    /// Oldest first.
    pub commands: Vec<CommandInfo>,
}

/// `POST …/commands/:cid/logs` (the body is optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CommandLogsRequest {
    /// Byte offset into standard output to read from (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_offset: Option<u64>,
    /// Byte offset into standard error to read from (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_offset: Option<u64>,
}

/// A command's output since the requested offsets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CommandLogs {
    /// Standard output from `stdout_offset` (lossy UTF-8).
    pub stdout: String,
    /// Standard error from `stderr_offset` (lossy UTF-8).
    pub stderr: String,
    /// Where the command is.
    pub status: CommandStatus,
    /// Its exit status once it exited.
    pub exit_code: Option<i32>,
    /// Offset to ask from next time for more standard output.
    pub stdout_offset: u64,
    /// Offset to ask from next time for more standard error.
    pub stderr_offset: u64,
    /// Bytes between the requested offsets and what is kept that were dropped (each stream
    /// keeps its last 1 MiB).
    pub dropped_bytes: u64,
}

/// A signal, by number (`15`) or name (`"SIGTERM"` or `"TERM"`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum Signal {
    /// Its number.
    Number(i32),
    /// Its name.
    Name(String),
}

/// `POST …/commands/:cid/kill` (the body is optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CommandKillRequest {
    /// Default SIGKILL; sent to the whole process group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<Signal>,
}

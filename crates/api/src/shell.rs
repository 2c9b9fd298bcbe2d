use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST /v1/sandboxes/:id/shell`: run `/bin/sh -c cmd` to completion.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ShellRequest {
    /// The command line, given to `/bin/sh -c`.
    pub cmd: String,
    /// Working directory inside the sandbox (default `/home/user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Extra environment variables for this command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    /// Kill the command's process group after this many milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 86_400_000))]
    pub timeout_ms: Option<u64>,
    /// Bytes fed to the command's standard input (UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// `root` (default) or `user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^(root|user)$"))]
    pub user: Option<String>,
}

/// The outcome of a shell command.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShellResponse {
    /// Standard output (lossy UTF-8), cut at the node's cap.
    pub stdout: String,
    /// Standard error (lossy UTF-8), cut at the node's cap.
    pub stderr: String,
    /// Exit code; `null` when the command was killed by a signal or timed out.
    pub exit_code: Option<i32>,
    /// Wall time of the command.
    pub duration_ms: f64,
    /// Whether either stream was cut at the cap.
    pub truncated: bool,
    /// Why the command did not finish normally (timeout, signal), if it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

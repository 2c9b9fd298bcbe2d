use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST /v1/sandboxes/:id/run` and `/run/stream`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// The source to run.
    pub code: String,
    /// `python` (default), `javascript` or `bash`; may be left out with a `context_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^(python|javascript|bash)$"))]
    pub language: Option<String>,
    /// The context to run in; the language's default context when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_id: Option<String>,
    /// Interrupt the run after this many milliseconds (the context survives).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 86_400_000))]
    pub timeout_ms: Option<u64>,
    /// Environment variables set for this run (and kept by the context).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
}

/// One result: a MIME bundle (`text/plain` always, rich types when the object has them).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecResult {
    /// Whether it is the value of the code's last expression.
    pub is_main_result: bool,
    /// Representations by MIME type; `image/png` is base64, `application/json` a value.
    pub data: serde_json::Map<String, serde_json::Value>,
}

/// What the code printed, chunk by chunk as it came.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Logs {
    /// Standard output chunks.
    pub stdout: Vec<String>,
    /// Standard error chunks.
    pub stderr: Vec<String>,
}

/// An error the code raised.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecError {
    /// E.g. `ZeroDivisionError`.
    pub name: String,
    /// Its message.
    pub value: String,
    /// Traceback pointing at the user's lines.
    pub traceback: String,
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Execution {
    /// Results, the main one among them.
    pub results: Vec<ExecResult>,
    /// Output.
    pub logs: Logs,
    /// The error the code raised, if any (an error is still a 200 answer).
    pub error: Option<ExecError>,
    /// The context's count of runs.
    pub execution_count: u64,
    /// Wall time.
    pub duration_ms: f64,
    /// The context it ran in (extension).
    pub context_id: String,
    /// Exit status of the snippet, for bash contexts (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// `POST /v1/sandboxes/:id/contexts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ContextRequest {
    /// `python`, `javascript` or `bash`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^(python|javascript|bash)$"))]
    pub language: String,
    /// Working directory (default `/home/user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
}

/// A code context.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ContextInfo {
    /// `ctx_…`.
    pub context_id: String,
    /// Its language.
    pub language: String,
    /// Its starting working directory.
    pub cwd: String,
    /// Whether its interpreter runs now.
    pub alive: bool,
}

/// `GET /v1/sandboxes/:id/contexts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ContextList {
    /// The contexts.
    pub contexts: Vec<ContextInfo>,
}

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::VolumeAttachment;

/// `POST /v1/hosting/services`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DeployServiceRequest {
    /// 1 to 40 of `a-z 0-9 -`, not starting or ending with `-`, unique among the tenant's
    /// services; part of the URL.
    pub name: String,
    /// `host`, an `img_…` id or a reference such as `python:3.12-slim`.
    pub image: String,
    /// The port the service listens on inside; the service has a URL only with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_port: Option<u16>,
    /// Variables over the image's environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    /// Run by `/bin/sh -c`; the image's entrypoint and cmd when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_cmd: Option<String>,
    /// A path (such as `/healthz`) that must answer 2xx or 3xx before the service is
    /// `running`; the open port is enough when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_path: Option<String>,
    /// CPU cores of its sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// Memory of its sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Disk of its sandbox's writable layer (which a restart empties: keep data on volumes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_bytes: Option<u64>,
    /// Volumes mounted in every instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<VolumeAttachment>>,
}

/// `POST /v1/hosting/services/:id/redeploy`: the fields that change (all optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RedeployServiceRequest {
    /// A new image (pulled again even when unchanged: a tag may have moved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// A new environment (replaces the old one whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    /// A new start command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_cmd: Option<String>,
    /// A new internal port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_port: Option<u16>,
    /// A new health path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_path: Option<String>,
}

/// Where a service is in its life.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ServiceStatus {
    /// Starting: its port does not accept connections yet (or its health path fails).
    Deploying,
    /// Serving.
    Running,
    /// Its process exited (or never became ready); it restarts at `next_restart_at`.
    Crashed,
    /// Stopped by its owner; `start` starts it again.
    Stopped,
}

/// How a service's process last ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceExit {
    /// Its exit status; absent when a signal ended it.
    pub exit_code: Option<i32>,
    /// The signal that ended it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// When, RFC 3339 UTC.
    pub at: String,
}

/// The service object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Service {
    /// `svc_…`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The image it runs, as given.
    pub image: String,
    /// The content digest of the image's current deploy (absent for `host`).
    pub image_digest: Option<String>,
    /// Where it is in its life.
    pub status: ServiceStatus,
    /// Its public URL, stable for its whole life; absent without an internal port.
    pub url: Option<String>,
    /// The port it listens on inside.
    pub internal_port: Option<u16>,
    /// Its start command (absent: the image's entrypoint and cmd).
    pub start_cmd: Option<String>,
    /// The path that decides readiness.
    pub health_path: Option<String>,
    /// Creation time, RFC 3339 UTC.
    pub created_at: String,
    /// Time of the last deploy or redeploy that became current, RFC 3339 UTC.
    pub deployed_at: Option<String>,
    /// How many times the node restarted its process after an exit.
    pub restarts: u64,
    /// How its process last ended.
    pub last_exit: Option<ServiceExit>,
    /// When it restarts next, while crashed.
    pub next_restart_at: Option<String>,
    /// The sandbox of its current instance (for `exec`, files and metrics), while one runs.
    pub sandbox_id: Option<String>,
    /// The resources of each instance.
    pub resources: crate::Resources,
    /// Volumes mounted in each instance.
    pub volumes: Vec<VolumeAttachment>,
}

/// `GET /v1/hosting/services`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceList {
    /// The caller's services, oldest first.
    pub services: Vec<Service>,
}

/// `POST /v1/hosting/services/:id/logs` (and the query of `GET …/logs/stream`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema, utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct ServiceLogsRequest {
    /// Only lines after this cursor (a `next_since` or a line's `seq`); the most recent lines
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// At most this many lines (default 100, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// Which stream a log line came from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    /// The process's standard output.
    Stdout,
    /// The process's standard error.
    Stderr,
    /// What the node did (started, exited, restarting, redeployed).
    System,
}

/// One line of a service's log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogLine {
    /// Its position in the service's log: increasing, never reused.
    pub seq: u64,
    /// When it was written, RFC 3339 UTC with milliseconds.
    pub timestamp: String,
    /// Where it came from.
    pub stream: LogStream,
    /// The line without its newline. Bytes that are not UTF-8 show as U+FFFD; a line over
    /// 8 KiB is cut and ends with `… [N bytes cut]`.
    pub line: String,
}

/// The answer of `POST /v1/hosting/services/:id/logs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceLogs {
    /// Oldest first.
    pub logs: Vec<LogLine>,
    /// The cursor to pass as `since` for the lines that follow.
    pub next_since: u64,
}

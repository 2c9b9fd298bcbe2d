use serde::{Deserialize, Serialize};

/// `fs/list`, `fs/read`, `fs/read_bytes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FsPathRequest {
    /// Absolute inside the sandbox, or relative to `/home/user`.
    pub path: String,
    /// Whose permissions apply: `user` (default) or `root`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^(root|user)$"))]
    pub user: Option<String>,
}

/// The file of a raw transfer (`GET|PUT /v1/sandboxes/:id/files?path=P`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct FileQuery {
    /// Absolute inside the sandbox, or relative to `/home/user`.
    pub path: String,
    /// Whose permissions apply (and who owns what is written): `user` (default) or `root`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// `fs/write`: UTF-8 text.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FsWriteRequest {
    /// Where to write; missing parent directories are created.
    pub path: String,
    /// The new contents.
    pub content: String,
    /// Who writes (and owns the file): `user` (default) or `root`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^(root|user)$"))]
    pub user: Option<String>,
}

/// `fs/write_bytes`: any bytes, base64-encoded.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FsWriteBytesRequest {
    /// Where to write; missing parent directories are created.
    pub path: String,
    /// The new contents, standard base64 (at most 32 MiB decoded).
    pub content_b64: String,
    /// Who writes (and owns the file): `user` (default) or `root`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^(root|user)$"))]
    pub user: Option<String>,
}

/// The answer to a write.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FsWriteResponse {
    /// The absolute path written.
    pub path: String,
    /// Bytes written.
    pub size_bytes: u64,
}

/// The answer to `fs/read`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FsReadResponse {
    /// The file's text.
    pub content: String,
}

/// The answer to `fs/read_bytes`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FsReadBytesResponse {
    /// The file's bytes, standard base64.
    pub content_b64: String,
    /// Its size in bytes.
    pub size: u64,
}

/// What kind of entry a path is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum EntryType {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (not followed).
    Symlink,
    /// Anything else (device, socket, fifo).
    Other,
}

/// One entry of `fs/list`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FsEntry {
    /// File name.
    pub name: String,
    /// Absolute path inside the sandbox.
    pub path: String,
    /// Kind of entry.
    #[serde(rename = "type")]
    pub entry_type: EntryType,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Permission bits (e.g. 420 for 0644).
    pub mode: u32,
    /// Last modification, RFC 3339 UTC.
    pub modified_at: String,
}

/// The answer to `fs/list`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FsListResponse {
    /// Entries, sorted by name.
    pub entries: Vec<FsEntry>,
}

/// `fs/watch`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WatchRequest {
    /// The file or directory to watch.
    pub path: String,
    /// Also watch every directory below it, present and future (default false).
    #[serde(default)]
    pub recursive: bool,
    /// Whose permissions apply: `user` (default) or `root`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^(root|user)$"))]
    pub user: Option<String>,
}

/// The answer to `fs/watch`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WatchStarted {
    /// `wch_…`.
    pub watch_id: String,
}

/// What a watch saw.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum WatchEventType {
    /// A file or directory appeared.
    Create,
    /// A file's contents changed.
    Modify,
    /// A file or directory went away.
    Delete,
    /// A file or directory was renamed; the path is its new name.
    Rename,
    /// Events were lost because the queue was full.
    Overflow,
}

/// One change.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WatchEvent {
    /// What happened.
    #[serde(rename = "type")]
    pub event_type: WatchEventType,
    /// The path as the sandbox sees it (empty for `overflow`).
    pub path: String,
    /// When, RFC 3339 UTC.
    pub timestamp: String,
}

/// The answer to `poll`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WatchEvents {
    /// Events since the last poll, oldest first.
    pub events: Vec<WatchEvent>,
}

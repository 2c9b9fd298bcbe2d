use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST /v1/images`: pull an image (or find it).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PullImageRequest {
    /// An OCI/Docker reference: `python:3.12-slim`, `ghcr.io/org/app:1.2`,
    /// `registry.local:5000/app@sha256:…`.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 1024))]
    pub r#ref: String,
}

/// Where an image came from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ImageSource {
    /// Pulled from a registry.
    Pull,
    /// Imported from a `docker save` archive or an OCI image layout.
    Import,
    /// Taken from a sandbox.
    Snapshot,
}

/// What an image's config says about how to run it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImageConfig {
    /// Environment of every process (beneath a create's `env`).
    pub env: BTreeMap<String, String>,
    /// Default working directory; `null` when the image names none (`/home/user`).
    pub workdir: Option<String>,
    /// Default user (`name`, `uid` or `uid:gid`); `null` when the image names none (root).
    pub user: Option<String>,
    /// The image's entrypoint.
    pub entrypoint: Vec<String>,
    /// The image's command.
    pub cmd: Vec<String>,
    /// TCP ports the image declares.
    pub exposed_ports: Vec<u16>,
}

/// The image object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Image {
    /// `img_…`.
    pub id: String,
    /// The normalised reference: `docker.io/library/python:3.12-slim`.
    pub r#ref: String,
    /// Digest of the image's manifest, `sha256:…`.
    pub digest: String,
    /// Bytes its layers take unpacked.
    pub size_bytes: u64,
    /// Number of layers.
    pub layers: u32,
    /// Where it came from.
    pub source: ImageSource,
    /// When this tenant got it, RFC 3339 UTC.
    pub created_at: String,
    /// When a sandbox last started from it, RFC 3339 UTC.
    pub last_used_at: String,
    /// How to run it.
    pub config: ImageConfig,
}

/// `GET /v1/images`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImageList {
    /// The caller's images.
    pub images: Vec<Image>,
}

/// `POST /v1/images/import` query.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct ImportImageQuery {
    /// The name the image gets, `name:tag` (normalised as a pull reference is). When absent,
    /// the archive's own name, if it has exactly one.
    #[serde(default, rename = "ref")]
    pub r#ref: Option<String>,
}

/// An event of a pull streamed as Server-Sent Events (`Accept: text/event-stream`): the SSE
/// event name is the variant (`progress`, `done`, `error`), the data its fields.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum PullEvent {
    /// Bytes of one layer fetched so far.
    Progress {
        /// The layer's digest, `sha256:…`.
        layer: String,
        /// Compressed bytes fetched.
        done_bytes: u64,
        /// Compressed size of the layer.
        total_bytes: u64,
    },
    /// The pull finished.
    Done {
        /// The image.
        image: Box<Image>,
    },
    /// The pull failed; no more events follow.
    Error {
        /// One sentence.
        error: String,
        /// The HTTP status the same failure gets without streaming.
        status: u16,
    },
}

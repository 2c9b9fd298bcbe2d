//! Why an image operation failed, in the classes the API answers with.

use crate::reference::ReferenceError;
use crate::unpack::UnpackError;

/// Why a pull or an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The reference does not parse (400).
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The registry does not have the image (404).
    #[error("{0}")]
    NotFound(String),
    /// The registry could not be reached or answered nonsense (502).
    #[error("registry {registry}: {why}")]
    Registry {
        /// The registry host.
        registry: String,
        /// What went wrong.
        why: String,
    },
    /// Content did not match its digest (502).
    #[error(
        "{what} does not match its digest {digest}: the registry or archive sent other content"
    )]
    DigestMismatch {
        /// Which content.
        what: String,
        /// The digest it should have had.
        digest: String,
    },
    /// A layer could not be unpacked: hostile, broken or too large (502).
    #[error("layer {digest} was refused")]
    Layer {
        /// The layer's digest.
        digest: String,
        /// Why.
        #[source]
        source: UnpackError,
    },
    /// An archive to import is malformed (400).
    #[error("{0}")]
    BadArchive(String),
    /// Over a limit of the node, such as a snapshot's size or entry count (413).
    #[error("{0}")]
    TooLarge(String),
    /// The node's own disk failed (500).
    #[error("image store: {0}")]
    Io(#[from] std::io::Error),
}

use crate::auth::Scope;

/// Why a node operation was refused or failed; each maps to one HTTP status.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NodeError {
    /// The request is malformed or asks for something invalid (400).
    #[error("{0}")]
    Invalid(String),
    /// No valid API key (401).
    #[error("{0}")]
    Unauthenticated(String),
    /// The key lacks a scope (403).
    #[error("this API key lacks the {0} scope")]
    MissingScope(Scope),
    /// No such resource for this tenant (404).
    #[error("{0}")]
    NotFound(String),
    /// The sandbox's own permissions refuse it (403).
    #[error("{0}")]
    PermissionDenied(String),
    /// A payload or file is over a limit (413).
    #[error("{0}")]
    TooLarge(String),
    /// The file is not UTF-8 text (415).
    #[error("{0}")]
    NotText(String),
    /// The sandbox's disk is full (507).
    #[error("{0}")]
    NoSpace(String),
    /// The sandbox is paused (409).
    #[error("sandbox {0} is paused; resume it first")]
    Paused(String),
    /// The sandbox has ended (410).
    #[error("sandbox {0} has ended; create a new one")]
    Ended(String),
    /// A tenant quota is exhausted (429).
    #[error("{0}")]
    Quota(String),
    /// The node has no room (503).
    #[error("node at capacity: {0}")]
    Capacity(String),
    /// The sandbox's agent did not answer as it should (502).
    #[error("sandbox {0} is not responding: {1}")]
    Unresponsive(String, String),
    /// Nothing listens on an exposed port (502).
    #[error("{0}")]
    NoListener(String),
    /// A resource of that name exists already (409).
    #[error("{0}")]
    Exists(String),
    /// The node cannot do this at all, e.g. it cannot make disks (503).
    #[error("{0}")]
    Unavailable(String),
    /// A resource is in use or otherwise conflicts (409).
    #[error("{0}")]
    Conflict(String),
    /// A new deploy of a service never became ready; the old one keeps serving (422).
    #[error("{0}")]
    DeployFailed(String),
    /// A registry, or content it sent, failed (502).
    #[error("{0}")]
    Upstream(String),
    /// A bug or a host failure (500).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ai2in_store::StoreError> for NodeError {
    fn from(e: ai2in_store::StoreError) -> Self {
        if e.is_disk_full() {
            NodeError::NoSpace(
                "the node's disk is full; delete volumes, images or sandboxes".into(),
            )
        } else {
            NodeError::Internal(error_chain(&e))
        }
    }
}

/// `e` and its sources, joined: for logs and 500 answers.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

//! The one error type of the SDK: an error answer of the node by its status (with the
//! node's sentence, verbatim), or a failure to talk to the node at all.

/// The result of every SDK call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong. API variants carry the node's sentence as `message`; [`Error::status`]
/// gives the HTTP status back.
///
/// ```no_run
/// # async fn demo(sandbox: ai2in_client::Sandbox) {
/// match sandbox.run("1").await {
///     Err(ai2in_client::Error::Paused { message }) => eprintln!("resume it first: {message}"),
///     Err(e) => eprintln!("{e} (status {:?})", e.status()),
///     Ok(execution) => println!("{:?}", execution.results),
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// 400: the request is malformed or invalid (the message names the field).
    #[error("{message}")]
    BadRequest {
        /// The node's sentence.
        message: String,
    },
    /// 401: no key, or a key the node does not know.
    #[error("{message}")]
    Unauthenticated {
        /// The node's sentence.
        message: String,
    },
    /// 403: the key lacks the scope (the message names it).
    #[error("{message}")]
    Forbidden {
        /// The node's sentence.
        message: String,
    },
    /// 404: no such sandbox (or other object) for this key.
    #[error("{message}")]
    NotFound {
        /// The node's sentence.
        message: String,
    },
    /// 409: the sandbox is paused; resume it first.
    #[error("{message}")]
    Paused {
        /// The node's sentence.
        message: String,
    },
    /// 409: a sandbox uses the image or the volume (deleting it, or mounting a volume
    /// read-write that another sandbox mounts so); the message names the sandbox.
    #[error("{message}")]
    InUse {
        /// The node's sentence (it names the sandbox).
        message: String,
    },
    /// 409: the tenant has something of that name already (a volume, a service).
    #[error("{message}")]
    AlreadyExists {
        /// The node's sentence.
        message: String,
    },
    /// 410: the sandbox has ended (expired or destroyed).
    #[error("{message}")]
    Ended {
        /// The node's sentence.
        message: String,
    },
    /// 413: a payload over a limit (e.g. a file over 32 MiB).
    #[error("{message}")]
    PayloadTooLarge {
        /// The node's sentence.
        message: String,
    },
    /// 415: a wrong content type, e.g. `fs().read` of a file that is not text.
    #[error("{message}")]
    UnsupportedMediaType {
        /// The node's sentence.
        message: String,
    },
    /// 422: a service's redeploy whose new instance never became ready; the old instance
    /// keeps serving.
    #[error("{message}")]
    DeployFailed {
        /// The node's sentence (it says why the instance was not ready).
        message: String,
    },
    /// 429: a quota of the tenant is used up.
    #[error("{message}")]
    QuotaExceeded {
        /// The node's sentence.
        message: String,
    },
    /// 502: something the node depends on failed: an image registry that cannot be
    /// reached or answers garbage, content that does not match its digest, or a sandbox's
    /// agent that does not answer.
    #[error("{message}")]
    Upstream {
        /// The node's sentence (it names the registry or the sandbox).
        message: String,
    },
    /// 503: the node is at capacity.
    #[error("{message}")]
    AtCapacity {
        /// The node's sentence.
        message: String,
    },
    /// 507: the node's disk is full.
    #[error("{message}")]
    InsufficientStorage {
        /// The node's sentence.
        message: String,
    },
    /// Any other error status.
    #[error("{message} ({status})")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The node's sentence.
        message: String,
    },
    /// The node could not be reached, or its answer could not be read.
    #[error("could not talk to the node")]
    Transport(#[from] reqwest::Error),
    /// A stream (run events, watch events) broke off, or the node reported a failure in it.
    #[error("{0}")]
    Stream(String),
    /// A local file could not be read (e.g. the archive of [`crate::Images::import_file`])
    /// or written (what [`crate::Download::write_to`] writes to).
    #[error("could not read or write {}", path.display())]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The node answered something this SDK cannot read (a version mismatch or a bug).
    #[error("unexpected answer from the node: {0}")]
    InvalidResponse(String),
}

impl Error {
    /// The error for an answer with `status` and the node's error body: its `code` tells
    /// the kinds of one status apart (a 409 is a paused sandbox or an image in use).
    pub(crate) fn from_body(status: u16, body: ai2in_api::ErrorBody) -> Self {
        match (status, body.code.as_deref()) {
            (409, Some("in_use")) => Error::InUse {
                message: body.error,
            },
            (409, Some("already_exists")) => Error::AlreadyExists {
                message: body.error,
            },
            _ => Error::from_status(status, body.error),
        }
    }

    /// The error for an answer with `status` and the node's `message`.
    pub(crate) fn from_status(status: u16, message: String) -> Self {
        match status {
            400 => Error::BadRequest { message },
            401 => Error::Unauthenticated { message },
            403 => Error::Forbidden { message },
            404 => Error::NotFound { message },
            409 => Error::Paused { message },
            410 => Error::Ended { message },
            413 => Error::PayloadTooLarge { message },
            415 => Error::UnsupportedMediaType { message },
            422 => Error::DeployFailed { message },
            429 => Error::QuotaExceeded { message },
            502 => Error::Upstream { message },
            503 => Error::AtCapacity { message },
            507 => Error::InsufficientStorage { message },
            status => Error::Api { status, message },
        }
    }

    /// The HTTP status of an error answer; `None` for the other errors.
    pub fn status(&self) -> Option<u16> {
        Some(match self {
            Error::BadRequest { .. } => 400,
            Error::Unauthenticated { .. } => 401,
            Error::Forbidden { .. } => 403,
            Error::NotFound { .. } => 404,
            Error::Paused { .. } | Error::InUse { .. } | Error::AlreadyExists { .. } => 409,
            Error::Ended { .. } => 410,
            Error::PayloadTooLarge { .. } => 413,
            Error::UnsupportedMediaType { .. } => 415,
            Error::DeployFailed { .. } => 422,
            Error::QuotaExceeded { .. } => 429,
            Error::Upstream { .. } => 502,
            Error::AtCapacity { .. } => 503,
            Error::InsufficientStorage { .. } => 507,
            Error::Api { status, .. } => *status,
            Error::Transport(_)
            | Error::Stream(_)
            | Error::File { .. }
            | Error::InvalidResponse(_) => return None,
        })
    }

    /// The node's sentence for an error answer or a failed stream.
    pub fn message(&self) -> Option<&str> {
        match self {
            Error::BadRequest { message }
            | Error::Unauthenticated { message }
            | Error::Forbidden { message }
            | Error::NotFound { message }
            | Error::Paused { message }
            | Error::InUse { message }
            | Error::AlreadyExists { message }
            | Error::Ended { message }
            | Error::PayloadTooLarge { message }
            | Error::UnsupportedMediaType { message }
            | Error::DeployFailed { message }
            | Error::QuotaExceeded { message }
            | Error::Upstream { message }
            | Error::AtCapacity { message }
            | Error::InsufficientStorage { message }
            | Error::Api { message, .. }
            | Error::Stream(message) => Some(message),
            Error::Transport(_) | Error::File { .. } | Error::InvalidResponse(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_the_variants() {
        for status in [
            400, 401, 403, 404, 409, 410, 413, 415, 422, 429, 502, 503, 507, 418, 500,
        ] {
            let e = Error::from_status(status, "why".into());
            assert_eq!(e.status(), Some(status));
            assert_eq!(e.message(), Some("why"));
        }
        assert!(matches!(
            Error::from_status(409, String::new()),
            Error::Paused { .. }
        ));
        assert!(matches!(
            Error::from_status(502, String::new()),
            Error::Upstream { .. }
        ));
        assert!(matches!(
            Error::from_status(422, String::new()),
            Error::DeployFailed { .. }
        ));
        let in_use = Error::InUse {
            message: "in use".into(),
        };
        assert_eq!(
            (in_use.status(), in_use.message()),
            (Some(409), Some("in use"))
        );
    }
}

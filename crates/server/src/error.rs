//! Error answers: `{ "error": "<one sentence>", "code": "<kind>" }` with the status that
//! fits.

use ai2in_api::ErrorBody;
use ai2in_node::NodeError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    code: &'static str,
}

/// The kind of an answer that has no more specific one: by its status.
fn code_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "invalid_request",
        401 => "unauthenticated",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        409 => "conflict",
        410 => "ended",
        413 => "too_large",
        415 => "unsupported_media_type",
        416 => "range_not_satisfiable",
        429 => "quota_exceeded",
        501 => "not_implemented",
        502 => "bad_gateway",
        503 => "unavailable",
        507 => "no_space",
        _ => "internal",
    }
}

impl ApiError {
    /// An answer with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            code: code_of(status),
        }
    }

    /// Its status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Its sentence.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The answer for a `field` that is not standard base64.
    pub fn bad_base64(field: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, bad_base64(field))
    }
}

/// The sentence for a `field` that is not standard base64.
pub fn bad_base64(field: &str) -> String {
    format!("{field} is not valid standard base64 (A–Z, a–z, 0–9, +, / and = padding)")
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        use StatusCode as S;
        let (status, code) = match &e {
            NodeError::Invalid(_) => (S::BAD_REQUEST, "invalid_request"),
            NodeError::Unauthenticated(_) => (S::UNAUTHORIZED, "unauthenticated"),
            NodeError::MissingScope(_) => (S::FORBIDDEN, "missing_scope"),
            NodeError::NotFound(_) => (S::NOT_FOUND, "not_found"),
            NodeError::PermissionDenied(_) => (S::FORBIDDEN, "permission_denied"),
            NodeError::TooLarge(_) => (S::PAYLOAD_TOO_LARGE, "too_large"),
            NodeError::NotText(_) => (S::UNSUPPORTED_MEDIA_TYPE, "not_text"),
            NodeError::NoSpace(_) => (S::INSUFFICIENT_STORAGE, "no_space"),
            NodeError::Paused(_) => (S::CONFLICT, "sandbox_paused"),
            NodeError::Conflict(_) => (S::CONFLICT, "in_use"),
            NodeError::Exists(_) => (S::CONFLICT, "already_exists"),
            NodeError::Unavailable(_) => (S::SERVICE_UNAVAILABLE, "unavailable"),
            NodeError::Ended(_) => (S::GONE, "sandbox_ended"),
            NodeError::Quota(_) => (S::TOO_MANY_REQUESTS, "quota_exceeded"),
            NodeError::Capacity(_) => (S::SERVICE_UNAVAILABLE, "node_at_capacity"),
            NodeError::Unresponsive(..) => (S::BAD_GATEWAY, "sandbox_unresponsive"),
            NodeError::NoListener(_) => (S::BAD_GATEWAY, "no_listener"),
            NodeError::Upstream(_) => (S::BAD_GATEWAY, "upstream"),
            NodeError::DeployFailed(_) => (S::UNPROCESSABLE_ENTITY, "deploy_failed"),
            NodeError::Internal(_) => (S::INTERNAL_SERVER_ERROR, "internal"),
        };
        if status.is_server_error() {
            tracing::error!(error = %e, "request failed");
        }
        ApiError {
            status,
            message: e.to_string(),
            code,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: self.message,
                code: Some(self.code.to_string()),
            }),
        )
            .into_response()
    }
}

//! Error answers: `{ "error": "<one sentence>" }` with the status that fits.

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
}

impl ApiError {
    /// An answer with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
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
        let status = match &e {
            NodeError::Invalid(_) => StatusCode::BAD_REQUEST,
            NodeError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            NodeError::MissingScope(_) => StatusCode::FORBIDDEN,
            NodeError::NotFound(_) => StatusCode::NOT_FOUND,
            NodeError::PermissionDenied(_) => StatusCode::FORBIDDEN,
            NodeError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            NodeError::NotText(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            NodeError::NoSpace(_) => StatusCode::INSUFFICIENT_STORAGE,
            NodeError::Paused(_) | NodeError::Conflict(_) => StatusCode::CONFLICT,
            NodeError::Upstream(_) => StatusCode::BAD_GATEWAY,
            NodeError::Ended(_) => StatusCode::GONE,
            NodeError::Quota(_) => StatusCode::TOO_MANY_REQUESTS,
            NodeError::Capacity(_) => StatusCode::SERVICE_UNAVAILABLE,
            NodeError::Unresponsive(..) | NodeError::NoListener(_) => StatusCode::BAD_GATEWAY,
            NodeError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!(error = %e, "request failed");
        }
        ApiError::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response()
    }
}

use serde::{Deserialize, Serialize};

/// The body of every error answer: one sentence a person can act on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// What went wrong and what to do about it.
    pub error: String,
}

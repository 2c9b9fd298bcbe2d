use serde::{Deserialize, Serialize};

/// The body of every error answer: one sentence a person can act on, and the error's kind
/// for programs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// What went wrong and what to do about it.
    pub error: String,
    /// A stable name of the error's kind, one per cause within a status: `sandbox_paused`
    /// and `in_use` are both 409. Absent from nodes older than this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(example = "sandbox_paused"))]
    pub code: Option<String>,
}

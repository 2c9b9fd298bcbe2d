//! Background command routes.

use ai2in_api::{
    CommandKillRequest, CommandList, CommandLogs, CommandLogsRequest, CommandRequest,
    CommandStarted,
};
use ai2in_node::Node;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::error::ApiError;
use crate::extract::{Auth, JsonBody, Path};

/// Start a command in the background.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/commands", tag = "commands", request_body = CommandRequest,
    responses((status = 200, description = "Its id and process id.", body = CommandStarted)))]
pub async fn start(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<CommandRequest>,
) -> Result<Json<CommandStarted>, ApiError> {
    let (command_id, pid) = node.start_command(&who, &id, req).await?;
    Ok(Json(CommandStarted { command_id, pid }))
}

/// List the sandbox's background commands.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/commands", tag = "commands",
    responses((status = 200, description = "The commands.", body = CommandList)))]
pub async fn list(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<Json<CommandList>, ApiError> {
    Ok(Json(CommandList {
        commands: node.list_commands(&who, &id).await?,
    }))
}

/// A command's output since its start, or since the offsets given (the body is optional).
#[utoipa::path(post, path = "/v1/sandboxes/{id}/commands/{cid}/logs", tag = "commands", request_body = CommandLogsRequest,
    responses((status = 200, description = "Output, status and the offsets to continue from.", body = CommandLogs)))]
pub async fn logs(
    State(node): State<Node>,
    Auth(who): Auth,
    Path((id, cid)): Path<(String, String)>,
    JsonBody(req): JsonBody<CommandLogsRequest>,
) -> Result<Json<CommandLogs>, ApiError> {
    let logs = node
        .command_logs(
            &who,
            &id,
            &cid,
            req.stdout_offset.unwrap_or(0),
            req.stderr_offset.unwrap_or(0),
        )
        .await?;
    Ok(Json(logs))
}

/// Signal a command's process group (SIGKILL by default; the body is optional).
#[utoipa::path(post, path = "/v1/sandboxes/{id}/commands/{cid}/kill", tag = "commands", request_body = CommandKillRequest,
    responses((status = 204, description = "Signalled.")))]
pub async fn kill(
    State(node): State<Node>,
    Auth(who): Auth,
    Path((id, cid)): Path<(String, String)>,
    JsonBody(req): JsonBody<CommandKillRequest>,
) -> Result<StatusCode, ApiError> {
    node.kill_command(&who, &id, &cid, req.signal).await?;
    Ok(StatusCode::NO_CONTENT)
}

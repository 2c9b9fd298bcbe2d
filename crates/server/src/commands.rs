//! Background command routes.

use ai2in_api::{
    CommandKillRequest, CommandList, CommandLogs, CommandLogsRequest, CommandRequest,
    CommandStarted,
};
use ai2in_node::Node;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use crate::error::ApiError;
use crate::extract::{Auth, JsonBody};

pub async fn start(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<CommandRequest>,
) -> Result<Json<CommandStarted>, ApiError> {
    let (command_id, pid) = node.start_command(&who, &id, req).await?;
    Ok(Json(CommandStarted { command_id, pid }))
}

pub async fn list(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<Json<CommandList>, ApiError> {
    Ok(Json(CommandList {
        commands: node.list_commands(&who, &id).await?,
    }))
}

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

pub async fn kill(
    State(node): State<Node>,
    Auth(who): Auth,
    Path((id, cid)): Path<(String, String)>,
    JsonBody(req): JsonBody<CommandKillRequest>,
) -> Result<StatusCode, ApiError> {
    node.kill_command(&who, &id, &cid, req.signal).await?;
    Ok(StatusCode::NO_CONTENT)
}

//! Run routes: one Execution, or Server-Sent Events (`stdout`, `stderr`, `result`, `error`,
//! then `done` with the whole Execution; a keep-alive comment while nothing happens), and
//! the code contexts.

use std::convert::Infallible;
use std::time::Duration;

use ai2in_api::{ContextInfo, ContextList, ContextRequest, Execution, RunRequest};
use ai2in_node::{Node, RunEvent};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde_json::json;

use crate::error::ApiError;
use crate::extract::{Auth, JsonBody, Path};

/// Run code in a stateful context and answer the whole Execution. An error in the code is
/// a normal answer with `error` set.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/run", tag = "code", request_body = RunRequest,
    responses((status = 200, description = "The Execution.", body = Execution)))]
pub async fn run(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<RunRequest>,
) -> Result<Json<Execution>, ApiError> {
    Ok(Json(node.run(&who, &id, req).await?))
}

fn sse(event: &str, data: serde_json::Value) -> Result<Event, Infallible> {
    Ok(Event::default()
        .event(event)
        .json_data(data)
        .unwrap_or_default())
}

/// Run code, streaming Server-Sent Events as it runs: `stdout` `{text}`, `stderr` `{text}`,
/// `result` `{result}`, `error` `{name, value, traceback}`, and last `done` `{execution}`.
/// A client that disconnects interrupts the run.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/run/stream", tag = "code", request_body = RunRequest,
    responses((status = 200, description = "The run's events; `done` carries the Execution (or `execution: null` and `error` if the run failed after the stream began).", body = ref("#/components/schemas/RunStreamEvent"), content_type = "text/event-stream")))]
pub async fn run_stream(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<RunRequest>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let stream = node.run_stream(&who, &id, req).await?;
    let events = futures_util::stream::unfold(stream, |mut stream| async move {
        let event = match stream.next().await? {
            Ok(RunEvent::Stdout(text)) => sse("stdout", json!({ "text": text })),
            Ok(RunEvent::Stderr(text)) => sse("stderr", json!({ "text": text })),
            Ok(RunEvent::Result(result)) => sse("result", json!({ "result": result })),
            Ok(RunEvent::Error(error)) => sse("error", json!(error)),
            Ok(RunEvent::Done(execution)) => sse("done", json!({ "execution": execution })),
            // The stream has begun (200): a failure is reported in it, as the last event.
            Err(e) => sse("done", json!({ "execution": null, "error": e.to_string() })),
        };
        Some((event, stream))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(10))))
}

/// Create a code context: its own interpreter, variables and working directory.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/contexts", tag = "code", request_body = ContextRequest,
    responses((status = 201, description = "The new context.", body = ContextInfo)))]
pub async fn create_context(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<ContextRequest>,
) -> Result<(StatusCode, Json<ContextInfo>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(
            node.create_context(&who, &id, req.language, req.cwd)
                .await?,
        ),
    ))
}

/// List the sandbox's code contexts.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/contexts", tag = "code",
    responses((status = 200, description = "The contexts.", body = ContextList)))]
pub async fn list_contexts(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<Json<ContextList>, ApiError> {
    Ok(Json(ContextList {
        contexts: node.list_contexts(&who, &id).await?,
    }))
}

/// Restart a context's interpreter: its state is cleared, its id kept.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/contexts/{cid}/restart", tag = "code",
    responses((status = 200, description = "The restarted context.", body = ContextInfo)))]
pub async fn restart_context(
    State(node): State<Node>,
    Auth(who): Auth,
    Path((id, cid)): Path<(String, String)>,
) -> Result<Json<ContextInfo>, ApiError> {
    Ok(Json(node.restart_context(&who, &id, &cid).await?))
}

/// Delete a context and stop its interpreter.
#[utoipa::path(delete, path = "/v1/sandboxes/{id}/contexts/{cid}", tag = "code",
    responses((status = 204, description = "Deleted.")))]
pub async fn delete_context(
    State(node): State<Node>,
    Auth(who): Auth,
    Path((id, cid)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    node.delete_context(&who, &id, &cid).await?;
    Ok(StatusCode::NO_CONTENT)
}

//! Desktop routes: the display of a desktop sandbox, its screen, pointer, keyboard, windows,
//! programs and live view.

use ai2in_api::{
    CommandRequest, CommandStarted, Cursor, DesktopInfo, KeyboardRequest, MouseRequest, Stream,
    StreamRequest, WindowList,
};
use ai2in_node::Node;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use crate::error::ApiError;
use crate::extract::{Auth, JsonBody, Path};

/// The desktop's display, screen size and live view.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/desktop", tag = "desktop",
    responses((status = 200, description = "The desktop.", body = DesktopInfo)))]
pub async fn info(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<Json<DesktopInfo>, ApiError> {
    Ok(Json(node.desktop_info(&who, &id)?))
}

/// The screen, as a PNG.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/desktop/screenshot", tag = "desktop",
    responses((status = 200, description = "The whole screen (RGB).", body = Vec<u8>, content_type = "image/png")))]
pub async fn screenshot(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let png = node.screenshot(&who, &id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        png,
    ))
}

/// Move, click, drag or scroll with the mouse.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/desktop/mouse", tag = "desktop", request_body = MouseRequest,
    responses((status = 204, description = "Done: the display has processed the events.")))]
pub async fn mouse(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<MouseRequest>,
) -> Result<StatusCode, ApiError> {
    node.mouse(&who, &id, req).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Where the mouse pointer is.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/desktop/cursor", tag = "desktop",
    responses((status = 200, description = "The pointer's position.", body = Cursor)))]
pub async fn cursor(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<Json<Cursor>, ApiError> {
    Ok(Json(node.cursor(&who, &id).await?))
}

/// Type text or press key combinations.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/desktop/keyboard", tag = "desktop", request_body = KeyboardRequest,
    responses((status = 204, description = "Done: the display has processed the keys.")))]
pub async fn keyboard(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<KeyboardRequest>,
) -> Result<StatusCode, ApiError> {
    node.keyboard(&who, &id, req).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Start a program on the display (a background command).
#[utoipa::path(post, path = "/v1/sandboxes/{id}/desktop/launch", tag = "desktop", request_body = CommandRequest,
    responses((status = 201, description = "Its command id and process id.", body = CommandStarted)))]
pub async fn launch(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<CommandRequest>,
) -> Result<(StatusCode, Json<CommandStarted>), ApiError> {
    let (command_id, pid) = node.launch(&who, &id, req).await?;
    Ok((
        StatusCode::CREATED,
        Json(CommandStarted { command_id, pid }),
    ))
}

/// The display's top-level windows, bottom to top.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/desktop/windows", tag = "desktop",
    responses((status = 200, description = "The windows.", body = WindowList)))]
pub async fn windows(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<Json<WindowList>, ApiError> {
    Ok(Json(node.windows(&who, &id).await?))
}

/// Start the live view: a noVNC page through the node's proxy (a running one is replaced).
#[utoipa::path(post, path = "/v1/sandboxes/{id}/desktop/stream", tag = "desktop", request_body = StreamRequest,
    responses((status = 201, description = "Its url and password.", body = Stream)))]
pub async fn start_stream(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<StreamRequest>,
) -> Result<(StatusCode, Json<Stream>), ApiError> {
    let stream = node.start_stream(&who, &id, req).await?;
    Ok((StatusCode::CREATED, Json(stream)))
}

/// Stop the live view; its viewers are cut.
#[utoipa::path(delete, path = "/v1/sandboxes/{id}/desktop/stream", tag = "desktop",
    responses((status = 204, description = "Stopped.")))]
pub async fn stop_stream(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    node.stop_stream(&who, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

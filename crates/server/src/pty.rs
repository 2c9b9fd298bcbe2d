//! Terminal routes, and the WebSocket attachment: binary frames carry raw bytes both ways,
//! a text frame `{"resize":{"cols":…,"rows":…}}` resizes (other text is typed), and the
//! socket closes with the program's exit status as the reason when the program ends.

use ai2in_api::{
    CommandKillRequest, ErrorBody, PtyInput, PtyOutput, PtyRequest, PtyResize, PtyStarted,
};
use ai2in_node::{Node, PtyAttachment, PtyEvent};
use axum::Json;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::Response;
use base64_simd::STANDARD;
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::{Auth, JsonBody, Path};

/// Start a program in a terminal (by default the login shell, 80×24).
#[utoipa::path(post, path = "/v1/sandboxes/{id}/pty", tag = "pty", request_body = PtyRequest,
    responses((status = 200, description = "Its ids.", body = PtyStarted)))]
pub async fn create(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<PtyRequest>,
) -> Result<Json<PtyStarted>, ApiError> {
    let pid = node.create_pty(&who, &id, req).await?;
    Ok(Json(PtyStarted {
        pty_id: format!("pty_{pid}"),
        pid,
    }))
}

/// Type bytes into the terminal.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/pty/{pid}/input", tag = "pty", request_body = PtyInput,
    responses((status = 204, description = "Written.")))]
pub async fn input(
    State(node): State<Node>,
    Auth(who): Auth,
    Path((id, pid)): Path<(String, u32)>,
    JsonBody(req): JsonBody<PtyInput>,
) -> Result<StatusCode, ApiError> {
    let data = STANDARD
        .decode_to_vec(req.data_b64.as_bytes())
        .map_err(|_| ApiError::bad_base64("data_b64"))?;
    node.pty_input(&who, &id, pid, &data).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Take what the terminal wrote since the last call.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/pty/{pid}/output", tag = "pty",
    responses((status = 200, description = "The bytes, and whether the program lives.", body = PtyOutput)))]
pub async fn output(
    State(node): State<Node>,
    Auth(who): Auth,
    Path((id, pid)): Path<(String, u32)>,
) -> Result<Json<PtyOutput>, ApiError> {
    let (data, mut out) = node.pty_output(&who, &id, pid).await?;
    out.data_b64 = STANDARD.encode_to_string(data);
    Ok(Json(out))
}

/// Resize the terminal.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/pty/{pid}/resize", tag = "pty", request_body = PtyResize,
    responses((status = 204, description = "Resized.")))]
pub async fn resize(
    State(node): State<Node>,
    Auth(who): Auth,
    Path((id, pid)): Path<(String, u32)>,
    JsonBody(req): JsonBody<PtyResize>,
) -> Result<StatusCode, ApiError> {
    node.pty_resize(&who, &id, pid, req.cols, req.rows).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Signal the terminal's program (SIGKILL by default; the body is optional).
#[utoipa::path(post, path = "/v1/sandboxes/{id}/pty/{pid}/kill", tag = "pty", request_body = CommandKillRequest,
    responses((status = 204, description = "Signalled.")))]
pub async fn kill(
    State(node): State<Node>,
    Auth(who): Auth,
    Path((id, pid)): Path<(String, u32)>,
    JsonBody(req): JsonBody<CommandKillRequest>,
) -> Result<StatusCode, ApiError> {
    node.pty_kill(&who, &id, pid, req.signal).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Attach to the terminal over a WebSocket: binary frames carry raw bytes both ways, a text
/// frame `{"resize":{"cols":…,"rows":…}}` resizes, and the socket closes with the program's
/// exit status as the reason.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/pty/{pid}/ws", tag = "pty",
    responses(
        (status = 101, description = "Switching to the WebSocket protocol."),
        (status = 400, description = "Not a WebSocket handshake.", body = ErrorBody),
    ))]
pub async fn websocket(
    State(node): State<Node>,
    Auth(who): Auth,
    Path((id, pid)): Path<(String, u32)>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "this route is a WebSocket: connect with a WebSocket client ({})",
                e.body_text()
            ),
        )
    })?;
    let attachment = node.pty_attach(&who, &id, pid).await?;
    Ok(upgrade.on_upgrade(move |socket| relay(socket, attachment, pid)))
}

#[derive(Deserialize)]
struct ResizeFrame {
    resize: PtyResize,
}

/// Carries bytes between the WebSocket and the terminal until either side ends.
async fn relay(mut socket: WebSocket, mut pty: PtyAttachment, pid: u32) {
    loop {
        tokio::select! {
            event = pty.next() => match event {
                Ok(PtyEvent::Output(data)) => {
                    if socket.send(Message::Binary(data.into())).await.is_err() {
                        return;
                    }
                }
                Ok(PtyEvent::Exited(code)) => {
                    let reason = format!("exit {}", code.map_or("unknown".to_string(), |c| c.to_string()));
                    let _ = socket.send(Message::Close(Some(CloseFrame { code: 1000, reason: reason.into() }))).await;
                    return;
                }
                Err(e) => {
                    let _ = socket.send(Message::Close(Some(CloseFrame { code: 1011, reason: e.to_string().chars().take(120).collect::<String>().into() }))).await;
                    return;
                }
            },
            message = socket.recv() => {
                let sent = match message {
                    Some(Ok(Message::Binary(data))) => pty.input(pid, &data).await,
                    Some(Ok(Message::Text(text))) => match serde_json::from_str::<ResizeFrame>(&text) {
                        Ok(frame) => pty.resize(pid, frame.resize.cols, frame.resize.rows).await,
                        Err(_) => pty.input(pid, text.as_bytes()).await,
                    },
                    Some(Ok(_)) => Ok(()),
                    Some(Err(_)) | None => return,
                };
                if sent.is_err() {
                    return;
                }
            }
        }
    }
}

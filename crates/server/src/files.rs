//! File routes: list, read, write (text and base64), and watches (poll and SSE).

use std::borrow::Cow;
use std::convert::Infallible;
use std::time::Duration;

use ai2in_api::{
    FsListResponse, FsPathRequest, FsReadResponse, FsWriteRequest, FsWriteResponse, MAX_FILE_BYTES,
    WatchEvents, WatchRequest, WatchStarted,
};
use ai2in_node::Node;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::Stream;
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::{Auth, JsonBody, JsonBytes, parse_json};

type Answer<T> = Result<Json<T>, ApiError>;

pub async fn list(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<FsPathRequest>,
) -> Answer<FsListResponse> {
    Ok(Json(FsListResponse {
        entries: node.fs_list(&who, &id, req.path, req.user).await?,
    }))
}

pub async fn read(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<FsPathRequest>,
) -> Answer<FsReadResponse> {
    Ok(Json(FsReadResponse {
        content: node.fs_read_text(&who, &id, req.path, req.user).await?,
    }))
}

/// The answer is written by hand: base64 needs no JSON escaping, and 32 MiB of it should
/// not be walked by a serializer.
pub async fn read_bytes(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<FsPathRequest>,
) -> Result<Response, ApiError> {
    let data = node.fs_read(&who, &id, req.path, req.user).await?;
    let size = data.len().to_string();
    let mut body = Vec::with_capacity(data.len().div_ceil(3) * 4 + size.len() + 32);
    body.extend_from_slice(br#"{"content_b64":""#);
    let start = body.len();
    body.resize(start + data.len().div_ceil(3) * 4, 0);
    let written = STANDARD
        .encode_slice(&data, &mut body[start..])
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    body.truncate(start + written);
    body.extend_from_slice(br#"","size":"#);
    body.extend_from_slice(size.as_bytes());
    body.push(b'}');
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

pub async fn write(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<FsWriteRequest>,
) -> Answer<FsWriteResponse> {
    let (path, size_bytes) = node
        .fs_write(&who, &id, req.path, req.user, req.content.as_bytes())
        .await?;
    Ok(Json(FsWriteResponse { path, size_bytes }))
}

/// `fs/write_bytes` as parsed here: the base64 text borrowed from the request body rather
/// than copied (it is the API's [`ai2in_api::FsWriteBytesRequest`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteBytesBody<'a> {
    path: String,
    #[serde(borrow)]
    content_b64: Cow<'a, str>,
    #[serde(default)]
    user: Option<String>,
}

pub async fn write_bytes(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
    JsonBytes(bytes): JsonBytes,
) -> Answer<FsWriteResponse> {
    let req: WriteBytesBody = parse_json(&bytes)?;
    // Decoded size is at most 3/4 of the text: refuse what cannot fit before decoding.
    if (req.content_b64.len() as u64 / 4) * 3 > MAX_FILE_BYTES + 2 {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("content_b64 decodes to more than {MAX_FILE_BYTES} bytes (32 MiB)"),
        ));
    }
    let data = STANDARD.decode(req.content_b64.as_bytes()).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("content_b64 is not valid standard base64: {e}"),
        )
    })?;
    let (path, size_bytes) = node.fs_write(&who, &id, req.path, req.user, &data).await?;
    Ok(Json(FsWriteResponse { path, size_bytes }))
}

pub async fn watch(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<WatchRequest>,
) -> Answer<WatchStarted> {
    Ok(Json(WatchStarted {
        watch_id: node
            .watch_start(&who, &id, req.path, req.recursive, req.user)
            .await?,
    }))
}

pub async fn poll(
    State(node): State<Node>,
    Auth(who): Auth,
    Path((id, wid)): Path<(String, String)>,
) -> Answer<WatchEvents> {
    Ok(Json(WatchEvents {
        events: node.watch_poll(&who, &id, &wid).await?,
    }))
}

pub async fn stop(
    State(node): State<Node>,
    Auth(who): Auth,
    Path((id, wid)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    node.watch_stop(&who, &id, &wid).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET …/fs/watch/:wid/events`: the watch's events as Server-Sent Events (`event: fs`, one
/// JSON event each), a keep-alive comment while nothing happens, the stream ending with the
/// watch. Events delivered here are not delivered to `poll`.
pub async fn events(
    State(node): State<Node>,
    Auth(who): Auth,
    Path((id, wid)): Path<(String, String)>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let subscription = node.watch_stream(&who, &id, &wid).await?;
    let stream = futures_util::stream::unfold(
        (subscription, Vec::new().into_iter()),
        |(mut sub, mut pending)| async move {
            loop {
                if let Some(ev) = pending.next() {
                    let sse = Event::default()
                        .event("fs")
                        .json_data(&ev)
                        .unwrap_or_default();
                    return Some((Ok(sse), (sub, pending)));
                }
                match sub.next().await {
                    Some(Ok(batch)) => pending = batch.into_iter(),
                    Some(Err(e)) => {
                        let sse = Event::default()
                            .event("error")
                            .json_data(serde_json::json!({ "error": e.to_string() }))
                            .unwrap_or_default();
                        return Some((Ok(sse), (sub, Vec::new().into_iter())));
                    }
                    None => return None,
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

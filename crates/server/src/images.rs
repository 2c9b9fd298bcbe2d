//! Image routes: pull (JSON, or a Server-Sent Events stream of progress), import an
//! archive, list, get, delete.

use std::convert::Infallible;
use std::time::Duration;

use ai2in_api::{ErrorBody, Image, ImageList, ImportImageQuery, PullEvent, PullImageRequest};
use ai2in_node::Node;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;

use crate::error::ApiError;
use crate::extract::{Auth, JsonBody, Path, Query};

fn wants_events(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"))
}

fn sse(event: &PullEvent) -> Result<Event, Infallible> {
    let name = match event {
        PullEvent::Progress { .. } => "progress",
        PullEvent::Done { .. } => "done",
        PullEvent::Error { .. } => "error",
    };
    Ok(Event::default()
        .event(name)
        .json_data(event)
        .unwrap_or_default())
}

/// Pull an image.
///
/// The registry is always asked (a tag may have moved); layers the node has are not fetched
/// again. 201 with the image when it is new to the tenant or changed, 200 when the tenant had
/// this very image already. With
/// `Accept: text/event-stream` the answer is a stream of `progress` events
/// (`{layer, done_bytes, total_bytes}`), then `done` (`{image}`) or `error`
/// (`{error, status}`).
#[utoipa::path(post, path = "/v1/images", tag = "images", request_body = PullImageRequest,
    responses(
        (status = 201, description = "The image, just pulled.", body = Image),
        (status = 200, description = "The image, unchanged since the tenant pulled it; or, with `Accept: text/event-stream`, the pull's events.", body = Image),
        (status = 400, description = "The reference does not parse.", body = ErrorBody),
        (status = 404, description = "The registry does not have the image.", body = ErrorBody),
        (status = 502, description = "The registry failed, or its content did not match its digest or was over a limit.", body = ErrorBody),
    ))]
pub async fn pull(
    State(node): State<Node>,
    Auth(who): Auth,
    headers: HeaderMap,
    JsonBody(req): JsonBody<PullImageRequest>,
) -> Result<Response, ApiError> {
    if !wants_events(&headers) {
        let (image, created) = node.pull_image(&who, &req.r#ref, &|_| {}).await?;
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        return Ok((status, Json(image)).into_response());
    }
    // Refused before the stream begins: a caller without the scope gets its 403.
    who.require(ai2in_node::Scope::ImagesWrite)?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let progress_tx = tx.clone();
        let report = move |p: ai2in_node::PullProgress| {
            let _ = progress_tx.send(PullEvent::Progress {
                layer: p.layer,
                done_bytes: p.done_bytes,
                total_bytes: p.total_bytes,
            });
        };
        let last = match node.pull_image(&who, &req.r#ref, &report).await {
            Ok((image, _)) => PullEvent::Done {
                image: Box::new(image),
            },
            Err(e) => {
                let e = ApiError::from(e);
                PullEvent::Error {
                    error: e.message().to_string(),
                    status: e.status().as_u16(),
                }
            }
        };
        let _ = tx.send(last);
    });
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (sse(&event), rx))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
        .into_response())
}

/// Import an image archive.
///
/// The body is a `docker save` archive or a tarred OCI image layout
/// (`Content-Type: application/x-tar`), up to the node's `[images] max_import_bytes`.
#[utoipa::path(post, path = "/v1/images/import", tag = "images", params(ImportImageQuery),
    request_body(content = Vec<u8>, content_type = "application/x-tar", description = "The archive."),
    responses(
        (status = 201, description = "The imported image.", body = Image),
        (status = 400, description = "The archive is malformed or names no image.", body = ErrorBody),
        (status = 413, description = "The archive is over the node's limit.", body = ErrorBody),
        (status = 415, description = "The body is not `application/x-tar`.", body = ErrorBody),
        (status = 502, description = "A layer did not match its digest or was over a limit.", body = ErrorBody),
    ))]
pub async fn import(
    State(node): State<Node>,
    Auth(who): Auth,
    Query(query): Query<ImportImageQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Image>), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !matches!(
        content_type.split(';').next().unwrap_or("").trim(),
        "application/x-tar" | "application/tar" | "application/octet-stream"
    ) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be a tar archive sent as Content-Type: application/x-tar",
        ));
    }
    let stream = body
        .into_data_stream()
        .map_err(|e| std::io::Error::other(e.to_string()));
    let reader = tokio_util::io::StreamReader::new(stream);
    let image = node
        .import_image(&who, query.r#ref.as_deref(), reader)
        .await?;
    Ok((StatusCode::CREATED, Json(image)))
}

/// An import refused before its body was read (no key, no scope, wrong type, over the
/// limit) ends the connection: the rest of the body is still on it, so it cannot carry
/// another request, and the client must not try to.
pub async fn close_unless_read(mut response: Response) -> Response {
    if !response.status().is_success() {
        response.headers_mut().insert(
            header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// List the caller's images.
#[utoipa::path(get, path = "/v1/images", tag = "images",
    responses((status = 200, description = "The images.", body = ImageList)))]
pub async fn list(State(node): State<Node>, Auth(who): Auth) -> Result<Json<ImageList>, ApiError> {
    Ok(Json(ImageList {
        images: node.list_images(&who)?,
    }))
}

/// An image, by id or by reference (percent-encoded: `docker.io%2Flibrary%2Fpython:3.12`).
#[utoipa::path(get, path = "/v1/images/{id}", tag = "images",
    responses(
        (status = 200, description = "The image.", body = Image),
        (status = 404, description = "The tenant has no such image.", body = ErrorBody),
    ))]
pub async fn get(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<Json<Image>, ApiError> {
    Ok(Json(node.get_image(&who, &id)?))
}

/// Delete an image; its content goes when no tenant names it and no sandbox runs it.
#[utoipa::path(delete, path = "/v1/images/{id}", tag = "images",
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, description = "The tenant has no such image.", body = ErrorBody),
        (status = 409, description = "A sandbox of the tenant uses it.", body = ErrorBody),
    ))]
pub async fn delete(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    node.delete_image(&who, &id)?;
    Ok(StatusCode::NO_CONTENT)
}

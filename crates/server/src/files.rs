//! File routes: list, read, write (text and base64), and watches (poll and SSE).

use std::borrow::Cow;
use std::convert::Infallible;
use std::io;
use std::time::Duration;

use ai2in_api::{
    ErrorBody, FileQuery, FsListResponse, FsPathRequest, FsReadBytesResponse, FsReadResponse,
    FsWriteBytesRequest, FsWriteRequest, FsWriteResponse, MAX_FILE_BYTES, WatchEvents,
    WatchRequest, WatchStarted,
};
use ai2in_node::{ByteRange, FILE_CHUNK, FileReader, Node, NodeError};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64_simd::STANDARD as B64;
use futures_util::{Stream, StreamExt, stream};
use serde::Deserialize;

use crate::error::{ApiError, bad_base64};
use crate::extract::{Auth, JsonBody, JsonBytes, Path, Query, parse_json};

type Answer<T> = Result<Json<T>, ApiError>;

/// The size of the pieces an upload goes to the sandbox in.
const UPLOAD_PIECE: usize = 1 << 20;
/// How long, and how much of, a refused upload's body is read before the answer.
const DRAIN_FOR: Duration = Duration::from_secs(2);
const DRAIN_BYTES: usize = 256 << 20;

/// A request body as it arrives.
type BodyData = axum::body::BodyDataStream;

/// List a directory.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/fs/list", tag = "files", request_body = FsPathRequest,
    responses((status = 200, description = "Its entries.", body = FsListResponse)))]
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

/// Read a text file (UTF-8).
#[utoipa::path(post, path = "/v1/sandboxes/{id}/fs/read", tag = "files", request_body = FsPathRequest,
    responses(
        (status = 200, description = "The file's text.", body = FsReadResponse),
        (status = 413, description = "The file is over 32 MiB.", body = ErrorBody),
        (status = 415, description = "The file is not UTF-8 text: use read_bytes.", body = ErrorBody),
    ))]
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

/// Read a file as base64 (up to 32 MiB). The answer is streamed as the file is read; a
/// failure after the first piece cuts it short.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/fs/read_bytes", tag = "files", request_body = FsPathRequest,
    responses(
        (status = 200, description = "The file's bytes.", body = FsReadBytesResponse),
        (status = 413, description = "The file is over 32 MiB.", body = ErrorBody),
    ))]
pub async fn read_bytes(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<FsPathRequest>,
) -> Result<Response, ApiError> {
    let reader = node.fs_open(&who, &id, req.path, req.user).await?;
    let encoder = Base64Body {
        reader,
        carry: Vec::new(),
        started: false,
        finished: false,
    };
    let body = futures_util::stream::unfold(encoder, |mut enc| async move {
        let part = enc.next_part().await?;
        Some((part, enc))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response())
}

/// The body of a `read_bytes` answer, encoded piece by piece.
struct Base64Body {
    reader: FileReader,
    /// The last 0–2 bytes of the pieces so far, which do not fill a base64 group.
    carry: Vec<u8>,
    started: bool,
    finished: bool,
}

impl Base64Body {
    async fn next_part(&mut self) -> Option<Result<Bytes, io::Error>> {
        if self.finished {
            return None;
        }
        if !self.started {
            self.started = true;
            return Some(Ok(Bytes::from_static(br#"{"content_b64":""#)));
        }
        let mut out = Vec::new();
        match self.reader.next().await {
            Some(Ok(piece)) => {
                let mut piece = &piece[..];
                if !self.carry.is_empty() {
                    let take = (3 - self.carry.len()).min(piece.len());
                    self.carry.extend_from_slice(&piece[..take]);
                    piece = &piece[take..];
                    if self.carry.len() == 3 {
                        B64.encode_append(&self.carry, &mut out);
                        self.carry.clear();
                    }
                }
                let whole = piece.len() / 3 * 3;
                out.reserve(B64.encoded_length(whole));
                B64.encode_append(&piece[..whole], &mut out);
                self.carry.extend_from_slice(&piece[whole..]);
            }
            Some(Err(e)) => {
                self.finished = true;
                return Some(Err(io::Error::other(e.to_string())));
            }
            None => {
                self.finished = true;
                B64.encode_append(&self.carry, &mut out);
                out.extend_from_slice(
                    format!(r#"","size":{}}}"#, self.reader.size_bytes()).as_bytes(),
                );
            }
        }
        Some(Ok(Bytes::from(out)))
    }
}

/// Write a text file, replacing it atomically and creating missing parent directories.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/fs/write", tag = "files", request_body = FsWriteRequest,
    responses(
        (status = 200, description = "Written.", body = FsWriteResponse),
        (status = 413, description = "The content is over 32 MiB.", body = ErrorBody),
        (status = 507, description = "The sandbox's disk is full.", body = ErrorBody),
    ))]
pub async fn write(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<FsWriteRequest>,
) -> Answer<FsWriteResponse> {
    let data = req.content.as_bytes();
    within_limit("content is", data.len() as u64)?;
    let pieces = stream::iter(data.chunks(FILE_CHUNK).map(Ok::<_, NodeError>));
    let (path, size_bytes) = node
        .fs_write(
            &who,
            &id,
            req.path,
            req.user,
            Some(data.len() as u64),
            pieces,
        )
        .await?;
    Ok(Json(FsWriteResponse { path, size_bytes }))
}

/// 413 for a JSON write of `size_bytes` (`what` says how they were counted) over 32 MiB.
fn within_limit(what: &str, size_bytes: u64) -> Result<(), ApiError> {
    if size_bytes <= MAX_FILE_BYTES {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "{what} {size_bytes} bytes, over the limit of {MAX_FILE_BYTES} (32 MiB); send large files with PUT /v1/sandboxes/{{id}}/files"
        ),
    ))
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

/// Write a file from base64 (up to 32 MiB decoded), replacing it atomically. The text is
/// decoded piece by piece as the pieces go to the sandbox.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/fs/write_bytes", tag = "files", request_body = FsWriteBytesRequest,
    responses(
        (status = 200, description = "Written.", body = FsWriteResponse),
        (status = 413, description = "The content decodes to over 32 MiB.", body = ErrorBody),
        (status = 507, description = "The sandbox's disk is full.", body = ErrorBody),
    ))]
pub async fn write_bytes(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
    JsonBytes(bytes): JsonBytes,
) -> Answer<FsWriteResponse> {
    let req: WriteBytesBody = parse_json(&bytes)?;
    let text = req.content_b64.as_bytes();
    let not_base64 = || ApiError::bad_base64("content_b64");
    if text.len() % 4 != 0 {
        return Err(not_base64());
    }
    let size_bytes = B64.decoded_length(text).map_err(|_| not_base64())? as u64;
    within_limit("content_b64 decodes to", size_bytes)?;
    let pieces = text.chunks(FILE_CHUNK / 3 * 4).map(|p| {
        B64.decode_to_vec(p)
            .map_err(|_| NodeError::Invalid(bad_base64("content_b64")))
    });
    let (path, size_bytes) = node
        .fs_write(
            &who,
            &id,
            req.path,
            req.user,
            Some(size_bytes),
            stream::iter(pieces),
        )
        .await?;
    Ok(Json(FsWriteResponse { path, size_bytes }))
}

/// Download a file of any size (or the part a `Range: bytes=…` header names): its bytes,
/// streamed as they are read in the sandbox.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/files", tag = "files", params(FileQuery),
    responses(
        (status = 200, description = "The file's bytes; `Content-Length` is its size (absent for files of /proc, whose size the kernel does not know).", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "The part the `Range` header names, with `Content-Range`.", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 400, description = "The path is a directory or not a regular file.", body = ErrorBody),
        (status = 404, description = "The path does not exist.", body = ErrorBody),
        (status = 416, description = "The range lies outside the file; `Content-Range: bytes */SIZE` gives its size.", body = ErrorBody),
    ))]
pub async fn download(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Query(query): Query<FileQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // One range of bytes is served; anything else in the header is ignored (RFC 9110).
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_range);
    let reader = node
        .fs_download(&who, &id, query.path, query.user, range)
        .await?;
    let mut response = Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::ACCEPT_RANGES, "bytes");
    if let Some(size) = reader.file_size() {
        response = match range.map(|r| r.within(size)) {
            None => response.header(header::CONTENT_LENGTH, size),
            Some(Some((offset, length))) => response
                .status(StatusCode::PARTIAL_CONTENT)
                .header(header::CONTENT_LENGTH, length)
                .header(
                    header::CONTENT_RANGE,
                    format!("bytes {offset}-{}/{size}", offset + length - 1),
                ),
            Some(None) => {
                let mut refused = ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    format!("the Range header lies outside the file, which has {size} bytes"),
                )
                .into_response();
                refused.headers_mut().insert(
                    header::CONTENT_RANGE,
                    HeaderValue::try_from(format!("bytes */{size}")).expect("ASCII"),
                );
                return Ok(refused);
            }
        };
    }
    // A failure after the headers (the file shrank, the sandbox went) cuts the body short,
    // and the client sees fewer bytes than `Content-Length` promised.
    let body = stream::unfold(reader, |mut reader| async move {
        let piece = reader.next().await?;
        Some((piece.map_err(|e| io::Error::other(e.to_string())), reader))
    });
    Ok(response
        .body(Body::from_stream(body))
        .expect("valid headers"))
}

/// Parses a `Range` header's value when it names one range of bytes; anything else
/// (several ranges, other units, nonsense) is `None`, and RFC 9110 lets a server ignore
/// it and answer the whole file.
fn parse_range(value: &str) -> Option<ByteRange> {
    let spec = value.trim().strip_prefix("bytes=")?.trim();
    let (first, last) = spec.split_once('-')?;
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    if first.trim().is_empty() {
        return number(last).map(ByteRange::Last);
    }
    let start = number(first)?;
    let end = if last.trim().is_empty() {
        None
    } else {
        Some(number(last).filter(|end| *end >= start)?)
    };
    Some(ByteRange::From { start, end })
}

/// Upload a file of any size: the request body, streamed into the sandbox as it arrives, then
/// renamed over the path at once (missing parent directories are created). Without
/// `Content-Length` (chunked), the body's end is the file's end.
#[utoipa::path(put, path = "/v1/sandboxes/{id}/files", tag = "files", params(FileQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file's bytes."),
    responses(
        (status = 200, description = "Written.", body = FsWriteResponse),
        (status = 400, description = "The path is a directory, or a component of it a file.", body = ErrorBody),
        (status = 507, description = "The sandbox's disk is full; the file is as it was.", body = ErrorBody),
    ))]
pub async fn upload(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Query(query): Query<FileQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let size_bytes = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let mut body = body.into_data_stream();
    let written = node
        .fs_write(
            &who,
            &id,
            query.path,
            query.user,
            size_bytes,
            pieces(&mut body),
        )
        .await;
    match written {
        Ok((path, size_bytes)) => Json(FsWriteResponse { path, size_bytes }).into_response(),
        Err(e) => {
            let mut refused = ApiError::from(e).into_response();
            // A client that reads the answer only once it has sent the whole body (Node's
            // fetch) sees it if the rest is read; past a bound, the connection closes.
            if !drained(&mut body).await {
                refused
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            refused
        }
    }
}

/// Reads and drops what is left of a refused upload's body, for at most [`DRAIN_FOR`] and
/// [`DRAIN_BYTES`]: whether it ended.
async fn drained(body: &mut BodyData) -> bool {
    let drain = async {
        let mut left = DRAIN_BYTES;
        while let Some(Ok(bytes)) = body.next().await {
            left = left.saturating_sub(bytes.len());
            if left == 0 {
                return false;
            }
        }
        true
    };
    tokio::time::timeout(DRAIN_FOR, drain)
        .await
        .unwrap_or(false)
}

/// Bytes of an upload as they arrive, gathered into pieces of about [`UPLOAD_PIECE`]; the
/// stream ends after the body's end or its first error.
fn pieces(body: &mut BodyData) -> impl Stream<Item = Result<Bytes, NodeError>> + '_ {
    stream::unfold(Some(body), |body| async move {
        let body = body?;
        let mut piece = Vec::new();
        while piece.len() < UPLOAD_PIECE {
            match body.next().await {
                Some(Ok(bytes)) => piece.extend_from_slice(&bytes),
                Some(Err(e)) => {
                    let e = NodeError::Invalid(format!("the request body was cut short: {e}"));
                    return Some((Err(e), None));
                }
                None => return (!piece.is_empty()).then(|| (Ok(Bytes::from(piece)), None)),
            }
        }
        Some((Ok(Bytes::from(piece)), Some(body)))
    })
}

/// Watch a path for changes; events queue until polled or streamed.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/fs/watch", tag = "files", request_body = WatchRequest,
    responses((status = 200, description = "The watch's id.", body = WatchStarted)))]
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

/// Take the events queued since the last poll (an `overflow` event if some were lost).
#[utoipa::path(post, path = "/v1/sandboxes/{id}/fs/watch/{wid}/poll", tag = "files",
    responses((status = 200, description = "The events, oldest first.", body = WatchEvents)))]
pub async fn poll(
    State(node): State<Node>,
    Auth(who): Auth,
    Path((id, wid)): Path<(String, String)>,
) -> Answer<WatchEvents> {
    Ok(Json(WatchEvents {
        events: node.watch_poll(&who, &id, &wid).await?,
    }))
}

/// Stop a watch.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/fs/watch/{wid}/stop", tag = "files",
    responses((status = 204, description = "Stopped.")))]
pub async fn stop(
    State(node): State<Node>,
    Auth(who): Auth,
    Path((id, wid)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    node.watch_stop(&who, &id, &wid).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The watch's events as Server-Sent Events (`event: fs`, one JSON event each), a
/// keep-alive comment while nothing happens, the stream ending with the watch. Events
/// delivered here are not delivered to `poll`.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/fs/watch/{wid}/events", tag = "files",
    responses((status = 200, description = "`event: fs` with a WatchEvent as data; `event: error` with `{error}` if the watch fails.", body = ref("#/components/schemas/WatchStreamEvent"), content_type = "text/event-stream")))]
pub async fn events(
    State(node): State<Node>,
    Auth(who): Auth,
    Path((id, wid)): Path<(String, String)>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let subscription = node.watch_stream(&who, &id, &wid).await?;
    // The subscription is dropped after an error: the error event is the stream's last.
    let stream = futures_util::stream::unfold(
        (Some(subscription), Vec::new().into_iter()),
        |(mut sub, mut pending)| async move {
            loop {
                if let Some(ev) = pending.next() {
                    let sse = Event::default()
                        .event("fs")
                        .json_data(&ev)
                        .unwrap_or_default();
                    return Some((Ok(sse), (sub, pending)));
                }
                match sub.as_mut()?.next().await {
                    Some(Ok(batch)) => pending = batch.into_iter(),
                    Some(Err(e)) => {
                        let sse = Event::default()
                            .event("error")
                            .json_data(serde_json::json!({ "error": e.to_string() }))
                            .unwrap_or_default();
                        return Some((Ok(sse), (None, pending)));
                    }
                    None => return None,
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_as_rfc_9110_reads_them() {
        let p = parse_range;
        assert_eq!(
            p("bytes=0-99"),
            Some(ByteRange::From {
                start: 0,
                end: Some(99)
            })
        );
        assert_eq!(
            p("bytes=5-"),
            Some(ByteRange::From {
                start: 5,
                end: None
            })
        );
        assert_eq!(p("bytes=-7"), Some(ByteRange::Last(7)));
        for ignored in [
            "bytes=0-1,4-5",
            "items=0-1",
            "bytes=9-3",
            "bytes=-",
            "bytes=a-b",
            "bytes=+1-2",
            "bytes=99999999999999999999-",
            "",
        ] {
            assert_eq!(p(ignored), None, "{ignored}");
        }
    }
}

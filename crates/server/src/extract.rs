//! Extractors: the caller's key and JSON bodies, each failing with one clear sentence.

use ai2in_node::{Node, Principal};
use axum::RequestExt;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use futures_util::StreamExt;
use http_body_util::LengthLimitError;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 1 << 20;
/// Largest body of the file-writing routes: 32 MiB of data as base64 (4/3) or escaped
/// text, plus the JSON around it.
pub const FILE_BODY_LIMIT: usize = 48 << 20;

/// The authenticated caller.
pub struct Auth(pub Principal);

impl FromRequestParts<Node> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, node: &Node) -> Result<Self, Self::Rejection> {
        let text = |name: &str| match parts.headers.get(name) {
            None => Ok(None),
            Some(v) => v.to_str().map(Some).map_err(|_| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    format!("the {name} header is not valid text"),
                )
            }),
        };
        if node.is_cluster_member() {
            let secret = text(ai2in_cluster::SECRET_HEADER)?;
            let principal = text(ai2in_cluster::PRINCIPAL_HEADER)?;
            return Ok(Auth(node.authenticate_gateway(secret, principal)?));
        }
        Ok(Auth(
            node.authenticate(text(header::AUTHORIZATION.as_str())?)?,
        ))
    }
}

/// Path parameters of type `T`. A value that cannot be one (a terminal's pid that is not a
/// number, bytes that are not UTF-8) names nothing that exists: 404, worded as JSON.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(e) => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("nothing exists at {}: {}", parts.uri.path(), e.body_text()),
            )),
        }
    }
}

/// A query string of type `T`; one it cannot be (a missing or unknown parameter) is 400,
/// worded as JSON.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(e) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "the query string does not fit this route: {}",
                    e.body_text()
                ),
            )),
        }
    }
}

/// A JSON body of type `T`. Accepts `application/json`, no content type, and curl's default
/// `application/x-www-form-urlencoded` (as `curl -d '{…}'` sends); an empty body is `{}`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let JsonBytes(bytes) = JsonBytes::from_request(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// The raw bytes of a JSON body, checked for content type and size, for handlers that parse
/// it themselves without copying (large file bodies).
pub struct JsonBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or_default().to_ascii_lowercase();
            let essence = ct.split(';').next().unwrap_or_default().trim();
            let json = essence == "application/json" || essence.ends_with("+json");
            if !json && essence != "application/x-www-form-urlencoded" {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!(
                        "unsupported content type {essence:?}; send the body as application/json"
                    ),
                ));
            }
        }
        // One buffer of the declared size (bounded) up front: big file bodies are copied once,
        // never regrown. The route's limit applies as the body arrives.
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
            .unwrap_or(0);
        let mut buf = Vec::with_capacity(declared.min(FILE_BODY_LIMIT));
        let mut body = req.into_limited_body().into_data_stream();
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(chunk) => buf.extend_from_slice(&chunk),
                Err(e) if over_limit(&e) => {
                    return Err(ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!(
                            "the request body is too large: at most {BODY_LIMIT} bytes, or 32 MiB \
                             of file data for fs/write and fs/write_bytes"
                        ),
                    ));
                }
                Err(e) => {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        format!("could not read the request body: {e}"),
                    ));
                }
            }
        }
        let bytes = Bytes::from(buf);
        Ok(JsonBytes(bytes))
    }
}

/// Whether a body failed for going over the route's limit.
fn over_limit(e: &axum::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.is::<LengthLimitError>() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Parses a JSON object body (empty means `{}`): 400 with the sentence on failure.
pub fn parse_json<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    ai2in_api::parse_body(bytes).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))
}

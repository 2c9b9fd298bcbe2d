//! The HTTP layer: one connection pool, the base URL and the bearer key; every request goes
//! through [`Http::send`], which turns error answers into [`Error`]. Nothing else in the
//! crate builds URLs or reads statuses.

use std::sync::Arc;
use std::time::Duration;

use ai2in_api::ErrorBody;
use reqwest::{Method, RequestBuilder, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::{Error, Result};

/// The size of the pieces a streamed request body is read in.
const BODY_CHUNK: usize = 256 << 10;

/// Connecting gives up after this long; requests themselves have no deadline (a run may
/// take as long as its own timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A node's address and the key to use, shared by every handle made from one client.
#[derive(Clone)]
pub(crate) struct Http(Arc<Inner>);

struct Inner {
    client: reqwest::Client,
    base_url: String,
    api_key: Option<String>,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Http")
            .field("base_url", &self.0.base_url)
            .finish_non_exhaustive()
    }
}

impl Http {
    pub fn new(base_url: &str, api_key: Option<String>) -> Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()?;
        Ok(Http(Arc::new(Inner {
            client,
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key,
        })))
    }

    pub fn base_url(&self) -> &str {
        &self.0.base_url
    }

    /// A request to `path` (which starts with `/`).
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self
            .0
            .client
            .request(method, format!("{}{path}", self.0.base_url));
        match &self.0.api_key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    /// Sends `request`: the response when its status is a success, else the node's error.
    pub async fn send(&self, request: RequestBuilder) -> Result<Response> {
        let response = request.send().await?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.bytes().await?;
        let body = serde_json::from_slice::<ErrorBody>(&body).unwrap_or_else(|_| ErrorBody {
            error: status
                .canonical_reason()
                .unwrap_or("error answer")
                .to_string(),
            code: None,
        });
        Err(Error::from_body(status.as_u16(), body))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        Ok(self
            .send(self.request(Method::GET, path))
            .await?
            .json()
            .await?)
    }

    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        Ok(self.post_raw(path, body).await?.json().await?)
    }

    /// POSTs `body` to a route that answers no content (204).
    pub async fn post_unit<B: Serialize + ?Sized>(&self, path: &str, body: &B) -> Result<()> {
        self.post_raw(path, body).await.map(drop)
    }

    pub async fn post_raw<B: Serialize + ?Sized>(&self, path: &str, body: &B) -> Result<Response> {
        self.send(self.request(Method::POST, path).json(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<()> {
        self.send(self.request(Method::DELETE, path))
            .await
            .map(drop)
    }
}

/// The empty JSON object `{}`, for routes whose body is optional.
#[derive(Serialize)]
pub(crate) struct Empty {}

/// The route `prefix` + `key`, the key percent-encoded into one path segment (`/` as `%2F`):
/// an id or a name as it is, whatever else names nothing but itself.
pub(crate) fn route(prefix: &str, key: &str) -> String {
    let mut path = String::from(prefix);
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~:@".contains(&byte) {
            path.push(char::from(byte));
        } else {
            path.push_str(&format!("%{byte:02X}"));
        }
    }
    path
}

/// A request body streamed from `reader`, a chunk at a time.
pub(crate) fn streamed(reader: impl AsyncRead + Send + 'static) -> reqwest::Body {
    let chunks = futures_util::stream::unfold(Box::pin(reader), |mut reader| async move {
        let mut chunk = vec![0; BODY_CHUNK];
        match reader.read(&mut chunk).await {
            Ok(0) => None,
            Ok(n) => {
                chunk.truncate(n);
                Some((Ok::<_, std::io::Error>(chunk), reader))
            }
            Err(e) => Some((Err(e), reader)),
        }
    });
    reqwest::Body::wrap_stream(chunks)
}

//! [`Images`]: the OCI images of the caller's tenant — pull from a registry (at once or as a
//! stream of progress events), import an archive (streamed, never held in memory), list,
//! inspect and delete.

use std::path::Path;
use std::pin::Pin;

use ai2in_api::{Image, ImageList, ImportImageQuery, PullEvent, PullImageRequest};
use futures_util::Stream;
use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use tokio::io::AsyncRead;

use crate::error::{Error, Result};
use crate::http::Http;
use crate::sse::{self, SseEvent};

/// A boxed stream of pull events, as [`Images::pull_stream`] answers.
pub type PullStream = Pin<Box<dyn Stream<Item = Result<PullEvent>> + Send>>;

/// The images of the caller's tenant; from [`crate::Client::images`]. An image is named by
/// its id (`img_…`) or by its reference as the node normalised it
/// (`docker.io/library/python:3.12-slim`); sandboxes start from it with
/// [`crate::CreateSandbox`]'s `image`.
///
/// ```no_run
/// # async fn demo(client: ai2in_client::Client) -> ai2in_client::Result<()> {
/// use ai2in_client::CreateSandbox;
/// let image = client.images().pull("python:3.12-slim").await?;
/// println!("{} {} ({} layers)", image.id, image.digest, image.layers);
/// let sandbox = client
///     .create_sandbox(CreateSandbox {
///         image: Some(image.r#ref.clone()),
///         ..Default::default()
///     })
///     .await?;
/// sandbox.kill().await?;
/// client.images().delete(&image.id).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Images {
    http: Http,
}

impl Images {
    pub(crate) fn new(http: Http) -> Self {
        Images { http }
    }

    /// Pulls `reference` (`python:3.12-slim`, `ghcr.io/org/app:1.2`,
    /// `registry.local:5000/app@sha256:…`) and answers the image once every layer is
    /// stored; at once when the tenant has it already. A reference that does not parse is
    /// [`Error::BadRequest`], an image the registry lacks [`Error::NotFound`], a registry
    /// that fails [`Error::Upstream`].
    pub async fn pull(&self, reference: &str) -> Result<Image> {
        self.http.post("/v1/images", &pull_request(reference)).await
    }

    /// Pulls `reference` and answers its events as they happen: [`PullEvent::Progress`]
    /// per layer (compressed bytes fetched so far), then [`PullEvent::Done`] with the
    /// image, last. A failure of the pull ends the stream with the error its status
    /// stands for (as [`Images::pull`] answers it), never with [`PullEvent::Error`].
    /// Dropping the stream does not stop the pull on the node.
    ///
    /// ```no_run
    /// # async fn demo(client: ai2in_client::Client) -> ai2in_client::Result<()> {
    /// use ai2in_client::PullEvent;
    /// use futures_util::StreamExt;
    /// let mut events = client.images().pull_stream("python:3.12-slim").await?;
    /// while let Some(event) = events.next().await {
    ///     match event? {
    ///         PullEvent::Progress { layer, done_bytes, total_bytes } => {
    ///             println!("{layer}: {done_bytes}/{total_bytes}")
    ///         }
    ///         PullEvent::Done { image } => println!("pulled {}", image.digest),
    ///         PullEvent::Error { .. } => unreachable!("errors come as Err"),
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn pull_stream(&self, reference: &str) -> Result<PullStream> {
        let request = self
            .http
            .request(Method::POST, "/v1/images")
            .header(ACCEPT, "text/event-stream")
            .json(&pull_request(reference));
        let response = self.http.send(request).await?;
        Ok(Box::pin(pull_events(sse::events(response))))
    }

    /// Imports an image archive — a `docker save` tar or a tarred OCI image layout — sent
    /// as it is read from `archive` (a [`tokio::fs::File`], bytes, or
    /// `reqwest::Body::wrap_stream` of any stream). `reference` (`name:tag`, normalised as
    /// a pull's) names the image; without it, the archive's own name when it has exactly
    /// one. A malformed archive is [`Error::BadRequest`], one over the node's limit
    /// [`Error::PayloadTooLarge`].
    pub async fn import(
        &self,
        archive: impl Into<reqwest::Body>,
        reference: Option<&str>,
    ) -> Result<Image> {
        let query = ImportImageQuery {
            r#ref: reference.map(str::to_string),
        };
        let request = self
            .http
            .request(Method::POST, "/v1/images/import")
            .query(&query)
            .header(CONTENT_TYPE, "application/x-tar")
            .body(archive);
        Ok(self.http.send(request).await?.json().await?)
    }

    /// [`Images::import`] of the archive read from `reader` (standard input, a pipe, a
    /// decompressor…), a chunk at a time.
    pub async fn import_reader(
        &self,
        reader: impl AsyncRead + Send + 'static,
        reference: Option<&str>,
    ) -> Result<Image> {
        self.import(crate::http::streamed(reader), reference).await
    }

    /// [`Images::import`] of the archive at `path` on this machine, streamed from disk.
    pub async fn import_file(
        &self,
        path: impl AsRef<Path>,
        reference: Option<&str>,
    ) -> Result<Image> {
        let path = path.as_ref();
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|source| Error::File {
                path: path.to_path_buf(),
                source,
            })?;
        self.import(file, reference).await
    }

    /// The tenant's images.
    pub async fn list(&self) -> Result<Vec<Image>> {
        let list: ImageList = self.http.get("/v1/images").await?;
        Ok(list.images)
    }

    /// An image by id (`img_…`) or reference; [`Error::NotFound`] when the tenant has none
    /// such.
    pub async fn get(&self, id_or_ref: &str) -> Result<Image> {
        self.http.get(&image_path(id_or_ref)).await
    }

    /// Deletes an image by id or reference (its content goes when nothing else uses it);
    /// [`Error::InUse`] while a sandbox of the tenant runs it.
    pub async fn delete(&self, id_or_ref: &str) -> Result<()> {
        self.http.delete(&image_path(id_or_ref)).await
    }
}

fn pull_request(reference: &str) -> PullImageRequest {
    PullImageRequest {
        r#ref: reference.to_string(),
    }
}

/// The route of one image: an id as it is, a reference percent-encoded into one path
/// segment (`/` as `%2F`).
fn image_path(id_or_ref: &str) -> String {
    crate::http::route("/v1/images/", id_or_ref)
}

/// The pull event `sse` stands for: `Ok(None)` for events this SDK does not know (skipped,
/// so that a newer node does not break older clients), the failure's error for `error`.
fn decode(sse: &SseEvent) -> Result<Option<PullEvent>> {
    if !matches!(sse.event.as_str(), "progress" | "done" | "error") {
        return Ok(None);
    }
    match sse.json::<PullEvent>()? {
        PullEvent::Error { error, status } => Err(Error::from_status(status, error)),
        event => Ok(Some(event)),
    }
}

/// Pull events from SSE events: unknown events skipped, the stream closed after `done` or
/// an error, and an error if it ends before either.
fn pull_events(
    events: impl Stream<Item = Result<SseEvent>> + Send + 'static,
) -> impl Stream<Item = Result<PullEvent>> + Send {
    sse::until_last(
        events,
        decode,
        |e| !matches!(e, PullEvent::Progress { .. }),
        "pull",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn sse(event: &str, data: &str) -> Result<SseEvent> {
        Ok(SseEvent {
            event: event.into(),
            data: data.into(),
        })
    }

    const IMAGE: &str = r#"{"id":"img_1","ref":"r/a:1","digest":"sha256:ab","size_bytes":3,
        "layers":1,"source":"pull","created_at":"t","last_used_at":"t",
        "config":{"env":{},"workdir":null,"user":null,"entrypoint":[],"cmd":[],"exposed_ports":[]}}"#;

    async fn collect(events: Vec<Result<SseEvent>>) -> Vec<Result<PullEvent>> {
        pull_events(futures_util::stream::iter(events))
            .collect()
            .await
    }

    #[test]
    fn references_become_one_path_segment() {
        assert_eq!(image_path("img_abc"), "/v1/images/img_abc");
        assert_eq!(
            image_path("127.0.0.1:5000/a/b:1"),
            "/v1/images/127.0.0.1:5000%2Fa%2Fb:1"
        );
        assert_eq!(
            image_path("app@sha256:00 ?#"),
            "/v1/images/app@sha256:00%20%3F%23"
        );
    }

    #[tokio::test]
    async fn progress_then_done_ends_the_stream() {
        let progress = r#"{"type":"progress","layer":"sha256:l","done_bytes":1,"total_bytes":2}"#;
        let done = format!(r#"{{"type":"done","image":{IMAGE}}}"#);
        let events = collect(vec![
            sse("progress", progress),
            sse("unknown", "{}"),
            sse("done", &done),
            sse("progress", progress),
        ])
        .await;
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(matches!(
            events[0],
            Ok(PullEvent::Progress {
                done_bytes: 1,
                total_bytes: 2,
                ..
            })
        ));
        assert!(
            matches!(&events[1], Ok(PullEvent::Done { image }) if image.id == "img_1"),
            "{events:?}"
        );
    }

    #[tokio::test]
    async fn an_error_event_is_the_error_of_its_status() {
        let error = r#"{"type":"error","error":"no image r/a:1","status":404}"#;
        let events = collect(vec![sse("error", error), sse("error", error)]).await;
        assert_eq!(events.len(), 1);
        assert!(
            matches!(&events[0], Err(Error::NotFound { message }) if message == "no image r/a:1"),
            "{events:?}"
        );
        let cut = collect(vec![]).await;
        assert!(matches!(cut[..], [Err(Error::Stream(_))]), "{cut:?}");
    }
}

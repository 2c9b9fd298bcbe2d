//! [`Fs`]: the files of a sandbox — list, read and write (text or bytes), and watches that
//! report changes by polling or as a stream.

use ai2in_api::{
    FsEntry, FsListResponse, FsPathRequest, FsReadBytesResponse, FsReadResponse,
    FsWriteBytesRequest, FsWriteRequest, FsWriteResponse, WatchEvent, WatchEvents, WatchRequest,
    WatchStarted,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::Stream;
use reqwest::Method;

use crate::error::{Error, Result};
use crate::http::{Empty, Http};
use crate::sandbox::Sandbox;
use crate::sse;

/// The files of a sandbox; from [`Sandbox::fs`]. Paths are absolute inside the sandbox or
/// relative to `/home/user`; calls act as the sandbox's `user`.
///
/// ```no_run
/// # async fn demo(sandbox: ai2in_client::Sandbox) -> ai2in_client::Result<()> {
/// let fs = sandbox.fs();
/// fs.write("notes/a.txt", "hello").await?; // parents are created
/// assert_eq!(fs.read("notes/a.txt").await?, "hello");
/// fs.write_bytes("blob.bin", &[0, 159, 255]).await?;
/// assert_eq!(fs.read_bytes("blob.bin").await?, [0, 159, 255]);
/// for entry in fs.list("notes").await? {
///     println!("{} {}", entry.name, entry.size_bytes);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Fs<'a> {
    sandbox: &'a Sandbox,
}

fn path_request(path: &str) -> FsPathRequest {
    FsPathRequest {
        path: path.into(),
        user: None,
    }
}

impl<'a> Fs<'a> {
    pub(crate) fn new(sandbox: &'a Sandbox) -> Self {
        Fs { sandbox }
    }

    async fn post<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        route: &str,
        body: &B,
    ) -> Result<T> {
        self.sandbox
            .http()
            .post(&self.sandbox.path(&format!("fs/{route}")), body)
            .await
    }

    /// The entries of a directory, sorted by name.
    pub async fn list(&self, path: &str) -> Result<Vec<FsEntry>> {
        let list: FsListResponse = self.post("list", &path_request(path)).await?;
        Ok(list.entries)
    }

    /// A text file's contents; [`Error::UnsupportedMediaType`] when it is not UTF-8 (use
    /// [`Fs::read_bytes`]).
    pub async fn read(&self, path: &str) -> Result<String> {
        let read: FsReadResponse = self.post("read", &path_request(path)).await?;
        Ok(read.content)
    }

    /// Replaces (or creates) a file with `content`, creating missing parent directories.
    pub async fn write(&self, path: &str, content: &str) -> Result<FsWriteResponse> {
        let body = FsWriteRequest {
            path: path.into(),
            content: content.into(),
            user: None,
        };
        self.post("write", &body).await
    }

    /// A file's bytes (at most 32 MiB).
    pub async fn read_bytes(&self, path: &str) -> Result<Vec<u8>> {
        let read: FsReadBytesResponse = self.post("read_bytes", &path_request(path)).await?;
        STANDARD
            .decode(read.content_b64)
            .map_err(|e| Error::InvalidResponse(format!("content_b64 is not base64: {e}")))
    }

    /// Replaces (or creates) a file with `data` (at most 32 MiB).
    pub async fn write_bytes(&self, path: &str, data: &[u8]) -> Result<FsWriteResponse> {
        let body = FsWriteBytesRequest {
            path: path.into(),
            content_b64: STANDARD.encode(data),
            user: None,
        };
        self.post("write_bytes", &body).await
    }

    /// Starts watching `path` (and, if `recursive`, every directory below it).
    pub async fn watch(&self, path: &str, recursive: bool) -> Result<Watch> {
        let body = WatchRequest {
            path: path.into(),
            recursive,
            user: None,
        };
        let started: WatchStarted = self.post("watch", &body).await?;
        Ok(Watch {
            http: self.sandbox.http().clone(),
            path: self.sandbox.path(&format!("fs/watch/{}", started.watch_id)),
            id: started.watch_id,
        })
    }
}

/// A watch on a path; from [`Fs::watch`]. Read its events with [`Watch::poll`] or as a
/// stream with [`Watch::events`] (an event goes to one of them), and [`Watch::stop`] it.
///
/// ```no_run
/// # async fn demo(sandbox: ai2in_client::Sandbox) -> ai2in_client::Result<()> {
/// use futures_util::StreamExt;
/// let watch = sandbox.fs().watch("/home/user", true).await?;
/// let mut events = watch.events().await?;
/// sandbox.fs().write("new.txt", "x").await?;
/// if let Some(event) = events.next().await {
///     println!("{:?} {}", event?.event_type, "new.txt");
/// }
/// watch.stop().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Watch {
    http: Http,
    path: String,
    id: String,
}

impl Watch {
    /// Its id, `wch_…`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The events queued since the last poll, oldest first (an `overflow` event if some
    /// were lost).
    pub async fn poll(&self) -> Result<Vec<WatchEvent>> {
        let polled: WatchEvents = self
            .http
            .post(&format!("{}/poll", self.path), &Empty {})
            .await?;
        Ok(polled.events)
    }

    /// The events as they happen; the stream ends when the watch stops.
    pub async fn events(
        &self,
    ) -> Result<impl Stream<Item = Result<WatchEvent>> + Send + Unpin + 'static> {
        let request = self
            .http
            .request(Method::GET, &format!("{}/events", self.path));
        let response = self.http.send(request).await?;
        Ok(sse::named(response, "fs"))
    }

    /// Stops the watch.
    pub async fn stop(&self) -> Result<()> {
        self.http
            .post_unit(&format!("{}/stop", self.path), &Empty {})
            .await
    }
}

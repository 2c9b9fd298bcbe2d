//! [`Fs`]: the files of a sandbox — list, read and write (text or bytes), and watches that
//! report changes by polling or as a stream.

use std::pin::Pin;
use std::task::{Context, Poll};

use ai2in_api::{
    FileQuery, FsEntry, FsListResponse, FsPathRequest, FsReadResponse, FsWriteRequest,
    FsWriteResponse, WatchEvent, WatchEvents, WatchRequest, WatchStarted,
};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::header::{CONTENT_TYPE, RANGE};
use reqwest::{Method, RequestBuilder};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

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

    /// A GET or PUT of the raw bytes of `path`.
    fn raw(&self, method: Method, path: &str) -> RequestBuilder {
        let query = FileQuery {
            path: path.into(),
            user: None,
        };
        self.sandbox
            .http()
            .request(method, &self.sandbox.path("files"))
            .query(&query)
    }

    /// A file's bytes, whatever its size (held in memory: stream big files with
    /// [`Fs::download`]).
    pub async fn read_bytes(&self, path: &str) -> Result<Vec<u8>> {
        let response = self
            .sandbox
            .http()
            .send(self.raw(Method::GET, path))
            .await?;
        Ok(response.bytes().await?.to_vec())
    }

    /// Up to `length` bytes of a file from `offset` (fewer at its end); an offset at or
    /// past the end is [`Error::Api`] with status 416.
    pub async fn read_range(&self, path: &str, offset: u64, length: u64) -> Result<Vec<u8>> {
        if length == 0 {
            return Ok(Vec::new());
        }
        let last = offset.saturating_add(length - 1);
        let request = self
            .raw(Method::GET, path)
            .header(RANGE, format!("bytes={offset}-{last}"));
        let response = self.sandbox.http().send(request).await?;
        Ok(response.bytes().await?.to_vec())
    }

    /// A file as it is read in the sandbox, a piece at a time, whatever its size.
    ///
    /// ```no_run
    /// # async fn demo(sandbox: ai2in_client::Sandbox) -> ai2in_client::Result<()> {
    /// use futures_util::StreamExt;
    /// let mut download = sandbox.fs().download("big.bin").await?;
    /// println!("{:?} bytes", download.size());
    /// while let Some(piece) = download.next().await {
    ///     let piece = piece?; // write it somewhere
    /// #   drop(piece);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn download(&self, path: &str) -> Result<Download> {
        let response = self
            .sandbox
            .http()
            .send(self.raw(Method::GET, path))
            .await?;
        Ok(Download {
            size: response.content_length(),
            pieces: Box::pin(response.bytes_stream().map(|p| p.map_err(Error::from))),
        })
    }

    /// Writes a file of the sandbox into `writer` as it arrives; returns its size.
    pub async fn download_to(&self, path: &str, writer: impl AsyncWrite + Unpin) -> Result<u64> {
        self.download(path).await?.write_to(path, writer).await
    }

    /// Replaces (or creates) a file with `data`, whatever its size.
    pub async fn write_bytes(&self, path: &str, data: &[u8]) -> Result<FsWriteResponse> {
        self.upload(path, data.to_vec()).await
    }

    /// Replaces (or creates) a file atomically with a body sent as it is read: a
    /// [`tokio::fs::File`], bytes, or `reqwest::Body::wrap_stream` of any stream. Missing
    /// parent directories are created; a full disk is [`Error::InsufficientStorage`] and
    /// leaves the file as it was.
    pub async fn upload(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> Result<FsWriteResponse> {
        let request = self
            .raw(Method::PUT, path)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(body);
        Ok(self.sandbox.http().send(request).await?.json().await?)
    }

    /// [`Fs::upload`] of what `reader` yields (standard input, a pipe…), a chunk at a time.
    pub async fn upload_reader(
        &self,
        path: &str,
        reader: impl AsyncRead + Send + 'static,
    ) -> Result<FsWriteResponse> {
        self.upload(path, crate::http::streamed(reader)).await
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

/// A file as it arrives; from [`Fs::download`]: a stream of its pieces.
pub struct Download {
    size: Option<u64>,
    pieces: Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>,
}

impl Download {
    /// The file's size; `None` for files the kernel gives no size (in /proc), which are
    /// read to their end.
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// Writes the rest of the file into `writer` as it arrives; returns how many bytes.
    /// A failed write is [`Error::File`] naming `local`, what `writer` stands for.
    pub async fn write_to(
        mut self,
        local: impl AsRef<std::path::Path>,
        mut writer: impl AsyncWrite + Unpin,
    ) -> Result<u64> {
        let failed = |source| Error::File {
            path: local.as_ref().to_path_buf(),
            source,
        };
        let mut size = 0;
        while let Some(piece) = self.next().await {
            let piece = piece?;
            writer.write_all(&piece).await.map_err(failed)?;
            size += piece.len() as u64;
        }
        writer.flush().await.map_err(failed)?;
        Ok(size)
    }
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Stream for Download {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.pieces.as_mut().poll_next(cx)
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

//! Files in a sandbox: list, read, write and watches, through its agent. The agent resolves
//! paths inside the sandbox; the node bounds sizes and shapes the answers.

use ai2in_api::{EntryType, FsEntry, MAX_FILE_BYTES, WatchEvent, WatchEventType};

use ai2in_protocol::{ByteRange, DirEntry, Event, FsTarget, Request, write_frame};
use futures_util::{Stream, StreamExt};

use crate::agent_client::AgentCall;
use crate::auth::{Principal, Scope};
use crate::error::NodeError;
use crate::ids;
use crate::node::Node;
use crate::time::rfc3339;

/// Most entries one listing returns.
const MAX_ENTRIES: usize = 100_000;
/// Most events one poll returns (the agent queues at most 4096 and an overflow marker).
const MAX_WATCH_EVENTS: usize = 8192;

fn target(path: String, user: Option<String>) -> Result<FsTarget, NodeError> {
    let user = user.unwrap_or_else(|| "user".into());
    if user != "root" && user != "user" {
        return Err(NodeError::Invalid(format!(
            "user must be \"root\" or \"user\", not {user:?}"
        )));
    }
    if path.contains('\0') {
        return Err(NodeError::Invalid("path must not contain NUL".into()));
    }
    Ok(FsTarget { path, user })
}

fn entry(e: DirEntry) -> FsEntry {
    let entry_type = match e.kind.as_str() {
        "file" => EntryType::File,
        "dir" => EntryType::Dir,
        "symlink" => EntryType::Symlink,
        _ => EntryType::Other,
    };
    FsEntry {
        name: e.name,
        path: e.path,
        entry_type,
        size_bytes: e.size_bytes,
        mode: e.mode & 0o7777,
        modified_at: rfc3339(e.modified_at_ms),
    }
}

fn watch_event(e: ai2in_protocol::WatchEvent) -> Option<WatchEvent> {
    let event_type = match e.kind.as_str() {
        "create" => WatchEventType::Create,
        "modify" => WatchEventType::Modify,
        "delete" => WatchEventType::Delete,
        "rename" => WatchEventType::Rename,
        "overflow" => WatchEventType::Overflow,
        _ => return None,
    };
    Some(WatchEvent {
        event_type,
        path: e.path,
        timestamp: rfc3339(e.timestamp_ms),
    })
}

fn check_watch_id(id: &str) -> Result<(), NodeError> {
    ids::check(id, "wch", "watch")
}

/// A file of a sandbox as it is read, piece by piece.
pub struct FileReader {
    call: AgentCall,
    /// The file's size, when the kernel knows it.
    file_size: Option<u64>,
    /// Most bytes that may come: the part asked for, or the limit.
    limit: u64,
    received: u64,
    done: bool,
}

impl FileReader {
    /// The next piece of the file; `None` after the last one.
    pub async fn next(&mut self) -> Option<Result<Vec<u8>, NodeError>> {
        if self.done {
            return None;
        }
        let event = self.call.next().await;
        match event {
            Ok((Event::Data, piece)) if self.received + piece.len() as u64 <= self.limit => {
                self.received += piece.len() as u64;
                Some(Ok(piece))
            }
            Ok((Event::Data, _)) => {
                self.done = true;
                Some(Err(self
                    .call
                    .unexpected("the agent sent more than it was asked for")))
            }
            Ok((Event::Done { size_bytes, .. }, _)) if size_bytes == self.received => {
                self.done = true;
                None
            }
            Ok((other, _)) => {
                self.done = true;
                Some(Err(self
                    .call
                    .unexpected(format_args!("unexpected answer {other:?}"))))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }

    /// The bytes read so far; all the reader gives once [`FileReader::next`] returned `None`.
    pub fn size_bytes(&self) -> u64 {
        self.received
    }

    /// The whole file's size; `None` for files the kernel reports no size for (in /proc),
    /// which are read to their end.
    pub fn file_size(&self) -> Option<u64> {
        self.file_size
    }
}

/// A watch's events as they come, for a push stream.
pub struct WatchSubscription {
    call: AgentCall,
}

impl WatchSubscription {
    /// The next batch of events; `None` once the watch has stopped.
    pub async fn next(&mut self) -> Option<Result<Vec<WatchEvent>, NodeError>> {
        match self.call.next().await {
            Ok((Event::WatchEvents { events }, _)) => {
                Some(Ok(events.into_iter().filter_map(watch_event).collect()))
            }
            Ok((Event::Done { .. }, _)) => None,
            Ok((other, _)) => Some(Err(self
                .call
                .unexpected(format_args!("unexpected answer {other:?}")))),
            Err(e) => Some(Err(e)),
        }
    }
}

impl Node {
    /// Lists a directory of sandbox `id`.
    pub async fn fs_list(
        &self,
        caller: &Principal,
        id: &str,
        path: String,
        user: Option<String>,
    ) -> Result<Vec<FsEntry>, NodeError> {
        caller.require(Scope::SandboxesRead)?;
        let mut call = self
            .call_agent(caller, id, &Request::FsList(target(path, user)?), &[])
            .await?;
        let mut entries = Vec::new();
        loop {
            match call.next().await? {
                (Event::Entries { entries: more }, _)
                    if entries.len() + more.len() <= MAX_ENTRIES =>
                {
                    entries.extend(more.into_iter().map(entry));
                }
                (Event::Entries { .. }, _) => {
                    return Err(NodeError::TooLarge(format!(
                        "the directory holds more than {MAX_ENTRIES} entries"
                    )));
                }
                (Event::Done { .. }, _) => return Ok(entries),
                (other, _) => {
                    return Err(call.unexpected(format_args!("unexpected answer {other:?}")));
                }
            }
        }
    }

    /// Opens a file (at most 32 MiB) of sandbox `id` for reading: a failure (missing, a
    /// directory, too large) is known before the first piece.
    pub async fn fs_open(
        &self,
        caller: &Principal,
        id: &str,
        path: String,
        user: Option<String>,
    ) -> Result<FileReader, NodeError> {
        self.open_file(caller, id, target(path, user)?, MAX_FILE_BYTES, None)
            .await
    }

    /// Opens a file of sandbox `id` of any size for reading, or the part of it `range` names
    /// (ignored when the file's size is unknown): see [`ByteRange::within`] for the part, and
    /// whether there is one.
    pub async fn fs_download(
        &self,
        caller: &Principal,
        id: &str,
        path: String,
        user: Option<String>,
        range: Option<ByteRange>,
    ) -> Result<FileReader, NodeError> {
        self.open_file(caller, id, target(path, user)?, u64::MAX, range)
            .await
    }

    async fn open_file(
        &self,
        caller: &Principal,
        id: &str,
        target: FsTarget,
        max_bytes: u64,
        range: Option<ByteRange>,
    ) -> Result<FileReader, NodeError> {
        caller.require(Scope::SandboxesRead)?;
        let request = Request::FsRead {
            target,
            max_bytes,
            range,
        };
        let mut call = self.call_agent(caller, id, &request, &[]).await?;
        let file_size = match call.next().await? {
            (Event::Opened { size_bytes }, _) if size_bytes.is_none_or(|s| s <= max_bytes) => {
                size_bytes
            }
            (other, _) => {
                return Err(call.unexpected(format_args!("unexpected answer {other:?}")));
            }
        };
        let limit = file_size.map_or(max_bytes, |size| ByteRange::part_of(range, size).1);
        Ok(FileReader {
            call,
            file_size,
            limit,
            received: 0,
            done: false,
        })
    }

    /// Reads a whole file (at most 32 MiB) of sandbox `id`.
    pub async fn fs_read(
        &self,
        caller: &Principal,
        id: &str,
        path: String,
        user: Option<String>,
    ) -> Result<Vec<u8>, NodeError> {
        let mut reader = self.fs_open(caller, id, path, user).await?;
        let mut data = Vec::new();
        while let Some(piece) = reader.next().await {
            data.extend_from_slice(&piece?);
        }
        Ok(data)
    }

    /// Reads a text file of sandbox `id`: 415 when it is not UTF-8.
    pub async fn fs_read_text(
        &self,
        caller: &Principal,
        id: &str,
        path: String,
        user: Option<String>,
    ) -> Result<String, NodeError> {
        let data = self.fs_read(caller, id, path.clone(), user).await?;
        String::from_utf8(data).map_err(|_| {
            NodeError::NotText(format!(
                "{path} is not UTF-8 text; read it with fs/read_bytes"
            ))
        })
    }

    /// Replaces a file of sandbox `id` atomically with the bytes `pieces` yields in order,
    /// `size_bytes` of them when that is known ahead, each piece at most
    /// [`ai2in_protocol::FILE_CHUNK`] long; returns its absolute path and size. The pieces go
    /// to the sandbox as they come: a failing piece ends the transfer and the agent discards
    /// what it received.
    pub async fn fs_write<P: AsRef<[u8]>>(
        &self,
        caller: &Principal,
        id: &str,
        path: String,
        user: Option<String>,
        size_bytes: Option<u64>,
        pieces: impl Stream<Item = Result<P, NodeError>>,
    ) -> Result<(String, u64), NodeError> {
        caller.require(Scope::SandboxesWrite)?;
        // Fused: a finished stream answers None again rather than being polled past its end.
        let mut pieces = std::pin::pin!(pieces.fuse());
        let first = pieces.next().await.transpose()?;
        let request = Request::FsWrite {
            target: target(path, user)?,
            size_bytes,
        };
        let first = first.as_ref().map_or(&[][..], AsRef::as_ref);
        let mut call = self.call_agent(caller, id, &request, first).await?;
        while let Some(piece) = pieces.next().await.transpose()? {
            if piece.as_ref().is_empty() {
                continue;
            }
            // An agent that stopped reading has answered already (a full disk): read it.
            if write_frame(call.conn(), &Request::Chunk, piece.as_ref())
                .await
                .is_err()
            {
                break;
            }
        }
        if size_bytes.is_none() {
            // The mark of the end; an agent that has answered already does not need it.
            let _ = write_frame(call.conn(), &Request::Chunk, &[]).await;
        }
        match call.next().await? {
            (Event::Done { path, size_bytes }, _) => Ok((path, size_bytes)),
            (other, _) => Err(call.unexpected(format_args!("unexpected answer {other:?}"))),
        }
    }

    /// Starts a watch in sandbox `id`.
    pub async fn watch_start(
        &self,
        caller: &Principal,
        id: &str,
        path: String,
        recursive: bool,
        user: Option<String>,
    ) -> Result<String, NodeError> {
        caller.require(Scope::SandboxesRead)?;
        let request = Request::WatchStart {
            target: target(path, user)?,
            recursive,
        };
        let mut call = self.call_agent(caller, id, &request, &[]).await?;
        match call.next().await? {
            (Event::WatchStarted { watch_id }, _) if check_watch_id(&watch_id).is_ok() => {
                Ok(watch_id)
            }
            (other, _) => Err(call.unexpected(format_args!("unexpected answer {other:?}"))),
        }
    }

    /// Drains the queued events of a watch.
    pub async fn watch_poll(
        &self,
        caller: &Principal,
        id: &str,
        watch_id: &str,
    ) -> Result<Vec<WatchEvent>, NodeError> {
        caller.require(Scope::SandboxesRead)?;
        check_watch_id(watch_id)?;
        let request = Request::WatchPoll {
            watch_id: watch_id.to_string(),
        };
        let mut call = self.call_agent(caller, id, &request, &[]).await?;
        let mut events = Vec::new();
        loop {
            match call.next().await? {
                (Event::WatchEvents { events: more }, _)
                    if events.len() + more.len() <= MAX_WATCH_EVENTS =>
                {
                    events.extend(more.into_iter().filter_map(watch_event));
                }
                (Event::Done { .. }, _) => return Ok(events),
                (other, _) => {
                    return Err(call.unexpected(format_args!("unexpected answer {other:?}")));
                }
            }
        }
    }

    /// Subscribes to a watch's events as they happen.
    pub async fn watch_stream(
        &self,
        caller: &Principal,
        id: &str,
        watch_id: &str,
    ) -> Result<WatchSubscription, NodeError> {
        caller.require(Scope::SandboxesRead)?;
        check_watch_id(watch_id)?;
        let request = Request::WatchStream {
            watch_id: watch_id.to_string(),
        };
        let call = self.call_agent(caller, id, &request, &[]).await?;
        Ok(WatchSubscription { call })
    }

    /// Ends a watch.
    pub async fn watch_stop(
        &self,
        caller: &Principal,
        id: &str,
        watch_id: &str,
    ) -> Result<(), NodeError> {
        caller.require(Scope::SandboxesRead)?;
        check_watch_id(watch_id)?;
        let request = Request::WatchStop {
            watch_id: watch_id.to_string(),
        };
        let mut call = self.call_agent(caller, id, &request, &[]).await?;
        match call.next().await? {
            (Event::Done { .. }, _) => Ok(()),
            (other, _) => Err(call.unexpected(format_args!("unexpected answer {other:?}"))),
        }
    }
}

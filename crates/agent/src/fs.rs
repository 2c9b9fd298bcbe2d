//! Files: list, read, write. The agent's root is the sandbox's root, so no path, `..` or
//! symlink can lead outside it; operations run with the requesting account's file
//! permissions (fsuid/fsgid on a blocking thread), so what it writes is owned by it.
//! Writes are atomic: a temporary file in the same directory, fsync, rename.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::UNIX_EPOCH;

use ai2in_protocol::{
    ByteRange, DirEntry, Event, FILE_CHUNK, FailKind, FrameError, FsTarget, Request, read_frame,
    write_frame,
};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use crate::serve::REQUEST_LIMITS;

use crate::users::{self, User};

/// Entries per listing frame.
const ENTRIES_PER_FRAME: usize = 256;
/// Home of relative paths.
const HOME: &str = "/home/user";

/// A failed file operation: its kind and one sentence.
pub struct FsError(pub FailKind, pub String);

impl FsError {
    /// The failure for an I/O error on `path`.
    pub fn io(path: &Path, e: io::Error) -> Self {
        let p = path.display();
        let (kind, message) = match e.raw_os_error() {
            Some(libc::ENOENT) => (FailKind::NotFound, format!("{p} does not exist")),
            Some(libc::EACCES | libc::EPERM | libc::EROFS) => (
                FailKind::PermissionDenied,
                format!("permission denied on {p}"),
            ),
            Some(libc::EISDIR) => (
                FailKind::WrongType,
                format!("{p} is a directory, not a file"),
            ),
            Some(libc::ENOTDIR | libc::EEXIST) => (
                FailKind::WrongType,
                format!("a component of {p} is a file, not a directory"),
            ),
            Some(libc::ENOSPC | libc::EDQUOT) => (
                FailKind::NoSpace,
                format!("the sandbox's disk is full; nothing was written to {p}"),
            ),
            Some(libc::EFBIG) => (FailKind::TooLarge, format!("{p} is too large")),
            Some(libc::ENAMETOOLONG) => (FailKind::Invalid, format!("the path {p} is too long")),
            _ => (FailKind::Other, format!("{p}: {e}")),
        };
        FsError(kind, message)
    }

    /// Sends this failure as the last frame.
    pub async fn send(self, conn: &mut UnixStream) -> Result<(), FrameError> {
        write_frame(
            conn,
            &Event::Failed {
                kind: self.0,
                message: self.1,
            },
            &[],
        )
        .await
    }
}

/// The absolute path `path` names inside the sandbox, normalized lexically.
pub fn resolve(path: &str) -> Result<PathBuf, FsError> {
    if path.contains('\0') {
        return Err(FsError(
            FailKind::Invalid,
            "path must not contain NUL".into(),
        ));
    }
    let joined = Path::new(HOME).join(path);
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    Ok(out)
}

/// File permissions of `user` on the current thread for as long as it lives.
struct AsUser(());

impl AsUser {
    fn enter(user: &User) -> Self {
        // setfsgid/setfsuid change only this thread's file-system ids; they cannot fail
        // for ids the agent (root in its namespace, CAP_SETUID) may take.
        nix::unistd::setfsgid(nix::unistd::Gid::from_raw(user.gid));
        nix::unistd::setfsuid(nix::unistd::Uid::from_raw(user.uid));
        AsUser(())
    }
}

impl Drop for AsUser {
    fn drop(&mut self) {
        nix::unistd::setfsuid(nix::unistd::Uid::from_raw(0));
        nix::unistd::setfsgid(nix::unistd::Gid::from_raw(0));
    }
}

/// Runs `op` on a blocking thread with `target`'s permissions, on its resolved path.
pub(crate) async fn blocking<T: Send + 'static>(
    target: &FsTarget,
    op: impl FnOnce(&Path) -> Result<T, FsError> + Send + 'static,
) -> Result<T, FsError> {
    let user = users::lookup(&target.user)
        .ok_or_else(|| FsError(FailKind::Invalid, format!("unknown user {:?}", target.user)))?;
    let path = resolve(&target.path)?;
    tokio::task::spawn_blocking(move || {
        let _as = AsUser::enter(&user);
        op(&path)
    })
    .await
    .unwrap_or_else(|e| Err(FsError(FailKind::Other, e.to_string())))
}

fn kind_of(ft: fs::FileType) -> &'static str {
    if ft.is_symlink() {
        "symlink"
    } else if ft.is_dir() {
        "dir"
    } else if ft.is_file() {
        "file"
    } else {
        "other"
    }
}

fn modified_ms(meta: &fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64)
}

/// Lists a directory, sorted by name.
pub async fn list(target: FsTarget, conn: &mut UnixStream) -> Result<(), FrameError> {
    let listed = blocking(&target, |path| {
        let meta = fs::metadata(path).map_err(|e| FsError::io(path, e))?;
        if !meta.is_dir() {
            return Err(FsError(
                FailKind::WrongType,
                format!("{} is a file, not a directory", path.display()),
            ));
        }
        let mut entries = Vec::new();
        for entry in fs::read_dir(path).map_err(|e| FsError::io(path, e))? {
            let entry = entry.map_err(|e| FsError::io(path, e))?;
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            entries.push(DirEntry {
                name: entry.file_name().to_string_lossy().into_owned(),
                path: entry.path().to_string_lossy().into_owned(),
                kind: kind_of(meta.file_type()).into(),
                size_bytes: meta.len(),
                mode: meta.permissions().mode() & 0o7777,
                modified_at_ms: modified_ms(&meta),
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((path.to_string_lossy().into_owned(), entries))
    })
    .await;
    let (path, entries) = match listed {
        Ok(l) => l,
        Err(e) => return e.send(conn).await,
    };
    for chunk in entries.chunks(ENTRIES_PER_FRAME) {
        write_frame(
            conn,
            &Event::Entries {
                entries: chunk.to_vec(),
            },
            &[],
        )
        .await?;
    }
    let size_bytes = entries.len() as u64;
    write_frame(conn, &Event::Done { path, size_bytes }, &[]).await
}

/// Reads a regular file of at most `max_bytes`, or the part of it `range` names: its size
/// first, then the bytes in [`FILE_CHUNK`] pieces as they are read. A file of known size is
/// read up to that size (it may be growing); one that shrinks while read fails the read.
pub async fn read(
    target: FsTarget,
    max_bytes: u64,
    range: Option<ByteRange>,
    conn: &mut UnixStream,
) -> Result<(), FrameError> {
    let opened = blocking(&target, move |path| {
        // Without O_NONBLOCK, opening a FIFO would wait for a writer.
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| FsError::io(path, e))?;
        let meta = file.metadata().map_err(|e| FsError::io(path, e))?;
        if meta.is_dir() {
            return Err(FsError(
                FailKind::WrongType,
                format!("{} is a directory, not a file", path.display()),
            ));
        }
        if !meta.is_file() {
            return Err(FsError(
                FailKind::WrongType,
                format!("{} is not a regular file", path.display()),
            ));
        }
        if meta.len() > max_bytes {
            return Err(too_large(path, max_bytes));
        }
        // A size of 0 is an empty file, or one the kernel makes as it is read (/proc): the
        // first piece tells them apart.
        let mut first = Vec::new();
        if meta.len() == 0 {
            Read::by_ref(&mut &file)
                .take(FILE_CHUNK as u64)
                .read_to_end(&mut first)
                .map_err(|e| FsError::io(path, e))?;
        }
        let size = (meta.len() > 0 || first.is_empty()).then_some(meta.len());
        Ok((path.to_path_buf(), file, size, first))
    })
    .await;
    let (path, mut file, size_bytes, first) = match opened {
        Ok(opened) => opened,
        Err(e) => return e.send(conn).await,
    };
    write_frame(conn, &Event::Opened { size_bytes }, &[]).await?;
    // What to send: the part asked for, the whole file, or (size unknown) up to the limit.
    let (offset, length, exact) = match size_bytes {
        Some(size) => {
            let (offset, length) = ByteRange::part_of(range, size);
            (offset, length, true)
        }
        None => (0, max_bytes.saturating_add(1), false),
    };
    // The open file is read on a blocking thread while the pieces already read are sent.
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(2);
    let reader_path = path.clone();
    let reader = tokio::task::spawn_blocking(move || {
        // (Files of unknown size are read on from their first piece, from offset 0.)
        if offset > 0 {
            file.seek(SeekFrom::Start(offset))
                .map_err(|e| FsError::io(&reader_path, e))?;
        }
        let mut size = first.len() as u64;
        if size > max_bytes {
            return Err(too_large(&reader_path, max_bytes));
        }
        if !first.is_empty() && tx.blocking_send(first).is_err() {
            return Ok(size);
        }
        loop {
            let want = (length - size).min(FILE_CHUNK as u64);
            let mut piece = Vec::with_capacity(want as usize);
            let n = Read::by_ref(&mut file)
                .take(want)
                .read_to_end(&mut piece)
                .map_err(|e| FsError::io(&reader_path, e))?;
            size += n as u64;
            if n == 0 && size < length && exact {
                return Err(FsError(
                    FailKind::Other,
                    format!("{} shrank while it was read", reader_path.display()),
                ));
            }
            if size > max_bytes {
                return Err(too_large(&reader_path, max_bytes));
            }
            if n == 0 || tx.blocking_send(piece).is_err() {
                return Ok(size);
            }
        }
    });
    while let Some(piece) = rx.recv().await {
        write_frame(conn, &Event::Data, &piece).await?;
    }
    match reader.await {
        Ok(Ok(size_bytes)) => {
            let path = path.to_string_lossy().into_owned();
            write_frame(conn, &Event::Done { path, size_bytes }, &[]).await
        }
        Ok(Err(e)) => e.send(conn).await,
        Err(e) => FsError(FailKind::Other, e.to_string()).send(conn).await,
    }
}

fn too_large(path: &Path, max_bytes: u64) -> FsError {
    FsError(
        FailKind::TooLarge,
        format!("{} is over the limit of {max_bytes} bytes", path.display()),
    )
}

/// Replaces a file atomically: `first`, then the data of the [`Request::Chunk`] frames that
/// follow on `conn`, until `size_bytes` have arrived or (size unknown) an empty one. The
/// pieces are written as they arrive; a connection that ends early or a failed write leaves
/// no temporary file behind.
pub async fn write(
    target: FsTarget,
    size_bytes: Option<u64>,
    first: Vec<u8>,
    conn: &mut UnixStream,
) -> Result<(), FrameError> {
    let (tx, rx) = mpsc::channel(1);
    let writer = blocking(&target, move |path| {
        let written = write_atomic(path, rx)?;
        Ok((path.to_string_lossy().into_owned(), written))
    });
    let (written, ()) = tokio::join!(writer, feed(conn, size_bytes, first, tx));
    match written {
        Ok((path, size_bytes)) => write_frame(conn, &Event::Done { path, size_bytes }, &[]).await,
        Err(e) => e.send(conn).await,
    }
}

/// Hands the pieces of a file from the node to its writer, then an empty piece once the
/// transfer is complete. It stops early, without that mark, when the writer has given up,
/// the node sent more than `size_bytes` or something else, or hung up.
async fn feed(
    conn: &mut UnixStream,
    size_bytes: Option<u64>,
    first: Vec<u8>,
    tx: mpsc::Sender<Vec<u8>>,
) {
    let mut received = 0u64;
    let mut piece = first;
    loop {
        if !piece.is_empty() {
            received += piece.len() as u64;
            if size_bytes.is_some_and(|size| received > size) || tx.send(piece).await.is_err() {
                return;
            }
        }
        if size_bytes == Some(received) {
            break;
        }
        match read_frame::<_, Request>(conn, REQUEST_LIMITS).await {
            Ok(Some((Request::Chunk, data))) if !data.is_empty() => piece = data,
            Ok(Some((Request::Chunk, _))) if size_bytes.is_none() => break,
            _ => return,
        }
    }
    let _ = tx.send(Vec::new()).await;
}

/// Writes the pieces to a temporary file beside `path` and renames it over `path` once the
/// empty piece that marks the end has come; returns the size written.
fn write_atomic(path: &Path, mut pieces: mpsc::Receiver<Vec<u8>>) -> Result<u64, FsError> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(FsError(
            FailKind::WrongType,
            "/ is a directory, not a file".into(),
        ));
    };
    fs::create_dir_all(parent).map_err(|e| FsError::io(parent, e))?;
    let mode = match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {
            return Err(FsError(
                FailKind::WrongType,
                format!("{} is a directory, not a file", path.display()),
            ));
        }
        Ok(meta) => meta.permissions().mode() & 0o7777,
        Err(_) => 0o644,
    };
    let tmp = parent.join(format!(
        ".{}.ai2in-{:x}",
        name.to_string_lossy(),
        crate::process::random_u64()
    ));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        let mut written = 0u64;
        loop {
            match pieces.blocking_recv() {
                Some(piece) if piece.is_empty() => break,
                Some(piece) => {
                    file.write_all(&piece)?;
                    written += piece.len() as u64;
                }
                None => {
                    return Err(io::Error::other(format!(
                        "the transfer ended early, after {written} bytes; nothing was written"
                    )));
                }
            }
        }
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        Ok(written)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        FsError::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_inside_the_root() {
        let r = |p: &str| resolve(p).ok().unwrap();
        assert_eq!(r("a.txt"), Path::new("/home/user/a.txt"));
        assert_eq!(r("/etc/passwd"), Path::new("/etc/passwd"));
        assert_eq!(r("../../../../x"), Path::new("/x"));
        assert_eq!(r("/a/../../b/./c"), Path::new("/b/c"));
        assert_eq!(r(""), Path::new("/home/user"));
        assert!(resolve("a\0b").is_err());
    }
}

//! Files: list, read, write. The agent's root is the sandbox's root, so no path, `..` or
//! symlink can lead outside it; operations run with the requesting account's file
//! permissions (fsuid/fsgid on a blocking thread), so what it writes is owned by it.
//! Writes are atomic: a temporary file in the same directory, fsync, rename.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::UNIX_EPOCH;

use ai2in_protocol::{DirEntry, Event, FailKind, FrameError, FsTarget, write_frame};
use tokio::net::UnixStream;

use crate::users::{self, User};

/// Largest chunk of file data per frame.
const CHUNK: usize = 1 << 20;
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

/// Reads a whole file of at most `max_bytes`.
pub async fn read(
    target: FsTarget,
    max_bytes: u64,
    conn: &mut UnixStream,
) -> Result<(), FrameError> {
    let read = blocking(&target, move |path| {
        let mut file = fs::File::open(path).map_err(|e| FsError::io(path, e))?;
        let meta = file.metadata().map_err(|e| FsError::io(path, e))?;
        if meta.is_dir() {
            return Err(FsError(
                FailKind::WrongType,
                format!("{} is a directory, not a file", path.display()),
            ));
        }
        if meta.len() > max_bytes {
            return Err(FsError(
                FailKind::TooLarge,
                format!(
                    "{} is {} bytes, over the limit of {max_bytes}",
                    path.display(),
                    meta.len()
                ),
            ));
        }
        let mut data = Vec::with_capacity(meta.len() as usize);
        // Files that grow while being read (or /proc files of size 0) are cut at the limit.
        Read::by_ref(&mut file)
            .take(max_bytes + 1)
            .read_to_end(&mut data)
            .map_err(|e| FsError::io(path, e))?;
        if data.len() as u64 > max_bytes {
            return Err(FsError(
                FailKind::TooLarge,
                format!("{} is over the limit of {max_bytes} bytes", path.display()),
            ));
        }
        Ok((path.to_string_lossy().into_owned(), data))
    })
    .await;
    let (path, data) = match read {
        Ok(r) => r,
        Err(e) => return e.send(conn).await,
    };
    for chunk in data.chunks(CHUNK) {
        write_frame(conn, &Event::Data, chunk).await?;
    }
    write_frame(
        conn,
        &Event::Done {
            path,
            size_bytes: data.len() as u64,
        },
        &[],
    )
    .await
}

/// Replaces a file atomically with `data`, creating missing parent directories.
pub async fn write(
    target: FsTarget,
    data: Vec<u8>,
    conn: &mut UnixStream,
) -> Result<(), FrameError> {
    let written = blocking(&target, move |path| {
        write_atomic(path, &data)?;
        Ok((path.to_string_lossy().into_owned(), data.len() as u64))
    })
    .await;
    match written {
        Ok((path, size_bytes)) => write_frame(conn, &Event::Done { path, size_bytes }, &[]).await,
        Err(e) => e.send(conn).await,
    }
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<(), FsError> {
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
        file.write_all(data)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
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

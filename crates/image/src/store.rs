//! The content store on the node's disk, under `images/`:
//!
//! ```text
//!     layers/<hex of diff id>/fs         a layer unpacked in overlay form
//!     layers/<hex of diff id>/meta.json  its size and entry count
//!     blobs/sha256/<hex>                 manifests and configs
//!     tmp/                               staging; emptied at every start
//! ```
//!
//! Everything is published by a rename from `tmp/`, so a crash never leaves a half layer
//! where a sandbox would use it, and removal renames into `tmp/` first. The directories are
//! root's alone (0700): image files keep their owners from the archive, which may be real
//! users of the host, and only the node opens layers (sandboxes get mounts, not paths).

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, OFlag, openat};
use nix::sys::stat::{Mode, fstat};
use nix::unistd::{UnlinkatFlags, unlinkat};
use serde::{Deserialize, Serialize};

use crate::manifest::RunSettings;
use crate::unpack::Limits;

/// A layer in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInfo {
    /// Digest of the uncompressed tar, `sha256:…`.
    pub diff_id: String,
    /// Bytes of file content.
    pub size_bytes: u64,
}

/// An image whose layers are all in the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Pulled {
    /// The normalised reference it was fetched by (or named at import).
    pub reference: String,
    /// Digest of its manifest (for a `docker save` archive, of its config).
    pub digest: String,
    /// Its layers, bottom first.
    pub layers: Vec<LayerInfo>,
    /// How to run it.
    pub settings: RunSettings,
}

/// The store's directories and limits.
#[derive(Debug)]
pub struct ContentStore {
    root: PathBuf,
    limits: Limits,
    staged: AtomicU64,
}

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

fn mkdir(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

impl ContentStore {
    /// Opens the store under `root`, creating it, and removes what a crash left in staging.
    pub fn open(root: &Path, limits: Limits) -> io::Result<Self> {
        let store = ContentStore {
            root: root.to_path_buf(),
            limits,
            staged: AtomicU64::new(0),
        };
        let tmp = store.root.join("tmp");
        if tmp.exists() {
            remove_tree(&tmp)?;
        }
        for dir in ["layers", "blobs/sha256", "tmp"] {
            mkdir(&store.root.join(dir))?;
        }
        Ok(store)
    }

    /// Bounds on each layer.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The directory a sandbox mounts for layer `diff_id`.
    pub fn layer_dir(&self, diff_id: &str) -> PathBuf {
        self.root.join("layers").join(hex(diff_id)).join("fs")
    }

    /// Layer `diff_id`, if it is in the store.
    pub fn layer(&self, diff_id: &str) -> Option<LayerInfo> {
        let meta = fs::read(
            self.root
                .join("layers")
                .join(hex(diff_id))
                .join("meta.json"),
        )
        .ok()?;
        serde_json::from_slice(&meta).ok()
    }

    /// A new empty staging directory, removed on drop unless published.
    pub fn staging(&self) -> io::Result<Staging> {
        let n = self.staged.fetch_add(1, Ordering::Relaxed);
        let path = self
            .root
            .join("tmp")
            .join(format!("{}-{n}", std::process::id()));
        let staging = Staging { path: Some(path) };
        mkdir(&staging.fs())?;
        // The top of a layer is the image's root: 0755 unless the layer says otherwise.
        fs::set_permissions(
            staging.fs(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        Ok(staging)
    }

    /// Publishes an unpacked layer. When another pull published it meanwhile, `staging`
    /// is dropped.
    pub fn publish_layer(&self, staging: Staging, layer: &LayerInfo) -> io::Result<()> {
        let path = staging.path.as_ref().expect("live staging");
        fs::write(path.join("meta.json"), serde_json::to_vec(layer)?)?;
        let dest = self.root.join("layers").join(hex(&layer.diff_id));
        match fs::rename(path, &dest) {
            Ok(()) => {
                staging.keep();
                Ok(())
            }
            Err(e) if dest.exists() => {
                tracing::debug!(error = %e, "layer published by another pull");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Removes layer `diff_id` (renamed out of sight first, then deleted).
    pub fn remove_layer(&self, diff_id: &str) -> io::Result<()> {
        let src = self.root.join("layers").join(hex(diff_id));
        let n = self.staged.fetch_add(1, Ordering::Relaxed);
        let doomed = self
            .root
            .join("tmp")
            .join(format!("rm-{}-{n}", std::process::id()));
        match fs::rename(&src, &doomed) {
            Ok(()) => remove_tree(&doomed),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The diff ids of every layer in the store.
    pub fn layers(&self) -> io::Result<Vec<String>> {
        Ok(fs::read_dir(self.root.join("layers"))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .map(|hex| format!("sha256:{hex}"))
            .collect())
    }

    /// Stores a small blob (a manifest or config) under its digest.
    pub fn put_blob(&self, digest: &str, bytes: &[u8]) -> io::Result<()> {
        let dest = self.blob_path(digest);
        if dest.exists() {
            return Ok(());
        }
        let n = self.staged.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .root
            .join("tmp")
            .join(format!("blob-{}-{n}", std::process::id()));
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, &dest)
    }

    /// Removes a blob.
    pub fn remove_blob(&self, digest: &str) -> io::Result<()> {
        match fs::remove_file(self.blob_path(digest)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(hex(digest))
    }

    /// A path in staging for a spooled upload, removed on drop.
    pub fn spool(&self) -> io::Result<Staging> {
        let n = self.staged.fetch_add(1, Ordering::Relaxed);
        Ok(Staging {
            path: Some(
                self.root
                    .join("tmp")
                    .join(format!("spool-{}-{n}", std::process::id())),
            ),
        })
    }
}

/// A directory (or file) in staging; removed when dropped unless kept.
#[derive(Debug)]
pub struct Staging {
    path: Option<PathBuf>,
}

impl Staging {
    /// Its path.
    pub fn path(&self) -> &Path {
        self.path.as_deref().expect("live staging")
    }

    /// Where the layer's tree goes.
    pub fn fs(&self) -> PathBuf {
        self.path().join("fs")
    }

    fn keep(mut self) {
        self.path = None;
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = remove_tree(&path);
        }
    }
}

/// Removes `path` (a file or a directory tree) without following symlinks. A loop, not a
/// recursion, with two directories open at a time, going back up through `..` (checked):
/// `std::fs::remove_dir_all` holds a descriptor per level, so a layer thousands of
/// directories deep (a sandbox makes one in a moment and snapshots it) would run out of
/// descriptors and stay on disk.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    let (Some(name), parent) = (path.file_name(), path.parent()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot remove {}", path.display()),
        ));
    };
    let parent = match parent {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let parent = openat(
        AT_FDCWD,
        parent,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    match unlinkat(&parent, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => return Ok(()),
        Err(Errno::EISDIR) => {}
        Err(e) => return Err(e.into()),
    }
    let open = |dir: BorrowedFd<'_>, name: &OsStr| {
        Dir::openat(
            dir,
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
    };
    let list = |dir: &mut Dir| -> Result<(Vec<OsString>, (u64, u64)), Errno> {
        let st = fstat(dir.as_fd())?;
        let mut names = Vec::new();
        for entry in dir.iter() {
            let entry = entry?;
            let n = entry.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push(OsStr::from_bytes(n).to_os_string());
            }
        }
        Ok((names, (st.st_dev, st.st_ino)))
    };
    let mut cur = open(parent.as_fd(), name)?;
    // Per directory from the top down: the names left to remove, and its identity.
    let mut stack = vec![list(&mut cur)?];
    // The names of the directories below the top on the way down.
    let mut below: Vec<OsString> = Vec::new();
    while let Some((names, _)) = stack.last_mut() {
        if let Some(n) = names.pop() {
            match unlinkat(&cur, n.as_os_str(), UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(Errno::EISDIR) => {
                    let mut child = open(cur.as_fd(), &n)?;
                    stack.push(list(&mut child)?);
                    below.push(n);
                    cur = child;
                }
                Err(e) => return Err(e.into()),
            }
            continue;
        }
        stack.pop();
        let (Some((_, id)), Some(n)) = (stack.last(), below.pop()) else {
            break;
        };
        let up = open(cur.as_fd(), OsStr::new(".."))?;
        let st = fstat(up.as_fd())?;
        if (st.st_dev, st.st_ino) != *id {
            return Err(io::Error::other(format!(
                "{} changed while it was removed",
                path.display()
            )));
        }
        cur = up;
        unlinkat(&cur, n.as_os_str(), UnlinkatFlags::RemoveDir)?;
    }
    drop(cur);
    unlinkat(&parent, name, UnlinkatFlags::RemoveDir)?;
    Ok(())
}

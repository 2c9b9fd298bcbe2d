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

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

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
            fs::remove_dir_all(&tmp)?;
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
            Ok(()) => fs::remove_dir_all(&doomed),
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
            let _ = fs::remove_dir_all(&path).or_else(|_| fs::remove_file(&path));
        }
    }
}

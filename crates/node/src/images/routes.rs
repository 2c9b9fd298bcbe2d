//! The image operations the API serves, on behalf of a caller.

use std::path::Path;

use ai2in_api::{Image, SnapshotRequest};
use ai2in_store::Status;
use tokio::io::{AsyncRead, AsyncWriteExt};

use crate::auth::{Principal, Scope};
use crate::error::NodeError;
use crate::images::{PullPolicy, PullProgress};
use crate::node::Node;

impl Node {
    /// Pulls `reference` for the caller: the image and whether it is new or changed (a tag
    /// that moved). Layers the node has are not fetched again.
    pub async fn pull_image(
        &self,
        caller: &Principal,
        reference: &str,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<(Image, bool), NodeError> {
        caller.require(Scope::ImagesWrite)?;
        let (record, created) = self
            .images()
            .pull(&caller.tenant, reference, PullPolicy::Always, progress)
            .await?;
        Ok((self.images().info(&record)?, created))
    }

    /// Imports the archive `body` for the caller as `reference` (or the archive's name).
    /// The archive is spooled to the image store's staging, bounded by `[images]
    /// max_import_bytes`, and removed afterwards.
    pub async fn import_image(
        &self,
        caller: &Principal,
        reference: Option<&str>,
        body: impl AsyncRead + Unpin,
    ) -> Result<Image, NodeError> {
        caller.require(Scope::ImagesWrite)?;
        let max = self.config().images.max_import_bytes;
        let spool = self
            .images()
            .content_store()
            .spool()
            .map_err(|e| NodeError::Internal(format!("image staging: {e}")))?;
        spool_body(spool.path(), body, max).await?;
        let record = self
            .images()
            .import(&caller.tenant, spool.path().to_path_buf(), reference)
            .await?;
        self.images().info(&record)
    }

    /// The caller's images.
    pub fn list_images(&self, caller: &Principal) -> Result<Vec<Image>, NodeError> {
        caller.require(Scope::ImagesRead)?;
        self.images().list(&caller.tenant)
    }

    /// The caller's image with id or reference `key`.
    pub fn get_image(&self, caller: &Principal, key: &str) -> Result<Image, NodeError> {
        caller.require(Scope::ImagesRead)?;
        self.images().get(&caller.tenant, key)
    }

    /// Takes a snapshot of the caller's sandbox `id`: its image plus what it wrote (volumes
    /// excluded), as a new image of the caller's. The sandbox is frozen while its writable
    /// layer is copied and goes on afterwards.
    pub async fn snapshot_sandbox(
        &self,
        caller: &Principal,
        id: &str,
        req: SnapshotRequest,
    ) -> Result<Image, NodeError> {
        caller.require(Scope::SandboxesWrite)?;
        caller.require(Scope::ImagesWrite)?;
        let reference = req
            .r#ref
            .unwrap_or_else(|| format!("localhost/snapshots/{id}:{}", crate::time::now_ms()));
        let lock = self.lock_of(id);
        let _guard = lock.lock().await;
        let record = self.live_record(caller, id)?;
        if record.status == Status::Starting {
            return Err(NodeError::NotFound(format!(
                "sandbox {id} is still starting"
            )));
        }
        let base = match &record.image_digest {
            Some(digest) => self.images().content(digest)?,
            None => std::sync::Arc::new(crate::images::Content::host()),
        };
        let runtime = self.runtime().clone();
        let sandbox = id.to_string();
        let paused = record.status == Status::Paused;
        let take = move |store: std::sync::Arc<ai2in_image::ContentStore>| {
            let taken = runtime.with_upper(&sandbox, paused, |upper| {
                ai2in_image::snapshot::layer_from_upper(&store, upper, store.limits())
            });
            match taken {
                Ok(layer) => layer.map_err(crate::images::upstream),
                Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
                    Err(NodeError::Conflict(format!(
                        "sandbox {sandbox} keeps what it writes in memory (it was created \
                         with a tmpfs writable layer: the node's [storage] writable_layer); \
                         snapshots need writable_layer = \"disk\""
                    )))
                }
                Err(e) => Err(NodeError::Internal(format!(
                    "read the writable layer of {sandbox}: {e}"
                ))),
            }
        };
        let image = self
            .images()
            .snapshot(&caller.tenant, &base, &reference, take)
            .await?;
        self.images().info(&image)
    }

    /// Deletes the caller's image `key` (409 while a sandbox uses it).
    pub fn delete_image(&self, caller: &Principal, key: &str) -> Result<(), NodeError> {
        caller.require(Scope::ImagesWrite)?;
        self.images().delete(&caller.tenant, key)
    }
}

async fn spool_body(
    path: &Path,
    mut body: impl AsyncRead + Unpin,
    max: u64,
) -> Result<(), NodeError> {
    let io = |e: std::io::Error| NodeError::Internal(format!("spool the archive: {e}"));
    let mut file = tokio::fs::File::create(path).await.map_err(io)?;
    let copied = tokio::io::copy(
        &mut tokio::io::AsyncReadExt::take(&mut body, max + 1),
        &mut file,
    )
    .await
    .map_err(|e| NodeError::Invalid(format!("the archive could not be read: {e}")))?;
    if copied > max {
        return Err(NodeError::TooLarge(format!(
            "the archive is over the node's limit of {max} bytes ([images] max_import_bytes)"
        )));
    }
    file.flush().await.map_err(io)?;
    Ok(())
}

//! [`Volumes`]: persistent filesystems of the caller's tenant that outlive sandboxes.

use ai2in_api::{CreateVolumeRequest, Volume, VolumeList};

use crate::error::Result;
use crate::http::Http;

/// The volumes of the caller's tenant; from [`crate::Client::volumes`]. A volume is named by
/// its id (`vol_…`) or its name; sandboxes mount it with [`crate::CreateSandbox`]'s
/// `volumes`.
///
/// ```no_run
/// # async fn demo(client: ai2in_client::Client) -> ai2in_client::Result<()> {
/// use ai2in_client::{CreateSandbox, VolumeAttachment};
/// let volume = client.volumes().create(1 << 30, Some("work")).await?;
/// let sandbox = client
///     .create_sandbox(CreateSandbox {
///         volumes: Some(vec![VolumeAttachment {
///             volume_id: volume.id.clone(),
///             path: "/data".into(),
///             read_only: false,
///         }]),
///         ..Default::default()
///     })
///     .await?;
/// sandbox.shell("echo kept > /data/note").await?;
/// sandbox.kill().await?;
/// client.volumes().delete("work").await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Volumes {
    http: Http,
}

impl Volumes {
    pub(crate) fn new(http: Http) -> Self {
        Volumes { http }
    }

    /// Creates an empty volume of `size_bytes`, named `name` (its id when `None`); a name
    /// the tenant has already is [`crate::Error::AlreadyExists`], a size outside the node's
    /// limits [`crate::Error::BadRequest`], past the tenant's quota
    /// [`crate::Error::QuotaExceeded`].
    pub async fn create(&self, size_bytes: u64, name: Option<&str>) -> Result<Volume> {
        let body = CreateVolumeRequest {
            name: name.map(str::to_string),
            size_bytes,
        };
        self.http.post("/v1/volumes", &body).await
    }

    /// The tenant's volumes, oldest first.
    pub async fn list(&self) -> Result<Vec<Volume>> {
        let list: VolumeList = self.http.get("/v1/volumes").await?;
        Ok(list.volumes)
    }

    /// A volume by id or name; [`crate::Error::NotFound`] when the tenant has none such.
    pub async fn get(&self, id_or_name: &str) -> Result<Volume> {
        self.http.get(&volume_path(id_or_name)).await
    }

    /// Deletes a volume and everything on it; [`crate::Error::InUse`] while a live sandbox
    /// mounts it.
    pub async fn delete(&self, id_or_name: &str) -> Result<()> {
        self.http.delete(&volume_path(id_or_name)).await
    }
}

/// The route of one volume.
fn volume_path(id_or_name: &str) -> String {
    crate::http::route("/v1/volumes/", id_or_name)
}

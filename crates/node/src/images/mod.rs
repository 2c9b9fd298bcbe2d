//! The node's images: tenants' records over shared content. Resolves what a create names
//! (`host`, an `img_…` id, or a reference pulled when the tenant lacks it), pulls with one
//! pull in flight per tenant and reference, imports archives, and frees content nothing
//! names or runs any more. Content (layers on disk, their rows) is shared by every tenant
//! that has the same digest; records are per tenant.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ai2in_api::{Image, ImageConfig, ImageSource};
use ai2in_image::{
    ContentStore, ImageError, KeyedLocks, LayerInfo, Progress, Pulled, Puller, Reference,
    RegistryClient, RegistryConfig, RunSettings,
};
use ai2in_store::{ContentRecord, ImageRecord, Store};

use crate::config::ImagesConfig;
use crate::error::{NodeError, error_chain};
use crate::ids;
use crate::time::{now_ms, rfc3339};

mod routes;

/// How stale an image's `last_used_at` may be before a create updates it.
const TOUCH_EVERY_MS: i64 = 60_000;

/// Progress of a pull, for the SSE route.
pub type PullProgress = Progress;

/// When a pull asks the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PullPolicy {
    /// Only when the tenant lacks the image (a create).
    IfMissing,
    /// Always: a tag may have moved (`POST /v1/images`); layers the store has are not
    /// fetched again.
    Always,
}

/// What a sandbox starts from.
#[derive(Debug, Clone)]
pub(crate) struct Content {
    /// `None` for `host`.
    pub digest: Option<String>,
    /// Layer directories, bottom first (empty for `host`).
    pub layers: Vec<PathBuf>,
    /// Bytes of its layers unpacked.
    pub size_bytes: u64,
    /// How to run it.
    pub settings: RunSettings,
}

impl Content {
    /// The `host` image.
    pub fn host() -> Self {
        Content {
            digest: None,
            layers: Vec::new(),
            size_bytes: 0,
            settings: RunSettings::default(),
        }
    }

    /// The pool's key of this content: `host` or its digest.
    pub fn key(&self) -> &str {
        self.digest
            .as_deref()
            .unwrap_or(ai2in_runtime::image::HOST_IMAGE)
    }
}

/// The images subsystem.
pub(crate) struct Images {
    store: Arc<Store>,
    /// `[images] max_bytes`.
    budget: u64,
    puller: Puller,
    /// One pull at a time per (tenant, reference).
    pulls: KeyedLocks<(String, String)>,
    /// Content by digest, as read from the store.
    cache: Mutex<HashMap<String, Arc<Content>>>,
    /// Pulls and imports under way: their layers are in the store before their content
    /// row is, so garbage collection waits for none to run.
    in_flight: std::sync::atomic::AtomicUsize,
}

/// Counts a pull or import while it runs.
struct InFlight<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> InFlight<'a> {
    fn new(n: &'a std::sync::atomic::AtomicUsize) -> Self {
        n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        InFlight(n)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

pub(crate) fn upstream(e: ImageError) -> NodeError {
    match e {
        ImageError::TooLarge(m) => NodeError::TooLarge(m),
        ImageError::Io(e) if e.kind() == std::io::ErrorKind::StorageFull => {
            NodeError::NoSpace("the node's disk is full; delete images or volumes".into())
        }
        ImageError::Reference(e) => NodeError::Invalid(e.to_string()),
        ImageError::NotFound(m) => NodeError::NotFound(m),
        ImageError::BadArchive(m) => NodeError::Invalid(m),
        ImageError::Io(e) => NodeError::Internal(format!("image store: {e}")),
        e => NodeError::Upstream(error_chain(&e)),
    }
}

fn parse_ref(s: &str) -> Result<Reference, NodeError> {
    Reference::parse(s).map_err(|e| NodeError::Invalid(e.to_string()))
}

impl Images {
    /// Opens the content store under `dir` with `config`'s registries and bounds.
    pub fn open(
        dir: &std::path::Path,
        config: &ImagesConfig,
        store: Arc<Store>,
    ) -> Result<Self, NodeError> {
        let content = ContentStore::open(
            dir,
            ai2in_image::unpack::Limits {
                max_bytes: config.max_layer_bytes,
                max_files: config.max_layer_files,
            },
        )
        .map_err(|e| NodeError::Internal(format!("open the image store: {e}")))?;
        let client = RegistryClient::new(RegistryConfig {
            mirrors: config.mirrors.clone(),
            insecure: config.insecure.clone(),
            credentials: config.credentials.clone(),
        })
        .map_err(upstream)?;
        Ok(Images {
            store,
            budget: config.max_bytes,
            puller: Puller::new(client, Arc::new(content)),
            pulls: KeyedLocks::default(),
            cache: Mutex::new(HashMap::new()),
            in_flight: Default::default(),
        })
    }

    /// The content store.
    pub fn content_store(&self) -> &Arc<ContentStore> {
        self.puller.store()
    }

    /// What a create naming `name` starts from, pulling it for `tenant` when needed; also
    /// the name to record.
    pub async fn resolve(&self, tenant: &str, name: &str) -> Result<Arc<Content>, NodeError> {
        self.resolve_with(tenant, name, PullPolicy::IfMissing).await
    }

    /// As [`Images::resolve`]; with [`PullPolicy::Always`], a pulled image is pulled again
    /// (a service's redeploy: its tag may have moved). Ids, imports and snapshots name fixed
    /// content.
    pub async fn resolve_with(
        &self,
        tenant: &str,
        name: &str,
        policy: PullPolicy,
    ) -> Result<Arc<Content>, NodeError> {
        if name == ai2in_runtime::image::HOST_IMAGE {
            return Ok(Arc::new(Content::host()));
        }
        if name.starts_with("sha256:") {
            // A pool's key: content already here.
            return self.content(name);
        }
        let record = match (self.record(tenant, name)?, policy) {
            (Some(record), PullPolicy::IfMissing) => record,
            (Some(record), PullPolicy::Always) if record.source != "pull" => record,
            (None, _) if name.starts_with("img_") => {
                return Err(NodeError::NotFound(format!("no image {name}")));
            }
            _ => self.pull(tenant, name, policy, &|_| {}).await?.0,
        };
        // Least-recently-used order needs no finer grain than a minute: most creates
        // write nothing.
        let now = now_ms();
        if now - record.last_used_at_ms > TOUCH_EVERY_MS {
            self.store.touch_image(&record.id, now)?;
        }
        self.content(&record.digest)
    }

    /// The tenant's record for an id or a reference (normalised).
    fn record(&self, tenant: &str, key: &str) -> Result<Option<ImageRecord>, NodeError> {
        if key.starts_with("img_") {
            return Ok(self.store.image(tenant, key)?);
        }
        let normal = parse_ref(key)?.to_string();
        Ok(self.store.image(tenant, &normal)?)
    }

    /// The tenant's image `key`, or 404 (a key that is no reference names no image).
    fn existing(&self, tenant: &str, key: &str) -> Result<ImageRecord, NodeError> {
        match self.record(tenant, key) {
            Ok(Some(record)) => Ok(record),
            Ok(None) | Err(NodeError::Invalid(_)) => {
                Err(NodeError::NotFound(format!("no image {key}")))
            }
            Err(e) => Err(e),
        }
    }

    /// Content `digest`.
    pub fn content(&self, digest: &str) -> Result<Arc<Content>, NodeError> {
        if let Some(c) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(digest)
        {
            return Ok(c.clone());
        }
        let row = self
            .store
            .content(digest)?
            .ok_or_else(|| NodeError::NotFound(format!("no image content {digest}")))?;
        let layers: Vec<LayerInfo> = serde_json::from_str(&row.layers)
            .map_err(|e| NodeError::Internal(format!("stored layers of {digest}: {e}")))?;
        let settings: RunSettings = serde_json::from_str(&row.settings)
            .map_err(|e| NodeError::Internal(format!("stored settings of {digest}: {e}")))?;
        let store = self.content_store();
        let content = Arc::new(Content {
            digest: Some(digest.to_string()),
            layers: layers.iter().map(|l| store.layer_dir(&l.diff_id)).collect(),
            size_bytes: row.size_bytes,
            settings,
        });
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(digest.to_string(), content.clone());
        Ok(content)
    }

    /// Pulls `name` for `tenant` (or finds it): the record and whether it is new.
    pub async fn pull(
        &self,
        tenant: &str,
        name: &str,
        policy: PullPolicy,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<(ImageRecord, bool), NodeError> {
        let reference = parse_ref(name)?;
        let key = (tenant.to_string(), reference.to_string());
        let _guard = self.pulls.lock(key.clone()).await;
        let _counted = InFlight::new(&self.in_flight);
        // A pull that held the lock before may have fetched it meanwhile.
        let existing = self.store.image(tenant, &key.1)?;
        if let (Some(record), PullPolicy::IfMissing) = (&existing, policy) {
            return Ok((record.clone(), false));
        }
        let pulled = self.puller.pull(&reference, progress).await.map_err(|e| {
            tracing::warn!(image = %reference, error = %error_chain(&e), "pull failed");
            upstream(e)
        })?;
        let changed = existing.is_none_or(|r| r.digest != pulled.digest);
        if changed {
            tracing::info!(image = %reference, digest = %pulled.digest, "pulled");
        }
        let record = self.record_pulled(tenant, pulled, "pull")?;
        Ok((record, changed))
    }

    /// Imports the archive at `path` for `tenant` as `name` (or the archive's own name).
    pub async fn import(
        &self,
        tenant: &str,
        path: PathBuf,
        name: Option<&str>,
    ) -> Result<ImageRecord, NodeError> {
        let reference = name.map(parse_ref).transpose()?;
        let _counted = InFlight::new(&self.in_flight);
        let store = self.content_store().clone();
        let pulled = tokio::task::spawn_blocking(move || {
            ai2in_image::import_archive(&store, &path, reference.as_ref())
        })
        .await
        .map_err(|e| NodeError::Internal(e.to_string()))?
        .map_err(upstream)?;
        tracing::info!(image = %pulled.reference, digest = %pulled.digest, "imported");
        self.record_pulled(tenant, pulled, "import")
    }

    fn record_pulled(
        &self,
        tenant: &str,
        pulled: Pulled,
        source: &str,
    ) -> Result<ImageRecord, NodeError> {
        self.store.put_content(&ContentRecord {
            digest: pulled.digest.clone(),
            layers: to_json(&pulled.layers),
            size_bytes: pulled.layers.iter().map(|l| l.size_bytes).sum(),
            settings: to_json(&pulled.settings),
        })?;
        let now = now_ms();
        let record = self.store.put_image(&ImageRecord {
            id: ids::new_id("img"),
            tenant: tenant.to_string(),
            reference: pulled.reference,
            digest: pulled.digest,
            source: source.to_string(),
            created_at_ms: now,
            last_used_at_ms: now,
        })?;
        // A re-pull may have left the previous content unnamed.
        self.collect_garbage(1);
        if let Err(e) = self.enforce_budget(&record.digest) {
            tracing::warn!(error = %error_chain(&e), "the image store's budget was not enforced");
        }
        Ok(record)
    }

    /// Records, for `tenant` as `reference`, the image of a sandbox started from `base`:
    /// `base`'s layers with `take`'s layer (what the sandbox wrote) on top. `take` runs on a
    /// blocking thread, counted as a pull so that garbage collection leaves its layer alone
    /// until the content that names it is recorded.
    pub async fn snapshot(
        &self,
        tenant: &str,
        base: &Content,
        reference: &str,
        take: impl FnOnce(Arc<ContentStore>) -> Result<LayerInfo, NodeError> + Send + 'static,
    ) -> Result<ImageRecord, NodeError> {
        let reference = parse_ref(reference)?;
        let _counted = InFlight::new(&self.in_flight);
        let store = self.content_store().clone();
        let layer = tokio::task::spawn_blocking(move || take(store))
            .await
            .map_err(|e| NodeError::Internal(e.to_string()))??;
        let mut layers: Vec<LayerInfo> = match &base.digest {
            Some(digest) => {
                let row = self
                    .store
                    .content(digest)?
                    .ok_or_else(|| NodeError::Internal(format!("no content {digest}")))?;
                serde_json::from_str(&row.layers)
                    .map_err(|e| NodeError::Internal(format!("stored layers of {digest}: {e}")))?
            }
            None => Vec::new(),
        };
        layers.push(layer);
        let mut settings = base.settings.clone();
        settings.host |= base.digest.is_none();
        // The digest names this content as a manifest's would: its layers and settings.
        let digest = {
            use sha2::Digest;
            let body = serde_json::json!({ "layers": layers, "settings": settings });
            format!("sha256:{:x}", sha2::Sha256::digest(body.to_string()))
        };
        tracing::info!(image = %reference, digest = %digest, "snapshot taken");
        self.record_pulled(
            tenant,
            Pulled {
                reference: reference.to_string(),
                digest,
                layers,
                settings,
            },
            "snapshot",
        )
    }

    /// The image object of `record`.
    pub fn info(&self, record: &ImageRecord) -> Result<Image, NodeError> {
        let content = self.content(&record.digest)?;
        let s = &content.settings;
        Ok(Image {
            id: record.id.clone(),
            r#ref: record.reference.clone(),
            digest: record.digest.clone(),
            size_bytes: content.size_bytes,
            layers: content.layers.len() as u32,
            source: match record.source.as_str() {
                "import" => ImageSource::Import,
                "snapshot" => ImageSource::Snapshot,
                _ => ImageSource::Pull,
            },
            created_at: rfc3339(record.created_at_ms),
            last_used_at: rfc3339(record.last_used_at_ms),
            config: ImageConfig {
                env: s.env.iter().cloned().collect(),
                workdir: s.workdir.clone(),
                user: s.user.clone(),
                entrypoint: s.entrypoint.clone(),
                cmd: s.cmd.clone(),
                exposed_ports: s.exposed_ports.clone(),
            },
        })
    }

    /// `GET /v1/images/:id`.
    pub fn get(&self, tenant: &str, key: &str) -> Result<Image, NodeError> {
        let record = self.existing(tenant, key)?;
        self.info(&record)
    }

    /// `GET /v1/images`.
    pub fn list(&self, tenant: &str) -> Result<Vec<Image>, NodeError> {
        self.store
            .images(tenant)?
            .iter()
            .map(|r| self.info(r))
            .collect()
    }

    /// `DELETE /v1/images/:id`: 409 while a sandbox of the tenant runs it.
    pub fn delete(&self, tenant: &str, key: &str) -> Result<(), NodeError> {
        let record = self.existing(tenant, key)?;
        let users = self.store.sandboxes_using(tenant, &record.digest)?;
        if let Some(first) = users.first() {
            return Err(NodeError::Conflict(format!(
                "image {} is in use by sandbox {first}{}; delete {} first",
                record.reference,
                if users.len() > 1 {
                    format!(" and {} more", users.len() - 1)
                } else {
                    String::new()
                },
                if users.len() > 1 { "them" } else { "it" }
            )));
        }
        self.store.delete_image(&record.id)?;
        tracing::info!(image = %record.reference, tenant, "image deleted");
        self.collect_garbage(0);
        Ok(())
    }

    /// Bytes of the layers in the store, each counted once.
    fn stored_bytes(&self) -> Result<u64, NodeError> {
        let mut seen = HashMap::new();
        for (_, layers) in self.store.contents()? {
            for l in serde_json::from_str::<Vec<LayerInfo>>(&layers).unwrap_or_default() {
                seen.insert(l.diff_id, l.size_bytes);
            }
        }
        Ok(seen.values().sum())
    }

    /// Removes the least recently used pulled images that no sandbox runs (never `keep`, the
    /// image just pulled) until the store is within its budget.
    fn enforce_budget(&self, keep: &str) -> Result<(), NodeError> {
        // Another pull's layers may be in the store before its content row: wait for a
        // pull that runs alone.
        if self.budget == 0 || self.in_flight.load(std::sync::atomic::Ordering::SeqCst) > 1 {
            return Ok(());
        }
        while self.stored_bytes()? > self.budget {
            let mut victim = None;
            for r in self.store.all_images()? {
                if r.source == "pull"
                    && r.digest != keep
                    && self.store.sandboxes_using(&r.tenant, &r.digest)?.is_empty()
                {
                    victim = Some(r);
                    break;
                }
            }
            let Some(victim) = victim else {
                tracing::warn!(
                    budget = self.budget,
                    "the image store is over its budget and nothing can go"
                );
                return Ok(());
            };
            tracing::info!(image = %victim.reference, tenant = %victim.tenant, "image removed: over the store's budget");
            self.store.delete_image(&victim.id)?;
            self.try_collect_garbage()?;
        }
        Ok(())
    }

    /// Removes content no record names and no live sandbox runs, and layers no content has;
    /// `own` is how many of the pulls under way are the caller's (their content is recorded).
    pub fn collect_garbage(&self, own: usize) {
        if self.in_flight.load(std::sync::atomic::Ordering::SeqCst) > own {
            return;
        }
        if let Err(e) = self.try_collect_garbage() {
            tracing::warn!(error = %error_chain(&e), "image garbage collection failed");
        }
    }

    fn try_collect_garbage(&self) -> Result<(), NodeError> {
        let mut in_use: HashSet<String> = self.store.digests_in_use()?.into_iter().collect();
        // Content a create resolved and is starting a sandbox from is held beyond the cache
        // until its sandbox is stored (and counted above).
        in_use.extend(
            self.cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter(|(_, c)| Arc::strong_count(c) > 1)
                .map(|(d, _)| d.clone()),
        );
        let mut kept_layers = HashSet::new();
        for (digest, layers) in self.store.contents()? {
            if in_use.contains(&digest) {
                let layers: Vec<LayerInfo> = serde_json::from_str(&layers).unwrap_or_default();
                kept_layers.extend(layers.into_iter().map(|l| l.diff_id));
            } else {
                self.store.delete_content(&digest)?;
                self.cache
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&digest);
                let _ = self.content_store().remove_blob(&digest);
            }
        }
        let store = self.content_store();
        for diff_id in store
            .layers()
            .map_err(|e| NodeError::Internal(e.to_string()))?
        {
            if !kept_layers.contains(&diff_id) {
                if let Err(e) = store.remove_layer(&diff_id) {
                    tracing::warn!(layer = %diff_id, error = %e, "could not remove a layer");
                }
            }
        }
        Ok(())
    }
}

/// A value of a JSON column of the store.
fn to_json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("plain data serializes")
}

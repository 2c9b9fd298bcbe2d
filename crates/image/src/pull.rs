//! A pull: the manifest (an index resolved to linux/amd64), the config, then every layer the
//! store lacks, fetched at once, each checked against its digest while it streams into the
//! unpacker. One fetch per layer at a time on the node: a second pull needing the same layer
//! waits for the first and finds it in the store.

use std::io::{self, Read};
use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::future::try_join_all;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::error::ImageError;
use crate::layer::{digest_of, sha256, store_layer};
use crate::locks::KeyedLocks;
use crate::manifest::{self, Descriptor, ImageConfigFile, Parsed};
use crate::reference::Reference;
use crate::registry::RegistryClient;
use crate::store::{ContentStore, LayerInfo, Pulled};

/// Progress of one layer's fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The layer's digest.
    pub layer: String,
    /// Compressed bytes fetched.
    pub done_bytes: u64,
    /// Its compressed size.
    pub total_bytes: u64,
}

/// Pulls images into a content store.
pub struct Puller {
    client: RegistryClient,
    store: Arc<ContentStore>,
    /// One fetch per layer at a time.
    fetching: KeyedLocks<String>,
}

/// Chunks of a blob in flight between the download and the unpacker.
const CHANNEL_CHUNKS: usize = 64;

impl Puller {
    /// A puller fetching with `client` into `store`.
    pub fn new(client: RegistryClient, store: Arc<ContentStore>) -> Self {
        Puller {
            client,
            store,
            fetching: KeyedLocks::default(),
        }
    }

    /// The store layers go to.
    pub fn store(&self) -> &Arc<ContentStore> {
        &self.store
    }

    /// Pulls `r`, reporting each layer's progress to `progress`.
    pub async fn pull(
        &self,
        r: &Reference,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<Pulled, ImageError> {
        let (digest, manifest) = self.resolve(r).await?;
        let config_body = self.client.small_blob(r, &manifest.config.digest).await?;
        if sha256(&config_body) != manifest.config.digest {
            return Err(ImageError::DigestMismatch {
                what: "the image config".into(),
                digest: manifest.config.digest.clone(),
            });
        }
        let config =
            ImageConfigFile::parse(&config_body).map_err(|why| self.client.garbage(r, why))?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(self.client.garbage(
                r,
                format!(
                    "the image's manifest has {} layers but its config {}",
                    manifest.layers.len(),
                    config.rootfs.diff_ids.len()
                ),
            ));
        }
        let layers = try_join_all(
            manifest
                .layers
                .iter()
                .zip(&config.rootfs.diff_ids)
                .map(|(layer, diff_id)| self.layer(r, layer, diff_id, progress)),
        )
        .await?;
        self.store.put_blob(&manifest.config.digest, &config_body)?;
        Ok(Pulled {
            reference: r.to_string(),
            digest,
            layers,
            settings: config.settings(),
        })
    }

    /// The manifest of `r` for linux/amd64 and its digest.
    async fn resolve(&self, r: &Reference) -> Result<(String, manifest::Manifest), ImageError> {
        let mut wanted = r.manifest_ref().to_string();
        // An index leads to one more manifest; nothing legitimate nests deeper.
        for _ in 0..2 {
            let fetched = self.client.manifest(r, &wanted).await?;
            let digest = sha256(&fetched.body);
            if wanted.starts_with("sha256:") && digest != wanted {
                return Err(ImageError::DigestMismatch {
                    what: format!("the manifest of {r}"),
                    digest: wanted,
                });
            }
            match manifest::parse(&fetched.body, fetched.content_type.as_deref())
                .map_err(|why| self.client.garbage(r, why))?
            {
                Parsed::Manifest(m) => {
                    self.store.put_blob(&digest, &fetched.body)?;
                    return Ok((digest, m));
                }
                Parsed::Index(entries) => {
                    let entry = manifest::pick_platform(&entries).ok_or_else(|| {
                        ImageError::NotFound(format!(
                            "image {r} has no linux/amd64 variant (this node's platform)"
                        ))
                    })?;
                    crate::reference::check_digest(&entry.digest)
                        .map_err(|why| self.client.garbage(r, why))?;
                    wanted = entry.digest.clone();
                }
            }
        }
        Err(self
            .client
            .garbage(r, "its index points at another index".into()))
    }

    /// Fetches and unpacks one layer unless the store has it.
    async fn layer(
        &self,
        r: &Reference,
        layer: &Descriptor,
        diff_id: &str,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<LayerInfo, ImageError> {
        crate::reference::check_digest(&layer.digest).map_err(|why| self.client.garbage(r, why))?;
        let report = |done_bytes| {
            progress(Progress {
                layer: layer.digest.clone(),
                done_bytes,
                total_bytes: layer.size,
            })
        };
        let _guard = self.fetching.lock(diff_id.to_string()).await;
        if let Some(info) = self.store.layer(diff_id) {
            report(layer.size);
            return Ok(info);
        }
        report(0);
        let response = self.client.blob(r, &layer.digest).await?;
        let (tx, rx) = mpsc::channel::<io::Result<bytes::Bytes>>(CHANNEL_CHUNKS);
        let store = self.store.clone();
        let (digest, diff) = (layer.digest.clone(), diff_id.to_string());
        let unpacking = tokio::task::spawn_blocking(move || {
            store_layer(&store, ChannelReader::new(rx), &digest, &diff)
        });
        let mut hasher = Sha256::new();
        let mut done = 0u64;
        let mut last_report = 0u64;
        let mut stream = response.bytes_stream();
        let fetched: Result<(), ImageError> = async {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| ImageError::Registry {
                    registry: r.registry.clone(),
                    why: format!("the download of layer {} broke off: {e}", layer.digest),
                })?;
                done += chunk.len() as u64;
                if done > layer.size {
                    return Err(self.client.garbage(
                        r,
                        format!("layer {} is longer than its manifest says", layer.digest),
                    ));
                }
                hasher.update(&chunk);
                if tx.send(Ok(chunk)).await.is_err() {
                    // The unpacker stopped: its error is the one to report.
                    return Ok(());
                }
                if done - last_report >= 1 << 20 {
                    last_report = done;
                    report(done);
                }
            }
            if done != layer.size {
                return Err(self.client.garbage(
                    r,
                    format!("layer {} is shorter than its manifest says", layer.digest),
                ));
            }
            if digest_of(hasher) != layer.digest {
                return Err(ImageError::DigestMismatch {
                    what: format!("layer {}", layer.digest),
                    digest: layer.digest.clone(),
                });
            }
            Ok(())
        }
        .await;
        // The unpacker sees an error instead of the end, so it publishes nothing.
        if let Err(e) = &fetched {
            let _ = tx.send(Err(io::Error::other(e.to_string()))).await;
        }
        drop(tx);
        let unpacked = unpacking
            .await
            .map_err(|e| io::Error::other(format!("the unpacker panicked: {e}")))?;
        fetched?;
        let info = unpacked?;
        report(layer.size);
        Ok(info)
    }
}

/// A blocking reader over chunks sent from the async side.
struct ChannelReader<T> {
    rx: mpsc::Receiver<io::Result<T>>,
    current: T,
    pos: usize,
}

impl<T: AsRef<[u8]> + Default> ChannelReader<T> {
    fn new(rx: mpsc::Receiver<io::Result<T>>) -> Self {
        ChannelReader {
            rx,
            current: T::default(),
            pos: 0,
        }
    }
}

impl<T: AsRef<[u8]> + Default> Read for ChannelReader<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.as_ref().len() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => {
                    self.current = chunk;
                    self.pos = 0;
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let rest = &self.current.as_ref()[self.pos..];
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}

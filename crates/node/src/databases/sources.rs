//! What database servers start from: the host's packages (the `host` image), or an engine
//! image named by `[databases.ENGINE] image`, pulled for the node's own tenant and probed
//! once in a sandbox of it (which versions it has, and whether it has what the servers'
//! commands need); and, for PostgreSQL and MySQL, a template image made once per engine,
//! version and image: a data directory made in a sandbox of what the engine starts from and
//! snapshotted, copied by every new database.

use std::sync::Arc;

use ai2in_api::{CreateSandboxRequest, Egress, Network, ShellRequest, SnapshotRequest};

use super::engines::{Engine, Installed};
use super::registry::Source;
use crate::auth::{NODE_KEY, Principal, Scope};
use crate::error::NodeError;
use crate::images::Content;
use crate::node::Node;

/// The tenant of what the node makes for itself (engine images, template images): no key
/// can name it.
const SYSTEM_TENANT: &str = "ai2in:system";
/// Changes when the templates' recipes do: older templates are then made again.
const TEMPLATE_REVISION: u32 = 1;

fn system() -> Principal {
    Principal {
        key_id: NODE_KEY.into(),
        tenant: SYSTEM_TENANT.into(),
        scopes: vec![Scope::Admin],
    }
}

impl Node {
    /// Pulls and probes the engine images in the background as the node starts, so that
    /// the first create of an engine does not wait for its image.
    pub(crate) fn prepare_engine_images(&self) {
        let node = self.clone();
        tokio::spawn(async move {
            node.served_engines().await;
        });
    }

    /// Every engine this node serves, in [`Engine::ALL`]'s order. An engine image that
    /// cannot be used is left out (its creates say why).
    pub(super) async fn served_engines(&self) -> Vec<Installed> {
        let mut served = Vec::new();
        for engine in Engine::ALL {
            if let Some(Ok(installed)) = self.served_engine(engine).await {
                served.push(installed);
            }
        }
        served
    }

    /// Engine `engine` as this node serves it, `None` if it does not; probes its image the
    /// first time (503 when the image cannot be pulled or lacks what servers need).
    pub(super) async fn served_engine(
        &self,
        engine: Engine,
    ) -> Option<Result<Installed, NodeError>> {
        let source = self.databases().sources.iter().find(|s| match s {
            Source::Host(i) => i.engine == engine,
            Source::Image { engine: e, .. } => *e == engine,
        })?;
        Some(match source {
            Source::Host(installed) => Ok(installed.clone()),
            Source::Image {
                reference, probed, ..
            } => {
                let mut probed = probed.lock().await;
                match &*probed {
                    Some(installed) => Ok(installed.clone()),
                    None => {
                        let found = self.probe_image(engine, reference).await;
                        match &found {
                            Ok(installed) => {
                                tracing::info!(engine = engine.as_str(), image = %reference, versions = ?installed.versions, "engine image ready");
                                *probed = Some(installed.clone());
                            }
                            Err(e) => {
                                tracing::warn!(engine = engine.as_str(), image = %reference, error = %e, "engine image not usable")
                            }
                        }
                        found
                    }
                }
            }
        })
    }

    /// Pulls `reference` and runs `engine`'s probe in a sandbox of it.
    async fn probe_image(&self, engine: Engine, reference: &str) -> Result<Installed, NodeError> {
        let unusable = |why: String| {
            NodeError::Unavailable(format!(
                "the {} image {reference} ([databases.{}] image) cannot be used: {why}",
                engine.as_str(),
                engine.as_str()
            ))
        };
        let content = self
            .images()
            .resolve(SYSTEM_TENANT, reference)
            .await
            .map_err(|e| unusable(e.to_string()))?;
        let base = self.get_image(&system(), reference)?.id;
        let request = ShellRequest {
            cmd: engine.probe(),
            timeout_ms: Some(30_000),
            user: Some("root".into()),
            ..Default::default()
        };
        let out = self.in_system_sandbox(&base, request).await?;
        let versions = engine
            .versions(&out)
            .map_err(|why| unusable(format!("it has {why}")))?;
        Ok(Installed {
            engine,
            versions,
            image: Some(reference.to_string()),
            content,
            base,
        })
    }

    /// What a server of `engine` `version` starts from: what `installed` names, or a
    /// template image made once from it (kept in the image store under the node's own
    /// tenant).
    pub(super) async fn database_template(
        &self,
        installed: &Installed,
        version: &str,
    ) -> Result<Arc<Content>, NodeError> {
        let engine = installed.engine;
        let Some(cmd) = engine.template_cmd(version) else {
            return Ok(installed.content.clone());
        };
        // One template per engine image too (its digest: a moved tag is another image).
        let key = match &installed.content.digest {
            None => format!("{}-{version}", engine.as_str()),
            Some(digest) => {
                let hex = digest.trim_start_matches("sha256:");
                format!(
                    "{}-{version}-{}",
                    engine.as_str(),
                    &hex[..hex.len().min(12)]
                )
            }
        };
        let mut templates = self.databases().templates.lock().await;
        if let Some(content) = templates.get(&key) {
            return Ok(content.clone());
        }
        let reference = format!(
            "localhost/ai2in/{}-template:{TEMPLATE_REVISION}",
            key.to_lowercase()
        );
        let content = match self.get_image(&system(), &reference) {
            Ok(image) => self.images().content(&image.digest)?,
            Err(NodeError::NotFound(_)) => {
                let started = std::time::Instant::now();
                let content = self
                    .make_template(&installed.base, &cmd, &reference)
                    .await?;
                tracing::info!(template = %reference, ms = started.elapsed().as_millis() as u64, "made a database template");
                content
            }
            Err(e) => return Err(e),
        };
        templates.insert(key, content.clone());
        Ok(content)
    }

    /// Runs `cmd` as root in a new sandbox of image `base` and snapshots it as `reference`.
    async fn make_template(
        &self,
        base: &str,
        cmd: &str,
        reference: &str,
    ) -> Result<Arc<Content>, NodeError> {
        let request = ShellRequest {
            cmd: cmd.to_string(),
            timeout_ms: Some(120_000),
            user: Some("root".into()),
            ..Default::default()
        };
        let system = system();
        let sandbox = self.system_sandbox(base).await?;
        let made = async {
            let done = self.shell(&system, &sandbox, request).await?;
            if done.exit_code != Some(0) {
                return Err(NodeError::Internal(format!(
                    "making the database template failed: {}",
                    done.stderr.trim()
                )));
            }
            let snapshot = SnapshotRequest {
                r#ref: Some(reference.to_string()),
            };
            let image = self.snapshot_sandbox(&system, &sandbox, snapshot).await?;
            self.images().content(&image.digest)
        }
        .await;
        self.end_system_sandbox(&sandbox).await;
        made
    }

    /// Runs `request` in a new sandbox of image `base` (deleted after): its output, or what
    /// failed.
    async fn in_system_sandbox(
        &self,
        base: &str,
        request: ShellRequest,
    ) -> Result<String, NodeError> {
        let sandbox = self.system_sandbox(base).await?;
        let done = self.shell(&system(), &sandbox, request).await;
        self.end_system_sandbox(&sandbox).await;
        let done = done?;
        if done.exit_code != Some(0) {
            return Err(NodeError::Internal(format!(
                "a command in a sandbox of {base} failed: {}",
                done.stderr.trim()
            )));
        }
        Ok(done.stdout)
    }

    /// A sandbox of image `base` for the node's own work, with no network.
    async fn system_sandbox(&self, base: &str) -> Result<String, NodeError> {
        let request = CreateSandboxRequest {
            image: Some(base.to_string()),
            network: Some(Network {
                egress: Egress::Deny,
            }),
            ..Default::default()
        };
        Ok(self.create_sandbox(&system(), request).await?.id)
    }

    async fn end_system_sandbox(&self, id: &str) {
        if let Err(e) = self.delete_sandbox(&system(), id).await {
            tracing::warn!(sandbox = %id, error = %e, "could not delete the node's own sandbox");
        }
    }
}

//! A node's membership of a cluster (`ai2in serve --cluster`): it trusts the gateways, reports
//! its capacity and liveness every second, and keeps the cluster's record of what it holds
//! true: what ended on it is forgotten, what was deleted while it was away is deleted.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ai2in_cluster::{Cluster, Heartbeat, Kind};
use ai2in_node::{Node, NodeError, Principal, Scope};
use anyhow::Context;

/// A node in a cluster; its tasks run for the node's life.
pub struct Member {
    node: Node,
    cluster: Cluster,
    /// Where gateways reach the node, `host:port`.
    advertise: String,
    /// Set while deletes made during an absence are being done (one pass at a time).
    reconciling: AtomicBool,
}

impl Member {
    /// Joins the cluster at `url`: from now on the node serves only the cluster's gateways.
    /// What ended while it was away is forgotten, what was deleted meanwhile is deleted, and
    /// it reports every second (reconnecting by itself when PostgreSQL goes and comes back).
    pub async fn join(node: &Node, url: &str, advertise: String) -> anyhow::Result<()> {
        let cluster = Cluster::connect(url)
            .await
            .context("join the cluster (--cluster)")?;
        node.trust_gateways(cluster.secret().await?);
        let member = Arc::new(Member {
            node: node.clone(),
            cluster,
            advertise,
            reconciling: AtomicBool::new(false),
        });
        member.forget_ended().await?;
        let deleted = member.cluster.heartbeat(&member.heartbeat()?).await?;
        tracing::info!(node = node.id(), "joined the cluster");
        if deleted {
            member.clone().delete_what_was_deleted();
        }
        tokio::spawn(member.report());
        Ok(())
    }

    fn heartbeat(&self) -> Result<Heartbeat, NodeError> {
        let (capacity, used) = self.node.load()?;
        Ok(Heartbeat {
            id: self.node.id().to_string(),
            address: self.advertise.clone(),
            capacity,
            used,
        })
    }

    /// Reports every [`HEARTBEAT`](ai2in_cluster::HEARTBEAT), for ever.
    async fn report(self: Arc<Self>) {
        let mut tick = tokio::time::interval(ai2in_cluster::HEARTBEAT);
        let mut failing = false;
        loop {
            tick.tick().await;
            let sent = match self.heartbeat() {
                Ok(beat) => self
                    .cluster
                    .heartbeat(&beat)
                    .await
                    .map_err(anyhow::Error::from),
                Err(e) => Err(e.into()),
            };
            match sent {
                Err(e) if !failing => {
                    tracing::warn!(error = %e, "could not report to the cluster; retrying every second");
                    failing = true;
                }
                Err(_) => {}
                Ok(deleted) => {
                    if failing {
                        tracing::info!("reporting to the cluster again");
                        failing = false;
                    }
                    if deleted {
                        self.clone().delete_what_was_deleted();
                    }
                }
            }
        }
    }

    /// Deletes, in the background, what the cluster deleted while this node was down or cut
    /// off, then forgets it (unless a pass is running already).
    fn delete_what_was_deleted(self: Arc<Self>) {
        if self.reconciling.swap(true, Ordering::AcqRel) {
            return;
        }
        tokio::spawn(async move {
            if let Err(e) = self.delete_pass().await {
                tracing::warn!(error = %e, "could not do the deletes made while the node was away");
            }
            self.reconciling.store(false, Ordering::Release);
        });
    }

    async fn delete_pass(&self) -> anyhow::Result<()> {
        for (id, kind, tenant) in self.cluster.deleted_on(self.node.id()).await? {
            let caller = Principal {
                key_id: "cluster".into(),
                tenant,
                scopes: vec![
                    Scope::SandboxesWrite,
                    Scope::DatabasesWrite,
                    Scope::HostingWrite,
                    Scope::VolumesWrite,
                ],
            };
            let node = &self.node;
            let done = match kind {
                Kind::Sandbox => node.delete_sandbox(&caller, &id).await,
                Kind::Database => node.delete_database(&caller, &id).await,
                Kind::Service => node.delete_service(&caller, &id).await,
                Kind::Volume => node.delete_volume(&caller, &id).await,
            };
            match done {
                Ok(()) | Err(NodeError::NotFound(_)) => {
                    tracing::info!(
                        id,
                        "deleted: the cluster deleted it while the node was away"
                    );
                    self.cluster.unplace(&id).await?;
                }
                Err(e) => {
                    tracing::warn!(id, error = %e, "a delete made while the node was away failed; retrying")
                }
            }
        }
        Ok(())
    }

    /// Keeps the cluster's record of this node's sandboxes true: those that ended while the
    /// node was away (or down) are forgotten now, and each that ends from now on as it ends
    /// (retried while PostgreSQL does not answer), which gives its tenant's quota the room
    /// back.
    async fn forget_ended(&self) -> anyhow::Result<()> {
        let mut ends = self
            .node
            .watch_ends()
            .context("the node already reports its sandboxes' ends")?;
        let live: HashSet<String> = self.node.live_sandbox_ids()?.into_iter().collect();
        for id in self.cluster.sandboxes_on(self.node.id()).await? {
            if !live.contains(&id) {
                self.cluster.unplace(&id).await?;
            }
        }
        let cluster = self.cluster.clone();
        tokio::spawn(async move {
            let mut pending: Vec<String> = Vec::new();
            loop {
                if pending.is_empty() {
                    match ends.recv().await {
                        Some(id) => pending.push(id),
                        None => return,
                    }
                } else if let Ok(next) =
                    tokio::time::timeout(ai2in_cluster::HEARTBEAT, ends.recv()).await
                {
                    let Some(id) = next else { return };
                    pending.push(id);
                }
                let mut failed = Vec::new();
                for id in pending.drain(..) {
                    if let Err(e) = cluster.unplace(&id).await {
                        tracing::warn!(sandbox = %id, error = %e, "could not tell the cluster a sandbox ended; retrying");
                        failed.push(id);
                    }
                }
                pending = failed;
            }
        });
        Ok(())
    }
}

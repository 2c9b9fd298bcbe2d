//! The node's side of a cluster: whom it trusts (gateways, by the cluster's secret), what it
//! reports (capacity and what is taken), and whether it takes new work (draining).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use ai2in_api::{NodeInfo, NodeResources, NodeStatus};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::auth::{Principal, Scope, constant_time_eq};
use crate::error::NodeError;
use crate::node::Node;
use crate::pool::POOL_TENANT;
use crate::time::{now_ms, rfc3339};

/// A node's standing: trusted gateways, draining.
#[derive(Default)]
pub(crate) struct Membership {
    /// In a cluster, the secret gateways present; then only they are served.
    secret: OnceLock<String>,
    /// Set by a drain: creates are refused.
    draining: AtomicBool,
    /// In a cluster, where the ids of sandboxes that ended go (the cluster forgets them).
    ended: OnceLock<UnboundedSender<String>>,
}

impl Membership {
    /// Tells the cluster, if any, that sandbox `id` ended.
    pub(crate) fn ended(&self, id: &str) {
        if let Some(tx) = self.ended.get() {
            let _ = tx.send(id.to_string());
        }
    }
}

impl Node {
    /// Makes this node a cluster member: from now on it serves only callers presenting
    /// `secret` (the gateways), with the principal they authenticated, and no API key of its
    /// own.
    pub fn trust_gateways(&self, secret: String) {
        let _ = self.membership().secret.set(secret);
    }

    /// The ids of the sandboxes that end from now on, whatever ended them (a delete, their
    /// lifetime, their service): the cluster forgets where they were. Once per node.
    pub fn watch_ends(&self) -> Option<UnboundedReceiver<String>> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.membership().ended.set(tx).ok().map(|()| rx)
    }

    /// The ids of the sandboxes that have not ended (the warm pool's too).
    pub fn live_sandbox_ids(&self) -> Result<Vec<String>, NodeError> {
        Ok(self
            .store()
            .live_sandboxes(None)?
            .into_iter()
            .map(|r| r.id)
            .collect())
    }

    /// Whether the node serves only gateways.
    pub fn is_cluster_member(&self) -> bool {
        self.membership().secret.get().is_some()
    }

    /// The principal a gateway authenticated: `principal` is `<key id> <tenant>
    /// <scope>,<scope>…`, believed only with the cluster's `secret`.
    pub fn authenticate_gateway(
        &self,
        secret: Option<&str>,
        principal: Option<&str>,
    ) -> Result<Principal, NodeError> {
        let expected = self.membership().secret.get().map(String::as_bytes);
        let trusted = match (expected, secret) {
            (Some(expected), Some(given)) => constant_time_eq(expected, given.as_bytes()),
            _ => false,
        };
        if !trusted {
            return Err(NodeError::Unauthenticated(
                "this node belongs to a cluster and serves only its gateways; call a gateway"
                    .into(),
            ));
        }
        let mut parts = principal.unwrap_or_default().split(' ');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(key_id), Some(tenant), Some(scopes), None) if !tenant.is_empty() => {
                Ok(Principal {
                    key_id: key_id.into(),
                    tenant: tenant.into(),
                    scopes: scopes.split(',').filter_map(Scope::parse).collect(),
                })
            }
            _ => Err(NodeError::Unauthenticated(
                "the gateway sent no principal; send `key_id tenant scopes`".into(),
            )),
        }
    }

    /// What the node holds at most and what is taken (the warm pool not counted: a create
    /// claims from it).
    pub fn load(&self) -> Result<(NodeResources, NodeResources), NodeError> {
        let capacity = &self.config().capacity;
        let all = self.store().usage(None)?;
        let pooled = self.store().usage(Some(POOL_TENANT))?;
        Ok((
            NodeResources {
                sandboxes: capacity.sandboxes,
                memory_bytes: capacity.memory_bytes,
                cpu: capacity.cpu,
            },
            NodeResources {
                sandboxes: all.sandboxes.saturating_sub(pooled.sandboxes),
                memory_bytes: all.memory_bytes.saturating_sub(pooled.memory_bytes),
                cpu: (all.cpu - pooled.cpu).max(0.0),
            },
        ))
    }

    /// This node as `GET /v1/nodes` lists it (admin).
    pub fn node_info(&self, caller: &Principal) -> Result<NodeInfo, NodeError> {
        caller.require(Scope::Admin)?;
        let (capacity, used) = self.load()?;
        Ok(NodeInfo {
            id: self.node_id().to_string(),
            address: self
                .api_address()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            status: if self.membership().draining.load(Ordering::Relaxed) {
                NodeStatus::Draining
            } else {
                NodeStatus::Ready
            },
            capacity,
            used,
            last_seen_at: rfc3339(now_ms()),
        })
    }

    /// Stops this node taking new sandboxes, databases and services (admin); what it holds
    /// keeps running.
    pub fn drain(&self, caller: &Principal, id: &str) -> Result<NodeInfo, NodeError> {
        caller.require(Scope::Admin)?;
        if id != self.node_id() {
            return Err(NodeError::NotFound(format!("no node {id}")));
        }
        self.membership().draining.store(true, Ordering::Relaxed);
        tracing::info!("draining: no new sandboxes, databases or services");
        self.node_info(caller)
    }

    /// Ok unless the node is draining.
    pub(crate) fn check_taking_work(&self) -> Result<(), NodeError> {
        if self.membership().draining.load(Ordering::Relaxed) {
            return Err(NodeError::Capacity(format!(
                "node {} is draining and takes nothing new; try another node",
                self.node_id()
            )));
        }
        Ok(())
    }
}

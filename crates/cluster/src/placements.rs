use ai2in_api::NodeResources;

use crate::nodes::down_after;
use crate::{Cluster, ClusterError};

/// What a placement places.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `sbx_…`.
    Sandbox,
    /// `db_…`.
    Database,
    /// `svc_…`.
    Service,
    /// `vol_…`.
    Volume,
}

impl Kind {
    /// The kind named `name` in the table.
    pub fn parse(name: &str) -> Option<Kind> {
        [Kind::Sandbox, Kind::Database, Kind::Service, Kind::Volume]
            .into_iter()
            .find(|k| k.as_str() == name)
    }

    /// The prefix of its ids.
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Sandbox => "sbx_",
            Kind::Database => "db_",
            Kind::Service => "svc_",
            Kind::Volume => "vol_",
        }
    }

    /// Its name in the table and in sentences.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Sandbox => "sandbox",
            Kind::Database => "database",
            Kind::Service => "service",
            Kind::Volume => "volume",
        }
    }
}

/// Where something lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The node's id.
    pub node_id: String,
    /// The tenant it belongs to.
    pub tenant: String,
}

/// A node chosen for something new, its room reserved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reserved {
    /// The node's id.
    pub node_id: String,
    /// Its API address.
    pub address: String,
}

impl Cluster {
    /// Chooses a node for `need` of `tenant` and reserves the room on it, in one statement:
    /// among the nodes that are ready, up and have the room (and are not in `skip`: those
    /// that refused it already), the one holding the fewest of the tenant's things, then the
    /// one with the most room left. Concurrent reservations skip a node another has locked,
    /// so they spread instead of queueing (unless `wait`: then it waits for the best node's
    /// lock, for when every node with room is being reserved). `only` restricts the choice
    /// to one node (the one holding the volumes a sandbox mounts). The node's next heartbeat
    /// replaces the reserved figures with what it really holds. `None` when no node has
    /// room.
    pub async fn reserve(
        &self,
        need: &NodeResources,
        tenant: &str,
        skip: &[String],
        only: Option<&str>,
        wait: bool,
    ) -> Result<Option<Reserved>, ClusterError> {
        let sql = format!(
            "UPDATE ai2in_nodes SET used_sandboxes = used_sandboxes + 1, \
                 used_memory = used_memory + $1, used_cpu = used_cpu + $2 \
                 WHERE id = (SELECT n.id FROM ai2in_nodes n \
                   WHERE NOT n.draining AND n.last_seen >= now() - make_interval(secs => $3) \
                   AND n.used_sandboxes < n.capacity_sandboxes \
                   AND n.used_memory + $1 <= n.capacity_memory \
                   AND n.used_cpu + $2 <= n.capacity_cpu \
                   AND n.id <> ALL($4) AND ($6::text IS NULL OR n.id = $6) \
                   ORDER BY (SELECT count(*) FROM ai2in_placements p \
                             WHERE p.node_id = n.id AND p.tenant = $5), \
                     (n.capacity_sandboxes - n.used_sandboxes)::float8 \
                       / greatest(n.capacity_sandboxes, 1) DESC, n.id \
                   LIMIT 1 FOR UPDATE {}) \
                 RETURNING id, address",
            if wait { "" } else { "SKIP LOCKED" }
        );
        let row = self
            .client()
            .await?
            .query_opt(
                &sql,
                &[
                    &(need.memory_bytes as i64),
                    &need.cpu,
                    &down_after(),
                    &skip,
                    &tenant,
                    &only,
                ],
            )
            .await?;
        Ok(row.map(|r| Reserved {
            node_id: r.get(0),
            address: r.get(1),
        }))
    }

    /// Records that `id` of `tenant` lives on `node_id`.
    pub async fn place(
        &self,
        id: &str,
        kind: Kind,
        tenant: &str,
        node_id: &str,
    ) -> Result<(), ClusterError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO ai2in_placements (id, kind, tenant, node_id) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (id) DO NOTHING",
                &[&id, &kind.as_str(), &tenant, &node_id],
            )
            .await?;
        Ok(())
    }

    /// Forgets where `id` lived (it was deleted or ended) and gives its tenant's quota the
    /// room back, in one statement; a second call for the same id changes nothing.
    pub async fn unplace(&self, id: &str) -> Result<(), ClusterError> {
        self.client()
            .await?
            .execute(
                "WITH gone AS (DELETE FROM ai2in_placements WHERE id = $1 RETURNING tenant, kind) \
                 UPDATE ai2in_usage u SET count = greatest(u.count - 1, 0) FROM gone \
                 WHERE u.tenant = gone.tenant AND u.kind = gone.kind",
                &[&id],
            )
            .await?;
        Ok(())
    }

    /// Records that `id` was deleted while its node was down: it is gone from the cluster's
    /// routes now, and its node deletes it when it is back (then forgets it, which gives the
    /// quota back). False when there is no such thing.
    pub async fn delete_later(&self, id: &str) -> Result<bool, ClusterError> {
        let n = self
            .client()
            .await?
            .execute(
                "UPDATE ai2in_placements SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL",
                &[&id],
            )
            .await?;
        Ok(n > 0)
    }

    /// What was deleted on `node_id` while it was away: (id, kind, tenant).
    pub async fn deleted_on(
        &self,
        node_id: &str,
    ) -> Result<Vec<(String, Kind, String)>, ClusterError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, kind, tenant FROM ai2in_placements \
                 WHERE node_id = $1 AND deleted_at IS NOT NULL",
                &[&node_id],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| Some((r.get(0), Kind::parse(r.get(1))?, r.get(2))))
            .collect())
    }

    /// Counts one more `kind` for `tenant` when it holds fewer than `quota`, in one statement
    /// (concurrent ones queue on the tenant's row and each sees the last count: two gateways
    /// cannot both admit past the quota). False when the quota is reached.
    pub async fn admit(&self, tenant: &str, kind: Kind, quota: u64) -> Result<bool, ClusterError> {
        if quota == 0 {
            return Ok(false);
        }
        let row = self
            .client()
            .await?
            .query_opt(
                "INSERT INTO ai2in_usage (tenant, kind, count) VALUES ($1, $2, 1) \
                 ON CONFLICT (tenant, kind) DO UPDATE SET count = ai2in_usage.count + 1 \
                 WHERE ai2in_usage.count < $3 RETURNING count",
                &[
                    &tenant,
                    &kind.as_str(),
                    &(quota.min(i64::MAX as u64) as i64),
                ],
            )
            .await?;
        Ok(row.is_some())
    }

    /// Gives back what [`admit`](Self::admit) counted, for a create that failed.
    pub async fn release(&self, tenant: &str, kind: Kind) -> Result<(), ClusterError> {
        self.client()
            .await?
            .execute(
                "UPDATE ai2in_usage SET count = greatest(count - 1, 0) WHERE tenant = $1 AND kind = $2",
                &[&tenant, &kind.as_str()],
            )
            .await?;
        Ok(())
    }

    /// Counts every tenant's things again from where they live (a gateway that died between
    /// counting a create and placing it left one too many).
    pub async fn recount(&self) -> Result<(), ClusterError> {
        self.client()
            .await?
            .batch_execute(
                "UPDATE ai2in_usage u SET count = (SELECT count(*) FROM ai2in_placements p \
                 WHERE p.tenant = u.tenant AND p.kind = u.kind)",
            )
            .await?;
        Ok(())
    }

    /// The sandboxes placed on `node_id`.
    pub async fn sandboxes_on(&self, node_id: &str) -> Result<Vec<String>, ClusterError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id FROM ai2in_placements WHERE node_id = $1 AND kind = 'sandbox'",
                &[&node_id],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Where `id` lives.
    pub async fn placement(&self, id: &str) -> Result<Option<Placement>, ClusterError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT node_id, tenant FROM ai2in_placements WHERE id = $1 AND deleted_at IS NULL",
                &[&id],
            )
            .await?;
        Ok(row.map(|r| Placement {
            node_id: r.get(0),
            tenant: r.get(1),
        }))
    }
}

use ai2in_api::{NodeInfo, NodeResources, NodeStatus};
use tokio_postgres::Row;

use crate::{Cluster, ClusterError, DOWN_AFTER};

/// What a node reports every [`HEARTBEAT`](crate::HEARTBEAT).
#[derive(Debug, Clone)]
pub struct Heartbeat {
    /// The node's id.
    pub id: String,
    /// Where gateways reach its API, `host:port`.
    pub address: String,
    /// What it holds at most.
    pub capacity: NodeResources,
    /// What is taken (its warm pool not counted: a create claims from it).
    pub used: NodeResources,
}

/// The columns of a node as [`NodeInfo`]; `$1` is the down threshold in seconds.
const SELECT: &str = "SELECT id, address, \
     CASE WHEN last_seen < now() - make_interval(secs => $1) THEN 'down' \
          WHEN draining THEN 'draining' ELSE 'ready' END, \
     capacity_sandboxes, capacity_memory, capacity_cpu, used_sandboxes, used_memory, used_cpu, \
     to_char(last_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') \
     FROM ai2in_nodes";

fn node(row: &Row) -> NodeInfo {
    let status = match row.get::<_, &str>(2) {
        "down" => NodeStatus::Down,
        "draining" => NodeStatus::Draining,
        _ => NodeStatus::Ready,
    };
    let resources = |at: usize| NodeResources {
        sandboxes: row.get::<_, i64>(at).max(0) as u64,
        memory_bytes: row.get::<_, i64>(at + 1).max(0) as u64,
        cpu: row.get(at + 2),
    };
    NodeInfo {
        id: row.get(0),
        address: row.get(1),
        status,
        capacity: resources(3),
        used: resources(6),
        last_seen_at: row.get(9),
    }
}

pub(crate) fn down_after() -> f64 {
    DOWN_AFTER.as_secs_f64()
}

impl Cluster {
    /// Records a node's report: it joins on its first, and each one keeps it up. Answers
    /// whether something of the node was deleted while it was away
    /// ([`deleted_on`](Self::deleted_on) says what).
    pub async fn heartbeat(&self, beat: &Heartbeat) -> Result<bool, ClusterError> {
        let (c, u) = (&beat.capacity, &beat.used);
        let row = self
            .client()
            .await?
            .query_one(
                "INSERT INTO ai2in_nodes (id, address, capacity_sandboxes, capacity_memory, \
                 capacity_cpu, used_sandboxes, used_memory, used_cpu, last_seen) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now()) \
                 ON CONFLICT (id) DO UPDATE SET address = EXCLUDED.address, \
                 capacity_sandboxes = EXCLUDED.capacity_sandboxes, \
                 capacity_memory = EXCLUDED.capacity_memory, capacity_cpu = EXCLUDED.capacity_cpu, \
                 used_sandboxes = EXCLUDED.used_sandboxes, used_memory = EXCLUDED.used_memory, \
                 used_cpu = EXCLUDED.used_cpu, last_seen = now() \
                 RETURNING EXISTS (SELECT 1 FROM ai2in_placements \
                   WHERE node_id = $1 AND deleted_at IS NOT NULL)",
                &[
                    &beat.id,
                    &beat.address,
                    &(c.sandboxes as i64),
                    &(c.memory_bytes as i64),
                    &c.cpu,
                    &(u.sandboxes as i64),
                    &(u.memory_bytes as i64),
                    &u.cpu,
                ],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Every node that ever joined, by id.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, ClusterError> {
        let rows = self
            .client()
            .await?
            .query(&format!("{SELECT} ORDER BY id"), &[&down_after()])
            .await?;
        Ok(rows.iter().map(node).collect())
    }

    /// Stops placement on node `id`; `None` when there is no such node.
    pub async fn drain(&self, id: &str) -> Result<Option<NodeInfo>, ClusterError> {
        let client = self.client().await?;
        let changed = client
            .execute(
                "UPDATE ai2in_nodes SET draining = true WHERE id = $1",
                &[&id],
            )
            .await?;
        if changed == 0 {
            return Ok(None);
        }
        let row = client
            .query_one(&format!("{SELECT} WHERE id = $2"), &[&down_after(), &id])
            .await?;
        Ok(Some(node(&row)))
    }
}

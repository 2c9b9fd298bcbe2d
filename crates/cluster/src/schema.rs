//! The cluster's tables, versioned: each migration runs once, in order, under an advisory
//! lock (two gateways starting at once do not both apply one).

use tokio_postgres::Client;

use crate::ClusterError;

/// Any number: the advisory lock the migrations (and the first key) take.
pub(crate) const LOCK: i64 = 0x6169_3269_6e00;

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE ai2in_cluster (
    id integer PRIMARY KEY CHECK (id = 1),
    secret text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE ai2in_nodes (
    id text PRIMARY KEY,
    address text NOT NULL,
    draining boolean NOT NULL DEFAULT false,
    capacity_sandboxes bigint NOT NULL,
    capacity_memory bigint NOT NULL,
    capacity_cpu double precision NOT NULL,
    used_sandboxes bigint NOT NULL,
    used_memory bigint NOT NULL,
    used_cpu double precision NOT NULL,
    joined_at timestamptz NOT NULL DEFAULT now(),
    last_seen timestamptz NOT NULL
);
CREATE TABLE ai2in_keys (
    id text PRIMARY KEY,
    name text NOT NULL,
    tenant text NOT NULL,
    scopes text NOT NULL,
    hash bytea NOT NULL UNIQUE,
    created_at bigint NOT NULL,
    revoked_at bigint
);
CREATE TABLE ai2in_placements (
    id text PRIMARY KEY,
    kind text NOT NULL,
    tenant text NOT NULL,
    node_id text NOT NULL REFERENCES ai2in_nodes (id),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ai2in_placements_by_node ON ai2in_placements (node_id, tenant);
CREATE INDEX ai2in_placements_by_tenant ON ai2in_placements (tenant, kind);
"#,
    r#"
CREATE TABLE ai2in_usage (
    tenant text NOT NULL,
    kind text NOT NULL,
    count bigint NOT NULL,
    PRIMARY KEY (tenant, kind)
);
INSERT INTO ai2in_usage (tenant, kind, count)
    SELECT tenant, kind, count(*) FROM ai2in_placements GROUP BY tenant, kind;
"#,
    r#"
ALTER TABLE ai2in_placements ADD COLUMN deleted_at timestamptz;
CREATE INDEX ai2in_placements_deleted ON ai2in_placements (node_id) WHERE deleted_at IS NOT NULL;
"#,
];

/// Applies the migrations `client`'s database lacks. A database from a newer version (more
/// migrations than this one knows) is refused rather than misread.
pub(crate) async fn migrate(client: &Client) -> Result<(), ClusterError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK])
        .await?;
    let result = apply(client).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK])
        .await?;
    result
}

async fn apply(client: &Client) -> Result<(), ClusterError> {
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS ai2in_schema (version integer NOT NULL)")
        .await?;
    let version: i32 = client
        .query_opt("SELECT version FROM ai2in_schema", &[])
        .await?
        .map_or(0, |row| row.get(0));
    let known = MIGRATIONS.len() as i32;
    if version > known {
        return Err(ClusterError::Schema(format!(
            "its schema is version {version}, newer than this ai2in's ({known}); upgrade ai2in"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let next = i as i32 + 1;
        let applied = client
            .batch_execute(&format!(
                "BEGIN; {sql}; DELETE FROM ai2in_schema; INSERT INTO ai2in_schema VALUES ({next}); COMMIT;"
            ))
            .await;
        if let Err(e) = applied {
            // Leave the shared connection usable: end the failed transaction.
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(e.into());
        }
        tracing::info!(version = next, "migrated the cluster's database");
    }
    Ok(())
}

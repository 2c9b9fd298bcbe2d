use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, Row, params};

use crate::{Store, StoreError};

/// Where a sandbox is in its life, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Being created; a node that dies here leaves a half-created sandbox to clean up.
    Starting,
    /// Ready, and waiting in the warm pool for a create to claim it (no tenant's yet).
    Pooled,
    /// Ready.
    Running,
    /// Frozen.
    Paused,
    /// Being destroyed.
    Stopping,
    /// Gone; kept for a while so that its id answers 410.
    Ended,
}

impl Status {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Pooled => "pooled",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopping => "stopping",
            Status::Ended => "ended",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "starting" => Status::Starting,
            "pooled" => Status::Pooled,
            "running" => Status::Running,
            "paused" => Status::Paused,
            "stopping" => Status::Stopping,
            "ended" => Status::Ended,
            _ => return None,
        })
    }
}

/// A sandbox as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxRecord {
    /// `sbx_…`.
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// Status.
    pub status: Status,
    /// Image name, as the create gave it.
    pub image: String,
    /// Digest of the image's content; `None` for `host`.
    pub image_digest: Option<String>,
    /// Its desktop's screen, if it has one.
    pub desktop: Option<Screen>,
    /// Creation, ms since the epoch.
    pub created_at_ms: i64,
    /// Hard end of life, ms since the epoch.
    pub end_at_ms: i64,
    /// When it ended, ms since the epoch.
    pub ended_at_ms: Option<i64>,
    /// Labels.
    pub metadata: BTreeMap<String, String>,
    /// CPU quota in cores.
    pub cpu: f64,
    /// Memory limit.
    pub memory_bytes: u64,
    /// Writable layer limit.
    pub disk_bytes: u64,
    /// Host uid range slot; also picks the sandbox's network link.
    pub uid_slot: u32,
    /// Whether outbound connections are refused.
    pub egress_denied: bool,
    /// Host pid of the agent, once started.
    pub pid: Option<u32>,
    /// Start time of that process (clock ticks since boot).
    pub pid_start: Option<u64>,
    /// The service whose instance it is (`svc_…`); such sandboxes are the supervisor's.
    pub owner: Option<String>,
}

/// A desktop's screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Screen {
    /// Width in pixels.
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
    /// Dots per inch.
    pub dpi: u16,
}

impl Screen {
    /// `1280x800@96`.
    fn to_text(self) -> String {
        format!("{}x{}@{}", self.width, self.height, self.dpi)
    }

    fn parse(text: &str) -> Option<Screen> {
        let (size, dpi) = text.split_once('@')?;
        let (width, height) = size.split_once('x')?;
        Some(Screen {
            width: width.parse().ok()?,
            height: height.parse().ok()?,
            dpi: dpi.parse().ok()?,
        })
    }
}

const COLUMNS: &str = "id, tenant, status, image, screen, created_at, end_at, ended_at, metadata, \
                       cpu, memory_bytes, disk_bytes, uid_slot, pid, pid_start, egress_denied, \
                       image_digest, owner";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Result<SandboxRecord, StoreError>> {
    let status: String = row.get(2)?;
    let metadata: String = row.get(8)?;
    let screen: Option<String> = row.get(4)?;
    let (Some(status), Ok(metadata)) = (Status::parse(&status), serde_json::from_str(&metadata))
    else {
        return Ok(Err(StoreError::Malformed("sandbox row")));
    };
    let desktop = match screen.as_deref().map(Screen::parse) {
        None => None,
        Some(Some(screen)) => Some(screen),
        Some(None) => return Ok(Err(StoreError::Malformed("sandbox screen"))),
    };
    Ok(Ok(SandboxRecord {
        id: row.get(0)?,
        tenant: row.get(1)?,
        status,
        image: row.get(3)?,
        desktop,
        created_at_ms: row.get(5)?,
        end_at_ms: row.get(6)?,
        ended_at_ms: row.get(7)?,
        metadata,
        cpu: row.get(9)?,
        memory_bytes: row.get::<_, i64>(10)? as u64,
        disk_bytes: row.get::<_, i64>(11)? as u64,
        uid_slot: row.get(12)?,
        pid: row.get(13)?,
        pid_start: row.get::<_, Option<i64>>(14)?.map(|v| v as u64),
        egress_denied: row.get(15)?,
        image_digest: row.get(16)?,
        owner: row.get(17)?,
    }))
}

/// What a warm pool is kept per: sandboxes that differ in nothing a create asks for
/// besides env, metadata and lifetime (applied at claim).
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// Image name.
    pub image: String,
    /// CPU quota in cores.
    pub cpu: f64,
    /// Memory limit.
    pub memory_bytes: u64,
    /// Writable layer limit.
    pub disk_bytes: u64,
    /// Whether outbound connections are refused.
    pub egress_denied: bool,
}

/// What a tenant holds right now.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// Live sandboxes.
    pub sandboxes: u64,
    /// Their memory limits, summed.
    pub memory_bytes: u64,
    /// Their CPU quotas, summed.
    pub cpu: f64,
}

impl Store {
    fn query_sandboxes(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<SandboxRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(sql)?;
        let rows = stmt.query_map(params, from_row)?;
        rows.map(|r| r?).collect()
    }

    /// Stores a new sandbox.
    pub fn insert_sandbox(&self, s: &SandboxRecord) -> Result<(), StoreError> {
        let metadata = serde_json::to_string(&s.metadata).expect("string map serializes");
        self.conn().execute(
            &format!("INSERT INTO sandboxes (desktop, {COLUMNS}) VALUES (?19, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"),
            params![
                s.id, s.tenant, s.status.as_str(), s.image, s.desktop.map(Screen::to_text), s.created_at_ms, s.end_at_ms,
                s.ended_at_ms, metadata, s.cpu, s.memory_bytes as i64, s.disk_bytes as i64,
                s.uid_slot, s.pid, s.pid_start.map(|v| v as i64), s.egress_denied,
                s.image_digest, s.owner, s.desktop.is_some()
            ],
        )?;
        Ok(())
    }

    /// Sandbox `id`, whatever its status.
    pub fn sandbox(&self, id: &str) -> Result<Option<SandboxRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM sandboxes WHERE id = ?1");
        self.conn()
            .prepare_cached(&sql)?
            .query_row(params![id], from_row)
            .optional()?
            .transpose()
    }

    /// Live (not ended) sandboxes, of one tenant or of all, oldest first.
    pub fn live_sandboxes(&self, tenant: Option<&str>) -> Result<Vec<SandboxRecord>, StoreError> {
        self.query_sandboxes(
            &format!("SELECT {COLUMNS} FROM sandboxes WHERE status != 'ended' AND (?1 IS NULL OR tenant = ?1) ORDER BY created_at, id"),
            params![tenant],
        )
    }

    /// Ids of live sandboxes whose lifetime is over at `now_ms`. A sandbox still starting is
    /// left to its create, which finishes (or fails) first.
    pub fn expired(&self, now_ms: i64) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id FROM sandboxes WHERE status NOT IN ('ended', 'starting') AND end_at <= ?1",
        )?;
        let ids = stmt.query_map(params![now_ms], |r| r.get(0))?;
        Ok(ids.collect::<Result<_, _>>()?)
    }

    /// The earliest end of a live sandbox that has started.
    pub fn next_end(&self) -> Result<Option<i64>, StoreError> {
        Ok(self.conn().query_row(
            "SELECT MIN(end_at) FROM sandboxes WHERE status NOT IN ('ended', 'starting')",
            [],
            |r| r.get(0),
        )?)
    }

    /// What `tenant` holds (all tenants for `None`).
    pub fn usage(&self, tenant: Option<&str>) -> Result<Usage, StoreError> {
        Ok(self.conn().query_row(
            "SELECT COUNT(*), COALESCE(SUM(memory_bytes), 0), COALESCE(SUM(cpu), 0.0) FROM sandboxes WHERE status != 'ended' AND (?1 IS NULL OR tenant = ?1)",
            params![tenant],
            |r| Ok(Usage { sandboxes: r.get::<_, i64>(0)? as u64, memory_bytes: r.get::<_, i64>(1)? as u64, cpu: r.get(2)? }),
        )?)
    }

    /// Live sandboxes by status.
    pub fn count_by_status(&self) -> Result<Vec<(Status, u64)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT status, COUNT(*) FROM sandboxes WHERE status != 'ended' GROUP BY status",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        let mut counts = Vec::new();
        for row in rows {
            let (status, n) = row?;
            let status = Status::parse(&status).ok_or(StoreError::Malformed("sandbox status"))?;
            counts.push((status, n as u64));
        }
        Ok(counts)
    }

    /// Uid slots held by live sandboxes.
    pub fn used_uid_slots(&self) -> Result<Vec<u32>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT uid_slot FROM sandboxes WHERE status != 'ended' ORDER BY uid_slot")?;
        let slots = stmt.query_map([], |r| r.get(0))?;
        Ok(slots.collect::<Result<_, _>>()?)
    }

    /// Records that the sandbox's agent runs as (`pid`, `pid_start`) and is `running`.
    pub fn set_started(
        &self,
        id: &str,
        pid: u32,
        pid_start: u64,
        status: Status,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE sandboxes SET status = ?4, pid = ?2, pid_start = ?3 WHERE id = ?1",
            params![id, pid, pid_start as i64, status.as_str()],
        )?;
        Ok(())
    }

    /// Pooled sandboxes of one shape (image, cpu, memory, disk, egress), oldest first.
    pub fn pooled(&self, shape: &Shape) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id FROM sandboxes WHERE status = 'pooled' AND image = ?1 AND cpu = ?2 \
             AND memory_bytes = ?3 AND disk_bytes = ?4 AND egress_denied = ?5 ORDER BY created_at",
        )?;
        let ids = stmt.query_map(
            params![
                shape.image,
                shape.cpu,
                shape.memory_bytes as i64,
                shape.disk_bytes as i64,
                shape.egress_denied
            ],
            |r| r.get(0),
        )?;
        Ok(ids.collect::<Result<_, _>>()?)
    }

    /// The shapes of all pooled sandboxes, one entry per sandbox.
    pub fn pooled_shapes(&self) -> Result<Vec<(String, Shape)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, image, cpu, memory_bytes, disk_bytes, egress_denied FROM sandboxes \
             WHERE status = 'pooled'",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get(0)?,
                Shape {
                    image: r.get(1)?,
                    cpu: r.get(2)?,
                    memory_bytes: r.get::<_, i64>(3)? as u64,
                    disk_bytes: r.get::<_, i64>(4)? as u64,
                    egress_denied: r.get(5)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records that sandbox `id` has a desktop of `screen`.
    pub fn set_desktop(&self, id: &str, screen: Screen) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE sandboxes SET desktop = 1, screen = ?2 WHERE id = ?1",
            params![id, screen.to_text()],
        )?;
        Ok(())
    }

    /// Hands pooled sandbox `id` to `tenant` with its metadata and lifetime: true when it
    /// was still pooled (no one else claimed it first).
    pub fn claim(
        &self,
        id: &str,
        tenant: &str,
        image: &str,
        metadata: &BTreeMap<String, String>,
        created_at_ms: i64,
        end_at_ms: i64,
    ) -> Result<bool, StoreError> {
        let metadata = serde_json::to_string(metadata).expect("string map serializes");
        let changed = self.conn().execute(
            "UPDATE sandboxes SET status = 'running', tenant = ?2, metadata = ?3, \
             created_at = ?4, end_at = ?5, image = ?6 WHERE id = ?1 AND status = 'pooled'",
            params![id, tenant, metadata, created_at_ms, end_at_ms, image],
        )?;
        Ok(changed == 1)
    }

    /// Sets the status of a live sandbox (`Ended` also records when).
    pub fn set_status(&self, id: &str, status: Status, now_ms: i64) -> Result<(), StoreError> {
        let ended = (status == Status::Ended).then_some(now_ms);
        self.conn().execute(
            "UPDATE sandboxes SET status = ?2, ended_at = COALESCE(?3, ended_at) WHERE id = ?1",
            params![id, status.as_str(), ended],
        )?;
        Ok(())
    }

    /// Sets the end of life of a sandbox.
    pub fn set_end_at(&self, id: &str, end_at_ms: i64) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE sandboxes SET end_at = ?2 WHERE id = ?1",
            params![id, end_at_ms],
        )?;
        Ok(())
    }

    /// Forgets sandboxes that ended before `before_ms`, their exposed ports and volume mounts.
    pub fn prune_ended(&self, before_ms: i64) -> Result<usize, StoreError> {
        let conn = self.conn();
        let pruned = conn.execute(
            "DELETE FROM sandboxes WHERE status = 'ended' AND ended_at < ?1",
            params![before_ms],
        )?;
        conn.execute(
            "DELETE FROM exposed_ports WHERE sandbox_id NOT IN (SELECT id FROM sandboxes)",
            [],
        )?;
        conn.execute(
            "DELETE FROM volume_mounts WHERE sandbox_id NOT IN (SELECT id FROM sandboxes)",
            [],
        )?;
        Ok(pruned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, tenant: &str, end_at_ms: i64) -> SandboxRecord {
        SandboxRecord {
            id: id.into(),
            tenant: tenant.into(),
            status: Status::Starting,
            image: "host".into(),
            image_digest: None,
            desktop: None,
            created_at_ms: 1,
            end_at_ms,
            ended_at_ms: None,
            metadata: BTreeMap::from([("team".into(), "a".into())]),
            cpu: 1.0,
            memory_bytes: 100,
            disk_bytes: 200,
            uid_slot: 3,
            egress_denied: false,
            pid: None,
            pid_start: None,
            owner: None,
        }
    }

    #[test]
    fn a_pooled_sandbox_is_claimed_once_by_shape() {
        let store = Store::open(std::path::Path::new(":memory:")).unwrap();
        let mut pooled = record("sbx_p", "#pool", 10);
        pooled.status = Status::Pooled;
        store.insert_sandbox(&pooled).unwrap();
        let shape = Shape {
            image: pooled.image.clone(),
            cpu: pooled.cpu,
            memory_bytes: pooled.memory_bytes,
            disk_bytes: pooled.disk_bytes,
            egress_denied: false,
        };
        let other = Shape {
            memory_bytes: 1,
            ..shape.clone()
        };
        assert_eq!(store.pooled(&shape).unwrap(), ["sbx_p"]);
        assert!(store.pooled(&other).unwrap().is_empty());
        let labels = BTreeMap::from([("k".to_string(), "v".to_string())]);
        assert!(store.claim("sbx_p", "t1", "host", &labels, 5, 99).unwrap());
        assert!(!store.claim("sbx_p", "t2", "host", &labels, 5, 99).unwrap());
        let claimed = store.sandbox("sbx_p").unwrap().unwrap();
        assert_eq!(
            (claimed.tenant.as_str(), claimed.status),
            ("t1", Status::Running)
        );
        assert_eq!((claimed.end_at_ms, claimed.metadata), (99, labels));
        assert!(store.pooled(&shape).unwrap().is_empty());
    }

    #[test]
    fn lifecycle_round_trips_through_sqlite() {
        let dir = std::env::temp_dir().join(format!("ai2in-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&dir.join("t.db")).unwrap();
        store.insert_sandbox(&record("sbx_a", "t1", 10)).unwrap();
        store.insert_sandbox(&record("sbx_b", "t2", 50)).unwrap();
        store.set_started("sbx_a", 42, 99, Status::Running).unwrap();
        let a = store.sandbox("sbx_a").unwrap().unwrap();
        assert_eq!(
            (a.status, a.pid, a.pid_start),
            (Status::Running, Some(42), Some(99))
        );
        assert_eq!(a.metadata.get("team").map(String::as_str), Some("a"));
        assert_eq!(store.expired(20).unwrap(), vec!["sbx_a".to_string()]);
        assert_eq!(
            store.usage(Some("t1")).unwrap(),
            Usage {
                sandboxes: 1,
                memory_bytes: 100,
                cpu: 1.0
            }
        );
        store.set_status("sbx_a", Status::Ended, 30).unwrap();
        assert_eq!(store.live_sandboxes(None).unwrap().len(), 1);
        // The one left is still starting: its create, not the reaper, owns it until it runs.
        assert_eq!(store.next_end().unwrap(), None);
        assert!(store.expired(60).unwrap().is_empty());
        let b = store.live_sandboxes(None).unwrap().remove(0);
        store.set_started(&b.id, 43, 100, Status::Running).unwrap();
        assert_eq!(store.next_end().unwrap(), Some(50));
        assert_eq!(store.prune_ended(31).unwrap(), 1);
        assert!(store.sandbox("sbx_a").unwrap().is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }
}

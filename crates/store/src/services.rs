//! Services: their records (what to run, and where the supervisor is in its life) and their
//! log lines, a bounded ring per service kept across restarts of the service and the node.
//! A service's spec holds its environment: the store file is readable by root only.

use rusqlite::{OptionalExtension, Row, params};

use crate::{Store, StoreError};

/// A service as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceRecord {
    /// `svc_…`.
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// Unique among the tenant's services.
    pub name: String,
    /// What to run, as JSON the node reads (image, env, command, port, resources, volumes).
    pub spec: String,
    /// Content digest of the image of the current deploy; `None` for `host`.
    pub image_digest: Option<String>,
    /// `deploying`, `running`, `crashed` or `stopped`.
    pub status: String,
    /// Creation, ms since the epoch.
    pub created_at_ms: i64,
    /// When the current deploy became current.
    pub deployed_at_ms: Option<i64>,
    /// Restarts after exits.
    pub restarts: u64,
    /// The last exit: status, signal, time.
    pub exit_code: Option<i32>,
    /// The signal that ended the last process, if one did.
    pub exit_signal: Option<i32>,
    /// When the last process ended.
    pub exit_at_ms: Option<i64>,
    /// When the next restart is due, while crashed.
    pub next_restart_at_ms: Option<i64>,
    /// The sandbox of the current instance.
    pub instance: Option<String>,
    /// The database it runs the server of: such a service is not the tenant's to see.
    pub owner: Option<String>,
}

/// An instance of a service: a sandbox whose process is a background command of its agent,
/// and how much of its output is in the service's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRecord {
    /// The sandbox.
    pub sandbox_id: String,
    /// The service.
    pub service_id: String,
    /// The process.
    pub command_id: String,
    /// Bytes of its standard output in the log.
    pub stdout_offset: u64,
    /// Bytes of its standard error in the log.
    pub stderr_offset: u64,
}

/// One line of a service's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Increasing within the service, never reused.
    pub seq: u64,
    /// When it was written, ms since the epoch.
    pub at_ms: i64,
    /// `stdout`, `stderr` or `system`.
    pub stream: String,
    /// The text.
    pub line: String,
}

const COLUMNS: &str = "id, tenant, name, spec, image_digest, status, created_at, deployed_at, \
                       restarts, exit_code, exit_signal, exit_at, next_restart_at, instance, owner";

fn from_row(r: &Row<'_>) -> rusqlite::Result<ServiceRecord> {
    Ok(ServiceRecord {
        id: r.get(0)?,
        tenant: r.get(1)?,
        name: r.get(2)?,
        spec: r.get(3)?,
        image_digest: r.get(4)?,
        status: r.get(5)?,
        created_at_ms: r.get(6)?,
        deployed_at_ms: r.get(7)?,
        restarts: r.get::<_, i64>(8)? as u64,
        exit_code: r.get(9)?,
        exit_signal: r.get(10)?,
        exit_at_ms: r.get(11)?,
        next_restart_at_ms: r.get(12)?,
        instance: r.get(13)?,
        owner: r.get(14)?,
    })
}

impl Store {
    /// Records a new service; `false` when the tenant has one of that name already.
    pub fn insert_service(&self, s: &ServiceRecord) -> Result<bool, StoreError> {
        let added = self.conn().execute(
            &format!(
                "INSERT INTO services ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, \
                 ?10, ?11, ?12, ?13, ?14, ?15) ON CONFLICT DO NOTHING"
            ),
            params![
                s.id,
                s.tenant,
                s.name,
                s.spec,
                s.image_digest,
                s.status,
                s.created_at_ms,
                s.deployed_at_ms,
                s.restarts as i64,
                s.exit_code,
                s.exit_signal,
                s.exit_at_ms,
                s.next_restart_at_ms,
                s.instance,
                s.owner
            ],
        )?;
        Ok(added == 1)
    }

    /// Writes what changes in a service's life (everything but its id, tenant, name and
    /// creation time).
    pub fn update_service(&self, s: &ServiceRecord) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE services SET spec = ?2, image_digest = ?3, status = ?4, deployed_at = ?5, \
             restarts = ?6, exit_code = ?7, exit_signal = ?8, exit_at = ?9, \
             next_restart_at = ?10, instance = ?11 WHERE id = ?1",
            params![
                s.id,
                s.spec,
                s.image_digest,
                s.status,
                s.deployed_at_ms,
                s.restarts as i64,
                s.exit_code,
                s.exit_signal,
                s.exit_at_ms,
                s.next_restart_at_ms,
                s.instance
            ],
        )?;
        Ok(())
    }

    /// The tenant's service named by its id or its name.
    pub fn service(&self, tenant: &str, key: &str) -> Result<Option<ServiceRecord>, StoreError> {
        Ok(self
            .conn()
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM services WHERE tenant = ?1 AND (id = ?2 OR name = ?2)"
            ))?
            .query_row(params![tenant, key], from_row)
            .optional()?)
    }

    /// The services of `tenant`, or of every tenant, oldest first.
    pub fn services(&self, tenant: Option<&str>) -> Result<Vec<ServiceRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM services WHERE ?1 IS NULL OR tenant = ?1 \
             ORDER BY created_at, id"
        ))?;
        let rows = stmt.query_map(params![tenant], from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many services `tenant` has (not counting databases' servers).
    pub fn service_count(&self, tenant: &str) -> Result<u64, StoreError> {
        let n: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM services WHERE tenant = ?1 AND owner IS NULL",
            params![tenant],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// Records a new instance of a service.
    pub fn insert_instance(&self, i: &InstanceRecord) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO service_instances (sandbox_id, service_id, command_id, stdout_offset, \
             stderr_offset) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                i.sandbox_id,
                i.service_id,
                i.command_id,
                i.stdout_offset as i64,
                i.stderr_offset as i64
            ],
        )?;
        Ok(())
    }

    /// The instance in sandbox `sandbox_id`.
    pub fn instance(&self, sandbox_id: &str) -> Result<Option<InstanceRecord>, StoreError> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT sandbox_id, service_id, command_id, stdout_offset, stderr_offset \
                 FROM service_instances WHERE sandbox_id = ?1",
            )?
            .query_row(params![sandbox_id], |r| {
                Ok(InstanceRecord {
                    sandbox_id: r.get(0)?,
                    service_id: r.get(1)?,
                    command_id: r.get(2)?,
                    stdout_offset: r.get::<_, i64>(3)? as u64,
                    stderr_offset: r.get::<_, i64>(4)? as u64,
                })
            })
            .optional()?)
    }

    /// Forgets the instance in sandbox `sandbox_id` (its sandbox is gone).
    pub fn delete_instance(&self, sandbox_id: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "DELETE FROM service_instances WHERE sandbox_id = ?1",
            params![sandbox_id],
        )?;
        Ok(())
    }

    /// Forgets service `id`, its instances and its log.
    pub fn delete_service(&self, id: &str) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "DELETE FROM service_logs WHERE service_id = ?1",
            params![id],
        )?;
        tx.execute(
            "DELETE FROM service_instances WHERE service_id = ?1",
            params![id],
        )?;
        tx.execute("DELETE FROM services WHERE id = ?1", params![id])?;
        tx.commit()?;
        Ok(())
    }

    /// Appends `lines` (`at_ms`, stream, text) to the log of service `id`, keeping its last
    /// `keep` lines, and records how far the output of the instance they came from is read
    /// (`offsets`: its sandbox, stdout and stderr offsets) in the same transaction: after a
    /// crash, nothing is logged twice or lost. Returns the lines with their sequence numbers.
    pub fn append_logs(
        &self,
        id: &str,
        lines: Vec<(i64, &'static str, String)>,
        offsets: Option<(&str, u64, u64)>,
        keep: u64,
    ) -> Result<Vec<LogRecord>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let last: i64 = tx.query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM service_logs WHERE service_id = ?1",
            params![id],
            |r| r.get(0),
        )?;
        let mut added = Vec::with_capacity(lines.len());
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO service_logs (service_id, seq, at, stream, line) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (i, (at_ms, stream, line)) in lines.into_iter().enumerate() {
                let seq = last as u64 + 1 + i as u64;
                insert.execute(params![id, seq as i64, at_ms, stream, line])?;
                added.push(LogRecord {
                    seq,
                    at_ms,
                    stream: stream.to_string(),
                    line,
                });
            }
        }
        if let Some(end) = added.last().map(|l| l.seq) {
            tx.execute(
                "DELETE FROM service_logs WHERE service_id = ?1 AND seq <= ?2",
                params![id, end as i64 - keep as i64],
            )?;
        }
        if let Some((sandbox_id, stdout, stderr)) = offsets {
            tx.execute(
                "UPDATE service_instances SET stdout_offset = ?2, stderr_offset = ?3 \
                 WHERE sandbox_id = ?1",
                params![sandbox_id, stdout as i64, stderr as i64],
            )?;
        }
        tx.commit()?;
        Ok(added)
    }

    /// Up to `limit` lines of the log of service `id`: those after `since`, oldest first, or
    /// the most recent ones when `since` is `None`.
    pub fn logs(
        &self,
        id: &str,
        since: Option<u64>,
        limit: u32,
    ) -> Result<Vec<LogRecord>, StoreError> {
        let conn = self.conn();
        let map = |r: &Row<'_>| {
            Ok(LogRecord {
                seq: r.get::<_, i64>(0)? as u64,
                at_ms: r.get(1)?,
                stream: r.get(2)?,
                line: r.get(3)?,
            })
        };
        let mut lines: Vec<LogRecord> = match since {
            Some(since) => {
                let mut stmt = conn.prepare_cached(
                    "SELECT seq, at, stream, line FROM service_logs WHERE service_id = ?1 \
                     AND seq > ?2 ORDER BY seq LIMIT ?3",
                )?;
                let rows = stmt.query_map(params![id, since as i64, limit], map)?;
                rows.collect::<Result<_, _>>()?
            }
            None => {
                let mut stmt = conn.prepare_cached(
                    "SELECT seq, at, stream, line FROM service_logs WHERE service_id = ?1 \
                     ORDER BY seq DESC LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![id, limit], map)?;
                rows.collect::<Result<_, _>>()?
            }
        };
        if since.is_none() {
            lines.reverse();
        }
        Ok(lines)
    }

    /// The sequence number of the last line of service `id`'s log (0 when empty).
    pub fn last_log_seq(&self, id: &str) -> Result<u64, StoreError> {
        let last: i64 = self.conn().query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM service_logs WHERE service_id = ?1",
            params![id],
            |r| r.get(0),
        )?;
        Ok(last as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(id: &str, tenant: &str, name: &str) -> ServiceRecord {
        ServiceRecord {
            id: id.into(),
            tenant: tenant.into(),
            name: name.into(),
            spec: "{}".into(),
            image_digest: None,
            status: "deploying".into(),
            created_at_ms: 1,
            deployed_at_ms: None,
            restarts: 0,
            exit_code: None,
            exit_signal: None,
            exit_at_ms: None,
            next_restart_at_ms: None,
            instance: None,
            owner: None,
        }
    }

    fn store() -> Store {
        Store::open(std::path::Path::new(":memory:")).unwrap()
    }

    #[test]
    fn names_are_unique_per_tenant_and_updates_round_trip() {
        let s = store();
        assert!(s.insert_service(&service("svc_1", "a", "web")).unwrap());
        assert!(!s.insert_service(&service("svc_2", "a", "web")).unwrap());
        assert!(s.insert_service(&service("svc_3", "b", "web")).unwrap());
        let mut web = s.service("a", "web").unwrap().unwrap();
        web.status = "crashed".into();
        web.restarts = 3;
        web.exit_code = Some(1);
        web.instance = Some("sbx_1".into());
        s.update_service(&web).unwrap();
        assert_eq!(s.service("a", "svc_1").unwrap().unwrap(), web);
        assert!(s.service("a", "svc_3").unwrap().is_none());
        assert_eq!(s.service_count("a").unwrap(), 1);
        assert_eq!(s.services(None).unwrap().len(), 2);
    }

    #[test]
    fn the_log_is_a_bounded_ring_with_its_read_offsets() {
        let s = store();
        s.insert_service(&service("svc_1", "a", "web")).unwrap();
        let lines = |n: usize| {
            (0..n)
                .map(|i| (i as i64, "stdout", format!("{i}")))
                .collect()
        };
        let instance = InstanceRecord {
            sandbox_id: "sbx_1".into(),
            service_id: "svc_1".into(),
            command_id: "cmd_1".into(),
            stdout_offset: 0,
            stderr_offset: 0,
        };
        s.insert_instance(&instance).unwrap();
        let added = s
            .append_logs("svc_1", lines(5), Some(("sbx_1", 10, 3)), 4)
            .unwrap();
        assert_eq!(
            added.iter().map(|l| l.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        let kept = s.logs("svc_1", Some(0), 100).unwrap();
        assert_eq!(kept.iter().map(|l| l.seq).collect::<Vec<_>>(), [2, 3, 4, 5]);
        assert_eq!(s.logs("svc_1", None, 2).unwrap()[0].seq, 4);
        assert_eq!(s.logs("svc_1", Some(4), 100).unwrap().len(), 1);
        let read = s.instance("sbx_1").unwrap().unwrap();
        assert_eq!((read.stdout_offset, read.stderr_offset), (10, 3));
        s.append_logs("svc_1", lines(1), None, 4).unwrap();
        assert_eq!(s.last_log_seq("svc_1").unwrap(), 6);
        s.delete_service("svc_1").unwrap();
        assert!(s.logs("svc_1", None, 10).unwrap().is_empty());
        assert!(s.instance("sbx_1").unwrap().is_none());
    }
}

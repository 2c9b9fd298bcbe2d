//! Exposed ports: which ports of a sandbox the node's proxy serves at a public URL.

use rusqlite::params;

use crate::{Store, StoreError};

impl Store {
    /// Records that `port` of sandbox `id` is exposed (again: no error).
    pub fn expose_port(&self, id: &str, port: u16) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT OR IGNORE INTO exposed_ports (sandbox_id, port) VALUES (?1, ?2)",
            params![id, port],
        )?;
        Ok(())
    }

    /// The exposed ports of sandbox `id`, ascending.
    pub fn exposed_ports(&self, id: &str) -> Result<Vec<u16>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT port FROM exposed_ports WHERE sandbox_id = ?1 ORDER BY port")?;
        let ports = stmt.query_map(params![id], |r| r.get(0))?;
        Ok(ports.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;

    #[test]
    fn exposed_ports_are_remembered_once_and_pruned_with_their_sandbox() {
        let store = Store::open(std::path::Path::new(":memory:")).unwrap();
        assert!(store.exposed_ports("sbx_a").unwrap().is_empty());
        store.expose_port("sbx_a", 8001).unwrap();
        store.expose_port("sbx_a", 8000).unwrap();
        store.expose_port("sbx_a", 8000).unwrap();
        assert_eq!(store.exposed_ports("sbx_a").unwrap(), [8000, 8001]);
        assert!(store.exposed_ports("sbx_b").unwrap().is_empty());
        store.prune_ended(i64::MAX).unwrap();
        assert!(store.exposed_ports("sbx_a").unwrap().is_empty());
    }
}

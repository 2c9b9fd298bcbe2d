//! Exposed ports: which ports of a sandbox the node's proxy serves at a public URL.

use rusqlite::{OptionalExtension, params};

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

    /// Whether `port` of sandbox `id` is exposed.
    pub fn is_exposed(&self, id: &str, port: u16) -> Result<bool, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT 1 FROM exposed_ports WHERE sandbox_id = ?1 AND port = ?2",
                params![id, port],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;

    #[test]
    fn exposed_ports_are_remembered_once_and_pruned_with_their_sandbox() {
        let store = Store::open(std::path::Path::new(":memory:")).unwrap();
        assert!(!store.is_exposed("sbx_a", 8000).unwrap());
        store.expose_port("sbx_a", 8000).unwrap();
        store.expose_port("sbx_a", 8000).unwrap();
        assert!(store.is_exposed("sbx_a", 8000).unwrap());
        assert!(!store.is_exposed("sbx_a", 8001).unwrap());
        assert!(!store.is_exposed("sbx_b", 8000).unwrap());
        store.prune_ended(i64::MAX).unwrap();
        assert!(!store.is_exposed("sbx_a", 8000).unwrap());
    }
}

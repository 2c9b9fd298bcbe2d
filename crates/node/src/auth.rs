//! API keys, scopes and tenants. Keys are `ai2in_live_` + 40 base62 characters; the store
//! keeps their SHA-256 only, and a presented key is checked by hash lookup followed by a
//! constant-time comparison.

use std::fmt;

use ai2in_api::{CreateKeyRequest, CreatedKey, KeyInfo};
use ai2in_store::KeyRecord;
use sha2::{Digest, Sha256};

use crate::error::NodeError;
use crate::ids::{self, random_base62};
use crate::node::Node;
use crate::time::{now_ms, rfc3339};

const KEY_PREFIX: &str = "ai2in_live_";
/// Tenant of the key a node creates on its first start.
pub const DEFAULT_TENANT: &str = "default";

/// A permission, `resource:verb`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Read sandboxes.
    SandboxesRead,
    /// Create, change and use sandboxes.
    SandboxesWrite,
    /// Read databases.
    DatabasesRead,
    /// Create and delete databases.
    DatabasesWrite,
    /// Read services.
    HostingRead,
    /// Deploy and manage services.
    HostingWrite,
    /// Read images.
    ImagesRead,
    /// Pull, import and delete images.
    ImagesWrite,
    /// Read volumes and mount them read-only.
    VolumesRead,
    /// Create, delete and mount volumes read-write.
    VolumesWrite,
    /// Manage keys and tenants; implies every other scope.
    Admin,
}

const SCOPES: [(Scope, &str); 11] = [
    (Scope::SandboxesRead, "sandboxes:read"),
    (Scope::SandboxesWrite, "sandboxes:write"),
    (Scope::DatabasesRead, "databases:read"),
    (Scope::DatabasesWrite, "databases:write"),
    (Scope::HostingRead, "hosting:read"),
    (Scope::HostingWrite, "hosting:write"),
    (Scope::ImagesRead, "images:read"),
    (Scope::ImagesWrite, "images:write"),
    (Scope::VolumesRead, "volumes:read"),
    (Scope::VolumesWrite, "volumes:write"),
    (Scope::Admin, "admin"),
];

impl Scope {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        SCOPES
            .iter()
            .find(|(s, _)| *s == self)
            .map(|(_, n)| *n)
            .expect("every scope is listed")
    }

    /// Parses the API spelling.
    pub fn parse(s: &str) -> Option<Scope> {
        SCOPES
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(scope, _)| *scope)
    }

    /// Whether holding `self` grants `wanted`: admin grants all, write grants read.
    fn grants(self, wanted: Scope) -> bool {
        self == wanted
            || self == Scope::Admin
            || matches!(
                (self, wanted),
                (Scope::SandboxesWrite, Scope::SandboxesRead)
                    | (Scope::DatabasesWrite, Scope::DatabasesRead)
                    | (Scope::HostingWrite, Scope::HostingRead)
                    | (Scope::ImagesWrite, Scope::ImagesRead)
                    | (Scope::VolumesWrite, Scope::VolumesRead)
            )
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The key id of the node acting itself (no API key has it).
pub(crate) const NODE_KEY: &str = "node";

/// Who is calling: the key's tenant and scopes.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The key's id.
    pub key_id: String,
    /// The tenant everything it does belongs to.
    pub tenant: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
}

impl Principal {
    /// The node acting itself in `tenant`'s sandboxes (a database's server, a service's
    /// readiness check).
    pub(crate) fn node(tenant: &str) -> Principal {
        Principal {
            key_id: NODE_KEY.into(),
            tenant: tenant.into(),
            scopes: vec![Scope::SandboxesWrite],
        }
    }

    /// Ok when the key holds `scope` (or one that grants it), else the 403.
    pub fn require(&self, scope: Scope) -> Result<(), NodeError> {
        if self.scopes.iter().any(|s| s.grants(scope)) {
            Ok(())
        } else {
            Err(NodeError::MissingScope(scope))
        }
    }
}

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn valid_tenant(tenant: &str) -> bool {
    !tenant.is_empty()
        && tenant.len() <= 64
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The SHA-256 of the key in an `Authorization` header value (`Bearer …`): keys are looked
/// up by it.
pub fn presented_key(header: Option<&str>) -> Result<[u8; 32], NodeError> {
    let header = header.ok_or_else(|| {
        NodeError::Unauthenticated("missing API key; send `Authorization: Bearer <key>`".into())
    })?;
    let secret = header
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|s| s.starts_with(KEY_PREFIX))
        .ok_or_else(|| {
            NodeError::Unauthenticated(
                "malformed Authorization header; send `Authorization: Bearer ai2in_live_…`".into(),
            )
        })?;
    Ok(hash(secret))
}

/// The principal of the key `presented` when `record` (looked up by that hash) is it.
pub fn principal_of(
    presented: &[u8; 32],
    record: Option<KeyRecord>,
) -> Result<Principal, NodeError> {
    match record {
        Some(record) if constant_time_eq(&record.hash, presented) => Ok(Principal {
            key_id: record.id,
            tenant: record.tenant,
            scopes: record
                .scopes
                .iter()
                .filter_map(|s| Scope::parse(s))
                .collect(),
        }),
        _ => Err(NodeError::Unauthenticated(
            "invalid or revoked API key".into(),
        )),
    }
}

/// Checks `caller`'s request for a key (admin) and makes it: its record to store and its
/// secret, shown once.
pub fn new_key(
    caller: &Principal,
    req: CreateKeyRequest,
) -> Result<(KeyRecord, String), NodeError> {
    caller.require(Scope::Admin)?;
    let name = req.name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(NodeError::Invalid(
            "name must be 1 to 200 characters".into(),
        ));
    }
    if req.scopes.is_empty() {
        return Err(NodeError::Invalid(format!(
            "scopes must list at least one of: {}",
            SCOPES.map(|(_, n)| n).join(", ")
        )));
    }
    for scope in &req.scopes {
        if Scope::parse(scope).is_none() {
            return Err(NodeError::Invalid(format!(
                "unknown scope {scope:?} in scopes; use {}",
                SCOPES.map(|(_, n)| n).join(", ")
            )));
        }
    }
    let tenant = req.tenant.unwrap_or_else(|| caller.tenant.clone());
    if operated_tenant(caller).is_some_and(|own| own != tenant) {
        return Err(NodeError::PermissionDenied(format!(
            "only an admin of the {DEFAULT_TENANT:?} tenant may create keys for another tenant"
        )));
    }
    if !valid_tenant(&tenant) {
        return Err(NodeError::Invalid(
            "tenant must be 1 to 64 letters, digits, '-' or '_'".into(),
        ));
    }
    let mut scopes = req.scopes;
    scopes.dedup();
    Ok(key_record(name, &tenant, scopes))
}

/// A new key's record and secret.
pub fn key_record(name: &str, tenant: &str, scopes: Vec<String>) -> (KeyRecord, String) {
    let secret = format!("{KEY_PREFIX}{}", random_base62(40));
    let record = KeyRecord {
        id: ids::new_id("key"),
        name: name.to_string(),
        tenant: tenant.to_string(),
        scopes,
        hash: hash(&secret),
        created_at_ms: now_ms(),
    };
    (record, secret)
}

/// A key's description, as the API shows it.
pub fn key_info(record: &KeyRecord) -> KeyInfo {
    KeyInfo {
        id: record.id.clone(),
        name: record.name.clone(),
        scopes: record.scopes.clone(),
        tenant: record.tenant.clone(),
        created_at: rfc3339(record.created_at_ms),
    }
}

/// The keys `caller` may list and revoke: `Some(tenant)` for its own tenant's, `None` for
/// all (admin checked).
pub fn administered_tenant(caller: &Principal) -> Result<Option<&str>, NodeError> {
    caller.require(Scope::Admin)?;
    Ok(operated_tenant(caller))
}

/// The 404 of a key id that names no key the caller administers.
pub fn no_key(id: &str) -> NodeError {
    NodeError::NotFound(format!("no API key {id}"))
}

/// Whether `id` could be a key's id (others are 404 without a lookup).
pub fn is_key_id(id: &str) -> bool {
    ids::is_valid(id, "key")
}

impl Node {
    /// The principal behind an `Authorization` header value (`Bearer …`).
    pub fn authenticate(&self, header: Option<&str>) -> Result<Principal, NodeError> {
        let presented = presented_key(header)?;
        principal_of(&presented, self.store().key_by_hash(&presented)?)
    }

    /// Creates a key (admin).
    pub fn create_key(
        &self,
        caller: &Principal,
        req: CreateKeyRequest,
    ) -> Result<CreatedKey, NodeError> {
        let (record, secret) = new_key(caller, req)?;
        self.store().insert_key(&record)?;
        Ok(CreatedKey {
            info: key_info(&record),
            key: secret,
        })
    }

    pub(crate) fn insert_key(
        &self,
        name: &str,
        tenant: &str,
        scopes: Vec<String>,
    ) -> Result<(KeyRecord, String), NodeError> {
        let (record, secret) = key_record(name, tenant, scopes);
        self.store().insert_key(&record)?;
        Ok((record, secret))
    }

    /// Lists the keys the caller administers (admin).
    pub fn list_keys(&self, caller: &Principal) -> Result<Vec<KeyInfo>, NodeError> {
        let tenant = administered_tenant(caller)?;
        Ok(self
            .store()
            .list_keys(tenant)?
            .iter()
            .map(key_info)
            .collect())
    }

    /// Revokes a key the caller administers (admin); effective for the next request.
    pub fn revoke_key(&self, caller: &Principal, id: &str) -> Result<(), NodeError> {
        let tenant = administered_tenant(caller)?;
        if !is_key_id(id) {
            return Err(no_key(id));
        }
        let administered = self.store().list_keys(tenant)?.iter().any(|k| k.id == id);
        if !administered || !self.store().revoke_key(id, now_ms())? {
            return Err(no_key(id));
        }
        Ok(())
    }
}

/// The tenant whose keys an admin manages: its own, or all (`None`) for the admins of the
/// default tenant, who operate the node and create the other tenants' keys.
fn operated_tenant(caller: &Principal) -> Option<&str> {
    (caller.tenant != DEFAULT_TENANT).then_some(caller.tenant.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_grants_read_and_admin_grants_all() {
        assert!(Scope::SandboxesWrite.grants(Scope::SandboxesRead));
        assert!(!Scope::SandboxesRead.grants(Scope::SandboxesWrite));
        assert!(!Scope::SandboxesWrite.grants(Scope::DatabasesRead));
        assert!(SCOPES.iter().all(|(s, _)| Scope::Admin.grants(*s)));
    }

    #[test]
    fn scopes_round_trip() {
        for (scope, name) in SCOPES {
            assert_eq!(Scope::parse(name), Some(scope));
            assert_eq!(scope.to_string(), name);
        }
        assert_eq!(Scope::parse("sandboxes:delete"), None);
    }

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}

//! Random identifiers and secrets: base62 from the OS's CSPRNG.

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `len` random base62 characters.
pub fn random_base62(len: usize) -> String {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf).expect("the OS random source works");
        // Rejection sampling keeps the distribution uniform.
        for &b in &buf {
            if b < 248 && out.len() < len {
                out.push(ALPHABET[(b % 62) as usize] as char);
            }
        }
    }
    out
}

/// A new id with a type prefix, e.g. `sbx_…`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", random_base62(20))
}

/// Whether `id` is shaped like an id with `prefix` (so that junk never reaches the store
/// or a path).
pub fn is_valid(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|rest| {
            !rest.is_empty() && rest.len() <= 64 && rest.bytes().all(|b| b.is_ascii_alphanumeric())
        })
}

/// Ok when `id` is shaped like an id with `prefix`, else a 404 naming the `what`.
pub fn check(id: &str, prefix: &str, what: &str) -> Result<(), crate::NodeError> {
    if is_valid(id, prefix) {
        Ok(())
    } else {
        Err(crate::NodeError::NotFound(format!("no {what} {id}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_prefix_and_validate() {
        let id = new_id("sbx");
        assert!(id.starts_with("sbx_") && id.len() == 24);
        assert!(is_valid(&id, "sbx"));
        for bad in ["sbx_", "sbx", "key_abc", "sbx_../x", "sbx_a/b", ""] {
            assert!(!is_valid(bad, "sbx"), "{bad}");
        }
        assert_ne!(new_id("sbx"), new_id("sbx"));
    }
}

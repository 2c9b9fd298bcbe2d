//! Random identifiers and secrets: base62 from the OS's CSPRNG.

const BASE62: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// `len` random characters of the first `radix` of [`BASE62`].
fn random_chars(len: usize, radix: u8) -> String {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    // Rejection sampling keeps the distribution uniform.
    let bound = 256 / radix as u16 * radix as u16;
    while out.len() < len {
        getrandom::fill(&mut buf).expect("the OS random source works");
        for &b in &buf {
            if u16::from(b) < bound && out.len() < len {
                out.push(BASE62[(b % radix) as usize] as char);
            }
        }
    }
    out
}

/// `len` random base62 characters (secrets).
pub fn random_base62(len: usize) -> String {
    random_chars(len, 62)
}

/// A new id with a type prefix, e.g. `sbx_…`: 20 lowercase base36 characters (103 bits),
/// so that an id survives in a host name, which browsers lowercase.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", random_chars(20, 36))
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
        assert_eq!(id, id.to_ascii_lowercase());
        assert!(is_valid(&id, "sbx"));
        for bad in ["sbx_", "sbx", "key_abc", "sbx_../x", "sbx_a/b", ""] {
            assert!(!is_valid(bad, "sbx"), "{bad}");
        }
        assert_ne!(new_id("sbx"), new_id("sbx"));
    }
}

//! Reading request bodies: one JSON object, with one sentence naming the field on failure.

use serde::Deserialize;

/// Parses a request body: a JSON object (empty means `{}`). The error is a sentence for the
/// caller, naming the field at fault when there is one.
pub fn parse_body<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, String> {
    let text: &[u8] = match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => b"{}",
        Some(b'{') => bytes,
        // serde would read a struct from an array too: only objects are bodies.
        Some(_) => return Err("the body must be a JSON object ({\"field\": value, …})".into()),
    };
    let fail = |field: String, e: serde_json::Error| match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            format!("the body is not valid JSON: {e}")
        }
        _ if field != "." => format!("invalid request body: field {field}: {e}"),
        _ => format!("invalid request body: {e}"),
    };
    let mut de = serde_json::Deserializer::from_slice(text);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        fail(field, e.into_inner())
    })?;
    de.end().map_err(|e| fail(".".into(), e))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ExposeRequest, SetTimeoutRequest};

    #[test]
    fn empty_is_an_empty_object_and_arrays_are_refused() {
        assert!(parse_body::<crate::CreateSandboxRequest>(b"  ").is_ok());
        let err = parse_body::<crate::CreateSandboxRequest>(b"[null]").unwrap_err();
        assert!(err.contains("JSON object"), "{err}");
    }

    #[test]
    fn errors_name_the_field() {
        let err = parse_body::<ExposeRequest>(br#"{"port": 70000}"#).unwrap_err();
        assert!(
            err.starts_with("invalid request body: field port:"),
            "{err}"
        );
        let err = parse_body::<SetTimeoutRequest>(br#"{"timeout_ms": 1} x"#).unwrap_err();
        assert!(err.starts_with("the body is not valid JSON"), "{err}");
    }
}

//! Output bytes as text: cut at whole UTF-8 characters so that a character split across
//! two chunks is neither mangled nor duplicated.

/// `bytes` as text, cut before an incomplete UTF-8 character at the end (which the next
/// read returns whole) unless `finished`; the number of bytes used.
pub fn whole_chars(bytes: &[u8], finished: bool) -> (String, usize) {
    let used = match std::str::from_utf8(bytes) {
        Err(e) if e.error_len().is_none() && !finished => e.valid_up_to(),
        _ => bytes.len(),
    };
    (String::from_utf8_lossy(&bytes[..used]).into_owned(), used)
}

/// A stream of chunks turned into text, holding back a split character until its end
/// arrives.
#[derive(Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// The text that `chunk` completes (possibly empty).
    pub fn push(&mut self, chunk: &[u8]) -> String {
        self.pending.extend_from_slice(chunk);
        let (text, used) = whole_chars(&self.pending, false);
        self.pending.drain(..used);
        text
    }

    /// Whatever is held back, as text.
    pub fn finish(&mut self) -> String {
        let (text, _) = whole_chars(&std::mem::take(&mut self.pending), true);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incomplete_character_waits_for_the_next_read() {
        let bytes = "héllo".as_bytes();
        let cut = &bytes[..2];
        assert_eq!(whole_chars(cut, false), ("h".to_string(), 1));
        assert_eq!(whole_chars(cut, true).1, 2);
        assert_eq!(
            whole_chars(bytes, false),
            ("héllo".to_string(), bytes.len())
        );
    }

    #[test]
    fn a_split_character_comes_out_once_and_whole() {
        let mut s = Utf8Stream::default();
        let bytes = "a€b".as_bytes();
        assert_eq!(s.push(&bytes[..2]), "a");
        assert_eq!(s.push(&bytes[2..]), "€b");
        assert_eq!(s.finish(), "");
    }
}

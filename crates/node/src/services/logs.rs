//! A service's log: the lines its processes write (cut into lines here, each stamped with
//! the time its first byte was read) and the node's own `system` lines, kept in the store as
//! a bounded ring and handed to followers as they are appended.

use std::sync::Arc;

use ai2in_api::{LogLine, LogStream};
use ai2in_store::{LogRecord, Store};
use tokio::sync::broadcast;

use crate::error::NodeError;
use crate::time::{now_ms, rfc3339};

/// Longest line kept whole; the rest of a longer one is counted, not kept.
pub(crate) const MAX_LINE: usize = 8 * 1024;
/// Lines a slow follower may fall behind before it misses some (and is told so).
const FOLLOW_BACKLOG: usize = 4096;

/// Cuts one stream's bytes into lines.
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    partial: Vec<u8>,
    /// Bytes of the current line past [`MAX_LINE`].
    cut: u64,
    /// When the current line's first byte was read.
    at_ms: i64,
}

impl LineSplitter {
    /// Feeds bytes read at `at_ms`, appending the lines they end to `out`.
    pub fn push(&mut self, mut data: &[u8], at_ms: i64, out: &mut Vec<(i64, String)>) {
        while !data.is_empty() {
            if self.partial.is_empty() && self.cut == 0 {
                self.at_ms = at_ms;
            }
            let (piece, ends) = match data.iter().position(|&b| b == b'\n') {
                Some(i) => (&data[..i], Some(i + 1)),
                None => (data, None),
            };
            let room = MAX_LINE - self.partial.len();
            self.partial
                .extend_from_slice(&piece[..piece.len().min(room)]);
            self.cut += piece.len().saturating_sub(room) as u64;
            match ends {
                Some(n) => {
                    out.push(self.take());
                    data = &data[n..];
                }
                None => data = &[],
            }
        }
    }

    /// The line under way, if any (the process ended without its newline).
    pub fn flush(&mut self, out: &mut Vec<(i64, String)>) {
        if !self.partial.is_empty() || self.cut > 0 {
            out.push(self.take());
        }
    }

    /// Bytes read but not yet in a line.
    pub fn pending(&self) -> u64 {
        self.partial.len() as u64 + self.cut
    }

    fn take(&mut self) -> (i64, String) {
        let mut bytes = std::mem::take(&mut self.partial);
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        let mut line = String::from_utf8_lossy(&bytes).into_owned();
        if self.cut > 0 {
            line.push_str(&format!("… [{} bytes cut]", self.cut));
        }
        self.cut = 0;
        (self.at_ms, line)
    }
}

/// The log of one service.
pub(crate) struct ServiceLog {
    id: String,
    store: Arc<Store>,
    keep: u64,
    lines: broadcast::Sender<LogRecord>,
}

impl ServiceLog {
    pub fn new(id: &str, store: Arc<Store>, keep: u64) -> Self {
        ServiceLog {
            id: id.to_string(),
            store,
            keep,
            lines: broadcast::channel(FOLLOW_BACKLOG).0,
        }
    }

    /// Appends a line saying what the node did.
    pub fn system(&self, line: impl Into<String>) {
        let line = line.into();
        tracing::info!(service = %self.id, "{line}");
        if let Err(e) = self.append(vec![(now_ms(), "system", line)], None) {
            tracing::warn!(service = %self.id, error = %e, "could not write the service's log");
        }
    }

    /// Appends lines of an instance's output and records how far it is read (see
    /// [`Store::append_logs`]).
    pub fn append(
        &self,
        lines: Vec<(i64, &'static str, String)>,
        offsets: Option<(&str, u64, u64)>,
    ) -> Result<(), NodeError> {
        let added = self
            .store
            .append_logs(&self.id, lines, offsets, self.keep)?;
        for line in added {
            // Nobody following is fine.
            let _ = self.lines.send(line);
        }
        Ok(())
    }

    /// Lines as they are appended from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<LogRecord> {
        self.lines.subscribe()
    }
}

/// The API's form of a stored line.
pub(crate) fn log_line(r: LogRecord) -> LogLine {
    LogLine {
        seq: r.seq,
        timestamp: rfc3339(r.at_ms),
        stream: match r.stream.as_str() {
            "stdout" => LogStream::Stdout,
            "stderr" => LogStream::Stderr,
            _ => LogStream::System,
        },
        line: r.line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(chunks: &[(&[u8], i64)]) -> Vec<(i64, String)> {
        let mut splitter = LineSplitter::default();
        let mut out = Vec::new();
        for (data, at) in chunks {
            splitter.push(data, *at, &mut out);
        }
        splitter.flush(&mut out);
        out
    }

    #[test]
    fn lines_keep_the_time_of_their_first_byte() {
        assert_eq!(
            lines(&[(b"a\nb", 1), (b"c\r\nd", 2)]),
            [(1, "a".into()), (1, "bc".into()), (2, "d".into())]
        );
        assert_eq!(
            lines(&[(b"\n\n", 5)]),
            [(5, String::new()), (5, String::new())]
        );
    }

    #[test]
    fn long_lines_are_cut_and_marked_and_bytes_that_are_not_utf8_replaced() {
        let long = vec![b'x'; MAX_LINE + 100];
        let out = lines(&[(&long, 1), (b"yz\n", 2), (b"ok\xff\xfe\n", 3)]);
        assert_eq!(out.len(), 2);
        assert!(out[0].1.starts_with(&"x".repeat(MAX_LINE)));
        assert!(
            out[0].1.ends_with("… [102 bytes cut]"),
            "{}",
            &out[0].1[MAX_LINE..]
        );
        assert_eq!(out[1], (3, "ok\u{fffd}\u{fffd}".into()));
    }

    #[test]
    fn pending_counts_what_no_line_holds_yet() {
        let mut splitter = LineSplitter::default();
        let mut out = Vec::new();
        splitter.push(b"done\npart", 1, &mut out);
        assert_eq!(splitter.pending(), 4);
    }
}

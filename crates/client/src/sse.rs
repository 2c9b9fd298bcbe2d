//! Server-Sent Events read from a response body: `event:` and `data:` fields, events ended
//! by a blank line, comments (the node's keep-alives) skipped. Only what the node sends is
//! supported: no `id:` or `retry:` handling, no reconnection.

use futures_util::{Stream, StreamExt};

use crate::error::{Error, Result};

/// One event: its name (`message` when the node gave none) and its data lines joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    pub event: String,
    pub data: String,
}

impl SseEvent {
    /// The data decoded as JSON of type `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_str(&self.data)
            .map_err(|e| Error::InvalidResponse(format!("`{}` event: {e}", self.event)))
    }
}

/// Cuts a byte stream into events; bytes of an unfinished line wait for the next chunk.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    buf: Vec<u8>,
    event: Option<String>,
    data: Option<String>,
}

impl SseParser {
    /// Feeds `chunk`; answers the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut start = 0;
        while let Some(end) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&self.buf[start..start + end]).into_owned();
            start += end + 1;
            events.extend(self.line(line.trim_end_matches('\r')));
        }
        self.buf.drain(..start);
        events
    }

    /// One line; a blank one dispatches the event gathered so far.
    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            let event = self.event.take();
            return self.data.take().map(|data| SseEvent {
                event: event.unwrap_or_else(|| "message".into()),
                data,
            });
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.event = Some(value.to_string()),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            // Comments (keep-alives, field "") and fields we do not use.
            _ => {}
        }
        None
    }
}

/// The events of `response`'s body, in order; ends with the body.
pub(crate) fn events(response: reqwest::Response) -> impl Stream<Item = Result<SseEvent>> + Send {
    let body = response.bytes_stream();
    futures_util::stream::unfold(
        (body, SseParser::default()),
        |(mut body, mut parser)| async move {
            let chunk = body.next().await?;
            let items: Vec<Result<SseEvent>> = match chunk {
                Ok(bytes) => parser.push(&bytes).into_iter().map(Ok).collect(),
                Err(e) => vec![Err(Error::from(e))],
            };
            Some((futures_util::stream::iter(items), (body, parser)))
        },
    )
    .flatten()
}

/// The events named `name` of an open-ended stream (a watch's, a service's log), decoded
/// as JSON of type `T`: an `error` event becomes [`Error::Stream`] with the node's sentence,
/// other events are skipped; the stream ends with the body.
pub(crate) fn named<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
    name: &'static str,
) -> impl Stream<Item = Result<T>> + Send + Unpin + 'static {
    Box::pin(events(response).filter_map(move |item| async move {
        match item {
            Err(e) => Some(Err(e)),
            Ok(event) if event.event == name => Some(event.json()),
            Ok(event) if event.event == "error" => Some(Err(Error::Stream(
                event
                    .json::<ai2in_api::ErrorBody>()
                    .map_or(event.data, |b| b.error),
            ))),
            Ok(_) => None,
        }
    }))
}

/// Typed events of an SSE stream that ends with a last event: `decode` turns an SSE event
/// into one (`None` skips events it does not know), the stream closes after the event
/// `is_last` picks or an error, and ends with an error naming `what` if it stops before.
pub(crate) fn until_last<T: Send + 'static>(
    events: impl Stream<Item = Result<SseEvent>> + Send + 'static,
    decode: fn(&SseEvent) -> Result<Option<T>>,
    is_last: fn(&T) -> bool,
    what: &'static str,
) -> impl Stream<Item = Result<T>> + Send {
    futures_util::stream::unfold(
        (Box::pin(events), false),
        move |(mut events, finished)| async move {
            if finished {
                return None;
            }
            loop {
                let item = match events.next().await {
                    None => Err(Error::Stream(format!(
                        "the {what}'s stream ended before its `done` event"
                    ))),
                    Some(Err(e)) => Err(e),
                    Some(Ok(sse)) => match decode(&sse) {
                        Ok(None) => continue,
                        Ok(Some(event)) => Ok(event),
                        Err(e) => Err(e),
                    },
                };
                let last = item.as_ref().map_or(true, is_last);
                return Some((item, (events, last)));
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, data: &str) -> SseEvent {
        SseEvent {
            event: name.into(),
            data: data.into(),
        }
    }

    #[test]
    fn events_split_across_chunks_come_out_whole_and_in_order() {
        let mut p = SseParser::default();
        assert_eq!(p.push(b"event: stdout\ndata: {\"te"), vec![]);
        assert_eq!(
            p.push(b"xt\":\"a\"}\n\n:keep-alive\n\nevent:done\r\ndata:{}\r\n\r\n"),
            vec![event("stdout", r#"{"text":"a"}"#), event("done", "{}")]
        );
    }

    #[test]
    fn data_lines_join_and_unnamed_events_are_messages() {
        let mut p = SseParser::default();
        assert_eq!(
            p.push("data: a\ndata: é\n\n".as_bytes()),
            vec![event("message", "a\né")]
        );
    }
}

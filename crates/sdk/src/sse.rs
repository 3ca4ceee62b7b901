//! A server-sent events parser (the WHATWG event-stream format): bytes in, events out.
//!
//! Lines end with LF, CR or CRLF; `data` lines join with LF; `event`, `id` and `retry` fields;
//! lines starting with `:` are comments (heartbeats); an empty line dispatches the event. An
//! `id` field sets the last event id even on an event that carries no data.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct SseEvent {
    /// `event:` (default `message`).
    pub event: String,
    /// The joined `data:` lines.
    pub data: String,
    /// The `id:` of this event, if it had one.
    pub id: Option<String>,
}

/// What the parser produced from a chunk of bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    Event(SseEvent),
    /// A comment line (the server's heartbeat).
    Comment,
    /// `retry:` milliseconds.
    Retry(u64),
}

/// Incremental parser: feed it chunks as they arrive.
#[derive(Debug, Default)]
pub(crate) struct Parser {
    buffer: Vec<u8>,
    pending_cr: bool,
    event: String,
    data: Vec<String>,
    id: Option<String>,
    /// Bytes held at most before the stream is declared broken (a line without an end).
    limit: usize,
}

/// A line longer than this is an error (the server never sends one).
const DEFAULT_LIMIT: usize = 64 * 1024 * 1024;

impl Parser {
    pub(crate) fn new() -> Self {
        Parser {
            limit: DEFAULT_LIMIT,
            ..Parser::default()
        }
    }

    /// Parses `chunk`, appending what it completes to `out`; `Err` when a line grows past the
    /// limit.
    pub(crate) fn feed(&mut self, chunk: &[u8], out: &mut Vec<Item>) -> Result<(), ()> {
        for &byte in chunk {
            if self.pending_cr {
                self.pending_cr = false;
                if byte == b'\n' {
                    continue;
                }
            }
            match byte {
                b'\n' => self.line(out),
                b'\r' => {
                    self.pending_cr = true;
                    self.line(out);
                }
                _ => {
                    self.buffer.push(byte);
                    if self.buffer.len() > self.limit {
                        return Err(());
                    }
                }
            }
        }
        Ok(())
    }

    fn line(&mut self, out: &mut Vec<Item>) {
        let raw = std::mem::take(&mut self.buffer);
        let line = String::from_utf8_lossy(&raw);
        let line = line.strip_prefix('\u{feff}').unwrap_or(&line);
        if line.is_empty() {
            if !self.data.is_empty() || self.id.is_some() {
                out.push(Item::Event(SseEvent {
                    event: if self.event.is_empty() {
                        "message".to_owned()
                    } else {
                        std::mem::take(&mut self.event)
                    },
                    data: std::mem::take(&mut self.data).join("\n"),
                    id: self.id.take(),
                }));
            }
            self.event.clear();
            return;
        }
        if line.starts_with(':') {
            out.push(Item::Comment);
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = value.to_owned(),
            "data" => self.data.push(value.to_owned()),
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            "retry" => {
                if let Ok(ms) = value.parse() {
                    out.push(Item::Retry(ms));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&[u8]]) -> Vec<Item> {
        let mut p = Parser::new();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn events_comments_ids_and_line_endings() {
        let out = parse(&[
            b"event: put\r\ndata: {\"a\":\ndata: 1}\r\nid: 7\r\n\r\n: heartbeat\n\nretry: 500\n",
        ]);
        assert_eq!(
            out,
            vec![
                Item::Event(SseEvent {
                    event: "put".into(),
                    data: "{\"a\":\n1}".into(),
                    id: Some("7".into())
                }),
                Item::Comment,
                Item::Retry(500),
            ]
        );
    }

    #[test]
    fn chunks_may_split_anywhere() {
        let text = b"event: patch\ndata: x\n\nevent: delete\ndata: y\nid: 9\n\n";
        for split in 0..text.len() {
            let out = parse(&[&text[..split], &text[split..]]);
            assert_eq!(out.len(), 2, "split at {split}");
        }
        // CR at the end of one chunk and LF at the start of the next is one line end.
        let out = parse(&[b"data: a\r", b"\n\r\n"]);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn a_default_event_is_a_message_and_ids_alone_dispatch() {
        let out = parse(&[b"data: x\n\nid: 3\n\n"]);
        assert!(matches!(&out[0], Item::Event(e) if e.event == "message"));
        assert!(
            matches!(&out[1], Item::Event(e) if e.id.as_deref() == Some("3") && e.data.is_empty())
        );
    }
}

//! Requests to services carry `X-Forwarded-For`, `-Proto` and `-Host`, on every request of a
//! kept-alive connection, also on the proxy's fast path: the client's side of a joined
//! connection is read request by request (heads parsed, bodies passed on by their length or
//! their chunks, never buffered whole), the headers added to each head. A request whose
//! framing is ambiguous (a `Transfer-Encoding` other than `chunked`, a bad or repeated
//! `Content-Length`) ends the connection: a client must not slip a request past the proxy
//! without the headers. After an upgrade (WebSocket) the bytes pass as they are.

use std::io;
use std::net::IpAddr;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest request head accepted.
const HEAD_MAX: usize = 16 * 1024;
/// Longest chunk-size or trailer line.
const LINE_MAX: usize = 4096;

/// What is added to each request.
pub(crate) struct Forwarded {
    /// The client's address.
    pub peer: Option<IpAddr>,
    /// The scheme clients use (`https` behind a TLS front); `None` leaves
    /// `X-Forwarded-Proto` to the next hop (a gateway's node knows it).
    pub scheme: Option<String>,
}

enum Body {
    None,
    Length(u64),
    Chunked,
}

/// A parsed request head.
struct Head {
    len: usize,
    body: Body,
    /// The rest of the connection is not HTTP requests (an upgrade, `CONNECT`).
    raw_after: bool,
    /// The head to send: the client's, with the headers added (and one `X-Forwarded-For`
    /// listing the client after any the request named).
    rewritten: Vec<u8>,
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

impl Forwarded {
    /// Parses the head at the start of `buf`: `Ok(None)` while incomplete.
    fn head(&self, buf: &[u8]) -> io::Result<Option<Head>> {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut request = httparse::Request::new(&mut headers);
        let len = match request.parse(buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() < HEAD_MAX => return Ok(None),
            Ok(httparse::Status::Partial) => return Err(bad("request head too long")),
            Err(_) => return Err(bad("not an HTTP request")),
        };
        let (mut length, mut chunked, mut upgrade) = (None, false, false);
        let (mut proto, mut forwarded_host, mut host) = (false, false, None);
        let mut forwarded_for = Vec::new();
        let mut rewritten = Vec::with_capacity(len + 128);
        rewritten.extend_from_slice(
            format!(
                "{} {} HTTP/1.{}\r\n",
                request.method.unwrap_or("GET"),
                request.path.unwrap_or("/"),
                request.version.unwrap_or(1)
            )
            .as_bytes(),
        );
        for h in request.headers.iter() {
            let value = std::str::from_utf8(h.value).map_err(|_| bad("header not text"))?;
            let name = h.name;
            if name.eq_ignore_ascii_case("content-length") {
                let n: u64 = value
                    .trim()
                    .parse()
                    .map_err(|_| bad("bad content-length"))?;
                if length.replace(n).is_some_and(|m| m != n) {
                    return Err(bad("two content-lengths"));
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                if !value.trim().eq_ignore_ascii_case("chunked") || chunked {
                    return Err(bad("a transfer-encoding the proxy does not frame"));
                }
                chunked = true;
            } else if name.eq_ignore_ascii_case("upgrade") {
                upgrade = true;
            } else if name.eq_ignore_ascii_case("x-forwarded-proto") {
                proto = true;
            } else if name.eq_ignore_ascii_case("x-forwarded-host") {
                forwarded_host = true;
            } else if name.eq_ignore_ascii_case("host") {
                host = Some(value.to_string());
            }
            if name.eq_ignore_ascii_case("x-forwarded-for") {
                forwarded_for.push(value.trim().to_string());
            } else {
                rewritten.extend_from_slice(name.as_bytes());
                rewritten.extend_from_slice(b": ");
                rewritten.extend_from_slice(h.value);
                rewritten.extend_from_slice(b"\r\n");
            }
        }
        let body = match (chunked, length) {
            (true, Some(_)) => return Err(bad("both chunked and a content-length")),
            (true, None) => Body::Chunked,
            (false, Some(n)) => Body::Length(n),
            (false, None) => Body::None,
        };
        let mut extra = String::new();
        if let Some(peer) = self.peer {
            forwarded_for.push(peer.to_string());
        }
        if !forwarded_for.is_empty() {
            extra.push_str(&format!(
                "X-Forwarded-For: {}\r\n",
                forwarded_for.join(", ")
            ));
        }
        if let (false, Some(scheme)) = (proto, &self.scheme) {
            extra.push_str(&format!("X-Forwarded-Proto: {scheme}\r\n"));
        }
        if let (false, Some(host)) = (forwarded_host, host) {
            extra.push_str(&format!("X-Forwarded-Host: {host}\r\n"));
        }
        extra.push_str("\r\n");
        rewritten.extend_from_slice(extra.as_bytes());
        Ok(Some(Head {
            len,
            body,
            raw_after: upgrade || request.method == Some("CONNECT"),
            rewritten,
        }))
    }

    /// Passes requests from `from` to `to` (with `buf` read already), adding the headers to
    /// each, until `from` ends.
    pub async fn relay<R, W>(&self, mut from: R, mut to: W, mut buf: Vec<u8>) -> io::Result<()>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        loop {
            let head = loop {
                if let Some(head) = self.head(&buf)? {
                    break head;
                }
                if from.read_buf(&mut buf).await? == 0 {
                    // The client is done (a partial head is dropped with the connection).
                    return to.shutdown().await;
                }
            };
            to.write_all(&head.rewritten).await?;
            buf.drain(..head.len);
            if head.raw_after {
                to.write_all(&buf).await?;
                tokio::io::copy(&mut from, &mut to).await?;
                return to.shutdown().await;
            }
            match head.body {
                Body::None => {}
                Body::Length(n) => pass(&mut from, &mut to, &mut buf, n).await?,
                Body::Chunked => loop {
                    let line = read_line(&mut from, &mut buf).await?;
                    let size = std::str::from_utf8(&buf[..line])
                        .ok()
                        .and_then(|l| l.trim_end().split(';').next())
                        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
                        .ok_or_else(|| bad("bad chunk size"))?;
                    pass(&mut from, &mut to, &mut buf, line as u64).await?;
                    if size == 0 {
                        // Trailers, up to the empty line.
                        loop {
                            let line = read_line(&mut from, &mut buf).await?;
                            let empty = line == 2;
                            pass(&mut from, &mut to, &mut buf, line as u64).await?;
                            if empty {
                                break;
                            }
                        }
                        break;
                    }
                    pass(&mut from, &mut to, &mut buf, size + 2).await?;
                },
            }
        }
    }
}

/// The length of the line (with its CRLF) at the start of `buf`, reading more as needed.
async fn read_line<R: AsyncRead + Unpin>(from: &mut R, buf: &mut Vec<u8>) -> io::Result<usize> {
    loop {
        if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
            return Ok(i + 2);
        }
        if buf.len() > LINE_MAX {
            return Err(bad("line too long"));
        }
        if from.read_buf(buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// Passes `n` bytes: those in `buf` first, then from `from`.
async fn pass<R, W>(from: &mut R, to: &mut W, buf: &mut Vec<u8>, n: u64) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let have = (buf.len() as u64).min(n) as usize;
    to.write_all(&buf[..have]).await?;
    buf.drain(..have);
    let rest = n - have as u64;
    if rest > 0 {
        let copied = tokio::io::copy(&mut from.take(rest), to).await?;
        if copied < rest {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn relayed(input: &[u8]) -> (io::Result<()>, String) {
        let (result, out) = relayed_bytes(input).await;
        (result, String::from_utf8(out).unwrap())
    }

    async fn relayed_bytes(input: &[u8]) -> (io::Result<()>, Vec<u8>) {
        let forwarded = Forwarded {
            peer: Some("192.0.2.7".parse().unwrap()),
            scheme: Some("http".into()),
        };
        let mut out = Vec::new();
        let result = forwarded.relay(input, &mut out, Vec::new()).await;
        (result, out)
    }

    #[tokio::test]
    async fn every_request_of_a_connection_gets_the_headers() {
        let input = b"GET /a HTTP/1.1\r\nHost: web-x.localhost\r\n\r\n\
            POST /b HTTP/1.1\r\nHost: web-x.localhost\r\nContent-Length: 5\r\n\r\nhello\
            POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\
            X-Forwarded-Proto: https\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n\
            GET /d HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n";
        let (result, out) = relayed(input).await;
        result.unwrap();
        assert_eq!(out.matches("X-Forwarded-For: 192.0.2.7\r\n").count(), 3);
        assert_eq!(
            out.matches("X-Forwarded-For: 10.0.0.1, 192.0.2.7\r\n")
                .count(),
            1
        );
        assert_eq!(out.matches("X-Forwarded-Proto: http\r\n").count(), 3);
        assert!(out.contains("X-Forwarded-Host: web-x.localhost\r\n\r\nhello"));
        assert!(out.contains("\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\nGET /d"));
        assert!(out.ends_with("X-Forwarded-Host: h\r\n\r\n"));
    }

    #[tokio::test]
    async fn ambiguous_framing_ends_the_connection() {
        for input in [
            &b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"NOT HTTP\r\n\r\n",
        ] {
            let (result, out) = relayed(input).await;
            assert!(result.is_err(), "{}", String::from_utf8_lossy(input));
            assert!(out.is_empty());
        }
    }

    #[tokio::test]
    async fn after_an_upgrade_bytes_pass_as_they_are() {
        let input =
            b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n\x81\x05GET / HTTP/1.1";
        let (result, out) = relayed_bytes(input).await;
        result.unwrap();
        assert!(out.ends_with(b"\r\n\r\n\x81\x05GET / HTTP/1.1"));
        let text = String::from_utf8_lossy(&out);
        assert_eq!(text.matches("X-Forwarded-For").count(), 1);
    }
}

//! The proxy's fast path. A new connection whose first request names an exposed port
//! (`Host: {port}-{sandbox_id}.{domain}`, HTTP/1.x) is joined to that port byte for byte:
//! after the first request head, nothing is parsed, so the proxy costs little more than
//! forwarding. Every other connection (API calls, HTTP/2, first requests that would fail)
//! goes to the HTTP server, whose proxy layer answers the errors and serves the rest
//! request by request. Pausing or deleting a sandbox cuts its joined connections, so that
//! clients come back and get the 409 or 404.
//!
//! Accepting, the first look and the joined connections run on a thread of their own with a
//! single-threaded runtime: a joined connection's bytes then never wait for a wake-up across
//! threads (measured: a third less added latency than on the API's multi-threaded runtime).

use std::future::pending;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use ai2in_node::Node;
use axum::serve::Listener;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, timeout_at};

/// Longest first request head looked at; longer ones go to the HTTP server.
const HEAD_MAX: usize = 8192;
/// How long a client may take to send its first request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// The API's listener, less the connections joined to sandbox ports (served on the proxy's
/// thread).
pub struct SplitListener {
    connections: mpsc::Receiver<(TcpStream, SocketAddr)>,
    local: SocketAddr,
}

impl SplitListener {
    /// Starts accepting on `listener`.
    pub fn new(listener: TcpListener, node: Node) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, connections) = mpsc::channel(1024);
        let listener = listener.into_std()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("ai2in-proxy".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => accept(listener, node, tx).await,
                        Err(e) => tracing::error!(error = %e, "the proxy cannot listen"),
                    }
                })
            })?;
        Ok(SplitListener { connections, local })
    }
}

impl Listener for SplitListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            let Some((stream, addr)) = self.connections.recv().await else {
                return pending().await;
            };
            // Made on the proxy's thread: registered again with this runtime.
            if let Ok(stream) = stream.into_std().and_then(TcpStream::from_std) {
                return (stream, addr);
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

async fn accept(listener: TcpListener, node: Node, tx: mpsc::Sender<(TcpStream, SocketAddr)>) {
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                if tx.is_closed() {
                    return;
                }
                // Out of descriptors, most likely: let some close.
                tracing::warn!(error = %e, "accept failed");
                sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Small answers leave at once rather than waiting for more to coalesce (Nagle).
        let _ = stream.set_nodelay(true);
        let (node, tx) = (node.clone(), tx.clone());
        tokio::spawn(async move {
            if let Some(stream) = join(&node, stream).await {
                let _ = tx.send((stream, addr)).await;
            }
        });
    }
}

/// Joins `client` to the sandbox port its first request names, until either side closes;
/// gives the connection back when the HTTP server should serve it.
async fn join(node: &Node, mut client: TcpStream) -> Option<TcpStream> {
    let Some((id, port)) = first_target(node, &client).await else {
        return Some(client);
    };
    let cut = node.connection_cutter(&id);
    let cut = cut.notified();
    tokio::pin!(cut);
    cut.as_mut().enable();
    if node.check_exposed(&id, port).is_err() {
        return Some(client);
    }
    let Ok(mut upstream) = node.connect_exposed(&id, port).await else {
        return Some(client);
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
        _ = cut => {}
    }
    None
}

/// The sandbox and port of the connection's first request, when it is an HTTP/1 request
/// for a proxy host. Only peeks: the bytes stay for whoever serves the connection.
async fn first_target(node: &Node, client: &TcpStream) -> Option<(String, u16)> {
    let deadline = Instant::now() + HEAD_TIMEOUT;
    let mut buf = vec![0u8; HEAD_MAX];
    loop {
        let n = timeout_at(deadline, client.peek(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf[..n]) {
            Ok(httparse::Status::Complete(_)) => {
                let header = |name: &str| {
                    request
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .and_then(|h| std::str::from_utf8(h.value).ok())
                };
                // An upgrade to HTTP/2 is the HTTP server's to answer.
                if header("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("h2c")) {
                    return None;
                }
                return node.proxy_target(header("host")?);
            }
            // The rest of the head is on its way: look again shortly (a peek returns at
            // once while any byte is waiting).
            Ok(httparse::Status::Partial) if n < buf.len() => {
                sleep(Duration::from_millis(1)).await;
            }
            _ => return None,
        }
    }
}

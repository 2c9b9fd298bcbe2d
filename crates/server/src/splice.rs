//! The proxy's fast path. The first request head of every new connection is read here (a
//! slow client is dropped after a while, without ever reaching the HTTP server). A connection
//! whose first request names an exposed port (`Host: {port}-{id}.{domain}`, HTTP/1.x) is
//! joined to that port; one that names a service (`{name}-{id}.{domain}`) to the port of its
//! ready instance. The requests' heads are read one by one to add `X-Forwarded-*`
//! (`forwarded`), as on the HTTP server's path; bodies and answers pass as they are. Every
//! other connection (API calls, HTTP/2, first requests that would fail) goes to the HTTP
//! server, whose proxy layer answers the errors and serves the rest request by request.
//! Pausing or deleting a sandbox cuts its joined connections, so that clients come back and
//! get the 409 or 404; so does passing no byte for `[proxy] idle_timeout_ms`.
//!
//! Accepting, the first look and the joined connections run on one thread per core, each
//! with a single-threaded runtime accepting from the same socket: a joined connection's bytes
//! never wait for a wake-up across threads (measured: a third less added latency than on the
//! API's multi-threaded runtime), and the proxy uses every core.

use std::future::{Future, pending};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use ai2in_node::{Node, ProxyTarget};

use crate::forwarded::Forwarded;
use crate::idle::{Activity, Watched};
use axum::serve::Listener;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, timeout_at};

/// Longest first request head looked at; longer ones go to the HTTP server.
const HEAD_MAX: usize = 8192;
/// How long a client may take to send its first request head; a slower one is dropped.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// What the fast path joins: the node (exposed ports and services to their sandboxes) or a
/// gateway (the same URLs to the node that serves them).
pub(crate) trait Joiner: Clone + Send + Sync + 'static {
    /// What a first request's `Host` names.
    type Target: Send + 'static;

    /// What `host` names, when connections for it are joined here.
    fn target(&self, host: &str) -> Option<Self::Target>;

    /// Joins `client` (its first request head read, in `client`'s prefix) to `target` until
    /// either side closes; gives it back when the HTTP server should serve it instead (it
    /// answers the errors), `None` once it was served here.
    fn join(
        &self,
        target: Self::Target,
        client: Prefixed,
    ) -> impl Future<Output = Option<Prefixed>> + Send;
}

impl Joiner for Node {
    type Target = ProxyTarget;

    fn target(&self, host: &str) -> Option<ProxyTarget> {
        self.proxy_target(host)
    }

    async fn join(&self, target: ProxyTarget, client: Prefixed) -> Option<Prefixed> {
        join_sandbox(self, target, client).await
    }
}

/// The API's listener, less the connections joined to sandbox ports (served on the proxy's
/// thread).
pub struct SplitListener {
    connections: mpsc::Receiver<(Prefixed, SocketAddr)>,
    local: SocketAddr,
}

impl SplitListener {
    /// Starts accepting on `listener`, on one thread per core.
    pub(crate) fn new(listener: TcpListener, joiner: impl Joiner) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, connections) = mpsc::channel(1024);
        let listener = listener.into_std()?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        for i in 0..threads {
            let listener = listener.try_clone()?;
            let (joiner, tx) = (joiner.clone(), tx.clone());
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            std::thread::Builder::new()
                .name(format!("ai2in-proxy-{i}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        match TcpListener::from_std(listener) {
                            Ok(listener) => accept(listener, joiner, tx).await,
                            Err(e) => tracing::error!(error = %e, "the proxy cannot listen"),
                        }
                    })
                })?;
        }
        Ok(SplitListener { connections, local })
    }
}

impl Listener for SplitListener {
    type Io = Prefixed;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Prefixed, SocketAddr) {
        loop {
            let Some((stream, addr)) = self.connections.recv().await else {
                return pending().await;
            };
            // Made on the proxy's thread: registered again with this runtime.
            let Prefixed { head, read, stream } = stream;
            if let Ok(stream) = stream.into_std().and_then(TcpStream::from_std) {
                return (Prefixed { head, read, stream }, addr);
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

async fn accept(
    listener: TcpListener,
    joiner: impl Joiner,
    tx: mpsc::Sender<(Prefixed, SocketAddr)>,
) {
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
        let (joiner, tx) = (joiner.clone(), tx.clone());
        tokio::spawn(async move {
            if let Some(stream) = join(&joiner, stream).await {
                let _ = tx.send((stream, addr)).await;
            }
        });
    }
}

/// Joins `client` to what its first request names, until either side closes; gives the
/// connection back (with the bytes read so far) when the HTTP server should serve it, and
/// `None` once it is served here or was given up (no head in time).
async fn join<J: Joiner>(joiner: &J, mut client: TcpStream) -> Option<Prefixed> {
    let (head, target) = first_head(joiner, &mut client).await?;
    let client = Prefixed {
        head,
        read: 0,
        stream: client,
    };
    match target {
        Some(target) => joiner.join(target, client).await,
        None => Some(client),
    }
}

/// Joins `client` to the sandbox port `target` names.
async fn join_sandbox(node: &Node, target: ProxyTarget, client: Prefixed) -> Option<Prefixed> {
    let Ok(target) = node.upstream(&target) else {
        return Some(client);
    };
    let cut = node.connection_cutter(&target.sandbox);
    let cut = cut.notified();
    tokio::pin!(cut);
    cut.as_mut().enable();
    let Ok(mut upstream) = node.connect_in(&target.sandbox, target.port).await else {
        return Some(client);
    };
    let Prefixed {
        head,
        stream: mut client,
        ..
    } = client;
    // Each request gets the X-Forwarded-* headers; silence for the idle timeout ends it.
    let forwarded = Forwarded {
        peer: client.peer_addr().ok().map(|a| a.ip().to_canonical()),
        scheme: Some(node.public_scheme().to_string()),
    };
    tokio::select! {
        () = relay(&forwarded, &mut client, head, &mut upstream, node.proxy_idle_timeout()) => {}
        _ = cut => {}
    }
    None
}

/// Passes `client`'s requests (`head` first, each with the `forwarded` headers) to
/// `upstream` and its answers back, until either side closes or neither sends for `idle`.
pub(crate) async fn relay(
    forwarded: &Forwarded,
    client: &mut TcpStream,
    head: Vec<u8>,
    upstream: &mut TcpStream,
    idle: Duration,
) {
    let activity = Activity::new();
    let forward = async {
        let (from_client, to_client) = client.split();
        let (from_upstream, to_upstream) = upstream.split();
        let from_client = Watched::new(from_client, &activity);
        let answers = async {
            let mut to_client = Watched::new(to_client, &activity);
            tokio::io::copy(&mut { from_upstream }, &mut to_client).await?;
            to_client.shutdown().await
        };
        tokio::try_join!(forwarded.relay(from_client, to_upstream, head), answers)
    };
    tokio::select! {
        _ = forward => {}
        () = activity.idle_for(idle) => {}
    }
}

/// Reads the connection's first request head: the bytes read, and what it names when it is
/// an HTTP/1 request for a proxy host. `None` when the client sent no complete head in time
/// (a slow client gets nothing more).
async fn first_head<J: Joiner>(
    joiner: &J,
    client: &mut TcpStream,
) -> Option<(Vec<u8>, Option<J::Target>)> {
    let deadline = Instant::now() + HEAD_TIMEOUT;
    let mut head = Vec::with_capacity(1024);
    loop {
        let n = timeout_at(deadline, client.read_buf(&mut head))
            .await
            .ok()?
            .ok()?;
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut headers);
        let target = match request.parse(&head) {
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
                    None
                } else {
                    header("host").and_then(|host| joiner.target(host))
                }
            }
            // More of the head is on its way.
            Ok(httparse::Status::Partial) if n > 0 && head.len() < HEAD_MAX => continue,
            // Not HTTP/1, too long, or the client stopped: the HTTP server answers.
            _ => None,
        };
        return Some((head, target));
    }
}

/// The client's address of a connection the HTTP server serves (`ConnectInfo<Peer>`).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, SplitListener>>
    for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, SplitListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

/// A connection whose first bytes were read already (to look at its first request head):
/// they are read again first.
pub struct Prefixed {
    head: Vec<u8>,
    read: usize,
    stream: TcpStream,
}

impl Prefixed {
    /// The connection and its first request head, read already.
    pub(crate) fn into_parts(self) -> (TcpStream, Vec<u8>) {
        (self.stream, self.head)
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.read < this.head.len() {
            let n = (this.head.len() - this.read).min(buf.remaining());
            buf.put_slice(&this.head[this.read..this.read + n]);
            this.read += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

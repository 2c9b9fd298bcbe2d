//! The proxy for exposed ports and services, request by request. A request whose `Host` is
//! `{port}-{id}.{domain}` goes to that port inside the sandbox, one whose `Host` is
//! `{name}-{id}.{domain}` to the service's ready instance (with `X-Forwarded-*`); every other
//! request goes to the API. Most proxied connections never get here: the fast path
//! (`splice`) joins them to their port from the first request on. This layer serves the rest
//! (HTTP/2, and connections that began with an API call) and answers the errors (404, 409,
//! 502, and 503 while a service has no ready instance). Upstream connections are HTTP/1.1,
//! kept alive in a pool per sandbox and port, and made through the sandbox's agent
//! ([`Node::connect_in`]); bodies stream both ways, and WebSocket (or any other) upgrades are
//! spliced once both sides agree.

use std::error::Error as _;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use ai2in_node::{Node, NodeError, ProxyTarget};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::extract::{Request, State};
use axum::http::uri::{Authority, Scheme};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, Version, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::error::ApiError;
use crate::idle::{Activity, Watched};
use crate::splice::Peer;

/// How long an idle upstream connection is kept for reuse.
const IDLE: Duration = Duration::from_secs(30);

/// The proxy's state: the node and the upstream connection pool.
#[derive(Clone)]
pub struct Proxy {
    node: Node,
    client: Client<SandboxConnector, Body>,
}

impl Proxy {
    pub fn new(node: Node) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE)
            .pool_timer(TokioTimer::new())
            .build(SandboxConnector { node: node.clone() });
        Proxy { node, client }
    }
}

/// Middleware: proxies requests for sandbox hosts, passes the rest on.
pub async fn route(State(proxy): State<Proxy>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(Authority::as_str));
    match host.and_then(|h| proxy.node.proxy_target(h)) {
        Some(target) => forward(&proxy, target, req).await,
        None => next.run(req).await,
    }
}

async fn forward(proxy: &Proxy, target: ProxyTarget, mut req: Request) -> Response {
    let upstream = match proxy.node.upstream(&target) {
        Ok(upstream) => upstream,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let (id, port) = (upstream.sandbox, upstream.port);
    let peer = req
        .extensions()
        .get::<ConnectInfo<Peer>>()
        .map(|c| c.0.0.ip().to_canonical());
    let host = req.headers().get(header::HOST).cloned().or_else(|| {
        req.uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    let version = req.version();
    let upgrade = req.headers().get(header::UPGRADE).cloned();
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));

    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let uri = Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(format!("{id}:{port}"))
        .path_and_query(path)
        .build();
    let Ok(uri) = uri else {
        return bad_gateway(&id, port, "the request's path is not valid");
    };
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    // The client's Host reaches the sandbox unchanged, as on the fast path (`splice`),
    // with the X-Forwarded-* headers.
    add_forwarded(headers, peer, host.as_ref(), proxy.node.public_scheme());
    if let Some(host) = host {
        headers.insert(header::HOST, host);
    }
    if let Some(upgrade) = &upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, upgrade.clone());
    }

    let mut response = match proxy.client.request(req).await {
        Ok(response) => response,
        Err(e) => return upstream_error(&id, port, &e),
    };
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            join_upgraded(
                client_upgrade,
                upstream_upgrade,
                proxy.node.proxy_idle_timeout(),
            );
        }
        let (parts, _) = response.into_parts();
        return Response::from_parts(parts, Body::empty());
    }
    let (mut parts, body) = response.into_parts();
    // The client's protocol, not the upstream's (an HTTP/1.0 server must not end the
    // client's keep-alive connection).
    parts.version = version;
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, Body::new(body))
}

/// Once both sides of an upgrade (a WebSocket's 101) have switched, copies bytes between
/// them until either closes or neither sends for `idle`.
pub(crate) fn join_upgraded(client: OnUpgrade, upstream: OnUpgrade, idle: Duration) {
    tokio::spawn(async move {
        if let (Ok(client), Ok(upstream)) = tokio::join!(client, upstream) {
            let activity = Activity::new();
            let mut client = Watched::new(TokioIo::new(client), &activity);
            let mut upstream = TokioIo::new(upstream);
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                () = activity.idle_for(idle) => {}
            }
        }
    });
}

/// Appends the client `peer` to `X-Forwarded-For`.
pub(crate) fn add_forwarded_for(headers: &mut HeaderMap, peer: Option<std::net::IpAddr>) {
    const FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
    if let Some(peer) = peer {
        let list = match headers.get(&FOR).and_then(|v| v.to_str().ok()) {
            Some(earlier) => format!("{earlier}, {peer}"),
            None => peer.to_string(),
        };
        if let Ok(value) = HeaderValue::from_str(&list) {
            headers.insert(FOR, value);
        }
    }
}

/// Adds `X-Forwarded-For` (the client appended to the list), and `X-Forwarded-Proto` and
/// `X-Forwarded-Host` unless a front set them: the app in the sandbox sees who asked and how.
fn add_forwarded(
    headers: &mut HeaderMap,
    peer: Option<std::net::IpAddr>,
    host: Option<&HeaderValue>,
    scheme: &str,
) {
    const PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    const HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
    add_forwarded_for(headers, peer);
    if !headers.contains_key(&PROTO) {
        if let Ok(value) = HeaderValue::from_str(scheme) {
            headers.insert(PROTO, value);
        }
    }
    if let (false, Some(host)) = (headers.contains_key(&HOST), host) {
        headers.insert(HOST, host.clone());
    }
}

/// Removes the headers that concern one connection only (RFC 9110 §7.6.1), including those
/// the `Connection` header names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

/// The answer for a failed upstream request: the node's own error (404, 409, 502) when the
/// connection could not be made, else a 502.
fn upstream_error(id: &str, port: u16, e: &hyper_util::client::legacy::Error) -> Response {
    let mut source = e.source();
    while let Some(cause) = source {
        if let Some(node_error) = cause.downcast_ref::<NodeError>() {
            return ApiError::from(node_error.clone()).into_response();
        }
        source = cause.source();
    }
    bad_gateway(id, port, &format!("the connection failed: {e}"))
}

fn bad_gateway(id: &str, port: u16, why: &str) -> Response {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        format!("port {port} of sandbox {id} did not answer: {why}"),
    )
    .into_response()
}

/// Makes upstream connections: the URI's host is the sandbox, its port the port.
#[derive(Clone)]
pub struct SandboxConnector {
    node: Node,
}

impl tower_service::Service<Uri> for SandboxConnector {
    type Response = TokioIo<TcpStream>;
    type Error = NodeError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, NodeError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), NodeError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let node = self.node.clone();
        Box::pin(async move {
            let (Some(id), Some(port)) = (uri.host(), uri.port_u16()) else {
                return Err(NodeError::NotFound(format!("no sandbox port {uri}")));
            };
            // `forward` checked the target.
            node.connect_in(id, port).await.map(TokioIo::new)
        })
    }
}

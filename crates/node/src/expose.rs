//! Exposed ports: public URLs for ports inside sandboxes, and the connections the proxy
//! makes to them. The agent connects inside the sandbox's network namespace and hands the
//! socket over, so the proxy talks to the port directly, also when it listens on loopback
//! only or the sandbox has no egress.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ai2in_api::ExposeResponse;
use ai2in_protocol::{Event, Request};
use ai2in_store::Status;
use nix::sys::socket::{
    AddressFamily, SockaddrLike, SockaddrStorage, getsockname, getsockopt, sockopt,
};
use tokio::io::Interest;
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::Notify;

use crate::auth::{Principal, Scope};
use crate::error::NodeError;
use crate::ids;
use crate::node::Node;

impl Node {
    /// Exposes `port` of sandbox `id` and answers its public URL.
    pub async fn expose(
        &self,
        caller: &Principal,
        id: &str,
        port: u16,
    ) -> Result<ExposeResponse, NodeError> {
        caller.require(Scope::SandboxesWrite)?;
        if port == 0 {
            return Err(NodeError::Invalid(
                "port must be between 1 and 65535".into(),
            ));
        }
        self.running_record(caller, id)?;
        self.store().expose_port(id, port)?;
        self.forget_route(id);
        Ok(ExposeResponse {
            port,
            url: self.exposed_url(id, port),
        })
    }

    fn exposed_url(&self, id: &str, port: u16) -> String {
        let body = id.strip_prefix("sbx_").unwrap_or(id);
        self.public_url(&format!("{port}-{body}"))
    }

    /// The scheme clients reach the proxy with (`https` behind a TLS front).
    pub fn public_scheme(&self) -> &str {
        &self.config().proxy.scheme
    }

    /// How long a connection joined to a sandbox's port may pass no byte.
    pub fn proxy_idle_timeout(&self) -> Duration {
        Duration::from_millis(self.config().proxy.idle_timeout_ms)
    }

    /// The public URL of the proxy host `{label}.{domain}`.
    pub(crate) fn public_url(&self, label: &str) -> String {
        let proxy = &self.config().proxy;
        let usual = match proxy.scheme.as_str() {
            "https" => Some(443),
            "http" => Some(80),
            _ => None,
        };
        let public = proxy.public_port.or(self.api_address().map(|a| a.port()));
        let suffix = match public {
            Some(p) if Some(p) != usual => format!(":{p}"),
            _ => String::new(),
        };
        format!("{}://{label}.{}{suffix}/", proxy.scheme, proxy.domain)
    }

    /// What a request's `Host` names (any case, with or without a port): a service
    /// (`{name}-{service id without svc_}.{domain}`), an exposed port
    /// (`{port}-{sandbox id without sbx_}.{domain}`, or the older `{port}-{sandbox_id}`), or
    /// `None` when it is not a proxy host.
    pub fn proxy_target(&self, host: &str) -> Option<ProxyTarget> {
        let host = host.to_ascii_lowercase();
        let name = match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => &host,
        };
        let label = name
            .strip_suffix(&self.config().proxy.domain.to_ascii_lowercase())?
            .strip_suffix('.')?;
        let (prefix, suffix) = label.rsplit_once('-')?;
        if let Some(service) = self.services().by_host(prefix, suffix) {
            return Some(ProxyTarget::Service(service));
        }
        let port: u16 = prefix.parse().ok().filter(|p| *p != 0)?;
        let sandbox = match suffix.strip_prefix("sbx_") {
            Some(_) => suffix.to_string(),
            None => format!("sbx_{suffix}"),
        };
        ids::is_valid(&sandbox, "sbx").then_some(ProxyTarget::Port { sandbox, port })
    }

    /// Where a connection for `target` goes: 404 for a port not exposed, 409 while its
    /// sandbox is paused, 503 while a service has no ready instance.
    pub fn upstream(&self, target: &ProxyTarget) -> Result<Upstream, NodeError> {
        match target {
            ProxyTarget::Port { sandbox, port } => {
                self.check_exposed(sandbox, *port)?;
                Ok(Upstream {
                    sandbox: sandbox.clone(),
                    port: *port,
                })
            }
            ProxyTarget::Service(id) => {
                let (sandbox, port) = self.services().upstream(id)?;
                Ok(Upstream { sandbox, port })
            }
        }
    }

    /// A connection to `port` of sandbox `id`, for the proxy (exposed URLs are public):
    /// 404 unless the port is exposed, 409 while paused, 502 when nothing listens.
    pub async fn connect_exposed(&self, id: &str, port: u16) -> Result<TcpStream, NodeError> {
        self.check_exposed(id, port)?;
        self.connect_in(id, port).await
    }

    /// A connection to `port` inside sandbox `id`, made by its agent, for the proxy once it
    /// checked the target ([`Node::upstream`]), and for services' readiness checks.
    pub async fn connect_in(&self, id: &str, port: u16) -> Result<TcpStream, NodeError> {
        let mut call = self
            .send_to_agent(id, &Request::Connect { port }, &[])
            .await?;
        match call.next().await? {
            (Event::Connected, _) => {}
            (other, _) => {
                return Err(call.unexpected(format_args!("unexpected answer {other:?}")));
            }
        }
        let fd = recv_fd(call.conn())
            .await
            .map_err(|e| call.unexpected(format_args!("no socket from the agent: {e}")))?;
        tcp_stream(fd)
            .map_err(|e| call.unexpected(format_args!("a bad socket from the agent: {e}")))
    }

    /// Ok (with the owning tenant) when `port` of sandbox `id` is exposed and the sandbox
    /// runs: 404 for an unknown sandbox or port, 409 while paused. Answered from memory: what
    /// the proxy needs of a sandbox is loaded from the store once, and forgotten whenever the
    /// sandbox changes ([`Node::forget_route`]).
    pub fn check_exposed(&self, id: &str, port: u16) -> Result<String, NodeError> {
        let (cached, epoch) = {
            let routes = lock(self.inner_routes());
            (routes.by_id.get(id).cloned(), routes.epoch)
        };
        let route = match cached {
            Some(route) => route,
            None => {
                let route = self.load_route(id)?;
                // Kept only if no sandbox changed meanwhile (the store may have been read
                // before the change).
                let mut routes = lock(self.inner_routes());
                if routes.epoch == epoch {
                    routes.by_id.insert(id.to_string(), route.clone());
                }
                route
            }
        };
        if !route.ports.contains(&port) {
            return Err(NodeError::NotFound(format!(
                "port {port} of sandbox {id} is not exposed; expose it with \
                 POST /v1/sandboxes/{id}/expose {{\"port\": {port}}}"
            )));
        }
        if route.paused {
            return Err(NodeError::Paused(id.to_string()));
        }
        Ok(route.tenant)
    }

    fn load_route(&self, id: &str) -> Result<Route, NodeError> {
        let record = self
            .store()
            .sandbox(id)?
            .filter(|r| matches!(r.status, Status::Running | Status::Paused))
            .ok_or_else(|| NodeError::NotFound(format!("no sandbox {id}")))?;
        Ok(Route {
            tenant: record.tenant,
            paused: record.status == Status::Paused,
            ports: self.store().exposed_ports(id)?,
        })
    }

    /// What wakes the proxy's joined connections to sandbox `id` when they must end.
    pub fn connection_cutter(&self, id: &str) -> Arc<Notify> {
        lock(self.inner_routes())
            .cutters
            .entry(id.to_string())
            .or_default()
            .clone()
    }

    /// How many of the proxy's joined connections to sandbox `id` are open.
    pub(crate) fn open_connections(&self, id: &str) -> usize {
        lock(self.inner_routes())
            .cutters
            .get(id)
            .map_or(0, |cutter| Arc::strong_count(cutter) - 1)
    }

    /// Ends the proxy's joined connections to sandbox `id` (it is paused or gone), and
    /// forgets what the proxy knows of it.
    pub(crate) fn cut_connections(&self, id: &str) {
        self.forget_route(id);
        let cutter = lock(self.inner_routes()).cutters.remove(id);
        if let Some(cutter) = cutter {
            cutter.notify_waiters();
        }
    }

    /// Drops what the proxy remembers of sandbox `id`; called whenever it changes.
    pub(crate) fn forget_route(&self, id: &str) {
        let mut routes = lock(self.inner_routes());
        routes.epoch += 1;
        routes.by_id.remove(id);
    }
}

/// What a proxy host names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyTarget {
    /// An exposed port of a sandbox.
    Port {
        /// The sandbox.
        sandbox: String,
        /// The port.
        port: u16,
    },
    /// A service, by its id.
    Service(String),
}

/// Where a proxied connection goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The sandbox.
    pub sandbox: String,
    /// The port inside.
    pub port: u16,
}

/// What the proxy needs to know of a running or paused sandbox.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    tenant: String,
    paused: bool,
    ports: Vec<u16>,
}

/// The proxy's memory of sandboxes, by id, and a count of the changes it was told of.
#[derive(Default)]
pub(crate) struct RouteTable {
    by_id: HashMap<String, Route>,
    epoch: u64,
    /// Per sandbox, what ends its joined connections.
    cutters: HashMap<String, Arc<Notify>>,
}

pub(crate) type Routes = Mutex<RouteTable>;

fn lock(routes: &Routes) -> std::sync::MutexGuard<'_, RouteTable> {
    routes.lock().unwrap_or_else(|e| e.into_inner())
}

/// Receives one descriptor sent as `SCM_RIGHTS` on one byte.
async fn recv_fd(conn: &UnixStream) -> io::Result<OwnedFd> {
    conn.async_io(Interest::READABLE, || {
        let (_, mut fds) = ai2in_runtime::recv_with_fds(conn, 1, 4)?;
        // More than one descriptor is refused (and the others closed with the vector).
        match (fds.len(), fds.pop()) {
            (1, Some(fd)) => Ok(fd),
            _ => Err(io::Error::other("expected exactly one descriptor")),
        }
    })
    .await
}

/// The descriptor as a tokio TCP stream, once checked to be a TCP socket: the agent is
/// untrusted and could send anything.
fn tcp_stream(fd: OwnedFd) -> io::Result<TcpStream> {
    let kind = getsockopt(&fd, sockopt::SockType)?;
    let family = getsockname::<SockaddrStorage>(fd.as_raw_fd())?.family();
    if kind != nix::sys::socket::SockType::Stream
        || !matches!(family, Some(AddressFamily::Inet | AddressFamily::Inet6))
    {
        return Err(io::Error::other("not a TCP socket"));
    }
    let stream = std::net::TcpStream::from(fd);
    stream.set_nonblocking(true)?;
    stream.set_nodelay(true)?;
    TcpStream::from_std(stream)
}

//! The gateway: the same API for a whole cluster. It authenticates callers against the
//! cluster's keys in PostgreSQL, places each new sandbox, database, service and volume on a
//! node with room (trying the next when a node refuses), records where it went, and routes
//! every later call for it to that node (REST, server-sent events, streamed file bodies and
//! WebSocket upgrades alike), with the cluster's secret and the caller's principal. Lists
//! gather every node's answer. It keeps nothing of its own: any number of gateways serve
//! one cluster.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ai2in_api::{
    CreateKeyRequest, CreatedKey, KeyList, NodeInfo, NodeList, NodeResources, NodeStatus,
};
use ai2in_cluster::{Cluster, ClusterError, Kind, PRINCIPAL_HEADER, Placement, SECRET_HEADER};
use ai2in_node::{NodeError, Principal};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, middleware};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::TcpListener;

use crate::error::ApiError;
use crate::extract::{BODY_LIMIT, JsonBody, Path};
use crate::forwarded::Forwarded;
use crate::proxy::{add_forwarded_for, join_upgraded, strip_hop_by_hop};
use crate::splice::{Joiner, Peer, Prefixed, SplitListener, relay};

/// How long a key's check is believed: a revoked key stops working on every gateway within
/// this (and a second's heartbeat).
const KEY_TTL: Duration = Duration::from_millis(500);
/// How often the gateway reads the nodes' table (addresses and liveness).
const NODES_EVERY: Duration = Duration::from_millis(500);
/// How many nodes a create tries before the cluster answers 503.
const ATTEMPTS: usize = 3;
/// How long a joined WebSocket (a terminal) may stay silent.
const UPGRADED_IDLE: Duration = Duration::from_secs(3600);

/// Makes the connections that relay public URLs to nodes. A node joins each connection to
/// the sandbox port its first request names, so a connection is reused only for the same
/// public host: the URI's authority names both, `{hex(host)}-{hex(node address)}`, and the
/// client keeps a pool per authority.
#[derive(Clone)]
pub struct RelayConnector;

impl RelayConnector {
    fn authority(host: &[u8], node: &str) -> String {
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        format!("{}-{}", hex(host), hex(node.as_bytes()))
    }

    /// The node's address in an authority of [`authority`](Self::authority).
    fn node(authority: &str) -> Option<String> {
        let (_, node) = authority.split_once('-')?;
        let bytes: Option<Vec<u8>> = (0..node.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(node.get(i..i + 2)?, 16).ok())
            .collect();
        String::from_utf8(bytes?).ok()
    }
}

impl tower_service::Service<Uri> for RelayConnector {
    type Response = hyper_util::rt::TokioIo<tokio::net::TcpStream>;
    type Error = std::io::Error;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let node = uri.host().and_then(RelayConnector::node);
        Box::pin(async move {
            let node = node.ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "no node in the relay's URI",
                )
            })?;
            let stream = tokio::net::TcpStream::connect(node).await?;
            stream.set_nodelay(true)?;
            Ok(hyper_util::rt::TokioIo::new(stream))
        })
    }
}

/// The gateway's settings (`ai2in gateway --config`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Per-tenant quotas over the whole cluster.
    pub quotas: ClusterQuotas,
    /// Where exposed ports and services are served: the same `[proxy] domain` as the nodes'
    /// (whose `public_port` is the gateways').
    pub proxy: ClusterProxy,
}

/// The public names of exposed ports and services: `{port}-{id}.{domain}`,
/// `{name}-{id}.{domain}`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterProxy {
    /// The domain, as in the nodes' `[proxy] domain`.
    pub domain: String,
}

impl Default for ClusterProxy {
    fn default() -> Self {
        ClusterProxy {
            domain: ai2in_node::Proxy::default().domain,
        }
    }
}

/// What a tenant may hold at once in the whole cluster, counted in PostgreSQL (memory and
/// volume bytes stay each node's own `[quotas]`). The defaults are a node's.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterQuotas {
    /// Sandboxes.
    pub sandboxes: u64,
    /// Services.
    pub services: u64,
    /// Databases.
    pub databases: u64,
}

impl Default for ClusterQuotas {
    fn default() -> Self {
        let node = ai2in_node::Quotas::default();
        ClusterQuotas {
            sandboxes: node.sandboxes,
            services: node.services,
            databases: node.databases,
        }
    }
}

/// When a key was checked, and who it is.
type KeyCheck = (Instant, Result<Principal, NodeError>);

/// A gateway of one cluster; cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    cluster: Cluster,
    config: GatewayConfig,
    secret: HeaderValue,
    client: Client<HttpConnector, Body>,
    /// For exposed ports and services: no connection reused (a node joins each one to the
    /// sandbox's port it first asked for).
    relay: Client<RelayConnector, Body>,
    /// Key hash → (when checked, who it is).
    keys: Mutex<HashMap<[u8; 32], KeyCheck>>,
    /// The nodes as last read, by id.
    nodes: Mutex<HashMap<String, NodeInfo>>,
    /// Told each time the nodes were read.
    nodes_read: tokio::sync::watch::Sender<()>,
    /// Where things live, by id (placements never move).
    placements: Mutex<HashMap<String, Placement>>,
}

impl Gateway {
    /// A gateway of `cluster`; keeps its view of the nodes fresh in the background.
    pub async fn start(cluster: Cluster, config: GatewayConfig) -> Result<Gateway, ClusterError> {
        cluster.recount().await?;
        let secret = HeaderValue::from_str(&cluster.secret().await?)
            .map_err(|_| ClusterError::Schema("the cluster's secret is not header text".into()))?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_timer(TokioTimer::new())
            .build(connector.clone());
        let relay = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_timer(TokioTimer::new())
            .build(RelayConnector);
        let gateway = Gateway {
            inner: Arc::new(Inner {
                cluster,
                config,
                secret,
                client,
                relay,
                keys: Mutex::default(),
                nodes: Mutex::default(),
                nodes_read: tokio::sync::watch::Sender::new(()),
                placements: Mutex::default(),
            }),
        };
        gateway.refresh_nodes().await?;
        let weak = Arc::downgrade(&gateway.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(NODES_EVERY);
            while let Some(inner) = weak.upgrade() {
                tick.tick().await;
                if let Err(e) = (Gateway { inner }).refresh_nodes().await {
                    tracing::warn!(error = %e, "could not read the cluster's nodes");
                }
            }
        });
        Ok(gateway)
    }

    /// The cluster's database.
    pub fn cluster(&self) -> &Cluster {
        &self.inner.cluster
    }

    async fn refresh_nodes(&self) -> Result<(), ClusterError> {
        let nodes = self.inner.cluster.nodes().await?;
        *self.inner.nodes.lock().unwrap() = nodes.into_iter().map(|n| (n.id.clone(), n)).collect();
        self.inner.nodes_read.send_replace(());
        Ok(())
    }

    /// Completes once node `id` is down (a call waiting for its answer then gets the 503).
    async fn until_down(&self, id: &str) {
        let mut read = self.inner.nodes_read.subscribe();
        loop {
            let status = self.inner.nodes.lock().unwrap().get(id).map(|n| n.status);
            if status == Some(NodeStatus::Down) || read.changed().await.is_err() {
                return;
            }
        }
    }

    /// Node `id` as last read; read again when it is not there yet (it just joined).
    async fn node(&self, id: &str) -> Result<Option<NodeInfo>, ApiError> {
        let cached = self.inner.nodes.lock().unwrap().get(id).cloned();
        if cached.is_some() {
            return Ok(cached);
        }
        self.refresh_nodes().await.map_err(database_error)?;
        Ok(self.inner.nodes.lock().unwrap().get(id).cloned())
    }

    /// The caller behind the request's key, checked against the cluster's keys (a check is
    /// believed for [`KEY_TTL`]).
    async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        let header = headers
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str())
            .transpose()
            .map_err(|_| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "the Authorization header is not valid text",
                )
            })?;
        let presented = ai2in_node::presented_key(header)?;
        if let Some((at, who)) = self.inner.keys.lock().unwrap().get(&presented) {
            if at.elapsed() < KEY_TTL {
                return Ok(who.clone()?);
            }
        }
        let record = self
            .inner
            .cluster
            .key_by_hash(&presented)
            .await
            .map_err(database_error)?;
        let who = ai2in_node::principal_of(&presented, record);
        let mut keys = self.inner.keys.lock().unwrap();
        keys.retain(|_, (at, _)| at.elapsed() < KEY_TTL);
        keys.insert(presented, (Instant::now(), who.clone()));
        Ok(who?)
    }

    /// Sends `req` to `node` for `who`, with the cluster's secret and the caller's principal
    /// in place of its key.
    async fn forward(
        &self,
        node: &NodeInfo,
        who: &Principal,
        req: Request,
    ) -> Result<Response, ApiError> {
        let scopes: Vec<&str> = who.scopes.iter().map(|s| s.as_str()).collect();
        let principal = format!("{} {} {}", who.key_id, who.tenant, scopes.join(","));
        let principal = HeaderValue::from_str(&principal).map_err(|_| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "the key's tenant is not header text",
            )
        })?;
        self.send(&self.inner.client, &node.address, node, req, |headers| {
            headers.remove(header::AUTHORIZATION);
            headers.remove(header::HOST);
            headers.insert(SECRET_HEADER, self.inner.secret.clone());
            headers.insert(PRINCIPAL_HEADER, principal);
        })
        .await
    }

    /// Sends `req` to `node` on `client` (as `authority`, which names the connection pool):
    /// pointed at the node, without the headers of one
    /// connection, with `headers` applied; an upgrade (a WebSocket's 101) is joined end to
    /// end. A node that goes down (killed, cut off) while the call waits makes it 503 then,
    /// rather than never.
    async fn send<C>(
        &self,
        client: &Client<C, Body>,
        authority: &str,
        node: &NodeInfo,
        mut req: Request,
        headers: impl FnOnce(&mut HeaderMap),
    ) -> Result<Response, ApiError>
    where
        C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
    {
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        *req.uri_mut() = Uri::try_from(format!("http://{authority}{path}")).map_err(|_| {
            ApiError::new(StatusCode::BAD_REQUEST, "the request's path is not valid")
        })?;
        *req.version_mut() = axum::http::Version::HTTP_11;
        let upgrade = req.headers().get(header::UPGRADE).cloned();
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        strip_hop_by_hop(req.headers_mut());
        headers(req.headers_mut());
        if let Some(upgrade) = upgrade {
            req.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            req.headers_mut().insert(header::UPGRADE, upgrade);
        }
        let path = req.uri().path().to_string();
        let mut response = tokio::select! {
            sent = client.request(req) => sent.map_err(|e| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "node {} ({}) does not answer: {e}; try again",
                        node.id, node.address
                    ),
                )
            })?,
            () = self.until_down(&node.id) => {
                let node = self.node(&node.id).await?.unwrap_or_else(|| node.clone());
                return Err(down(&node, &path));
            }
        };
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_upgrade) = client_upgrade {
                join_upgraded(
                    client_upgrade,
                    hyper::upgrade::on(&mut response),
                    UPGRADED_IDLE,
                );
            }
            let (parts, _) = response.into_parts();
            return Ok(Response::from_parts(parts, Body::empty()));
        }
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(parts, Body::new(body)))
    }

    /// What a request's `Host` names under the cluster's public domain: the sandbox of an
    /// exposed port (`{port}-{id}`) or a service (`{name}-{id}`), by the node's own rules
    /// (ids with or without their `sbx_`/`svc_`); `None` for the API.
    fn public_target(&self, host: &str) -> Option<Vec<(Kind, String)>> {
        let host = host.to_ascii_lowercase();
        let name = match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => &host,
        };
        let domain = self.inner.config.proxy.domain.to_ascii_lowercase();
        let label = name.strip_suffix(&domain)?.strip_suffix('.')?;
        let (prefix, suffix) = label.rsplit_once('-')?;
        if suffix.starts_with("sbx_") {
            return Some(vec![(Kind::Sandbox, suffix.to_string())]);
        }
        let mut candidates = vec![(Kind::Service, format!("svc_{suffix}"))];
        if prefix.parse::<u16>().is_ok() {
            candidates.insert(0, (Kind::Sandbox, format!("sbx_{suffix}")));
        }
        Some(candidates)
    }

    /// A request for an exposed port or a service, passed to the node that holds it with its
    /// `Host` (the node's proxy serves it; these URLs are public, as on a node) and the
    /// client's address in `X-Forwarded-For`. The node joins a connection to the port its
    /// first request names, so connections to it are kept and reused per public host.
    async fn relay(&self, targets: Vec<(Kind, String)>, req: Request) -> Response {
        let mut found = None;
        for (kind, id) in &targets {
            match self.locate(*kind, id, None).await {
                Ok(node) => {
                    found = Some(node);
                    break;
                }
                Err(e) if e.status() == StatusCode::NOT_FOUND => continue,
                Err(e) => return e.into_response(),
            }
        }
        let Some(node) = found else {
            let (_, id) = &targets[0];
            return ApiError::new(StatusCode::NOT_FOUND, format!("nothing is served at {id}"))
                .into_response();
        };
        let peer = req
            .extensions()
            .get::<axum::extract::ConnectInfo<Peer>>()
            .map(|c| c.0.0.ip().to_canonical());
        let host = req
            .headers()
            .get(header::HOST)
            .map(|h| h.as_bytes().to_vec())
            .unwrap_or_default();
        let authority = RelayConnector::authority(&host, &node.address);
        let relayed = self.send(&self.inner.relay, &authority, &node, req, |headers| {
            add_forwarded_for(headers, peer)
        });
        relayed.await.unwrap_or_else(IntoResponse::into_response)
    }

    /// The node holding `id` of `kind`, up; 404 when the cluster has no such thing of the
    /// caller's tenant, 503 naming the node when it is down.
    async fn owner(&self, kind: Kind, id: &str, who: &Principal) -> Result<NodeInfo, ApiError> {
        self.locate(kind, id, Some(&who.tenant)).await
    }

    /// The node holding `id` of `kind` (of `tenant`, when given: the node checks it too), up.
    async fn locate(
        &self,
        kind: Kind,
        id: &str,
        tenant: Option<&str>,
    ) -> Result<NodeInfo, ApiError> {
        let mut node = self.locate_any(kind, id, tenant).await?;
        if node.status == NodeStatus::Down {
            // As last read, at most a moment ago: read again before refusing.
            self.refresh_nodes().await.map_err(database_error)?;
            node = self.node(&node.id).await?.unwrap_or(node);
            if node.status == NodeStatus::Down {
                return Err(down(&node, id));
            }
        }
        Ok(node)
    }

    /// The node holding `id` of `kind` (of `tenant`, when given), whatever its status.
    async fn locate_any(
        &self,
        kind: Kind,
        id: &str,
        tenant: Option<&str>,
    ) -> Result<NodeInfo, ApiError> {
        let not_found =
            || ApiError::new(StatusCode::NOT_FOUND, format!("no {} {id}", kind.as_str()));
        let cached = self.inner.placements.lock().unwrap().get(id).cloned();
        let placement = match cached {
            Some(placement) => placement,
            None => {
                let placement = self
                    .inner
                    .cluster
                    .placement(id)
                    .await
                    .map_err(database_error)?
                    .ok_or_else(not_found)?;
                self.inner
                    .placements
                    .lock()
                    .unwrap()
                    .insert(id.to_string(), placement.clone());
                placement
            }
        };
        if tenant.is_some_and(|t| placement.tenant != t) {
            return Err(not_found());
        }
        self.node(&placement.node_id).await?.ok_or_else(not_found)
    }

    /// Counts a create against the tenant's cluster-wide quota of its kind (429 past it),
    /// places it, and gives the count back when it did not happen.
    async fn create(
        &self,
        kind: Kind,
        who: &Principal,
        req: Request,
    ) -> Result<Response, ApiError> {
        let quotas = &self.inner.config.quotas;
        let quota = match kind {
            Kind::Sandbox => Some(quotas.sandboxes),
            Kind::Database => Some(quotas.databases),
            Kind::Service => Some(quotas.services),
            Kind::Volume => None,
        };
        let cluster = &self.inner.cluster;
        if let Some(quota) = quota {
            if !cluster
                .admit(&who.tenant, kind, quota)
                .await
                .map_err(database_error)?
            {
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "quota exceeded: at most {quota} {} per tenant in the cluster; delete one first",
                        plural(kind)
                    ),
                ));
            }
        }
        let placed = self.place(kind, who, req).await;
        let done = matches!(&placed, Ok(r) if r.status().is_success());
        if quota.is_some() && !done {
            cluster
                .release(&who.tenant, kind)
                .await
                .map_err(database_error)?;
        }
        placed
    }

    /// Places a new `kind` on a node with room: up to [`ATTEMPTS`] nodes, the next when one
    /// refuses (503) or does not answer; records where it went.
    async fn place(&self, kind: Kind, who: &Principal, req: Request) -> Result<Response, ApiError> {
        let (parts, body) = req.into_parts();
        let body = read_body(body).await?;
        let need = need_of(&body);
        let pinned = self.volumes_node(who, &parts.headers, &body).await?;
        let mut tried: Vec<String> = Vec::new();
        let mut refusals = Vec::new();
        while tried.len() < ATTEMPTS {
            let reserve = |wait| {
                self.inner
                    .cluster
                    .reserve(&need, &who.tenant, &tried, pinned.as_deref(), wait)
            };
            // Nodes another create is reserving on are passed over; when that leaves none,
            // wait for them (a moment: one statement) rather than answer 503.
            let reserved = match reserve(false).await.map_err(database_error)? {
                Some(reserved) => Some(reserved),
                None => reserve(true).await.map_err(database_error)?,
            };
            let Some(reserved) = reserved else {
                break;
            };
            tried.push(reserved.node_id.clone());
            let Some(node) = self.node(&reserved.node_id).await? else {
                continue;
            };
            let req = Request::from_parts(parts.clone(), Body::from(body.clone()));
            let response = match self.forward(&node, who, req).await {
                Ok(response) if response.status() != StatusCode::SERVICE_UNAVAILABLE => response,
                Ok(response) => {
                    refusals.push(format!("{}: {}", node.id, error_text(response).await));
                    continue;
                }
                Err(e) => {
                    refusals.push(e.message().to_string());
                    continue;
                }
            };
            if !response.status().is_success() {
                return Ok(response);
            }
            let (parts, body) = response.into_parts();
            let body = body.collect().await.map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    format!("node {} answered the create partly: {e}", node.id),
                )
            })?;
            let body = body.to_bytes();
            let id = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("id")?.as_str().map(String::from));
            if let Some(id) = id {
                self.inner
                    .cluster
                    .place(&id, kind, &who.tenant, &node.id)
                    .await
                    .map_err(database_error)?;
                self.inner.placements.lock().unwrap().insert(
                    id,
                    Placement {
                        node_id: node.id.clone(),
                        tenant: who.tenant.clone(),
                    },
                );
            }
            return Ok(Response::from_parts(parts, Body::from(body)));
        }
        let why = if refusals.is_empty() {
            String::new()
        } else {
            format!(" ({})", refusals.join("; "))
        };
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "no node of the cluster has room for this {}{why}; try again later or ask for less",
                kind.as_str()
            ),
        ))
    }

    /// Every up node's list of `kind`s for the caller, as one list.
    async fn list(&self, field: &str, who: &Principal, req: Request) -> Result<Response, ApiError> {
        let nodes = self.up_nodes().await?;
        let (parts, _) = req.into_parts();
        let answers = futures_util::future::join_all(nodes.iter().map(|node| {
            let req = Request::from_parts(parts.clone(), Body::empty());
            async move {
                let response = self.forward(node, who, req).await?;
                if !response.status().is_success() {
                    return Err(ApiError::new(response.status(), error_text(response).await));
                }
                let body = response.into_body().collect().await.map_err(|e| {
                    ApiError::new(StatusCode::BAD_GATEWAY, format!("node {}: {e}", node.id))
                })?;
                Ok(
                    serde_json::from_slice::<serde_json::Value>(&body.to_bytes())
                        .unwrap_or_default(),
                )
            }
        }))
        .await;
        let mut items = Vec::new();
        for (node, answer) in nodes.iter().zip(answers) {
            match answer {
                Ok(mut value) => {
                    if let Some(serde_json::Value::Array(list)) =
                        value.get_mut(field).map(std::mem::take)
                    {
                        items.extend(list);
                    }
                }
                // The caller's own mistake (a bad filter, a missing scope) is the same on
                // every node: answer it.
                Err(e) if e.status().is_client_error() => return Err(e),
                Err(e) => {
                    tracing::warn!(node = %node.id, error = %e.message(), "a node's list is missing")
                }
            }
        }
        items.sort_by(|a, b| {
            let key = |v: &serde_json::Value| {
                (
                    v.get("created_at")
                        .and_then(|c| c.as_str())
                        .unwrap_or_default()
                        .to_string(),
                    v.get("id")
                        .and_then(|c| c.as_str())
                        .unwrap_or_default()
                        .to_string(),
                )
            };
            key(a).cmp(&key(b))
        });
        // An image every node pulled is one image (each node gave it an id of its own).
        let mut seen = std::collections::HashSet::new();
        items.retain(|item| {
            let text = |f: &str| item.get(f).and_then(|v| v.as_str()).unwrap_or_default();
            let key = match field {
                "images" => format!("{}@{}", text("ref"), text("digest")),
                _ => text("id").to_string(),
            };
            seen.insert(key)
        });
        Ok(Json(serde_json::json!({ field: items })).into_response())
    }

    /// A call for `name` (a volume's or a service's): the node whose `GET` of it answers
    /// takes the call, by the id it answered.
    async fn by_name(
        &self,
        kind: Kind,
        name: &str,
        who: &Principal,
        req: Request,
    ) -> Result<Response, ApiError> {
        let (parts, body) = req.into_parts();
        let not_found = || {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no {} {name}", kind.as_str()),
            )
        };
        let id = self
            .id_by_name(kind, name, who, &parts.headers)
            .await?
            .ok_or_else(not_found)?;
        let node = self.owner(kind, &id, who).await?;
        let delete = parts.method == Method::DELETE
            && parts.uri.path().trim_end_matches('/').ends_with(name);
        let response = self
            .forward(&node, who, Request::from_parts(parts, body))
            .await?;
        if delete && response.status() == StatusCode::NO_CONTENT {
            self.inner
                .cluster
                .unplace(&id)
                .await
                .map_err(database_error)?;
            self.inner.placements.lock().unwrap().remove(&id);
        }
        Ok(response)
    }

    /// The node holding the volumes a create mounts (`volumes[].volume_id`, by id or name):
    /// what mounts a volume goes where it is. `None` when it mounts none, or none the
    /// cluster knows (the node then answers the 404); 400 when they are on different nodes.
    async fn volumes_node(
        &self,
        who: &Principal,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<Option<String>, ApiError> {
        let value: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let Some(volumes) = value.get("volumes").and_then(|v| v.as_array()) else {
            return Ok(None);
        };
        let mut on: Option<(String, String)> = None;
        for volume in volumes.iter().filter_map(|v| v.get("volume_id")?.as_str()) {
            let node = match self.locate(Kind::Volume, volume, Some(&who.tenant)).await {
                Ok(node) => node,
                Err(e) if e.status() == StatusCode::NOT_FOUND => {
                    match self.id_by_name(Kind::Volume, volume, who, headers).await? {
                        Some(id) => self.locate(Kind::Volume, &id, Some(&who.tenant)).await?,
                        None => continue,
                    }
                }
                Err(e) => return Err(e),
            };
            match &on {
                Some((other, node_id)) if *node_id != node.id => {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "volumes: {other} and {volume} are on different nodes ({node_id}, {}); \
                             mount volumes of one node",
                            node.id
                        ),
                    ));
                }
                Some(_) => {}
                None => on = Some((volume.to_string(), node.id)),
            }
        }
        Ok(on.map(|(_, node_id)| node_id))
    }

    /// The id of the caller's `kind` named `name` (a volume's or a service's), asking the
    /// nodes; `None` when none has one.
    async fn id_by_name(
        &self,
        kind: Kind,
        name: &str,
        who: &Principal,
        headers: &HeaderMap,
    ) -> Result<Option<String>, ApiError> {
        let Ok(uri) = format!("{}/{name}", collection_path(kind)).parse() else {
            return Ok(None);
        };
        Ok(self
            .field_of_found(who, uri, headers, "id")
            .await?
            .ok()
            .flatten()
            .filter(|id| id.starts_with(kind.prefix())))
    }

    /// Text field `field` of what `GET uri` answers on whichever node has it (`None` when
    /// the answer has no such field); `Err` with the answer (a 404) when no node has it.
    async fn field_of_found(
        &self,
        who: &Principal,
        uri: Uri,
        headers: &HeaderMap,
        field: &str,
    ) -> Result<Result<Option<String>, Response>, ApiError> {
        let mut get = Request::new(Body::empty());
        *get.uri_mut() = uri;
        *get.headers_mut() = headers.clone();
        let found = self.first_found(who, get).await?;
        if !found.status().is_success() {
            return Ok(Err(found));
        }
        let body = found
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Ok(Ok(serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get(field)?.as_str().map(String::from))))
    }

    /// The nodes that are not down (read again when none was, as when the cluster just
    /// started).
    async fn up_nodes(&self) -> Result<Vec<NodeInfo>, ApiError> {
        let up = |nodes: &HashMap<String, NodeInfo>| {
            let mut up: Vec<NodeInfo> = nodes
                .values()
                .filter(|n| n.status != NodeStatus::Down)
                .cloned()
                .collect();
            up.sort_by(|a, b| a.id.cmp(&b.id));
            up
        };
        let nodes = up(&self.inner.nodes.lock().unwrap());
        if !nodes.is_empty() {
            return Ok(nodes);
        }
        self.refresh_nodes().await.map_err(database_error)?;
        Ok(up(&self.inner.nodes.lock().unwrap()))
    }

    /// `req` sent to every node that is up (`ready` ones only with `ready_only`), one after
    /// another's answer is in: the answers in order. The body is read first (these are small
    /// JSON bodies).
    async fn everywhere(
        &self,
        who: &Principal,
        req: Request,
        ready_only: bool,
    ) -> Result<Vec<(NodeInfo, Result<(StatusCode, Bytes), ApiError>)>, ApiError> {
        let (parts, body) = req.into_parts();
        let body = read_body(body).await?;
        let nodes: Vec<NodeInfo> = self
            .up_nodes()
            .await?
            .into_iter()
            .filter(|n| !ready_only || n.status == NodeStatus::Ready)
            .collect();
        if nodes.is_empty() {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no node of the cluster is up; try again later",
            ));
        }
        let answers = futures_util::future::join_all(nodes.iter().map(|node| {
            let req = Request::from_parts(parts.clone(), Body::from(body.clone()));
            async move {
                let response = self.forward(node, who, req).await?;
                let status = response.status();
                let body = response.into_body().collect().await.map_err(|e| {
                    ApiError::new(StatusCode::BAD_GATEWAY, format!("node {}: {e}", node.id))
                })?;
                Ok((status, body.to_bytes()))
            }
        }))
        .await;
        Ok(nodes.into_iter().zip(answers).collect())
    }

    /// A call for something every node may have (an image, or a volume or service by
    /// name): the first answer that is not 404, else the 404.
    async fn first_found(&self, who: &Principal, req: Request) -> Result<Response, ApiError> {
        let answers = self.everywhere(who, req, false).await?;
        let mut last = None;
        for (_, answer) in answers {
            match answer {
                Ok((status, body)) if status != StatusCode::NOT_FOUND => {
                    return Ok(json_answer(status, body));
                }
                Ok((status, body)) => last = Some(json_answer(status, body)),
                Err(e) => return Err(e),
            }
        }
        last.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not found on any node"))
    }

    /// Pulls an image on every ready node (a sandbox may be placed on any): 201 when one of
    /// them did not have it, 200 when all did; the first failure otherwise. Asked for events,
    /// it answers one, `done` or `error`, once every node is through.
    async fn pull(&self, who: &Principal, mut req: Request) -> Result<Response, ApiError> {
        let events = req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/event-stream"));
        req.headers_mut().remove(header::ACCEPT);
        // Every node, including one that just joined.
        self.refresh_nodes().await.map_err(database_error)?;
        let answers = self.everywhere(who, req, true).await?;
        let mut created = false;
        let mut image = Bytes::new();
        let mut failure = None;
        for (node, answer) in answers {
            match answer {
                Ok((status, body)) if status.is_success() => {
                    created |= status == StatusCode::CREATED;
                    image = body;
                }
                Ok((status, body)) => {
                    failure.get_or_insert((status, body));
                }
                Err(e) => {
                    let body = serde_json::json!({ "error": format!("node {}: {}", node.id, e.message()) });
                    failure.get_or_insert((e.status(), Bytes::from(body.to_string())));
                }
            }
        }
        if !events {
            return Ok(match failure {
                Some((status, body)) => json_answer(status, body),
                None if created => json_answer(StatusCode::CREATED, image),
                None => json_answer(StatusCode::OK, image),
            });
        }
        let event = match failure {
            Some((status, body)) => {
                let error = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("error").cloned())
                    .unwrap_or_else(|| status.to_string().into());
                let data = serde_json::json!({ "error": error, "status": status.as_u16() });
                format!("event: error\ndata: {data}\n\n")
            }
            None => {
                let image: serde_json::Value = serde_json::from_slice(&image).unwrap_or_default();
                let data = serde_json::json!({ "image": image });
                format!("event: done\ndata: {data}\n\n")
            }
        };
        Ok((
            [(header::CONTENT_TYPE, "text/event-stream")],
            Body::from(event),
        )
            .into_response())
    }

    /// Deletes an image from every node: 204 when some node had it and none refused, the
    /// refusal (409 while a sandbox uses it) otherwise, 404 when none had it.
    async fn delete_everywhere(
        &self,
        who: &Principal,
        mut req: Request,
    ) -> Result<Response, ApiError> {
        // An `img_` id is one node's: the others know the image by its reference.
        let id = req
            .uri()
            .path()
            .trim_start_matches("/v1/images/")
            .to_string();
        if id.starts_with("img_") {
            let reference = match self
                .field_of_found(who, req.uri().clone(), req.headers(), "ref")
                .await?
            {
                Ok(reference) => reference.unwrap_or(id),
                Err(answer) => return Ok(answer),
            };
            *req.uri_mut() = format!("/v1/images/{}", percent_encoded(&reference))
                .parse()
                .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "no such image"))?;
        }
        let answers = self.everywhere(who, req, false).await?;
        let mut found = false;
        let mut last = None;
        for (_, answer) in answers {
            let (status, body) = answer?;
            match status {
                StatusCode::NO_CONTENT => found = true,
                StatusCode::NOT_FOUND => last = Some(json_answer(status, body)),
                _ => return Ok(json_answer(status, body)),
            }
        }
        match (found, last) {
            (true, _) | (false, None) => Ok(StatusCode::NO_CONTENT.into_response()),
            (false, Some(not_found)) => Ok(not_found),
        }
    }

    /// A call for `id` of `kind`, sent to its node; a delete forgets where it was.
    async fn route(
        &self,
        kind: Kind,
        id: &str,
        who: &Principal,
        req: Request,
    ) -> Result<Response, ApiError> {
        let whole = req.uri().path().trim_end_matches('/').ends_with(id);
        let delete = whole && req.method() == Method::DELETE;
        if delete {
            // Deleted while its node is down: gone from the cluster now, deleted by its node
            // when it is back.
            if let Ok(node) = self.locate_any(kind, id, Some(&who.tenant)).await {
                if node.status == NodeStatus::Down {
                    self.inner
                        .cluster
                        .delete_later(id)
                        .await
                        .map_err(database_error)?;
                    self.inner.placements.lock().unwrap().remove(id);
                    return Ok(StatusCode::NO_CONTENT.into_response());
                }
            }
        }
        let node = match self.owner(kind, id, who).await {
            Ok(node) => node,
            // A volume or a service by its name: whichever node has it answers.
            Err(e)
                if e.status() == StatusCode::NOT_FOUND
                    && matches!(kind, Kind::Volume | Kind::Service)
                    && !id.starts_with(kind.prefix()) =>
            {
                return self.by_name(kind, id, who, req).await;
            }
            Err(e) => return Err(e),
        };
        let response = self.forward(&node, who, req).await?;
        // Gone from its node (it ended, or another gateway deleted it): forget the route.
        if whole && matches!(response.status(), StatusCode::NOT_FOUND | StatusCode::GONE) {
            self.inner.placements.lock().unwrap().remove(id);
        }
        if delete
            && matches!(
                response.status(),
                StatusCode::NO_CONTENT | StatusCode::NOT_FOUND
            )
        {
            self.inner
                .cluster
                .unplace(id)
                .await
                .map_err(database_error)?;
            self.inner.placements.lock().unwrap().remove(id);
        }
        Ok(response)
    }
}

/// The 503 of a call for `id` on `node`, which is down.
fn down(node: &NodeInfo, id: &str) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "node {} holding {id} is down (last seen {}); try again when it is back",
            node.id, node.last_seen_at
        ),
    )
}

/// Where `kind`'s collection is in the API.
fn collection_path(kind: Kind) -> &'static str {
    match kind {
        Kind::Sandbox => "/v1/sandboxes",
        Kind::Database => "/v1/databases",
        Kind::Service => "/v1/hosting/services",
        Kind::Volume => "/v1/volumes",
    }
}

/// The field of `kind`'s list and its plural in sentences.
fn plural(kind: Kind) -> &'static str {
    match kind {
        Kind::Sandbox => "sandboxes",
        Kind::Database => "databases",
        Kind::Service => "services",
        Kind::Volume => "volumes",
    }
}

/// What a path names: a collection of placed things and the rest of the path after it.
fn collection_of(path: &str) -> Option<(Kind, &str)> {
    [Kind::Sandbox, Kind::Database, Kind::Service, Kind::Volume]
        .into_iter()
        .find_map(|kind| {
            let rest = path.strip_prefix(collection_path(kind))?;
            (rest.is_empty() || rest.starts_with('/')).then_some((kind, rest))
        })
}

/// `text` with every byte but the unreserved ones of RFC 3986 percent-encoded (an image
/// reference as a path segment).
fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An answer of a node, read whole, passed on.
fn json_answer(status: StatusCode, body: Bytes) -> Response {
    if body.is_empty() {
        return status.into_response();
    }
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A request body the gateway reads whole (a create's, or one it sends to several nodes):
/// 413 past [`BODY_LIMIT`], as a node answers.
async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|cause| cause.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is over {BODY_LIMIT} bytes; send less"),
            )
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("the request body could not be read: {e}"),
            )
        }
    })
}

/// The room a create asks for: its `memory_bytes` and `cpu` when it names them (the node
/// applies its defaults to the rest; its heartbeat then reports what it took).
fn need_of(body: &Bytes) -> NodeResources {
    let value: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    NodeResources {
        sandboxes: 1,
        memory_bytes: value
            .get("memory_bytes")
            .and_then(|v| v.as_u64())
            .unwrap_or(0),
        cpu: value.get("cpu").and_then(|v| v.as_f64()).unwrap_or(0.0),
    }
}

/// The sentence of an error answer.
async fn error_text(response: Response) -> String {
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("error")?.as_str().map(String::from))
        .unwrap_or_else(|| format!("{status}"))
}

fn database_error(e: ClusterError) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("{e}; try again in a moment"),
    )
}

/// The gateway's routes: keys and nodes of the cluster itself; everything else placed or
/// routed to the nodes.
pub fn gateway_router(gateway: Gateway) -> Router {
    Router::<Gateway>::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({ "status": "ok" })) }),
        )
        .route("/v1/openapi.json", get(crate::router::openapi_json))
        .route("/v1/keys", post(create_key).get(list_keys))
        .route("/v1/keys/{id}", axum::routing::delete(revoke_key))
        .route("/v1/nodes", get(list_nodes))
        .route("/v1/nodes/{id}/drain", post(drain_node))
        .fallback(dispatch)
        .layer(middleware::from_fn(crate::router::to_completion))
        .layer(middleware::from_fn(crate::router::cors))
        .layer(middleware::from_fn_with_state(
            gateway.clone(),
            public_hosts,
        ))
        .with_state(gateway)
}

/// Middleware: requests for exposed ports and services go to their node; the rest to the API.
async fn public_hosts(
    State(gateway): State<Gateway>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    match host.and_then(|h| gateway.public_target(h)) {
        Some(targets) => gateway.relay(targets, req).await,
        None => next.run(req).await,
    }
}

/// The fast path of public URLs: a connection whose first request names an exposed port or a
/// service is joined, byte for byte, to a connection to the node that serves it (whose own
/// fast path joins it to the sandbox), each request with the client's address in
/// `X-Forwarded-For`. What cannot be joined (an unknown name, a node down) is the HTTP
/// server's to answer.
impl Joiner for Gateway {
    type Target = Vec<(Kind, String)>;

    fn target(&self, host: &str) -> Option<Self::Target> {
        self.public_target(host)
    }

    async fn join(&self, targets: Self::Target, client: Prefixed) -> Option<Prefixed> {
        let mut node = None;
        for (kind, id) in &targets {
            if let Ok(found) = self.locate(*kind, id, None).await {
                node = Some(found);
                break;
            }
        }
        let Some(node) = node else {
            return Some(client);
        };
        let Ok(mut upstream) = tokio::net::TcpStream::connect(&node.address).await else {
            return Some(client);
        };
        let _ = upstream.set_nodelay(true);
        let (mut client, head) = client.into_parts();
        let forwarded = Forwarded {
            peer: client.peer_addr().ok().map(|a| a.ip().to_canonical()),
            scheme: None,
        };
        // Silent for as long as a node allows by default: the node cuts its side sooner when
        // configured to.
        let idle = Duration::from_millis(ai2in_node::Proxy::default().idle_timeout_ms);
        relay(&forwarded, &mut client, head, &mut upstream, idle).await;
        None
    }
}

/// Serves `gateway` on `listener` until `shutdown` completes.
pub async fn serve_gateway(
    listener: TcpListener,
    gateway: Gateway,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = SplitListener::new(listener, gateway.clone())?;
    let app = gateway_router(gateway).into_make_service_with_connect_info::<Peer>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// The caller of `req`, authenticated.
async fn caller(gateway: &Gateway, headers: HeaderMap) -> Result<Principal, ApiError> {
    gateway.authenticate(&headers).await
}

/// Every call but keys and nodes: placed things are created, listed and routed; images are
/// every node's.
async fn dispatch(State(gateway): State<Gateway>, req: Request) -> Result<Response, ApiError> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    if path == "/v1/images" || path.starts_with("/v1/images/") {
        let who = caller(&gateway, req.headers().clone()).await?;
        return match (method, path.as_str()) {
            (Method::POST, "/v1/images") => gateway.pull(&who, req).await,
            (Method::GET, "/v1/images") => gateway.list("images", &who, req).await,
            (Method::POST, "/v1/images/import") => Err(ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                "a cluster cannot import an image yet; push it to a registry and pull it \
                 (POST /v1/images), which every node does",
            )),
            (Method::DELETE, _) => gateway.delete_everywhere(&who, req).await,
            (Method::GET, _) => gateway.first_found(&who, req).await,
            (method, path) => Err(not_allowed(&method, path)),
        };
    }
    let Some((kind, rest)) = collection_of(&path) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no route {method} {path}; see the API reference"),
        ));
    };
    let who = caller(&gateway, req.headers().clone()).await?;
    let id = rest
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default();
    match (method, id) {
        (Method::POST, "") => gateway.create(kind, &who, req).await,
        (Method::GET, "") => gateway.list(plural(kind), &who, req).await,
        (method, "") => Err(not_allowed(&method, &path)),
        // The engines every node serves: any node answers.
        (Method::GET, "engines") if kind == Kind::Database => gateway.first_found(&who, req).await,
        (_, id) => {
            let id = id.to_string();
            gateway.route(kind, &id, &who, req).await
        }
    }
}

fn not_allowed(method: &Method, path: &str) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {path}"),
    )
}

async fn create_key(
    State(gateway): State<Gateway>,
    req: Request,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let who = caller(&gateway, req.headers().clone()).await?;
    let JsonBody(body) = JsonBody::<CreateKeyRequest>::from_request(req, &()).await?;
    let (record, secret) = ai2in_node::new_key(&who, body)?;
    gateway
        .cluster()
        .insert_key(&record)
        .await
        .map_err(database_error)?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            info: ai2in_node::key_info(&record),
            key: secret,
        }),
    ))
}

async fn list_keys(
    State(gateway): State<Gateway>,
    req: Request,
) -> Result<Json<KeyList>, ApiError> {
    let who = caller(&gateway, req.headers().clone()).await?;
    let tenant = ai2in_node::administered_tenant(&who)?;
    let keys = gateway
        .cluster()
        .list_keys(tenant)
        .await
        .map_err(database_error)?;
    Ok(Json(KeyList {
        keys: keys.iter().map(ai2in_node::key_info).collect(),
    }))
}

async fn revoke_key(
    State(gateway): State<Gateway>,
    Path(id): Path<String>,
    req: Request,
) -> Result<StatusCode, ApiError> {
    let who = caller(&gateway, req.headers().clone()).await?;
    let tenant = ai2in_node::administered_tenant(&who)?;
    if !ai2in_node::is_key_id(&id) {
        return Err(ai2in_node::no_key(&id).into());
    }
    let cluster = gateway.cluster();
    let administered = cluster
        .list_keys(tenant)
        .await
        .map_err(database_error)?
        .iter()
        .any(|k| k.id == id);
    if !administered
        || !cluster
            .revoke_key(&id, ai2in_node::now_ms())
            .await
            .map_err(database_error)?
    {
        return Err(ai2in_node::no_key(&id).into());
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn list_nodes(
    State(gateway): State<Gateway>,
    req: Request,
) -> Result<Json<NodeList>, ApiError> {
    let who = caller(&gateway, req.headers().clone()).await?;
    who.require(ai2in_node::Scope::Admin)?;
    let nodes = gateway.cluster().nodes().await.map_err(database_error)?;
    Ok(Json(NodeList { nodes }))
}

async fn drain_node(
    State(gateway): State<Gateway>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Json<NodeInfo>, ApiError> {
    let who = caller(&gateway, req.headers().clone()).await?;
    who.require(ai2in_node::Scope::Admin)?;
    let node = gateway
        .cluster()
        .drain(&id)
        .await
        .map_err(database_error)?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no node {id}")))?;
    gateway.refresh_nodes().await.map_err(database_error)?;
    Ok(Json(node))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relay_authority_names_its_node_and_host() {
        let authority = RelayConnector::authority(b"8000-abc.localhost:4747", "10.0.0.11:4747");
        let uri: Uri = format!("http://{authority}/x").parse().unwrap();
        assert_eq!(
            uri.host().and_then(RelayConnector::node).as_deref(),
            Some("10.0.0.11:4747")
        );
        // Another host on the same node is another pool.
        assert_ne!(
            authority,
            RelayConnector::authority(b"8001-abc.localhost:4747", "10.0.0.11:4747")
        );
        assert_eq!(RelayConnector::node("nonsense"), None);
        assert_eq!(RelayConnector::node("00-zz"), None);
    }

    #[test]
    fn image_references_are_percent_encoded_as_one_segment() {
        assert_eq!(
            percent_encoded("127.0.0.1:5000/busybox:1"),
            "127.0.0.1%3A5000%2Fbusybox%3A1"
        );
        assert_eq!(percent_encoded("a-b_c.d~e"), "a-b_c.d~e");
    }

    #[test]
    fn collections_are_recognised_by_their_path() {
        assert_eq!(
            collection_of("/v1/hosting/services/svc_x/logs").map(|(k, r)| (k, r.to_string())),
            Some((Kind::Service, "/svc_x/logs".to_string()))
        );
        assert_eq!(collection_of("/v1/sandboxesX"), None);
        assert_eq!(
            collection_of("/v1/sandboxes").map(|(k, _)| k),
            Some(Kind::Sandbox)
        );
    }
}

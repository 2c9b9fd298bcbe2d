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
use ai2in_cluster::{Cluster, ClusterError, Kind, PRINCIPAL_HEADER, SECRET_HEADER};
use ai2in_node::{NodeError, Principal};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, middleware};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::TcpListener;

use crate::error::ApiError;
use crate::extract::{BODY_LIMIT, JsonBody, Path};
use crate::proxy::{join_upgraded, strip_hop_by_hop};

/// How long a key's check is believed: a revoked key stops working on every gateway within
/// this (and a second's heartbeat).
const KEY_TTL: Duration = Duration::from_millis(500);
/// How often the gateway reads the nodes' table (addresses and liveness).
const NODES_EVERY: Duration = Duration::from_millis(500);
/// How many nodes a create tries before the cluster answers 503.
const ATTEMPTS: usize = 3;
/// How long a joined WebSocket (a terminal) may stay silent.
const UPGRADED_IDLE: Duration = Duration::from_secs(3600);

/// The gateway's settings (`ai2in gateway --config`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Per-tenant quotas over the whole cluster.
    pub quotas: ClusterQuotas,
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
    /// Key hash → (when checked, who it is).
    keys: Mutex<HashMap<[u8; 32], KeyCheck>>,
    /// The nodes as last read, by id.
    nodes: Mutex<HashMap<String, NodeInfo>>,
    /// Where things live: id → node id (placements never move).
    placements: Mutex<HashMap<String, String>>,
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
            .build(connector);
        let gateway = Gateway {
            inner: Arc::new(Inner {
                cluster,
                config,
                secret,
                client,
                keys: Mutex::default(),
                nodes: Mutex::default(),
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
        Ok(())
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

    /// Sends `req` to `node` for `who`, with the cluster's secret; joins upgrades.
    async fn forward(
        &self,
        node: &NodeInfo,
        who: &Principal,
        mut req: Request,
    ) -> Result<Response, ApiError> {
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        *req.uri_mut() = Uri::try_from(format!("http://{}{path}", node.address)).map_err(|_| {
            ApiError::new(StatusCode::BAD_REQUEST, "the request's path is not valid")
        })?;
        let upgrade = req.headers().get(header::UPGRADE).cloned();
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let headers = req.headers_mut();
        strip_hop_by_hop(headers);
        headers.remove(header::AUTHORIZATION);
        headers.remove(header::HOST);
        headers.insert(SECRET_HEADER, self.inner.secret.clone());
        let scopes: Vec<&str> = who.scopes.iter().map(|s| s.as_str()).collect();
        let principal = format!("{} {} {}", who.key_id, who.tenant, scopes.join(","));
        headers.insert(
            PRINCIPAL_HEADER,
            HeaderValue::from_str(&principal).map_err(|_| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "the key's tenant is not header text",
                )
            })?,
        );
        if let Some(upgrade) = &upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, upgrade.clone());
        }
        let mut response = self.inner.client.request(req).await.map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "node {} ({}) does not answer: {e}; try again",
                    node.id, node.address
                ),
            )
        })?;
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

    /// The node holding `id` of `kind`, up; 404 when the cluster has no such thing of the
    /// caller's tenant, 503 naming the node when it is down.
    async fn owner(&self, kind: Kind, id: &str, who: &Principal) -> Result<NodeInfo, ApiError> {
        let not_found =
            || ApiError::new(StatusCode::NOT_FOUND, format!("no {} {id}", kind.as_str()));
        let cached = self.inner.placements.lock().unwrap().get(id).cloned();
        let node_id = match cached {
            Some(node_id) => node_id,
            None => {
                let placement = self
                    .inner
                    .cluster
                    .placement(id)
                    .await
                    .map_err(database_error)?
                    .filter(|p| p.tenant == who.tenant)
                    .ok_or_else(not_found)?;
                self.inner
                    .placements
                    .lock()
                    .unwrap()
                    .insert(id.to_string(), placement.node_id.clone());
                placement.node_id
            }
        };
        let node = self.node(&node_id).await?.ok_or_else(not_found)?;
        if node.status == NodeStatus::Down {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "node {} holding {id} is down (last seen {}); try again when it is back",
                    node.id, node.last_seen_at
                ),
            ));
        }
        Ok(node)
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
        let body = axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("the request body could not be read: {e}"),
            )
        })?;
        let need = need_of(&body);
        let mut tried: Vec<String> = Vec::new();
        let mut refusals = Vec::new();
        while tried.len() < ATTEMPTS {
            let Some(reserved) = self
                .inner
                .cluster
                .reserve(&need, &who.tenant, &tried)
                .await
                .map_err(database_error)?
            else {
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
                self.inner
                    .placements
                    .lock()
                    .unwrap()
                    .insert(id, node.id.clone());
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
    async fn list(&self, kind: Kind, who: &Principal, req: Request) -> Result<Response, ApiError> {
        let field = plural(kind);
        let nodes: Vec<NodeInfo> = self
            .inner
            .nodes
            .lock()
            .unwrap()
            .values()
            .filter(|n| n.status != NodeStatus::Down)
            .cloned()
            .collect();
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
        Ok(Json(serde_json::json!({ field: items })).into_response())
    }

    /// A call for `id` of `kind`, sent to its node; a delete forgets where it was.
    async fn route(
        &self,
        kind: Kind,
        id: &str,
        who: &Principal,
        req: Request,
    ) -> Result<Response, ApiError> {
        let node = self.owner(kind, id, who).await?;
        let whole = req.uri().path().trim_end_matches('/').ends_with(id);
        let delete = whole && req.method() == Method::DELETE;
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

/// The path segment of `kind`'s collection and its list's field.
fn plural(kind: Kind) -> &'static str {
    match kind {
        Kind::Sandbox => "sandboxes",
        Kind::Database => "databases",
        Kind::Service => "services",
        Kind::Volume => "volumes",
    }
}

fn kind_of(segment: &str) -> Option<Kind> {
    [Kind::Sandbox, Kind::Database, Kind::Service, Kind::Volume]
        .into_iter()
        .find(|k| plural(*k) == segment)
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
        .route("/v1/{collection}", any(collection))
        .route("/v1/{collection}/{id}", any(resource))
        .route("/v1/{collection}/{id}/{*rest}", any(resource))
        .fallback(|req: Request| async move {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "no route {} {}; see the API reference",
                    req.method(),
                    req.uri().path()
                ),
            )
        })
        .layer(middleware::from_fn(crate::router::to_completion))
        .with_state(gateway)
}

/// Serves `gateway` on `listener` until `shutdown` completes.
pub async fn serve_gateway(
    listener: TcpListener,
    gateway: Gateway,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, gateway_router(gateway))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The caller of `req`, authenticated.
async fn caller(gateway: &Gateway, headers: HeaderMap) -> Result<Principal, ApiError> {
    gateway.authenticate(&headers).await
}

async fn collection(
    State(gateway): State<Gateway>,
    Path(segment): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let who = caller(&gateway, req.headers().clone()).await?;
    let Some(kind) = kind_of(&segment) else {
        return Err(not_served(&req));
    };
    match *req.method() {
        Method::POST => gateway.create(kind, &who, req).await,
        Method::GET => gateway.list(kind, &who, req).await,
        _ => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} is not allowed on {}", req.method(), req.uri().path()),
        )),
    }
}

async fn resource(State(gateway): State<Gateway>, req: Request) -> Result<Response, ApiError> {
    let who = caller(&gateway, req.headers().clone()).await?;
    let mut segments = req.uri().path().split('/').skip(2);
    let (Some(kind), Some(id)) = (segments.next().and_then(kind_of), segments.next()) else {
        return Err(not_served(&req));
    };
    let id = id.to_string();
    gateway.route(kind, &id, &who, req).await
}

/// What the gateway does not serve yet (images are per node).
fn not_served(req: &Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no route {} {} through the gateway; images are managed per node in this version",
            req.method(),
            req.uri().path()
        ),
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

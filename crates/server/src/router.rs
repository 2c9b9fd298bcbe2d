//! Routes and the server loop.

use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ai2in_node::Node;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::header;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use utoipa::OpenApi;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::extract::{BODY_LIMIT, FILE_BODY_LIMIT};
use crate::openapi::{self, ApiDoc};
use crate::proxy::{self, Proxy};
use crate::splice::SplitListener;
use crate::{
    commands, databases, desktop, files, images, keys, nodes, pty, run, sandboxes, services,
    volumes,
};

/// How long in-flight requests may take to finish after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(5);

/// The API of `node`.
pub fn router(node: Node) -> Router {
    api()
        .0
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
        .method_not_allowed_fallback(|req: Request| async move {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{} is not allowed on {}", req.method(), req.uri().path()),
            )
        })
        .layer(middleware::from_fn(to_completion))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(cors))
        .layer(middleware::from_fn_with_state(node.clone(), log_request))
        .layer(middleware::from_fn_with_state(
            Proxy::new(node.clone()),
            proxy::route,
        ))
        .with_state(node)
}

/// The API's routes and their OpenAPI document, from the same annotated handlers.
pub(crate) fn api() -> (Router<Node>, utoipa::openapi::OpenApi) {
    let (routes, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(openapi_json))
        .routes(routes!(sandboxes::create, sandboxes::list))
        .routes(routes!(sandboxes::get, sandboxes::delete))
        .routes(routes!(sandboxes::timeout))
        .routes(routes!(sandboxes::pause))
        .routes(routes!(sandboxes::resume))
        .routes(routes!(sandboxes::expose))
        .routes(routes!(sandboxes::metrics))
        .routes(routes!(sandboxes::node_metrics))
        .routes(routes!(sandboxes::shell))
        .routes(routes!(sandboxes::snapshot))
        .routes(routes!(files::list))
        .routes(routes!(files::read))
        .routes(routes!(files::read_bytes))
        .routes(routes!(files::write).layer(DefaultBodyLimit::max(FILE_BODY_LIMIT)))
        .routes(routes!(files::write_bytes).layer(DefaultBodyLimit::max(FILE_BODY_LIMIT)))
        .routes(routes!(files::download, files::upload).layer(DefaultBodyLimit::disable()))
        .routes(routes!(files::watch))
        .routes(routes!(files::poll))
        .routes(routes!(files::stop))
        .routes(routes!(files::events))
        .routes(routes!(pty::create))
        .routes(routes!(pty::input))
        .routes(routes!(pty::output))
        .routes(routes!(pty::resize))
        .routes(routes!(pty::kill))
        .routes(routes!(pty::websocket))
        .routes(routes!(run::run))
        .routes(routes!(run::run_stream))
        .routes(routes!(run::create_context, run::list_contexts))
        .routes(routes!(run::delete_context))
        .routes(routes!(run::restart_context))
        .routes(routes!(commands::start, commands::list))
        .routes(routes!(commands::logs))
        .routes(routes!(commands::kill))
        .routes(routes!(desktop::info))
        .routes(routes!(desktop::screenshot))
        .routes(routes!(desktop::mouse))
        .routes(routes!(desktop::cursor))
        .routes(routes!(desktop::keyboard))
        .routes(routes!(desktop::launch))
        .routes(routes!(desktop::windows))
        .routes(routes!(desktop::start_stream, desktop::stop_stream))
        .routes(routes!(images::pull, images::list))
        .routes(
            routes!(images::import)
                .layer(DefaultBodyLimit::disable())
                .layer(middleware::map_response(images::close_unless_read)),
        )
        .routes(routes!(images::get, images::delete))
        .routes(routes!(volumes::create, volumes::list))
        .routes(routes!(volumes::get, volumes::delete))
        .routes(routes!(services::deploy, services::list))
        .routes(routes!(services::get, services::delete))
        .routes(routes!(services::logs))
        .routes(routes!(services::logs_stream))
        .routes(routes!(services::redeploy))
        .routes(routes!(services::stop))
        .routes(routes!(services::start))
        .routes(routes!(databases::engines))
        .routes(routes!(databases::create, databases::list))
        .routes(routes!(databases::get, databases::delete))
        .routes(routes!(databases::reset_password))
        .routes(routes!(keys::create, keys::list))
        .routes(routes!(keys::revoke))
        .routes(routes!(nodes::list))
        .routes(routes!(nodes::drain))
        .split_for_parts();
    openapi::complete(&mut doc);
    (routes, doc)
}

/// Whether the node answers.
#[utoipa::path(get, path = "/healthz", tag = "node",
    responses((status = 200, description = "The node serves requests.", body = Object, example = json!({"status": "ok"}))))]
async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

/// This document: OpenAPI 3.1, generated from the server's code.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "node", operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI document of this API.", body = Object)))]
pub(crate) async fn openapi_json() -> impl IntoResponse {
    static DOCUMENT: OnceLock<Bytes> = OnceLock::new();
    let document = DOCUMENT.get_or_init(|| Bytes::from(openapi::json(&api().1)));
    (
        [(header::CONTENT_TYPE, "application/json")],
        document.clone(),
    )
}

/// Lets web pages of any origin call the API (the TypeScript SDK runs in browsers). This
/// gives a page nothing it could not do itself: every route but the health check and this
/// document wants a bearer key, which a browser never adds on its own (no cookies here).
/// Runs a request that may change something in a task of its own, to its end: a client that
/// hangs up (hyper then drops the request's future) must not cut a change half-way, such as
/// a sandbox started but recorded as starting for ever, or killed but recorded as stopping.
pub(crate) async fn to_completion(req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    tokio::spawn(next.run(req)).await.unwrap_or_else(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the request failed: {e}"),
        )
        .into_response()
    })
}

pub(crate) async fn cors(req: Request, next: Next) -> Response {
    let from_page = req.headers().contains_key(header::ORIGIN);
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = if preflight {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(req).await
    };
    if from_page {
        let headers = response.headers_mut();
        let mut allow = |name, value| headers.insert(name, HeaderValue::from_static(value));
        allow(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*");
        if preflight {
            allow(header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, DELETE");
            allow(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "authorization, content-type",
            );
            allow(header::ACCESS_CONTROL_MAX_AGE, "600");
        }
    }
    response
}

/// Logs and counts each API request by its route (not its path: ids would make every
/// request a new series).
async fn log_request(State(node): State<Node>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let response = next.run(req).await;
    let status = response.status().as_u16();
    node.count_request(method.as_str(), &route, status);
    tracing::debug!(%method, route, status, ms = started.elapsed().as_secs_f64() * 1000.0, "request");
    response
}

/// Serves `node` on `listener` until `shutdown` completes, then drains for a few seconds.
/// Sandboxes keep running: they belong to the host, not to this process.
pub async fn serve(
    listener: TcpListener,
    node: Node,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    node.set_api_address(listener.local_addr()?);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let listener = SplitListener::new(listener, node.clone())?;
    let app = router(node).into_make_service_with_connect_info::<crate::splice::Peer>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = tx.send(());
    });
    tokio::select! {
        result = server => result,
        _ = async { let _ = rx.await; tokio::time::sleep(DRAIN).await } => {
            tracing::warn!("requests still running after the drain period; stopping anyway");
            Ok(())
        }
    }
}

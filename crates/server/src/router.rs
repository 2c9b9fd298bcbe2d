//! Routes and the server loop.

use std::future::Future;
use std::time::{Duration, Instant};

use ai2in_node::Node;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post};
use tokio::net::TcpListener;

use crate::error::ApiError;
use crate::extract::BODY_LIMIT;
use crate::extract::FILE_BODY_LIMIT;
use crate::proxy::{self, Proxy};
use crate::splice::SplitListener;
use crate::{commands, files, keys, pty, run, sandboxes};

/// How long in-flight requests may take to finish after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(5);

/// The API of `node`.
pub fn router(node: Node) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({ "status": "ok" })) }),
        )
        .route(
            "/v1/sandboxes",
            post(sandboxes::create).get(sandboxes::list),
        )
        .route(
            "/v1/sandboxes/{id}",
            get(sandboxes::get).delete(sandboxes::delete),
        )
        .route("/v1/sandboxes/{id}/timeout", post(sandboxes::timeout))
        .route("/v1/sandboxes/{id}/pause", post(sandboxes::pause))
        .route("/v1/sandboxes/{id}/resume", post(sandboxes::resume))
        .route("/v1/sandboxes/{id}/expose", post(sandboxes::expose))
        .route("/v1/sandboxes/{id}/metrics", get(sandboxes::metrics))
        .route("/metrics", get(sandboxes::node_metrics))
        .route("/v1/sandboxes/{id}/shell", post(sandboxes::shell))
        .route("/v1/sandboxes/{id}/fs/list", post(files::list))
        .route("/v1/sandboxes/{id}/fs/read", post(files::read))
        .route("/v1/sandboxes/{id}/fs/read_bytes", post(files::read_bytes))
        .route(
            "/v1/sandboxes/{id}/fs/write",
            post(files::write).layer(DefaultBodyLimit::max(FILE_BODY_LIMIT)),
        )
        .route(
            "/v1/sandboxes/{id}/fs/write_bytes",
            post(files::write_bytes).layer(DefaultBodyLimit::max(FILE_BODY_LIMIT)),
        )
        .route("/v1/sandboxes/{id}/fs/watch", post(files::watch))
        .route("/v1/sandboxes/{id}/fs/watch/{wid}/poll", post(files::poll))
        .route("/v1/sandboxes/{id}/fs/watch/{wid}/stop", post(files::stop))
        .route(
            "/v1/sandboxes/{id}/fs/watch/{wid}/events",
            get(files::events),
        )
        .route("/v1/sandboxes/{id}/pty", post(pty::create))
        .route("/v1/sandboxes/{id}/pty/{pid}/input", post(pty::input))
        .route("/v1/sandboxes/{id}/pty/{pid}/output", post(pty::output))
        .route("/v1/sandboxes/{id}/pty/{pid}/resize", post(pty::resize))
        .route("/v1/sandboxes/{id}/pty/{pid}/kill", post(pty::kill))
        .route("/v1/sandboxes/{id}/pty/{pid}/ws", get(pty::websocket))
        .route("/v1/sandboxes/{id}/run", post(run::run))
        .route("/v1/sandboxes/{id}/run/stream", post(run::run_stream))
        .route(
            "/v1/sandboxes/{id}/contexts",
            post(run::create_context).get(run::list_contexts),
        )
        .route(
            "/v1/sandboxes/{id}/contexts/{cid}",
            delete(run::delete_context),
        )
        .route(
            "/v1/sandboxes/{id}/contexts/{cid}/restart",
            post(run::restart_context),
        )
        .route(
            "/v1/sandboxes/{id}/commands",
            post(commands::start).get(commands::list),
        )
        .route(
            "/v1/sandboxes/{id}/commands/{cid}/logs",
            post(commands::logs),
        )
        .route(
            "/v1/sandboxes/{id}/commands/{cid}/kill",
            post(commands::kill),
        )
        .route("/v1/keys", post(keys::create).get(keys::list))
        .route("/v1/keys/{id}", delete(keys::revoke))
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
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(node.clone(), log_request))
        .layer(middleware::from_fn_with_state(
            Proxy::new(node.clone()),
            proxy::route,
        ))
        .with_state(node)
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
    node.set_api_port(listener.local_addr()?.port());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let listener = SplitListener::new(listener, node.clone())?;
    let server = axum::serve(listener, router(node)).with_graceful_shutdown(async move {
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

//! The cluster's nodes (admin). A gateway answers for every node of its cluster; a node on
//! its own answers for itself, a cluster of one.

use ai2in_api::{NodeInfo, NodeList};
use ai2in_node::Node;
use axum::Json;
use axum::extract::State;

use crate::error::ApiError;
use crate::extract::{Auth, Path};

/// List the cluster's nodes (admin): address, status, capacity, what is taken, last report.
#[utoipa::path(get, path = "/v1/nodes", tag = "nodes",
    responses((status = 200, description = "The nodes, by id.", body = NodeList)))]
pub async fn list(State(node): State<Node>, Auth(who): Auth) -> Result<Json<NodeList>, ApiError> {
    Ok(Json(NodeList {
        nodes: vec![node.node_info(&who)?],
    }))
}

/// Drain a node (admin): nothing new is placed on it; what it holds keeps running.
#[utoipa::path(post, path = "/v1/nodes/{id}/drain", tag = "nodes",
    params(("id" = String, Path, description = "The node's id.")),
    responses((status = 200, description = "The node, draining.", body = NodeInfo)))]
pub async fn drain(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<Json<NodeInfo>, ApiError> {
    Ok(Json(node.drain(&who, &id)?))
}

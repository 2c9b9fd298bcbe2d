//! [`Nodes`]: the nodes of the cluster (admin scope): a gateway's, or a node on its own as a
//! cluster of one.

use ai2in_api::{NodeInfo, NodeList};

use crate::error::Result;
use crate::http::{Empty, Http};

/// The nodes behind the client's address; from [`crate::Client::nodes`]. A gateway answers
/// for every node of its cluster, a node on its own for itself.
///
/// ```no_run
/// # async fn demo(client: ai2in_client::Client) -> ai2in_client::Result<()> {
/// for node in client.nodes().list().await? {
///     println!(
///         "{} {:?} {}/{} sandboxes",
///         node.id, node.status, node.used.sandboxes, node.capacity.sandboxes
///     );
/// }
/// let drained = client.nodes().drain("node-2").await?;
/// assert_eq!(drained.status, ai2in_client::NodeStatus::Draining);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Nodes {
    http: Http,
}

impl Nodes {
    pub(crate) fn new(http: Http) -> Self {
        Nodes { http }
    }

    /// Every node, by id: its address, status, capacity, what is taken and its last report.
    pub async fn list(&self) -> Result<Vec<NodeInfo>> {
        let list: NodeList = self.http.get("/v1/nodes").await?;
        Ok(list.nodes)
    }

    /// Drains the node `id`: nothing new is placed on it (a node on its own answers its
    /// creates with [`crate::Error::AtCapacity`]); what it holds keeps running. Answers the
    /// node, `draining`; an unknown id is [`crate::Error::NotFound`].
    pub async fn drain(&self, id: &str) -> Result<NodeInfo> {
        self.http.post(&drain_path(id), &Empty {}).await
    }
}

/// The route that drains node `id`.
fn drain_path(id: &str) -> String {
    crate::http::route("/v1/nodes/", id) + "/drain"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_route_names_the_node_in_one_segment() {
        assert_eq!(drain_path("node-1"), "/v1/nodes/node-1/drain");
        assert_eq!(drain_path("a/b c"), "/v1/nodes/a%2Fb%20c/drain");
    }
}

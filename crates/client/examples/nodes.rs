//! The nodes (admin): what each holds of its capacity, and whether it takes new work. A
//! gateway lists every node of its cluster; a node on its own lists itself.
use ai2in_client::{Client, NodeStatus};

#[tokio::main]
async fn main() -> ai2in_client::Result<()> {
    let admin = Client::from_env()?;
    let nodes = admin.nodes().list().await?;
    for node in &nodes {
        println!(
            "{} at {}: {:?}, {}/{} sandboxes, last seen {}",
            node.id,
            node.address,
            node.status,
            node.used.sandboxes,
            node.capacity.sandboxes,
            node.last_seen_at
        );
    }
    // `admin.nodes().drain(&id)` would stop placement on a node (its creates then answer
    // `Error::AtCapacity`); this example leaves the node as it found it.
    assert!(nodes.iter().any(|n| n.status == NodeStatus::Ready));
    Ok(())
}

//! Nodes through the SDK: a node on its own lists itself, refuses keys that are not admin,
//! and, drained (a node of the test's own), refuses creates.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use ai2in_client::{Client, CreateKeyRequest, CreateSandbox, Error, NodeStatus};
use futures_util::FutureExt;

use crate::harness::{Ctx, TestResult};
use crate::node::TestNode;

pub async fn list_shows_the_node_itself_and_wants_admin(ctx: Arc<Ctx>) -> TestResult {
    let nodes = ctx.client.nodes().list().await?;
    let node_id = ctx.shared.info().await?.node_id;
    assert_eq!(
        nodes.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(),
        [node_id.as_str()],
        "a node on its own is a cluster of one: {nodes:?}"
    );
    let me = &nodes[0];
    assert_eq!(me.status, NodeStatus::Ready);
    assert!(me.used.sandboxes >= 1, "the shared sandbox: {me:?}");
    assert!(me.capacity.sandboxes >= me.used.sandboxes && me.capacity.memory_bytes > 0);
    assert!(!me.last_seen_at.is_empty());

    let unknown = ctx.client.nodes().drain("no-such-node").await;
    assert!(
        matches!(unknown, Err(Error::NotFound { .. })),
        "{unknown:?}"
    );

    let created = ctx
        .client
        .keys()
        .create(CreateKeyRequest {
            name: "sdk-not-admin".into(),
            scopes: vec!["sandboxes:write".into()],
            tenant: None,
        })
        .await?;
    let user = Client::new(ctx.client.base_url(), &created.key)?;
    let listed = user.nodes().list().await;
    let drained = user.nodes().drain(&node_id).await;
    ctx.client.keys().revoke(&created.info.id).await?;
    let refused = listed.expect_err("not admin");
    assert!(matches!(refused, Error::Forbidden { .. }), "{refused:?}");
    assert!(refused.to_string().contains("admin"), "{refused}");
    assert!(
        matches!(drained, Err(Error::Forbidden { .. })),
        "{drained:?}"
    );
    let me = &ctx.client.nodes().list().await?[0];
    assert_eq!(me.status, NodeStatus::Ready, "a refused drain drained it");
    Ok(())
}

pub async fn drained_node_refuses_creates(_ctx: Arc<Ctx>) -> TestResult {
    // A node of the test's own: the run's node must keep taking creates.
    let own = tokio::task::spawn_blocking(|| TestNode::start_another("drain")).await?;
    let outcome = AssertUnwindSafe(drain_then_create(&own))
        .catch_unwind()
        .await;
    let failed = !matches!(outcome, Ok(Ok(())));
    tokio::task::spawn_blocking(move || own.stop(failed)).await?;
    outcome.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

async fn drain_then_create(own: &TestNode) -> TestResult {
    let client = Client::new(&own.url, &own.admin_key)?;
    let id = client.nodes().list().await?[0].id.clone();
    let drained = client.nodes().drain(&id).await?;
    assert_eq!(
        (drained.id.as_str(), drained.status),
        (id.as_str(), NodeStatus::Draining)
    );

    let refused = client
        .create_sandbox(CreateSandbox::default())
        .await
        .expect_err("a drained node takes nothing new");
    assert!(matches!(refused, Error::AtCapacity { .. }), "{refused:?}");
    assert!(refused.to_string().contains("draining"), "{refused}");
    let listed = client.nodes().list().await?;
    assert_eq!(listed[0].status, NodeStatus::Draining);
    Ok(())
}

//! Keys through the SDK, and what a key without a scope, or a revoked key, is told.

use std::sync::Arc;

use ai2in_client::{Client, CreateKeyRequest, CreateSandbox, Error};

use crate::harness::{Ctx, TestResult};

pub async fn create_list_revoke_and_scopes(ctx: Arc<Ctx>) -> TestResult {
    let keys = ctx.client.keys();
    let created = keys
        .create(CreateKeyRequest {
            name: "sdk-reader".into(),
            scopes: vec!["sandboxes:read".into()],
            tenant: None,
        })
        .await?;
    assert!(created.key.starts_with("ai2in_live_"));
    assert!(
        keys.list()
            .await?
            .iter()
            .any(|k| k.id == created.info.id && k.name == "sdk-reader")
    );

    let reader = Client::new(ctx.client.base_url(), &created.key)?;
    assert!(
        reader
            .list_sandboxes(&Default::default())
            .await?
            .iter()
            .any(|s| s.id == ctx.shared.id())
    );
    let refused = reader
        .create_sandbox(CreateSandbox::default())
        .await
        .expect_err("read-only");
    assert!(matches!(refused, Error::Forbidden { .. }), "{refused:?}");
    assert!(refused.to_string().contains("sandboxes:write"), "{refused}");
    let shell = reader.sandbox(ctx.shared.id()).shell("true").await;
    assert!(matches!(shell, Err(Error::Forbidden { .. })), "{shell:?}");

    keys.revoke(&created.info.id).await?;
    assert!(!keys.list().await?.iter().any(|k| k.id == created.info.id));
    let revoked = reader.list_sandboxes(&Default::default()).await;
    assert!(
        matches!(revoked, Err(Error::Unauthenticated { .. })),
        "{revoked:?}"
    );

    let other_tenant = keys
        .create(CreateKeyRequest {
            name: "sdk-other".into(),
            scopes: vec!["sandboxes:write".into()],
            tenant: Some("sdk-other".into()),
        })
        .await?;
    let stranger = Client::new(ctx.client.base_url(), &other_tenant.key)?;
    let hidden = stranger.sandbox(ctx.shared.id()).info().await;
    assert!(
        matches!(hidden, Err(Error::NotFound { .. })),
        "another tenant sees no sandbox: {hidden:?}"
    );
    // The default tenant's admin administers every tenant's keys.
    keys.revoke(&other_tenant.info.id).await?;
    let revoked = stranger.list_sandboxes(&Default::default()).await;
    assert!(
        matches!(revoked, Err(Error::Unauthenticated { .. })),
        "{revoked:?}"
    );
    Ok(())
}

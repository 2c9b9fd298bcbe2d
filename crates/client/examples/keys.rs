//! API keys (admin): a read-only key for a dashboard, what it may not do, and its revocation.
use ai2in_client::{Client, CreateKeyRequest, CreateSandbox, Error};

#[tokio::main]
async fn main() -> ai2in_client::Result<()> {
    let admin = Client::from_env()?;
    let created = admin
        .keys()
        .create(CreateKeyRequest {
            name: "dashboard".into(),
            scopes: vec!["sandboxes:read".into()],
            tenant: None,
        })
        .await?;

    let reader = Client::new(admin.base_url(), &created.key)?;
    reader.list_sandboxes(&Default::default()).await?;
    match reader.create_sandbox(CreateSandbox::default()).await {
        Err(Error::Forbidden { message }) => println!("as expected: {message}"),
        other => panic!("expected Forbidden, got {other:?}"),
    }

    admin.keys().revoke(&created.info.id).await?;
    assert!(matches!(
        reader.list_sandboxes(&Default::default()).await,
        Err(Error::Unauthenticated { .. })
    ));
    Ok(())
}

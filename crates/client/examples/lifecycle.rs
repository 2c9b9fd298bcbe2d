//! A sandbox's life: resources and labels at creation, listing by label, pause and resume,
//! a new lifetime, live metrics, a public URL for a port, and the errors on the way.
use std::time::Duration;

use ai2in_client::{Client, CreateSandbox, Error, SandboxFilter, SandboxStatus};

#[tokio::main]
async fn main() -> ai2in_client::Result<()> {
    let client = Client::from_env()?;
    let sandbox = client
        .create_sandbox(CreateSandbox {
            timeout_ms: Some(120_000),
            memory_bytes: Some(256 << 20),
            metadata: Some([("example".to_string(), "lifecycle".to_string())].into()),
            ..Default::default()
        })
        .await?;

    let filter = SandboxFilter {
        metadata: [("example".to_string(), "lifecycle".to_string())].into(),
        ..Default::default()
    };
    let listed = client.list_sandboxes(&filter).await?;
    assert!(listed.iter().any(|s| s.id == sandbox.id()));

    let paused = sandbox.pause().await?;
    assert_eq!(paused.status, SandboxStatus::Paused);
    // A paused sandbox refuses work until resumed.
    match sandbox.shell("true").await {
        Err(Error::Paused { message }) => println!("as expected: {message}"),
        other => panic!("expected Paused, got {other:?}"),
    }
    sandbox.resume().await?;

    let info = sandbox.set_timeout(Duration::from_secs(600)).await?;
    println!("{} ends at {}", info.id, info.end_at);
    let metrics = sandbox.metrics().await?;
    println!(
        "{} of {} bytes of memory in use",
        metrics.mem_used_bytes, metrics.mem_limit_bytes
    );
    let exposed = sandbox.expose(8000).await?;
    println!("port 8000 is at {}", exposed.url);

    sandbox.kill().await?;
    // The node remembers it ended.
    assert!(matches!(
        sandbox.info().await,
        Err(Error::Ended { .. } | Error::NotFound { .. })
    ));
    Ok(())
}

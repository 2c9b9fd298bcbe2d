//! Hosting: a web server the node keeps running at a URL — deploy it, wait until it runs,
//! read and follow its log, redeploy it, stop, start and delete it.
use std::time::Duration;

use ai2in_client::{
    Client, DeployServiceRequest, Error, LogStream, RedeployServiceRequest, ServiceStatus,
};
use futures_util::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::from_env()?;
    let services = client.services();
    let request = DeployServiceRequest {
        name: "example-web".into(),
        image: "host".into(),
        start_cmd: Some("python3 -m http.server 8000".into()),
        internal_port: Some(8000),
        ..Default::default()
    };
    let service = services.deploy(request.clone()).await?;
    println!(
        "{} at {}",
        service.id,
        service.url.as_deref().unwrap_or("-")
    );

    // It runs once its port accepts connections (give up after a minute).
    let mut status = service.status;
    for _ in 0..300 {
        if status == ServiceStatus::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        status = services.get(&service.id).await?.status;
    }
    assert_eq!(status, ServiceStatus::Running);

    // A name is taken once.
    match services.deploy(request).await {
        Err(Error::AlreadyExists { message }) => println!("as expected: {message}"),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }

    // The log, with what the node did ("system" lines), and a cursor for what follows.
    let logs = services.logs("example-web", None, Some(50)).await?;
    for line in logs.logs.iter().filter(|l| l.stream == LogStream::System) {
        println!("{} {}", line.timestamp, line.line);
    }

    // A new instance with a new environment; the old one served until it was ready.
    let changes = RedeployServiceRequest {
        env: Some([("GREETING".to_string(), "hello".to_string())].into()),
        ..Default::default()
    };
    let redeployed = services.redeploy("example-web", changes).await?;
    assert_ne!(redeployed.sandbox_id, None);

    // The lines written since the cursor (the redeploy's), as a stream that would go on.
    let mut lines = services
        .follow_logs("example-web", Some(logs.next_since))
        .await?;
    let next = tokio::time::timeout(Duration::from_secs(30), lines.next()).await?;
    println!("then: {}", next.ok_or("the log stream ended")??.line);
    drop(lines);

    assert_eq!(
        services.stop("example-web").await?.status,
        ServiceStatus::Stopped
    );
    services.start("example-web").await?;
    services.delete("example-web").await?;
    Ok(())
}

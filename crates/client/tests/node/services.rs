//! Hosting through the SDK: deploy a web server on the `host` image, wait until it runs, reach
//! it through the node's proxy, read and follow its log, stop, start, redeploy and delete it,
//! and the error variants on the way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ai2in_client::{
    DeployServiceRequest, Error, LogStream, RedeployServiceRequest, Service, ServiceStatus,
    Services,
};
use futures_util::StreamExt;

use crate::harness::{Ctx, TestResult};

/// A web server on port 8000 named `name`.
fn web(name: &str) -> DeployServiceRequest {
    DeployServiceRequest {
        name: name.into(),
        image: "host".into(),
        start_cmd: Some("python3 -m http.server 8000".into()),
        internal_port: Some(8000),
        ..Default::default()
    }
}

/// Polls the service until it is in `status` (60 s at the most).
async fn wait_for(services: &Services, id: &str, status: ServiceStatus) -> Result<Service, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let service = services.get(id).await.map_err(|e| e.to_string())?;
        if service.status == status {
            return Ok(service);
        }
        if Instant::now() > deadline {
            return Err(format!("{id} is not {status:?} within 60 s: {service:?}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `GET /` of the service's URL, sent to the node with the URL's host (as DNS would).
async fn fetch(ctx: &Ctx, url: &str) -> Result<(u16, String), reqwest::Error> {
    let host = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .trim_end_matches('/');
    let response = reqwest::Client::new()
        .get(format!("{}/", ctx.client.base_url()))
        .header(reqwest::header::HOST, host)
        .send()
        .await?;
    Ok((response.status().as_u16(), response.text().await?))
}

pub async fn deploy_wait_logs_stop_start_and_delete(ctx: Arc<Ctx>) -> TestResult {
    let services = ctx.client.services();
    let deployed = services.deploy(web("sdk-web")).await?;
    assert!(deployed.id.starts_with("svc_"), "{}", deployed.id);
    assert_eq!(deployed.name, "sdk-web");
    assert_ne!(deployed.status, ServiceStatus::Stopped);
    let url = deployed
        .url
        .clone()
        .ok_or("a service with a port has a URL")?;
    let suffix = deployed.id.trim_start_matches("svc_");
    assert!(url.contains(&format!("sdk-web-{suffix}.")), "{url}");
    assert_eq!(deployed.internal_port, Some(8000));

    let running = wait_for(&services, "sdk-web", ServiceStatus::Running).await?;
    assert_eq!(running.id, deployed.id);
    assert_eq!(running.url.as_deref(), Some(url.as_str()));
    assert!(running.sandbox_id.is_some(), "{running:?}");
    assert!(services.list().await?.iter().any(|s| s.id == deployed.id));
    let (status, body) = fetch(&ctx, &url).await?;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Directory listing"), "{body}");

    // The log: the node's own lines, in order, and a cursor that gives only what follows.
    let logs = services.logs(&deployed.id, None, None).await?;
    assert!(
        logs.logs.iter().any(|l| l.stream == LogStream::System),
        "{logs:?}"
    );
    assert!(
        logs.logs.windows(2).all(|w| w[0].seq < w[1].seq),
        "{logs:?}"
    );
    let last = logs.logs.last().ok_or("a log")?;
    assert_eq!(logs.next_since, last.seq);
    assert_eq!(services.logs("sdk-web", None, Some(1)).await?.logs.len(), 1);

    // Following: what is there, then a line written after the stream opened (the server's
    // access log of a request, on its standard error).
    let mut lines = services
        .follow_logs("sdk-web", Some(logs.next_since))
        .await?;
    fetch(&ctx, &url).await?;
    let request_logged = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next().await {
            let line = line?;
            assert!(line.seq > logs.next_since, "{line:?}");
            if line.stream == LogStream::Stderr && line.line.contains("GET /") {
                return Ok(line);
            }
        }
        Err::<_, Error>(Error::Stream("the log stream ended".into()))
    })
    .await
    .map_err(|_| "no access log line within 20 s")??;
    assert!(!request_logged.timestamp.is_empty(), "{request_logged:?}");
    drop(lines);

    let stopped = services.stop("sdk-web").await?;
    assert_eq!(stopped.status, ServiceStatus::Stopped);
    assert_eq!(stopped.sandbox_id, None);
    let (status, body) = fetch(&ctx, &url).await?;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("stopped"), "{body}");
    let started = services.start("sdk-web").await?;
    assert_eq!(started.status, ServiceStatus::Deploying);
    wait_for(&services, &deployed.id, ServiceStatus::Running).await?;
    assert_eq!(fetch(&ctx, &url).await?.0, 200);

    services.delete("sdk-web").await?;
    assert!(matches!(
        services.get(&deployed.id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        services.delete("sdk-web").await,
        Err(Error::NotFound { .. })
    ));
    Ok(())
}

pub async fn redeploy_replaces_the_instance_or_keeps_the_old_one(ctx: Arc<Ctx>) -> TestResult {
    let services = ctx.client.services();
    let first = services.deploy(web("sdk-redeploy")).await?;
    let first = wait_for(&services, &first.id, ServiceStatus::Running).await?;

    let changes = RedeployServiceRequest {
        env: Some([("GREETING".to_string(), "hello".to_string())].into()),
        ..Default::default()
    };
    let second = services.redeploy("sdk-redeploy", changes).await?;
    assert_eq!(second.status, ServiceStatus::Running);
    assert_ne!(second.sandbox_id, first.sandbox_id);
    assert_eq!(second.url, first.url);

    // A command that never serves: the redeploy fails and the old instance keeps serving.
    let broken = RedeployServiceRequest {
        start_cmd: Some("exit 3".into()),
        ..Default::default()
    };
    let failed = services.redeploy("sdk-redeploy", broken).await;
    assert!(
        matches!(&failed, Err(e @ Error::DeployFailed { .. }) if e.status() == Some(422)),
        "{failed:?}"
    );
    let after = services.get("sdk-redeploy").await?;
    assert_eq!(after.status, ServiceStatus::Running);
    assert_eq!(after.sandbox_id, second.sandbox_id);
    let url = after.url.ok_or("a URL")?;
    assert_eq!(fetch(&ctx, &url).await?.0, 200);
    services.delete(&first.id).await?;
    Ok(())
}

pub async fn service_errors_have_their_variants(ctx: Arc<Ctx>) -> TestResult {
    let services = ctx.client.services();
    let taken = services.deploy(web("sdk-taken-service")).await?;
    let again = services.deploy(web("sdk-taken-service")).await;
    assert!(
        matches!(&again, Err(Error::AlreadyExists { .. })),
        "{again:?}"
    );
    let bad_name = services.deploy(web("Bad Name")).await;
    assert!(
        matches!(&bad_name, Err(Error::BadRequest { message }) if message.contains("name")),
        "{bad_name:?}"
    );
    let too_many = services.logs(&taken.id, None, Some(1001)).await;
    assert!(
        matches!(&too_many, Err(Error::BadRequest { .. })),
        "{too_many:?}"
    );
    for missing in ["svc_doesnotexist00000000", "sdk-no-such-service"] {
        let got = services.get(missing).await;
        assert!(matches!(&got, Err(Error::NotFound { .. })), "{got:?}");
        let logs = services.follow_logs(missing, None).await.map(drop);
        assert!(matches!(&logs, Err(Error::NotFound { .. })), "{logs:?}");
    }
    services.delete(&taken.id).await?;
    Ok(())
}

//! Sandbox lifecycle through the SDK: create, list with filters, info, timeout, pause and
//! resume, metrics, expose, kill, and the errors on the way.

use std::sync::Arc;
use std::time::Duration;

use ai2in_client::{Client, CreateSandbox, Error, SandboxFilter, SandboxStatus};

use crate::harness::{Ctx, TestResult};

pub async fn create_list_info_and_lifetime(ctx: Arc<Ctx>) -> TestResult {
    let label = ("sdk-test".to_string(), "lifecycle".to_string());
    let sandbox = ctx
        .client
        .create_sandbox(CreateSandbox {
            timeout_ms: Some(60_000),
            cpu: Some(0.5),
            memory_bytes: Some(256 << 20),
            metadata: Some([label.clone()].into()),
            ..Default::default()
        })
        .await?;
    let info = sandbox.info().await?;
    assert_eq!(info.id, sandbox.id());
    assert_eq!(info.status, SandboxStatus::Running);
    assert_eq!(
        (info.resources.cpu, info.resources.memory_bytes),
        (0.5, 256 << 20)
    );

    let by_label = SandboxFilter {
        metadata: [label].into(),
        ..Default::default()
    };
    let listed = ctx.client.list_sandboxes(&by_label).await?;
    assert_eq!(
        listed.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        [sandbox.id()]
    );
    let paused_only = SandboxFilter {
        status: Some(SandboxStatus::Paused),
        ..by_label
    };
    assert!(ctx.client.list_sandboxes(&paused_only).await?.is_empty());

    let longer = sandbox.set_timeout(Duration::from_secs(3600)).await?;
    assert!(
        longer.end_at > info.end_at,
        "{} !> {}",
        longer.end_at,
        info.end_at
    );
    let too_long = sandbox.set_timeout(Duration::from_secs(25 * 3600)).await;
    assert!(
        matches!(too_long, Err(Error::BadRequest { .. })),
        "{too_long:?}"
    );
    sandbox.kill().await?;
    Ok(())
}

pub async fn pause_then_work_answers_paused_until_resumed(ctx: Arc<Ctx>) -> TestResult {
    let sandbox = ctx.client.create_sandbox(CreateSandbox::default()).await?;
    assert_eq!(sandbox.pause().await?.status, SandboxStatus::Paused);
    assert_eq!(
        sandbox.pause().await?.status,
        SandboxStatus::Paused,
        "idempotent"
    );
    let refused = sandbox
        .run("1")
        .await
        .expect_err("a paused sandbox runs nothing");
    assert_eq!(refused.status(), Some(409));
    assert!(matches!(refused, Error::Paused { .. }), "{refused:?}");
    assert!(matches!(
        sandbox.fs().read("/etc/hostname").await,
        Err(Error::Paused { .. })
    ));
    assert_eq!(sandbox.resume().await?.status, SandboxStatus::Running);
    assert_eq!(sandbox.shell("echo back").await?.stdout, "back\n");
    sandbox.kill().await?;
    Ok(())
}

pub async fn metrics_and_expose(ctx: Arc<Ctx>) -> TestResult {
    let metrics = ctx.shared.metrics().await?;
    assert!(
        metrics.mem_limit_bytes > 0 && metrics.pids > 0,
        "{metrics:?}"
    );
    let exposed = ctx.shared.expose(8080).await?;
    assert_eq!(exposed.port, 8080);
    assert!(
        // The id without its `sbx_`: an underscore is not valid in a host name.
        exposed.url.contains(&format!(
            "8080-{}.",
            ctx.shared.id().trim_start_matches("sbx_")
        )),
        "{}",
        exposed.url
    );
    let bad = ctx.shared.expose(0).await;
    assert!(matches!(bad, Err(Error::BadRequest { .. })), "{bad:?}");
    Ok(())
}

pub async fn killed_sandbox_answers_ended_and_unknown_answers_not_found(
    ctx: Arc<Ctx>,
) -> TestResult {
    let sandbox = ctx.client.create_sandbox(CreateSandbox::default()).await?;
    sandbox.kill().await?;
    // The node remembers the sandbox it destroyed: 410, not 404.
    let ended = sandbox.info().await.expect_err("it is gone");
    assert!(matches!(ended, Error::Ended { .. }), "{ended:?}");
    assert!(matches!(
        sandbox.shell("true").await,
        Err(Error::Ended { .. })
    ));

    let unknown = ctx.client.sandbox("sbx_doesnotexist000000");
    let missing = unknown.info().await.expect_err("no such sandbox");
    assert_eq!(missing.status(), Some(404));
    assert!(
        missing.to_string().contains("sbx_doesnotexist000000"),
        "{missing}"
    );
    assert!(matches!(unknown.kill().await, Err(Error::NotFound { .. })));
    Ok(())
}

pub async fn unreachable_node_is_a_transport_error(_ctx: Arc<Ctx>) -> TestResult {
    // Port 1 on loopback: nothing listens there.
    let client = Client::new("http://127.0.0.1:1/", "ai2in_live_x")?;
    let error = client
        .list_sandboxes(&Default::default())
        .await
        .expect_err("nothing listens");
    assert!(matches!(error, Error::Transport(_)), "{error:?}");
    assert_eq!(error.status(), None);
    Ok(())
}

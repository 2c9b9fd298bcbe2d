//! Run code with options and contexts: language, environment, timeout, errors in the code,
//! and a context of its own whose state persists between runs.
use std::time::Duration;

use ai2in_client::{Client, CreateSandbox, ExecutionExt, Language, RunOptions};

#[tokio::main]
async fn main() -> ai2in_client::Result<()> {
    let client = Client::from_env()?;
    let sandbox = client.create_sandbox(CreateSandbox::default()).await?;

    // An error in the code is part of the Execution, not an Err.
    let failed = sandbox.run("1 / 0").await?;
    assert_eq!(
        failed.error.map(|e| e.name).as_deref(),
        Some("ZeroDivisionError")
    );

    let bash = sandbox
        .run_with(
            RunOptions::new("echo \"$GREETING\"; false")
                .language(Language::Bash)
                .env("GREETING", "hello")
                .timeout(Duration::from_secs(10)),
        )
        .await?;
    assert_eq!(
        (bash.stdout().as_str(), bash.exit_code),
        ("hello\n", Some(1))
    );

    let ctx = sandbox
        .contexts()
        .create(Language::Python, Some("/tmp"))
        .await?;
    sandbox
        .run_with(RunOptions::new("counter = 41").context(&ctx.context_id))
        .await?;
    let next = sandbox
        .run_with(RunOptions::new("counter + 1").context(&ctx.context_id))
        .await?;
    assert_eq!(next.text(), Some("42"));
    sandbox.contexts().delete(&ctx.context_id).await?;

    sandbox.kill().await?;
    Ok(())
}

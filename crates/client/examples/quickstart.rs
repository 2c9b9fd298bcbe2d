//! Create a sandbox, run Python and a shell command in it, and destroy it.
use ai2in_client::{Client, CreateSandbox, ExecutionExt};

#[tokio::main]
async fn main() -> ai2in_client::Result<()> {
    let client = Client::from_env()?; // AI2IN_BASE_URL, AI2IN_API_KEY
    let sandbox = client.create_sandbox(CreateSandbox::default()).await?;
    println!("created {}", sandbox.id());

    let execution = sandbox
        .run("import math\nprint('hi')\nmath.factorial(10)")
        .await?;
    assert_eq!(execution.stdout(), "hi\n");
    assert_eq!(execution.text(), Some("3628800"));

    let out = sandbox.shell("uname -s && id -un").await?;
    assert_eq!(out.exit_code, Some(0));
    print!("{}", out.stdout);

    sandbox.kill().await?;
    Ok(())
}

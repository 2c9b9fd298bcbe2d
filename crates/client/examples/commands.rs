//! Background commands: start one, follow its output, wait for another, kill a third.
use ai2in_client::{Client, CommandStatus, CreateSandbox};
use futures_util::StreamExt;

#[tokio::main]
async fn main() -> ai2in_client::Result<()> {
    let client = Client::from_env()?;
    let sandbox = client.create_sandbox(CreateSandbox::default()).await?;
    let commands = sandbox.commands();

    let ticker = commands
        .start("for i in 1 2 3; do echo tick $i; sleep 0.2; done")
        .await?;
    let mut output = std::pin::pin!(commands.follow(&ticker.command_id));
    while let Some(chunk) = output.next().await {
        print!("{}", chunk?.stdout);
    }

    let job = commands
        .start("echo result; echo warning >&2; exit 4")
        .await?;
    let logs = commands.wait(&job.command_id).await?;
    assert_eq!(
        (logs.stdout.as_str(), logs.stderr.as_str()),
        ("result\n", "warning\n")
    );
    assert_eq!(
        (logs.status, logs.exit_code),
        (CommandStatus::Exited, Some(4))
    );

    let server = commands.start("sleep 600").await?;
    commands.kill(&server.command_id).await?;
    assert_eq!(
        commands.wait(&server.command_id).await?.status,
        CommandStatus::Killed
    );

    for command in commands.list().await? {
        println!(
            "{} {:?} {}",
            command.command_id, command.status, command.cmd
        );
    }
    sandbox.kill().await?;
    Ok(())
}

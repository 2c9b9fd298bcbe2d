//! Drive a terminal by requests: type into a shell, read what it printed, resize, end it.
use std::time::Duration;

use ai2in_client::{Client, CreateSandbox, PtyRequest};

#[tokio::main]
async fn main() -> ai2in_client::Result<()> {
    let client = Client::from_env()?;
    let sandbox = client.create_sandbox(CreateSandbox::default()).await?;
    let pty = sandbox.pty();

    let term = pty
        .create(PtyRequest {
            cmd: Some("/bin/sh".into()),
            cols: Some(100),
            rows: Some(30),
            ..Default::default()
        })
        .await?;
    pty.resize(term.pid, 120, 40).await?;
    pty.input(term.pid, b"stty size; exit 5\n").await?;

    let mut screen = Vec::new();
    let exit_code = loop {
        let chunk = pty.output(term.pid).await?;
        screen.extend_from_slice(&chunk.data);
        if !chunk.alive {
            break chunk.exit_code;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let screen = String::from_utf8_lossy(&screen);
    assert!(screen.contains("40 120"), "{screen}");
    assert_eq!(exit_code, Some(5));

    sandbox.kill().await?;
    Ok(())
}

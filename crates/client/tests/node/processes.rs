//! Background commands and terminals through the SDK.

use std::sync::Arc;
use std::time::Duration;

use ai2in_client::{CommandRequest, CommandStatus, Error, PtyRequest};
use futures_util::StreamExt;

use crate::harness::{Ctx, TestResult};

pub async fn commands_start_follow_wait_list_kill(ctx: Arc<Ctx>) -> TestResult {
    let commands = ctx.shared.commands();
    let ticker = commands
        .start_with(CommandRequest {
            cmd: "for i in 1 2 3; do echo $i$SUFFIX; sleep 0.3; done; echo err >&2; exit 2".into(),
            env: Some([("SUFFIX".to_string(), "!".to_string())].into()),
            ..Default::default()
        })
        .await?;
    assert!(ticker.command_id.starts_with("cmd_"));
    let chunks: Vec<_> = commands
        .follow(&ticker.command_id)
        .map(|c| c.expect("a chunk"))
        .collect()
        .await;
    let stdout: String = chunks.iter().map(|c| c.stdout.as_str()).collect();
    assert_eq!(stdout, "1!\n2!\n3!\n");
    assert!(
        chunks.len() >= 3,
        "output came in pieces as it was written: {chunks:?}"
    );
    let last = chunks.last().expect("a last chunk");
    assert_eq!(
        (last.status, last.exit_code),
        (CommandStatus::Exited, Some(2))
    );

    let all = commands.wait(&ticker.command_id).await?;
    assert_eq!(
        (all.stdout.as_str(), all.stderr.as_str()),
        ("1!\n2!\n3!\n", "err\n")
    );
    let tail = commands.logs_from(&ticker.command_id, 3, 0).await?;
    assert_eq!(tail.stdout, "2!\n3!\n");

    let sleeper = commands.start("sleep 600").await?;
    let listed = commands.list().await?;
    assert!(
        listed
            .iter()
            .any(|c| c.command_id == sleeper.command_id && c.status == CommandStatus::Running)
    );
    commands.kill(&sleeper.command_id).await?;
    assert_eq!(
        commands.wait(&sleeper.command_id).await?.status,
        CommandStatus::Killed
    );
    assert!(matches!(
        commands.logs("cmd_nosuch").await,
        Err(Error::NotFound { .. })
    ));
    Ok(())
}

pub async fn pty_create_input_output_resize_kill(ctx: Arc<Ctx>) -> TestResult {
    let pty = ctx.shared.pty();
    let term = pty
        .create(PtyRequest {
            cmd: Some("/bin/sh".into()),
            cols: Some(90),
            rows: Some(20),
            ..Default::default()
        })
        .await?;
    assert_eq!(term.pty_id, format!("pty_{}", term.pid));
    pty.resize(term.pid, 132, 43).await?;
    pty.input(term.pid, b"stty size\n").await?;
    let mut screen = String::new();
    for _ in 0..100 {
        screen.push_str(&String::from_utf8_lossy(&pty.output(term.pid).await?.data));
        if screen.contains("43 132") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(screen.contains("43 132"), "{screen:?}");
    pty.kill(term.pid).await?;
    let mut end = pty.output(term.pid).await?;
    for _ in 0..100 {
        if !end.alive {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        end = pty.output(term.pid).await?;
    }
    assert_eq!((end.alive, end.exit_code), (false, Some(128 + 9)));
    Ok(())
}

//! [`Commands`]: processes that run in the background of a sandbox, their output kept by
//! the node and read with offsets, so that following them never misses or repeats bytes.

use std::time::Duration;

use ai2in_api::{
    CommandInfo, CommandKillRequest, CommandList, CommandLogs, CommandLogsRequest, CommandRequest,
    CommandStarted, CommandStatus, Signal,
};
use futures_util::{Stream, StreamExt};

use crate::error::Result;
use crate::http::Http;
use crate::sandbox::Sandbox;

/// How often [`Commands::follow`] and [`Commands::wait`] ask for more output.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The background commands of a sandbox; from [`Sandbox::commands`].
///
/// ```no_run
/// # async fn demo(sandbox: ai2in_client::Sandbox) -> ai2in_client::Result<()> {
/// let started = sandbox.commands().start("sleep 1; echo done").await?;
/// let logs = sandbox.commands().wait(&started.command_id).await?;
/// assert_eq!((logs.stdout.as_str(), logs.exit_code), ("done\n", Some(0)));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Commands<'a> {
    sandbox: &'a Sandbox,
}

impl<'a> Commands<'a> {
    pub(crate) fn new(sandbox: &'a Sandbox) -> Self {
        Commands { sandbox }
    }

    fn path(&self, route: &str) -> String {
        self.sandbox.path(&format!("commands{route}"))
    }

    /// Starts `cmd` (through `/bin/sh -c`) in the background.
    pub async fn start(&self, cmd: &str) -> Result<CommandStarted> {
        self.start_with(CommandRequest {
            cmd: cmd.into(),
            ..Default::default()
        })
        .await
    }

    /// Starts a command with a working directory, environment or user.
    pub async fn start_with(&self, request: CommandRequest) -> Result<CommandStarted> {
        self.sandbox.http().post(&self.path(""), &request).await
    }

    /// Every command started in the sandbox, oldest first.
    pub async fn list(&self) -> Result<Vec<CommandInfo>> {
        let list: CommandList = self.sandbox.http().get(&self.path("")).await?;
        Ok(list.commands)
    }

    /// The command's output since it started, and its status.
    pub async fn logs(&self, command_id: &str) -> Result<CommandLogs> {
        self.logs_from(command_id, 0, 0).await
    }

    /// The command's output from these byte offsets on (the previous answer's
    /// `stdout_offset` and `stderr_offset`).
    pub async fn logs_from(
        &self,
        command_id: &str,
        stdout_offset: u64,
        stderr_offset: u64,
    ) -> Result<CommandLogs> {
        logs(
            self.sandbox.http(),
            &self.path(&format!("/{command_id}/logs")),
            stdout_offset,
            stderr_offset,
        )
        .await
    }

    /// Sends SIGKILL to the command's process group.
    pub async fn kill(&self, command_id: &str) -> Result<()> {
        self.signal(command_id, Signal::Name("KILL".into())).await
    }

    /// Sends `signal` to the command's process group.
    pub async fn signal(&self, command_id: &str, signal: Signal) -> Result<()> {
        let body = CommandKillRequest {
            signal: Some(signal),
        };
        self.sandbox
            .http()
            .post_unit(&self.path(&format!("/{command_id}/kill")), &body)
            .await
    }

    /// The command's output as it comes: each item holds the bytes since the previous one
    /// (the first, everything so far). The stream ends once the command has ended and its
    /// output is drained; the last item carries its status and exit code.
    pub fn follow(&self, command_id: &str) -> impl Stream<Item = Result<CommandLogs>> + Send {
        let http = self.sandbox.http().clone();
        let path = self.path(&format!("/{command_id}/logs"));
        futures_util::stream::unfold(Some((0, 0, true)), move |state| {
            let (http, path) = (http.clone(), path.clone());
            async move {
                let (stdout_offset, stderr_offset, first) = state?;
                loop {
                    if !first {
                        tokio::time::sleep(POLL_INTERVAL).await;
                    }
                    let chunk = match logs(&http, &path, stdout_offset, stderr_offset).await {
                        Err(e) => return Some((Err(e), None)),
                        Ok(chunk) => chunk,
                    };
                    let ended = chunk.status != CommandStatus::Running;
                    let fresh = chunk.stdout_offset != stdout_offset
                        || chunk.stderr_offset != stderr_offset;
                    if ended || fresh || first {
                        let next = (!ended || fresh).then_some((
                            chunk.stdout_offset,
                            chunk.stderr_offset,
                            false,
                        ));
                        return Some((Ok(chunk), next));
                    }
                }
            }
        })
    }

    /// Waits for the command to end and answers all of its output, its status and exit
    /// code.
    pub async fn wait(&self, command_id: &str) -> Result<CommandLogs> {
        let mut chunks = std::pin::pin!(self.follow(command_id));
        let mut all: Option<CommandLogs> = None;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            all = Some(match all {
                None => chunk,
                Some(all) => CommandLogs {
                    stdout: all.stdout + &chunk.stdout,
                    stderr: all.stderr + &chunk.stderr,
                    dropped_bytes: all.dropped_bytes + chunk.dropped_bytes,
                    ..chunk
                },
            });
        }
        Ok(all.expect("follow yields at least one item"))
    }
}

async fn logs(
    http: &Http,
    path: &str,
    stdout_offset: u64,
    stderr_offset: u64,
) -> Result<CommandLogs> {
    let body = CommandLogsRequest {
        stdout_offset: Some(stdout_offset),
        stderr_offset: Some(stderr_offset),
    };
    http.post(path, &body).await
}

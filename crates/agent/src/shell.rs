//! `Shell`: run `/bin/sh -c` to completion, streaming its output to the node as it comes,
//! with an output cap, a timeout that kills the whole process group, and the same kill
//! when the node goes away mid-run.

use std::io;
use std::time::{Duration, Instant};

use ai2in_protocol::{Event, FailKind, FrameError, ShellSpec, write_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::pipe;

use crate::process::{Launch, kill_group_fully, read_now, spawn};
use crate::reaper::Exit;
use crate::serve::Context;

const CHUNK: usize = 64 * 1024;
/// How long a timed-out command may take to die before the answer goes out without it.
const KILL_GRACE: Duration = Duration::from_secs(1);

/// Runs `spec` and streams its events to `conn`.
pub async fn run(
    ctx: &Context,
    spec: ShellSpec,
    stdin: Vec<u8>,
    conn: &mut UnixStream,
) -> Result<(), FrameError> {
    match execute(ctx, spec, stdin, conn).await {
        Ok(()) => Ok(()),
        Err(Failure::User(message)) => {
            let failed = Event::Failed {
                kind: FailKind::Invalid,
                message,
            };
            write_frame(conn, &failed, &[]).await
        }
        Err(Failure::Node(e)) => Err(e),
    }
}

enum Failure {
    /// Something the user can fix (bad cwd, unknown user).
    User(String),
    /// The node's connection failed.
    Node(FrameError),
}

impl From<FrameError> for Failure {
    fn from(e: FrameError) -> Self {
        Failure::Node(e)
    }
}

/// Output kept of one stream, up to the cap.
struct Stream {
    event: Event,
    sent: u64,
    open: bool,
}

async fn execute(
    ctx: &Context,
    spec: ShellSpec,
    stdin: Vec<u8>,
    conn: &mut UnixStream,
) -> Result<(), Failure> {
    let started = Instant::now();
    let deadline = spec.timeout_ms.map_or_else(far_future, |ms| {
        tokio::time::Instant::now() + Duration::from_millis(ms)
    });
    let epoch = ctx.reaper.epoch();
    let mut env = ctx.env().to_vec();
    env.extend(spec.env.iter().cloned());
    let launch = Launch {
        argv: vec!["/bin/sh".into(), "-c".into(), spec.cmd.clone()],
        cwd: spec.cwd.clone(),
        env,
        user: spec.user.clone(),
        // Nothing to write: /dev/null, no pipe nor writer.
        stdin: !stdin.is_empty(),
        extra_fds: Vec::new(),
    };
    let mut spawning = Box::pin(spawn(&ctx.spawner, launch));
    let spawned = tokio::select! {
        spawned = &mut spawning => spawned.map_err(Failure::User)?,
        _ = tokio::time::sleep_until(deadline) => {
            // Still starting (the sandbox is starved): kill it once it exists.
            tokio::spawn(async move {
                if let Ok(s) = spawning.await {
                    kill_group_fully(s.pid);
                }
            });
            let done = Event::Exited { exit_code: None, signal: None, timed_out: true, truncated: false, duration_ms: started.elapsed().as_secs_f64() * 1000.0 };
            write_frame(conn, &done, &[]).await?;
            return Ok(());
        }
    };
    let pid = spawned.pid;
    let mut exited = ctx.reaper.watch(pid, epoch);
    let pipes = (|| {
        Ok::<_, io::Error>((
            spawned.stdin.map(pipe::Sender::from_owned_fd).transpose()?,
            pipe::Receiver::from_owned_fd(spawned.stdout)?,
            pipe::Receiver::from_owned_fd(spawned.stderr)?,
        ))
    })();
    let (stdin_pipe, mut stdout, mut stderr) = pipes.map_err(|e| {
        kill_group_fully(pid);
        Failure::User(format!("failed to set up the command's pipes: {e}"))
    })?;
    if let Some(mut stdin_pipe) = stdin_pipe {
        tokio::spawn(async move {
            let _ = stdin_pipe.write_all(&stdin).await;
        });
    }
    let sleep = tokio::time::sleep_until(deadline);
    tokio::pin!(sleep);

    let mut out = Stream {
        event: Event::Stdout,
        sent: 0,
        open: true,
    };
    let mut err = Stream {
        event: Event::Stderr,
        sent: 0,
        open: true,
    };
    let mut truncated = false;
    let (mut out_buf, mut err_buf) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    let mut timed_out = false;
    let exit = loop {
        tokio::select! {
            n = stdout.read(&mut out_buf), if out.open => {
                forward(conn, &mut out, &out_buf, n, spec.output_cap, &mut truncated, pid).await?;
            }
            n = stderr.read(&mut err_buf), if err.open => {
                forward(conn, &mut err, &err_buf, n, spec.output_cap, &mut truncated, pid).await?;
            }
            status = &mut exited => break status.ok(),
            // A killed process stuck in the kernel (out of memory, say) may take long to
            // die: answer after a grace period anyway; the reaper collects it later.
            _ = &mut sleep => {
                if timed_out {
                    break None;
                }
                timed_out = true;
                kill_group_fully(pid);
                sleep.as_mut().reset(tokio::time::Instant::now() + KILL_GRACE);
            }
        }
    };
    // Output written just before the exit is still in the pipes; background processes
    // that keep them open do not hold up the answer.
    for (stream, pipe, buf) in [
        (&mut out, &stdout, &mut out_buf),
        (&mut err, &stderr, &mut err_buf),
    ] {
        while stream.open {
            match read_now(pipe, buf) {
                Ok(n) => {
                    forward(
                        conn,
                        stream,
                        buf,
                        Ok(n),
                        spec.output_cap,
                        &mut truncated,
                        pid,
                    )
                    .await?
                }
                Err(_) => break,
            }
        }
    }
    // A command killed by a signal (the OOM killer, say) takes what it left running with it;
    // one that exited normally may leave background jobs, as a shell would.
    if matches!(exit, Some(Exit::Signal(_))) {
        kill_group_fully(pid);
    }
    let (exit_code, signal) = match exit {
        Some(Exit::Code(c)) if !timed_out => (Some(c), None),
        Some(Exit::Signal(s)) => (None, Some(s)),
        _ => (None, None),
    };
    let done = Event::Exited {
        exit_code,
        signal,
        timed_out,
        truncated,
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
    };
    write_frame(conn, &done, &[]).await?;
    Ok(())
}

/// Sends what a read returned, within the cap; marks the stream closed at EOF or error.
/// Kills the command if the node has gone away.
async fn forward(
    conn: &mut UnixStream,
    stream: &mut Stream,
    buf: &[u8],
    read: io::Result<usize>,
    cap: u64,
    truncated: &mut bool,
    pid: u32,
) -> Result<(), Failure> {
    let n = match read {
        Ok(0) | Err(_) => {
            stream.open = false;
            return Ok(());
        }
        Ok(n) => n,
    };
    let room = cap.saturating_sub(stream.sent) as usize;
    if n > room {
        *truncated = true;
    }
    let chunk = &buf[..n.min(room)];
    if chunk.is_empty() {
        return Ok(());
    }
    stream.sent += chunk.len() as u64;
    if let Err(e) = write_frame(conn, &stream.event, chunk).await {
        kill_group_fully(pid);
        return Err(e.into());
    }
    Ok(())
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365)
}

//! Background commands: started, listed, read and killed by id. Each keeps the last
//! [`KEPT_BYTES`] of its standard output and of its standard error; offsets count every byte
//! ever written, so a client that comes back asks "from offset N" and learns how much the
//! bounded buffer dropped if it was away too long. Output lives in the agent, so it
//! survives node restarts.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use ai2in_protocol::{CommandInfo, CommandSpec, Event, FailKind, FrameError, write_frame};
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;
use tokio::net::unix::pipe;

use crate::fs::FsError;
use crate::process::{Launch, signal_group, spawn};
use crate::reaper::{Exit, Reaper};

/// Output kept per stream of a command: the most recent 1 MiB.
pub const KEPT_BYTES: usize = 1 << 20;
/// Commands remembered; past this the oldest finished ones are forgotten.
const MAX_COMMANDS: usize = 256;
/// Output per frame sent to the node.
const FRAME: usize = 256 * 1024;

/// The last bytes of a stream, and how many were ever written.
#[derive(Default)]
struct Ring {
    kept: VecDeque<u8>,
    total: u64,
}

impl Ring {
    fn push(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        self.kept.extend(data);
        let excess = self.kept.len().saturating_sub(KEPT_BYTES);
        self.kept.drain(..excess);
    }

    /// What is kept from `offset` on, and how many bytes before it are lost.
    fn since(&self, offset: u64) -> (Vec<u8>, u64) {
        let oldest = self.total - self.kept.len() as u64;
        let start = offset.clamp(oldest, self.total);
        let skip = (start - oldest) as usize;
        (
            self.kept.range(skip..).copied().collect(),
            start - offset.min(start),
        )
    }
}

struct Command {
    id: String,
    pid: u32,
    cmd: String,
    started_at_ms: i64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    stdout: Ring,
    stderr: Ring,
    exit: Option<Exit>,
    ended_at_ms: Option<i64>,
}

impl Command {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn info(&self) -> CommandInfo {
        let state = self.state();
        let (status, exit_code) = match state.exit {
            None => ("running", None),
            Some(Exit::Code(c)) => ("exited", Some(c)),
            Some(Exit::Signal(_)) => ("killed", None),
        };
        CommandInfo {
            command_id: self.id.clone(),
            pid: self.pid,
            cmd: self.cmd.clone(),
            status: status.into(),
            exit_code,
            started_at_ms: self.started_at_ms,
            ended_at_ms: state.ended_at_ms,
        }
    }
}

/// Every background command of the sandbox.
#[derive(Default)]
pub struct Commands {
    map: Mutex<BTreeMap<String, Arc<Command>>>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn not_found(id: &str) -> FsError {
    FsError(FailKind::NotFound, format!("no command {id}"))
}

impl Commands {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Command>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, id: &str) -> Result<Arc<Command>, FsError> {
        self.map().get(id).cloned().ok_or_else(|| not_found(id))
    }

    /// Starts `spec` in the background; returns its id and pid.
    pub async fn start(
        &self,
        spec: CommandSpec,
        sandbox_env: Vec<(String, String)>,
        work_fds: Vec<i32>,
        reaper: &Reaper,
    ) -> Result<(String, u32), FsError> {
        let mut env = sandbox_env;
        env.extend(spec.env);
        let launch = Launch {
            argv: vec!["/bin/sh".into(), "-c".into(), spec.cmd.clone()],
            cwd: spec.cwd,
            env,
            user: spec.user,
            work_fds,
            stdin: false,
            extra_fds: Vec::new(),
        };
        let epoch = reaper.epoch();
        let spawned = tokio::task::spawn_blocking(move || spawn(launch))
            .await
            .map_err(|e| FsError(FailKind::Other, e.to_string()))?
            .map_err(|e| FsError(FailKind::Invalid, e))?;
        let exited = reaper.watch(spawned.pid, epoch);
        let command = Arc::new(Command {
            id: format!("cmd_{:016x}", crate::process::random_u64()),
            pid: spawned.pid,
            cmd: spec.cmd,
            started_at_ms: now_ms(),
            state: Mutex::default(),
        });
        let pipes = pipe::Receiver::from_owned_fd(spawned.stdout)
            .and_then(|out| Ok((out, pipe::Receiver::from_owned_fd(spawned.stderr)?)));
        let (stdout, stderr) = pipes.map_err(|e| {
            crate::process::kill_group_fully(spawned.pid);
            FsError(
                FailKind::Other,
                format!("failed to set up the command's pipes: {e}"),
            )
        })?;
        tokio::spawn(collect(command.clone(), stdout, true));
        tokio::spawn(collect(command.clone(), stderr, false));
        let waiter = command.clone();
        tokio::spawn(async move {
            let exit = exited.await.ok();
            let mut state = waiter.state();
            state.exit = exit.or(Some(Exit::Signal(libc::SIGKILL)));
            state.ended_at_ms = Some(now_ms());
        });
        let mut map = self.map();
        if map.len() >= MAX_COMMANDS {
            let oldest_done = map
                .iter()
                .find(|(_, c)| c.state().exit.is_some())
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest_done {
                map.remove(&k);
            }
        }
        let id = command.id.clone();
        let pid = command.pid;
        map.insert(id.clone(), command);
        Ok((id, pid))
    }

    /// The commands, oldest first.
    pub fn list(&self) -> Vec<CommandInfo> {
        let mut list: Vec<_> = self.map().values().map(|c| c.info()).collect();
        list.sort_by_key(|c| c.started_at_ms);
        list
    }

    /// Sends a command's output from the offsets, then its status.
    pub async fn logs(
        &self,
        id: &str,
        stdout_offset: u64,
        stderr_offset: u64,
        conn: &mut UnixStream,
    ) -> Result<(), FrameError> {
        let command = match self.get(id) {
            Ok(c) => c,
            Err(e) => return e.send(conn).await,
        };
        let read = {
            let state = command.state();
            // Offsets come from earlier answers and the output only grows: one past the end
            // is a client's mistake, which would otherwise skip the output still to come.
            let past_end = [
                ("stdout_offset", stdout_offset, state.stdout.total),
                ("stderr_offset", stderr_offset, state.stderr.total),
            ]
            .into_iter()
            .find(|(_, offset, total)| offset > total);
            match past_end {
                Some((field, offset, total)) => Err(FsError(
                    FailKind::Invalid,
                    format!(
                        "{field} {offset} is past the end of the output ({total} bytes so far); \
                         use the offset of an earlier answer"
                    ),
                )),
                None => Ok((
                    state.stdout.since(stdout_offset),
                    state.stderr.since(stderr_offset),
                    state.stdout.total,
                    state.stderr.total,
                )),
            }
        };
        let ((out, out_lost), (err, err_lost), out_end, err_end) = match read {
            Ok(read) => read,
            Err(e) => return e.send(conn).await,
        };
        for (event, data) in [(Event::Stdout, &out), (Event::Stderr, &err)] {
            for chunk in data.chunks(FRAME) {
                write_frame(conn, &event, chunk).await?;
            }
        }
        let done = Event::CommandLogs {
            info: command.info(),
            stdout_offset: out_end,
            stderr_offset: err_end,
            dropped_bytes: out_lost + err_lost,
        };
        write_frame(conn, &done, &[]).await
    }

    /// Sends `signal` to a command's process group.
    pub fn kill(&self, id: &str, signal: i32) -> Result<(), FsError> {
        let command = self.get(id)?;
        if command.state().exit.is_none() {
            signal_group(command.pid, signal);
        }
        Ok(())
    }
}

/// Appends what a pipe yields to the command's buffer until EOF.
async fn collect(command: Arc<Command>, mut pipe: pipe::Receiver, stdout: bool) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let mut state = command.state();
                let ring = if stdout {
                    &mut state.stdout
                } else {
                    &mut state.stderr
                };
                ring.push(&buf[..n]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_tail_and_counts_what_it_dropped() {
        let mut ring = Ring::default();
        ring.push(b"hello ");
        ring.push(b"world");
        assert_eq!(ring.since(0), (b"hello world".to_vec(), 0));
        assert_eq!(ring.since(6), (b"world".to_vec(), 0));
        assert_eq!(ring.since(99), (Vec::new(), 0));
        ring.push(&vec![b'x'; KEPT_BYTES]);
        let (data, lost) = ring.since(0);
        assert_eq!(data.len(), KEPT_BYTES);
        assert_eq!(lost, 11);
        assert_eq!(ring.total, 11 + KEPT_BYTES as u64);
    }
}

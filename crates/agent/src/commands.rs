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
use tokio::sync::Notify;

use crate::fs::FsError;
use crate::process::{Launch, signal_group, spawn};
use crate::reaper::{Exit, Reaper};
use crate::spawner::Spawner;

/// Output kept per stream of a command: the most recent 1 MiB.
pub const KEPT_BYTES: usize = 1 << 20;
/// Commands remembered; past this the oldest finished ones are forgotten.
const MAX_COMMANDS: usize = 256;
/// Output per frame sent to the node.
const FRAME: usize = 256 * 1024;
/// How long after a command's exit its followers wait for the rest of its output (a child
/// may keep its pipes open), and how often they look meanwhile.
const PIPE_GRACE_MS: i64 = 200;
const PIPE_GRACE_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// The last bytes of a stream, how many were ever written, and when each kept part was
/// read (for followers that come back later: a line keeps the time it was written).
#[derive(Default)]
struct Ring {
    kept: VecDeque<u8>,
    total: u64,
    /// `(offset, ms since the epoch, order)` where each read began, oldest first (the first
    /// may begin before the oldest byte kept); `order` counts the command's reads of both
    /// streams, so that followers get them in the order they were read. Reads in the same
    /// millisecond with none of the other stream between share a mark.
    marks: VecDeque<(u64, i64, u64)>,
    /// The order of the last read.
    last_order: Option<u64>,
}

/// A piece of a stream: its offset, when it was read, its read's order, its bytes.
type Piece = (u64, i64, u64, Vec<u8>);

impl Ring {
    fn push(&mut self, data: &[u8], at_ms: i64, order: u64) {
        let follows = self.last_order.is_some_and(|last| last + 1 == order);
        if !follows || self.marks.back().is_none_or(|&(_, at, _)| at != at_ms) {
            self.marks.push_back((self.total, at_ms, order));
        }
        self.last_order = Some(order);
        self.total += data.len() as u64;
        self.kept.extend(data);
        let excess = self.kept.len().saturating_sub(KEPT_BYTES);
        self.kept.drain(..excess);
        let oldest = self.oldest();
        while self
            .marks
            .get(1)
            .is_some_and(|&(offset, _, _)| offset <= oldest)
        {
            self.marks.pop_front();
        }
    }

    fn oldest(&self) -> u64 {
        self.total - self.kept.len() as u64
    }

    /// What is kept from `offset` on, and how many bytes before it are lost.
    fn since(&self, offset: u64) -> (Vec<u8>, u64) {
        let oldest = self.oldest();
        let start = offset.clamp(oldest, self.total);
        let skip = (start - oldest) as usize;
        (
            self.kept.range(skip..).copied().collect(),
            start - offset.min(start),
        )
    }

    /// What is kept from `offset` on, in pieces of at most [`FRAME`] bytes read at one time.
    fn pieces_since(&self, offset: u64) -> Vec<Piece> {
        let oldest = self.oldest();
        let mut pieces = Vec::new();
        let mut start = offset.clamp(oldest, self.total);
        for (i, &(_, at, order)) in self.marks.iter().enumerate() {
            let end = self.marks.get(i + 1).map_or(self.total, |m| m.0);
            while start < end {
                let stop = end.min(start + FRAME as u64);
                let range = (start - oldest) as usize..(stop - oldest) as usize;
                pieces.push((start, at, order, self.kept.range(range).copied().collect()));
                start = stop;
            }
        }
        pieces
    }
}

struct Command {
    id: String,
    pid: u32,
    cmd: String,
    started_at_ms: i64,
    state: Mutex<State>,
    /// Wakes followers when output arrives, a pipe ends or the command exits.
    changed: Notify,
}

#[derive(Default)]
struct State {
    stdout: Ring,
    stderr: Ring,
    exit: Option<Exit>,
    ended_at_ms: Option<i64>,
    /// Output pipes not at their end yet.
    open_pipes: u8,
    /// Reads of either stream so far.
    reads: u64,
}

impl Command {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Its description. It is running until its output is all in, too: an exit seen while
    /// its pipes still hold output (read a moment later) would answer a poll with the end
    /// and an incomplete output.
    fn info(&self) -> CommandInfo {
        let state = self.state();
        let exit = state.exit.filter(|_| state.ended());
        let (status, exit_code, signal) = match exit {
            None => ("running", None, None),
            Some(Exit::Code(c)) => ("exited", Some(c), None),
            Some(Exit::Signal(s)) => ("killed", None, Some(s)),
        };
        CommandInfo {
            command_id: self.id.clone(),
            pid: self.pid,
            cmd: self.cmd.clone(),
            status: status.into(),
            exit_code,
            signal,
            started_at_ms: self.started_at_ms,
            ended_at_ms: state.ended_at_ms.filter(|_| exit.is_some()),
        }
    }
}

impl State {
    /// Whether the command has exited and its output is all in: its pipes at their end, or
    /// a moment passed (a child that kept them open does not hold the end back for long).
    fn ended(&self) -> bool {
        self.exit.is_some()
            && (self.open_pipes == 0 || now_ms() - self.ended_at_ms.unwrap_or(0) >= PIPE_GRACE_MS)
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
        spawner: &Arc<Spawner>,
        reaper: &Reaper,
    ) -> Result<(String, u32), FsError> {
        let mut env = sandbox_env;
        env.extend(spec.env);
        let launch = Launch {
            argv: vec!["/bin/sh".into(), "-c".into(), spec.cmd.clone()],
            cwd: spec.cwd,
            env,
            user: spec.user,
            stdin: false,
            extra_fds: Vec::new(),
        };
        let epoch = reaper.epoch();
        let spawned = spawn(spawner, launch)
            .await
            .map_err(|e| FsError(FailKind::Invalid, e))?;
        let exited = reaper.watch(spawned.pid, epoch);
        let command = Arc::new(Command {
            id: format!("cmd_{:016x}", crate::process::random_u64()),
            pid: spawned.pid,
            cmd: spec.cmd,
            started_at_ms: now_ms(),
            state: Mutex::new(State {
                open_pipes: 2,
                ..State::default()
            }),
            changed: Notify::new(),
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
            {
                let mut state = waiter.state();
                state.exit = exit.or(Some(Exit::Signal(libc::SIGKILL)));
                state.ended_at_ms = Some(now_ms());
            }
            waiter.changed.notify_waiters();
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

    /// Sends a command's output from the offsets as it is written, until it has exited and
    /// its output is sent (or the node hangs up).
    pub async fn follow(
        &self,
        id: &str,
        mut stdout_offset: u64,
        mut stderr_offset: u64,
        conn: &mut UnixStream,
    ) -> Result<(), FrameError> {
        let command = match self.get(id) {
            Ok(c) => c,
            Err(e) => return e.send(conn).await,
        };
        loop {
            let changed = command.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let (pieces, ended) = {
                let state = command.state();
                let ended = state.exit.is_some().then(|| state.ended());
                let mut pieces: Vec<(bool, Piece)> = state
                    .stdout
                    .pieces_since(stdout_offset)
                    .into_iter()
                    .map(|p| (false, p))
                    .chain(
                        state
                            .stderr
                            .pieces_since(stderr_offset)
                            .into_iter()
                            .map(|p| (true, p)),
                    )
                    .collect();
                pieces.sort_by_key(|(_, (_, _, order, _))| *order);
                (pieces, ended)
            };
            for (stderr, (offset, at_ms, _, data)) in pieces {
                let event = Event::Output {
                    stderr,
                    offset,
                    at_ms,
                };
                write_frame(conn, &event, &data).await?;
                let end = offset + data.len() as u64;
                if stderr {
                    stderr_offset = end;
                } else {
                    stdout_offset = end;
                }
            }
            match ended {
                Some(true) => {
                    let done = Event::CommandLogs {
                        info: command.info(),
                        stdout_offset,
                        stderr_offset,
                        dropped_bytes: 0,
                    };
                    return write_frame(conn, &done, &[]).await;
                }
                Some(false) => tokio::time::sleep(PIPE_GRACE_POLL).await,
                None => {
                    tokio::select! {
                        _ = changed => {}
                        _ = conn.readable() => {
                            // The node hung up (or sent something: it must not); readiness
                            // left from reading the request is no reason to stop.
                            match conn.try_read(&mut [0u8; 1]) {
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                                _ => return Ok(()),
                            }
                        }
                    }
                }
            }
        }
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
            Ok(0) | Err(_) => {
                command.state().open_pipes -= 1;
                command.changed.notify_waiters();
                return;
            }
            Ok(n) => {
                {
                    let mut state = command.state();
                    let order = state.reads;
                    state.reads += 1;
                    let ring = if stdout {
                        &mut state.stdout
                    } else {
                        &mut state.stderr
                    };
                    ring.push(&buf[..n], now_ms(), order);
                }
                command.changed.notify_waiters();
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
        ring.push(b"hello ", 1, 0);
        ring.push(b"world", 2, 1);
        assert_eq!(ring.since(0), (b"hello world".to_vec(), 0));
        assert_eq!(ring.since(6), (b"world".to_vec(), 0));
        assert_eq!(ring.since(99), (Vec::new(), 0));
        ring.push(&vec![b'x'; KEPT_BYTES], 3, 2);
        let (data, lost) = ring.since(0);
        assert_eq!(data.len(), KEPT_BYTES);
        assert_eq!(lost, 11);
        assert_eq!(ring.total, 11 + KEPT_BYTES as u64);
    }

    #[test]
    fn pieces_keep_the_time_they_were_read() {
        let mut ring = Ring::default();
        ring.push(b"ab", 10, 0);
        ring.push(b"cd", 10, 1);
        // The other stream was read in between: a mark of its own, in the same millisecond.
        ring.push(b"ef", 10, 3);
        ring.push(b"gh", 20, 4);
        let pieces = ring.pieces_since(1);
        assert_eq!(
            pieces,
            vec![
                (1, 10, 0, b"bcd".to_vec()),
                (4, 10, 3, b"ef".to_vec()),
                (6, 20, 4, b"gh".to_vec())
            ]
        );
        ring.push(&vec![b'x'; KEPT_BYTES], 30, 5);
        let pieces = ring.pieces_since(0);
        assert_eq!(pieces[0].0, 8);
        assert_eq!(pieces[0].1, 30);
        assert_eq!(pieces.iter().map(|p| p.3.len()).sum::<usize>(), KEPT_BYTES);
    }
}

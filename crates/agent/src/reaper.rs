//! Reaping: as PID 1 the agent collects every exited child, its own and orphans. Exit
//! statuses of the processes it started are handed to whoever waits for them. Children are
//! spawned without std's or tokio's own waiting, which would race with `waitpid(-1)`; and
//! since spawning happens off the event loop, a child may be reaped before anyone waits for
//! it: such statuses are kept for a while, stamped so that a recycled pid is never confused
//! with an older process.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;

/// Statuses kept for processes nobody waits for (yet).
const UNCLAIMED: usize = 4096;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this status.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
}

/// A point in the reaper's history: statuses reaped after it are newer.
#[derive(Debug, Clone, Copy)]
pub struct Epoch(u64);

#[derive(Default)]
struct State {
    waiters: HashMap<i32, oneshot::Sender<Exit>>,
    unclaimed: VecDeque<(u64, i32, Exit)>,
    reaped: u64,
}

/// Hands exit statuses to their waiters.
#[derive(Clone, Default)]
pub struct Reaper {
    state: Arc<Mutex<State>>,
}

impl Reaper {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Now; take it before spawning and pass it to [`Reaper::watch`].
    pub fn epoch(&self) -> Epoch {
        Epoch(self.state().reaped)
    }

    /// The exit of `pid`, spawned after `since`.
    pub fn watch(&self, pid: u32, since: Epoch) -> oneshot::Receiver<Exit> {
        let (tx, rx) = oneshot::channel();
        let mut state = self.state();
        let pid = pid as i32;
        let early = state
            .unclaimed
            .iter()
            .position(|(seq, p, _)| *p == pid && *seq > since.0);
        match early.and_then(|i| state.unclaimed.remove(i)) {
            Some((_, _, exit)) => {
                let _ = tx.send(exit);
            }
            None => {
                state.waiters.insert(pid, tx);
            }
        }
        rx
    }

    /// Reaps until the process exits (never returns normally).
    pub async fn run(self) -> std::io::Result<()> {
        let mut sigchld = signal(SignalKind::child())?;
        loop {
            self.reap_all();
            sigchld.recv().await;
        }
    }

    fn reap_all(&self) {
        loop {
            let (pid, exit) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, Exit::Code(code)),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, Exit::Signal(sig as i32)),
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => continue,
            };
            let mut state = self.state();
            state.reaped += 1;
            match state.waiters.remove(&pid.as_raw()) {
                Some(tx) => {
                    let _ = tx.send(exit);
                }
                None => {
                    if state.unclaimed.len() == UNCLAIMED {
                        state.unclaimed.pop_front();
                    }
                    let seq = state.reaped;
                    state.unclaimed.push_back((seq, pid.as_raw(), exit));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_exits_are_kept_for_their_waiter_but_not_for_a_recycled_pid() {
        let reaper = Reaper::default();
        let before = reaper.epoch();
        {
            let mut s = reaper.state();
            s.reaped += 1;
            let seq = s.reaped;
            s.unclaimed.push_back((seq, 42, Exit::Code(3)));
        }
        let after = reaper.epoch();
        let mut early = reaper.watch(42, before);
        assert_eq!(early.try_recv(), Ok(Exit::Code(3)));
        // The same pid spawned again later must wait for its own exit.
        {
            let mut s = reaper.state();
            s.unclaimed.push_back((1, 7, Exit::Code(0)));
        }
        let mut recycled = reaper.watch(7, after);
        assert!(recycled.try_recv().is_err());
    }
}

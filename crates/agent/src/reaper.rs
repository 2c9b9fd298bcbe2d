//! Reaping: as PID 1 the agent collects every exited child, its own and orphans. Exit
//! statuses of the processes it started are handed to whoever waits for them; orphans'
//! are dropped. Children are spawned without std's or tokio's own waiting, which would
//! race with `waitpid(-1)`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this status.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
}

/// Hands exit statuses to their waiters.
#[derive(Clone, Default)]
pub struct Reaper {
    waiters: Arc<Mutex<HashMap<i32, oneshot::Sender<Exit>>>>,
}

impl Reaper {
    /// Registers interest in `pid`. Must be called right after spawning, before the next
    /// `.await`, so that the reaper task (same thread) cannot reap it first.
    pub fn watch(&self, pid: u32) -> oneshot::Receiver<Exit> {
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .expect("reaper lock")
            .insert(pid as i32, tx);
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
            let waiter = self
                .waiters
                .lock()
                .expect("reaper lock")
                .remove(&pid.as_raw());
            if let Some(tx) = waiter {
                let _ = tx.send(exit);
            }
        }
    }
}

//! Starting processes for the workload: `/bin/sh -c` or an interpreter, as an account of
//! the sandbox, in its own process group, in the `work` cgroup (out of the agent's reserve),
//! with a normal OOM score; and killing their process groups.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::panic::AssertUnwindSafe;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::net::unix::pipe;

use crate::users;

/// What to start.
pub struct Launch {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// The sandbox's environment, then the request's (later wins).
    pub env: Vec<(String, String)>,
    /// `root` or `user`.
    pub user: String,
    /// The `work` cgroup's `cgroup.procs` descriptors.
    pub work_fds: Vec<i32>,
    /// Whether standard input is a pipe (else /dev/null).
    pub stdin: bool,
    /// Descriptors passed on to the child as 3, 4, … (close-on-exec cleared there).
    pub extra_fds: Vec<OwnedFd>,
}

/// A started process: its pid (also its process group) and its pipes.
pub struct Spawned {
    pub pid: u32,
    pub stdin: Option<OwnedFd>,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// Starts `launch`. Blocks until the child has exec'd, which can take long when the sandbox
/// is out of memory: call it off the event loop. Errors are sentences for the user.
pub fn spawn(launch: Launch) -> Result<Spawned, String> {
    let user =
        users::lookup(&launch.user).ok_or_else(|| format!("unknown user {:?}", launch.user))?;
    let (program, args) = launch.argv.split_first().ok_or("nothing to run")?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(users::base_env(&user))
        .envs(launch.env)
        .current_dir(&launch.cwd)
        .stdin(if launch.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let extra: Vec<i32> = launch
        .extra_fds
        .iter()
        .map(std::os::fd::AsRawFd::as_raw_fd)
        .collect();
    let child_setup = ChildSetup {
        work_fds: launch.work_fds,
        uid: user.uid,
        gid: user.gid,
        session: false,
    };
    // SAFETY: the closure only makes async-signal-safe calls (dup2 and those of
    // ChildSetup::apply); the vectors are moved in and only read, nothing allocates.
    unsafe {
        cmd.pre_exec(move || {
            for (i, fd) in extra.iter().enumerate() {
                // dup2 clears close-on-exec on the copy.
                if libc::dup2(*fd, 3 + i as i32) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            child_setup.apply()
        });
    }
    let mut child = start(&mut cmd).map_err(|e| why_not_started(program, &launch.cwd, &e))?;
    drop(launch.extra_fds);
    let fd = |o: Option<OwnedFd>| o.expect("piped");
    Ok(Spawned {
        pid: child.id(),
        stdin: child.stdin.take().map(Into::into),
        stdout: fd(child.stdout.take().map(Into::into)),
        stderr: fd(child.stderr.take().map(Into::into)),
    })
}

/// `cmd.spawn()`, as PID 1 may call it. When a child fails before its exec (a missing working
/// directory), std waits for it to learn why, and panics if the reaper took it first; here that
/// is an error like the others. The child has been reaped either way.
pub fn start(cmd: &mut Command) -> io::Result<std::process::Child> {
    std::panic::catch_unwind(AssertUnwindSafe(|| cmd.spawn())).unwrap_or_else(|_| {
        Err(io::Error::other(
            "it failed before it could run (its working directory, account or program)",
        ))
    })
}

/// The sentence for a `program` that could not be started in `cwd`.
pub fn why_not_started(program: &str, cwd: &str, e: &io::Error) -> String {
    if std::path::Path::new(cwd).is_dir() {
        format!("failed to start {program}: {e}")
    } else {
        format!("the working directory {cwd} does not exist")
    }
}

/// What a child does between fork and exec: its own process group (or session, for a
/// terminal), the workload's cgroup, the normal OOM score, then its account.
pub struct ChildSetup {
    pub work_fds: Vec<i32>,
    pub uid: u32,
    pub gid: u32,
    /// A new session with the terminal on fd 0 as its controlling terminal.
    pub session: bool,
}

impl ChildSetup {
    /// Runs in the child after fork; only async-signal-safe calls.
    pub fn apply(&self) -> io::Result<()> {
        // SAFETY: plain system calls on the child's own state; no allocation.
        unsafe {
            if self.session {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::setpgid(0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // Into the workload's cgroup, while still root (moving needs the same uid).
            for fd in &self.work_fds {
                if libc::write(*fd, b"0".as_ptr().cast(), 1) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            reset_oom_score();
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(self.gid) != 0
                || libc::setuid(self.uid) != 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// The agent keeps a low OOM score; what it starts goes back to the normal one.
fn reset_oom_score() {
    let path = c"/proc/self/oom_score_adj";
    // SAFETY: open/write/close on a NUL-terminated path and a stack buffer.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd >= 0 {
            libc::write(fd, b"0".as_ptr().cast(), 1);
            libc::close(fd);
        }
    }
}

/// 64 random bits from the kernel.
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom writes at most b.len() bytes into b.
    unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    u64::from_ne_bytes(b)
}

/// Sends `signal` to process group `pid`; false when the group is gone.
pub fn signal_group(pid: u32, signal: i32) -> bool {
    // SAFETY: kill(2) of a process group the agent created.
    unsafe { libc::kill(-(pid as i32), signal) == 0 }
}

/// Kills process group `pid` until it is empty: processes forking while the signal goes
/// out (a fork bomb) are caught by the next round.
pub fn kill_group_fully(pid: u32) {
    tokio::spawn(async move {
        for _ in 0..200 {
            if !signal_group(pid, libc::SIGKILL) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
}

/// Reads what a pipe holds right now, with a real read(2): tokio's `try_read` answers
/// WouldBlock until the reactor has seen the pipe become readable, which may come after the
/// exit was seen.
pub fn read_now(pipe: &pipe::Receiver, buf: &mut [u8]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: read(2) into our own buffer from a descriptor the Receiver keeps open.
    let n = unsafe { libc::read(pipe.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

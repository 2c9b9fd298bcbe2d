//! Starting processes for the workload: `/bin/sh -c` or an interpreter, as an account of
//! the sandbox, in its own process group, through the spawner (in the `work` cgroup, with
//! the normal OOM score); and killing their process groups.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::unix::pipe;

use crate::spawner::{Refused, Request, Spawner, Step};
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
    /// Whether standard input is a pipe (else /dev/null).
    pub stdin: bool,
    /// Descriptors passed on to the child as 3, 4, ….
    pub extra_fds: Vec<OwnedFd>,
}

/// A started process: its pid (also its process group) and its pipes.
pub struct Spawned {
    pub pid: u32,
    pub stdin: Option<OwnedFd>,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// Starts `launch`; answers once the child has exec'd, which can take long when the sandbox
/// is out of memory. The future owns what it needs (it may be spawned as a task). Errors
/// are sentences for the user.
pub fn spawn(
    spawner: &Arc<Spawner>,
    launch: Launch,
) -> impl Future<Output = Result<Spawned, String>> + Send + 'static {
    let spawner = spawner.clone();
    async move {
        let user =
            users::lookup(&launch.user).ok_or_else(|| format!("unknown user {:?}", launch.user))?;
        let pipes = (|| {
            let stdin = if launch.stdin {
                let (r, w) = pipe()?;
                (r, Some(w))
            } else {
                (OwnedFd::from(std::fs::File::open("/dev/null")?), None)
            };
            Ok::<_, io::Error>((stdin, pipe()?, pipe()?))
        })();
        let ((child_in, stdin), (stdout, child_out), (stderr, child_err)) =
            pipes.map_err(|e| format!("failed to set up the process's pipes: {e}"))?;
        let env = users::base_env(&user).into_iter().chain(launch.env);
        let request = request(launch.argv, env, launch.cwd, &user, false);
        let mut fds = vec![child_in.as_fd(), child_out.as_fd(), child_err.as_fd()];
        fds.extend(launch.extra_fds.iter().map(AsFd::as_fd));
        let pid = start(&spawner, &request, &fds).await?;
        Ok(Spawned {
            pid,
            stdin,
            stdout,
            stderr,
        })
    }
}

/// Starts `argv` on the terminal `slave` (its standard input, output and error, and its
/// controlling terminal, in a session of its own): the pid.
pub async fn spawn_on_terminal(
    spawner: &Spawner,
    argv: Vec<String>,
    env: impl Iterator<Item = (String, String)>,
    cwd: String,
    user: &users::User,
    slave: BorrowedFd<'_>,
) -> Result<u32, String> {
    let request = request(argv, env, cwd, user, true);
    start(spawner, &request, &[slave, slave, slave]).await
}

fn request(
    argv: Vec<String>,
    env: impl Iterator<Item = (String, String)>,
    cwd: String,
    user: &users::User,
    session: bool,
) -> Request {
    Request {
        argv,
        env: environment(env),
        cwd,
        uid: user.uid,
        gid: user.gid,
        session,
    }
}

/// Has the spawner start `request` with `fds`: the pid, or the sentence saying why not.
async fn start(
    spawner: &Spawner,
    request: &Request,
    fds: &[BorrowedFd<'_>],
) -> Result<u32, String> {
    let program = request.argv.first().ok_or("nothing to run")?;
    spawner
        .start(request, fds)
        .await
        .map_err(|e| why_not_started(program, &request.cwd, e))
}

/// The variables in order of first appearance, each with its last value.
fn environment(vars: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut at = HashMap::new();
    for (name, value) in vars {
        match at.get(&name) {
            Some(&i) => out[i] = (name, value),
            None => {
                at.insert(name.clone(), out.len());
                out.push((name, value));
            }
        }
    }
    out
}

/// A pipe (read end, write end), both close-on-exec.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)
}

/// The sentence for a `program` that could not be started in `cwd`.
fn why_not_started(program: &str, cwd: &str, refused: Refused) -> String {
    match refused {
        Refused::Failed(Step::Chdir, e)
            if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) =>
        {
            format!("the working directory {cwd} does not exist")
        }
        Refused::Failed(Step::Chdir, e) => format!("cannot enter the working directory {cwd}: {e}"),
        Refused::Failed(Step::Clone, e) => format!(
            "failed to start {program}: the sandbox cannot make another process (its process or memory limit): {e}"
        ),
        Refused::Failed(Step::Account, e) => {
            format!("failed to start {program}: cannot take its account: {e}")
        }
        Refused::Failed(Step::Setup | Step::Exec, e) => format!("failed to start {program}: {e}"),
        Refused::Spawner(e) => {
            format!("failed to start {program}: the sandbox's spawner did not answer: {e}")
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

#[cfg(test)]
mod tests {
    use super::environment;

    #[test]
    fn the_environment_keeps_first_places_and_last_values() {
        let vars = [
            ("PATH", "/bin"),
            ("HOME", "/root"),
            ("PATH", "/usr/bin"),
            ("X", "1"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let got = environment(vars.into_iter());
        let got: Vec<(&str, &str)> = got.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, [("PATH", "/usr/bin"), ("HOME", "/root"), ("X", "1")]);
    }
}

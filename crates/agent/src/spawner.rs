//! Starting the workload's processes: one `clone` + `exec` each, by the spawner, a small
//! process that moved itself into the `work` cgroup with the normal OOM score as it started.
//! The agent forks it as it starts, while still single-threaded (a copy of the agent that
//! shares its pages, ready before the first request); if something kills it, the agent
//! starts another, `ai2in spawner` exec'd (a fork of the agent's threads could not run it). What it
//! starts is born there: no cgroup migration per spawn (slow on cgroup v1) and no OOM score
//! to write. It clones with `CLONE_PARENT`, so the processes are the agent's children and
//! the agent's reaper collects them as before, and as a vfork (`CLONE_VM | CLONE_VFORK`,
//! the child on a stack of its own until its exec): nothing of the spawner is copied. A child that fails before its `exec` (a
//! working directory, an account, a program that is not there) reports the step and errno
//! on a close-on-exec pipe, which the spawner reads to its end: nothing waits for the child,
//! so nothing races the reaper.
//!
//! The agent sends each request (JSON, length-prefixed) with the descriptors the child gets
//! as 0, 1, 2, … (`SCM_RIGHTS`) on a socket pair, one request at a time; the answer is the
//! pid or the failure.

use std::ffi::CString;
use std::io::{self, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream as StdStream;

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::Mutex;

use crate::connect::send_with_fds;

/// The descriptor the spawner finds its socket at.
const SOCKET_FD: RawFd = 3;
/// The argument `ai2in` is started with to be the spawner.
pub const SPAWNER_ARG: &str = "spawner";
/// Most descriptors one request passes.
const MAX_FDS: usize = 16;
/// Largest request or answer.
const MAX_MESSAGE: usize = 16 << 20;
/// The stack a child runs on until its exec.
const CHILD_STACK: usize = 256 * 1024;

/// What to start.
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    /// Program and arguments; a program without `/` is looked up in the `PATH` of `env`.
    pub argv: Vec<String>,
    /// The whole environment.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: String,
    /// The account's user id.
    pub uid: u32,
    /// The account's group id.
    pub gid: u32,
    /// A new session with the terminal on descriptor 0 as its controlling terminal (else a
    /// new process group).
    pub session: bool,
}

/// The step a child failed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum Step {
    /// No process could be made (the sandbox's process limit, memory).
    Clone,
    /// Its descriptors, group or session.
    Setup,
    /// The working directory.
    Chdir,
    /// Taking the account.
    Account,
    /// The program.
    Exec,
}

impl Step {
    /// In the order of their numbers (`as u8`), which the child reports.
    const ALL: [Step; 5] = [
        Step::Clone,
        Step::Setup,
        Step::Chdir,
        Step::Account,
        Step::Exec,
    ];
}

/// The spawner's answer.
#[derive(Debug, Serialize, Deserialize)]
enum Answer {
    Started { pid: u32 },
    Failed { step: Step, errno: i32 },
}

/// Why a process did not start.
#[derive(Debug)]
pub enum Refused {
    /// The child (or the clone) failed at `step` with this error.
    Failed(Step, io::Error),
    /// The spawner could not be reached or started.
    Spawner(io::Error),
}

/// The agent's side: starts the spawner when needed and sends it requests.
pub struct Spawner {
    /// The `work` cgroup's `cgroup.procs` descriptors the spawner moves itself with.
    work_fds: Vec<RawFd>,
    conn: Mutex<Option<UnixStream>>,
}

/// Forks the first spawner; call it while the process is single-threaded (the child runs
/// ordinary code). The agent's end of its socket.
pub fn fork_first(work_fds: &[RawFd]) -> io::Result<StdStream> {
    let (ours, theirs) = StdStream::pair()?;
    // SAFETY: the caller is single-threaded, so the child may run any code; it never returns
    // into the agent's.
    match unsafe { libc::fork() } {
        pid if pid < 0 => Err(io::Error::last_os_error()),
        0 => {
            let code = if enter_work(theirs.as_raw_fd(), work_fds) && serve().is_ok() {
                0
            } else {
                1
            };
            // SAFETY: ends the copy without running the agent's destructors.
            unsafe { libc::_exit(code) }
        }
        _ => Ok(ours),
    }
}

/// In a new spawner, before it serves: its socket at [`SOCKET_FD`], itself in the `work`
/// cgroup (while still root: moving needs the same uid), the normal OOM score (the agent
/// keeps a low one). Only async-signal-safe calls: it also runs between a fork of the
/// multi-threaded agent and an exec.
fn enter_work(socket: RawFd, work_fds: &[RawFd]) -> bool {
    // SAFETY: dup2, open, write and close on descriptors and static buffers.
    unsafe {
        if libc::dup2(socket, SOCKET_FD) < 0 {
            return false;
        }
        for fd in work_fds {
            if libc::write(*fd, b"0".as_ptr().cast(), 1) != 1 {
                return false;
            }
        }
        let fd = libc::open(
            c"/proc/self/oom_score_adj".as_ptr(),
            libc::O_WRONLY | libc::O_CLOEXEC,
        );
        if fd >= 0 {
            libc::write(fd, b"0".as_ptr().cast(), 1);
            libc::close(fd);
        }
    }
    true
}

impl Spawner {
    /// The agent's spawner, connected to the one [`fork_first`] made.
    pub fn new(work_fds: Vec<RawFd>, first: StdStream) -> io::Result<Self> {
        first.set_nonblocking(true)?;
        Ok(Spawner {
            work_fds,
            conn: Mutex::new(Some(UnixStream::from_std(first)?)),
        })
    }

    /// Starts `request` with `fds` as its descriptors 0, 1, 2, …: its pid once it has
    /// exec'd.
    pub async fn start(&self, request: &Request, fds: &[BorrowedFd<'_>]) -> Result<u32, Refused> {
        if fds.len() > MAX_FDS {
            return Err(Refused::Failed(
                Step::Setup,
                io::Error::from_raw_os_error(libc::EMFILE),
            ));
        }
        let message = serde_json::to_vec(request).map_err(|e| Refused::Spawner(e.into()))?;
        let mut conn = self.conn.lock().await;
        // The connection is out of the slot while a request is under way: a request given
        // up half-way (its future dropped) takes it along, and the next starts a new
        // spawner rather than read an answer meant for another.
        let mut stream = match conn.take() {
            Some(stream) => stream,
            None => self.launch().map_err(Refused::Spawner)?,
        };
        if send(&mut stream, &message, fds).await.is_err() {
            // Killed since (a `kill -9 -1` in the sandbox): it cannot have seen the request,
            // which goes to a new one.
            stream = self.launch().map_err(Refused::Spawner)?;
            send(&mut stream, &message, fds)
                .await
                .map_err(Refused::Spawner)?;
        }
        let answer = match receive_answer(&mut stream).await {
            // Killed before it read the whole request (the OOM killer, in a workload short
            // of memory): it left the request unread, so it started nothing, and a new one
            // takes it.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                stream = self.launch().map_err(Refused::Spawner)?;
                send(&mut stream, &message, fds)
                    .await
                    .map_err(Refused::Spawner)?;
                receive_answer(&mut stream).await
            }
            answer => answer,
        }
        .map_err(Refused::Spawner)?;
        *conn = Some(stream);
        match answer {
            Answer::Started { pid } => Ok(pid),
            Answer::Failed { step, errno } => {
                Err(Refused::Failed(step, io::Error::from_raw_os_error(errno)))
            }
        }
    }

    /// Starts another spawner: `/proc/self/exe spawner` with one end of a socket pair at
    /// [`SOCKET_FD`], in the `work` cgroup, with the normal OOM score.
    fn launch(&self) -> io::Result<UnixStream> {
        let (ours, theirs) = StdStream::pair()?;
        let exe = c"/proc/self/exe";
        let arg0 = c"ai2in";
        let arg1 = CString::new(SPAWNER_ARG).expect("no NUL");
        let argv = [arg0.as_ptr(), arg1.as_ptr(), std::ptr::null()];
        let envp = [std::ptr::null::<libc::c_char>()];
        // SAFETY: the child makes only async-signal-safe calls (those of enter_work, execve,
        // _exit) on data prepared before the fork.
        match unsafe { libc::fork() } {
            pid if pid < 0 => return Err(io::Error::last_os_error()),
            // SAFETY: as above.
            0 => unsafe {
                if enter_work(theirs.as_raw_fd(), &self.work_fds) {
                    libc::execve(exe.as_ptr(), argv.as_ptr(), envp.as_ptr());
                }
                libc::_exit(127)
            },
            _ => {}
        }
        drop(theirs);
        ours.set_nonblocking(true)?;
        UnixStream::from_std(ours)
    }
}

/// Sends `message` (length first) with `fds` on its first byte.
async fn send(stream: &mut UnixStream, message: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let mut framed = Vec::with_capacity(4 + message.len());
    framed.extend_from_slice(&(message.len() as u32).to_le_bytes());
    framed.extend_from_slice(message);
    let sent = send_with_fds(stream, &framed, fds).await?;
    stream.write_all(&framed[sent..]).await
}

async fn receive_answer(stream: &mut UnixStream) -> io::Result<Answer> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(io::Error::other("the spawner's answer is too long"));
    }
    let mut body = vec![0; len];
    stream.read_exact(&mut body).await?;
    serde_json::from_slice(&body).map_err(io::Error::other)
}

/// Runs the spawner (`ai2in spawner`, started by [`Spawner`]): serves requests until the
/// agent closes the socket.
pub fn serve() -> io::Result<()> {
    // Not ptraceable by the workload, as the agent (an exec made it dumpable again); named
    // for `ps -o comm`.
    // SAFETY: prctl with an integer and a NUL-terminated name.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        libc::prctl(libc::PR_SET_NAME, c"ai2in-spawner".as_ptr(), 0, 0, 0);
    }
    // Nothing of the agent's but the socket: the rest would leak into what it starts.
    // SAFETY: close_range on descriptors above the socket, which no one here uses.
    unsafe { libc::syscall(libc::SYS_close_range, SOCKET_FD + 1, u32::MAX, 0) };
    // SAFETY: the agent put the socket at SOCKET_FD; nothing else owns it.
    let mut socket = unsafe { StdStream::from_raw_fd(SOCKET_FD) };
    set_cloexec(SOCKET_FD)?;
    let mut stack = vec![0u8; CHILD_STACK];
    while let Some((request, fds)) = receive_request(&mut socket)? {
        let answer = match start(&request, &fds, &mut stack) {
            Ok(pid) => Answer::Started { pid },
            Err((step, errno)) => Answer::Failed { step, errno },
        };
        drop(fds);
        let body = serde_json::to_vec(&answer).map_err(io::Error::other)?;
        socket.write_all(&(body.len() as u32).to_le_bytes())?;
        socket.write_all(&body)?;
    }
    Ok(())
}

fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor this process owns.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The next request and its descriptors; `None` once the agent has closed the socket.
fn receive_request(socket: &mut StdStream) -> io::Result<Option<(Request, Vec<OwnedFd>)>> {
    let mut len = [0u8; 4];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (n, fds) = {
        let mut iov = [IoSliceMut::new(&mut len)];
        let msg = recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        let mut fds = Vec::new();
        for cmsg in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(received) = cmsg {
                // SAFETY: SCM_RIGHTS descriptors are new and owned by this process.
                fds.extend(
                    received
                        .into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        (msg.bytes, fds)
    };
    if n == 0 {
        return Ok(None);
    }
    socket.read_exact(&mut len[n..])?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(io::Error::other("request too long"));
    }
    let mut body = vec![0; len];
    socket.read_exact(&mut body)?;
    let request = serde_json::from_slice(&body).map_err(io::Error::other)?;
    Ok(Some((request, fds)))
}

/// What the child needs, made before the clone (the child only makes system calls).
struct Prepared {
    /// Where to look for the program, in order.
    programs: Vec<CString>,
    argv: Vec<CString>,
    env: Vec<CString>,
    cwd: CString,
    uid: libc::uid_t,
    gid: libc::gid_t,
}

fn cstring(s: &str) -> Result<CString, (Step, i32)> {
    CString::new(s).map_err(|_| (Step::Exec, libc::EINVAL))
}

fn prepare(request: &Request) -> Result<Prepared, (Step, i32)> {
    let program = request.argv.first().ok_or((Step::Exec, libc::ENOENT))?;
    let programs = if program.contains('/') {
        vec![cstring(program)?]
    } else {
        let path = request
            .env
            .iter()
            .rev()
            .find(|(k, _)| k == "PATH")
            .map_or("/usr/local/bin:/usr/bin:/bin", |(_, v)| v.as_str());
        path.split(':')
            .filter(|dir| !dir.is_empty())
            .map(|dir| cstring(&format!("{dir}/{program}")))
            .collect::<Result<_, _>>()?
    };
    Ok(Prepared {
        programs,
        argv: request
            .argv
            .iter()
            .map(|a| cstring(a))
            .collect::<Result<_, _>>()?,
        env: request
            .env
            .iter()
            .map(|(k, v)| cstring(&format!("{k}={v}")))
            .collect::<Result<_, _>>()?,
        cwd: CString::new(request.cwd.as_str()).map_err(|_| (Step::Chdir, libc::EINVAL))?,
        uid: request.uid,
        gid: request.gid,
    })
}

/// Clones and execs `request`, the child on `stack`: the pid, or the step and errno it
/// failed at. A vfork (`CLONE_VM | CLONE_VFORK`): no copy of the spawner's page tables nor
/// copy-on-write faults after it, a third of a spawn's cost with a fork.
fn start(request: &Request, fds: &[OwnedFd], stack: &mut [u8]) -> Result<u32, (Step, i32)> {
    let prepared = prepare(request)?;
    let mut argv: Vec<*const libc::c_char> = prepared.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = prepared.env.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let (report_r, report_w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| (Step::Clone, e as i32))?;
    let report_fd = report_w.as_raw_fd();
    let run = Box::new(|| -> isize {
        let (step, err) = child(&prepared, &argv, &envp, &raw, request.session);
        let mut report = [step as u8; 5];
        report[1..].copy_from_slice(&err.to_le_bytes());
        // SAFETY: write and _exit on the child's own descriptors.
        unsafe {
            libc::write(report_fd, report.as_ptr().cast(), report.len());
            libc::_exit(127)
        }
    });
    let flags = CloneFlags::CLONE_VM | CloneFlags::CLONE_VFORK | CloneFlags::CLONE_PARENT;
    // SAFETY: a vfork: the child runs `run` on `stack` in this process's memory while this
    // process is suspended, until it execs or exits; it makes only system calls (raw ones for
    // its account, see `child`) and writes only its own stack.
    let pid = unsafe { nix::sched::clone(run, stack, flags, Some(libc::SIGCHLD)) }
        .map_err(|e| (Step::Clone, e as i32))?;
    drop(report_w);
    // Nothing (the pipe closed on exec), or the step and errno.
    let mut report = Vec::new();
    let _ = std::fs::File::from(report_r).read_to_end(&mut report);
    match report[..] {
        [step, a, b, c, d] => Err((
            Step::ALL.get(step as usize).copied().unwrap_or(Step::Exec),
            i32::from_le_bytes([a, b, c, d]),
        )),
        _ => Ok(pid.as_raw() as u32),
    }
}

/// The kernel's `struct sigaction` (not the C library's): all zero is `SIG_DFL`, no flags,
/// nothing blocked.
#[repr(C)]
#[derive(Default)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// In the child: its descriptors, group or session, signals, account, directory, program.
/// Returns only on failure.
fn child(
    prepared: &Prepared,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    fds: &[RawFd],
    session: bool,
) -> (Step, i32) {
    // SAFETY: system calls on the child's own state, with pointers to data that lives
    // until exec.
    unsafe {
        // Out of the way of 0, 1, 2, … first, then into place (dup2 clears close-on-exec).
        let mut high = [0; MAX_FDS];
        for (i, fd) in fds.iter().enumerate() {
            high[i] = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 64);
            if high[i] < 0 {
                return (Step::Setup, errno());
            }
        }
        for (i, fd) in high[..fds.len()].iter().enumerate() {
            if libc::dup2(*fd, i as RawFd) < 0 {
                return (Step::Setup, errno());
            }
        }
        if session {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return (Step::Setup, errno());
            }
        } else if libc::setpgid(0, 0) != 0 {
            return (Step::Setup, errno());
        }
        // Signals as a new program expects them: none ignored or blocked, the C library's
        // own included (its wrappers leave those alone). Handlers go first: the spawner's
        // would run in its memory.
        let none: u64 = 0;
        let default = KernelSigaction::default();
        for signal in 1..=64 {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                &default,
                std::ptr::null::<KernelSigaction>(),
                8,
            );
        }
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &none,
            std::ptr::null::<u64>(),
            8,
        );
        // Raw system calls: the C library's would set the ids of every thread it knows of,
        // and this child shares the spawner's memory, so its idea of the threads.
        let no_groups: *const libc::gid_t = std::ptr::null();
        if libc::syscall(libc::SYS_setgroups, 0, no_groups) != 0
            || libc::syscall(libc::SYS_setgid, prepared.gid) != 0
            || libc::syscall(libc::SYS_setuid, prepared.uid) != 0
        {
            return (Step::Account, errno());
        }
        // As the account: a directory it may not enter is refused.
        if libc::chdir(prepared.cwd.as_ptr()) != 0 {
            return (Step::Chdir, errno());
        }
        let mut first = None;
        for program in &prepared.programs {
            libc::execve(program.as_ptr(), argv.as_ptr(), envp.as_ptr());
            let e = errno();
            // As execvp: a program missing here may be in the next directory.
            if e != libc::ENOENT && e != libc::ENOTDIR {
                first.get_or_insert(e);
            }
        }
        (Step::Exec, first.unwrap_or(libc::ENOENT))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(argv: &[&str], env: &[(&str, &str)]) -> Request {
        Request {
            argv: argv.iter().map(|a| a.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            session: false,
        }
    }

    #[test]
    fn programs_are_looked_up_in_the_path_of_the_child_s_environment() {
        let found = |r: &Request| -> Vec<String> {
            let prepared = prepare(r).ok().unwrap();
            prepared
                .programs
                .iter()
                .map(|p| p.to_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(
            found(&request(&["/bin/sh", "-c", "true"], &[])),
            ["/bin/sh"]
        );
        assert_eq!(found(&request(&["./run"], &[])), ["./run"]);
        assert_eq!(
            found(&request(&["python3"], &[("PATH", "/a::/b")])),
            ["/a/python3", "/b/python3"]
        );
        assert_eq!(
            found(&request(&["sh"], &[])),
            ["/usr/local/bin/sh", "/usr/bin/sh", "/bin/sh"]
        );
        assert!(matches!(
            prepare(&request(&[], &[])),
            Err((Step::Exec, libc::ENOENT))
        ));
        assert!(matches!(
            prepare(&request(&["a\0b"], &[])),
            Err((Step::Exec, libc::EINVAL))
        ));
    }
}

//! The sandbox side of start-up, run by the first process (`ai2in agent`) before anything
//! else: it enters a new user namespace (mapped by the node), the other namespaces, forks
//! the sandbox's PID 1, which builds the rootfs and pivots into it.
//!
//! Must run while the process is single-threaded: it forks.

use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};

use nix::sched::{CloneFlags, unshare};
use nix::unistd::{
    ForkResult, Gid, Uid, fork, setgroups, sethostname, setresgid, setresuid, setsid,
};

use crate::rootfs;
use crate::runtime::{CONTROL_FD, LISTEN_FD};
use crate::spec::InitSpec;
use crate::sys::close_fds_except;

/// What PID 1 of a ready sandbox holds: its listening socket and its spec.
#[derive(Debug)]
pub struct Sandbox {
    /// Where the node connects.
    pub listener: UnixListener,
    /// The spec it was built from.
    pub spec: InitSpec,
}

/// Builds the sandbox. Returns only in the sandbox's PID 1, inside the new root; the first
/// process exits here once PID 1 runs. Failures are reported to the node, then returned.
pub fn enter() -> io::Result<Sandbox> {
    // The node starts it where the node runs: nothing of the host is held from here on.
    std::env::set_current_dir("/")?;
    // SAFETY: the node passes the control socket at CONTROL_FD and nothing else owns it.
    let control = unsafe { UnixStream::from_raw_fd(CONTROL_FD) };
    let mut reader = BufReader::new(control.try_clone()?);
    let mut control = control;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let spec: InitSpec = serde_json::from_str(&line).map_err(io::Error::other)?;

    match build(&spec, &mut control) {
        Ok(()) => {
            control.write_all(b"ready\n")?;
            drop((reader, control));
            let mut keep = spec.work_fds.clone();
            keep.push(LISTEN_FD);
            close_fds_except(3, &keep);
            // Nothing the agent starts may inherit them (a workload holding the listening
            // socket could answer the node in the agent's place).
            for fd in keep {
                set_cloexec(fd)?;
            }
            // SAFETY: the node passes the listening socket at LISTEN_FD.
            let listener = unsafe { UnixListener::from(OwnedFd::from_raw_fd(LISTEN_FD)) };
            Ok(Sandbox { listener, spec })
        }
        Err(e) => {
            let _ = writeln!(control, "error {}", one_line(&e.to_string()));
            Err(e)
        }
    }
}

fn set_cloexec(fd: i32) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor this process owns; no pointers.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn one_line(s: &str) -> String {
    s.replace('\n', " ")
}

fn build(spec: &InitSpec, control: &mut UnixStream) -> io::Result<()> {
    unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| ctx("unshare the user namespace", e))?;
    control.write_all(b"userns\n")?;
    // The answer carries the image's layers and binds, the disk and the volumes as detached
    // mounts.
    let wanted = spec.layers.len() + spec.binds.len() + spec.disk as usize + spec.volumes.len();
    let (answer, trees) = crate::sys::recv_with_fds(control, 64, wanted)?;
    if answer != b"mapped\n" || trees.len() != wanted {
        return Err(io::Error::other("the node did not map the user namespace"));
    }
    // The node's supplementary groups are unmapped inside: drop them.
    setgroups(&[])
        .and_then(|_| setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0)))
        .and_then(|_| setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)))
        .map_err(|e| ctx("become root in the user namespace", e))?;
    unshare(
        CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWNET
            | CloneFlags::CLONE_NEWCGROUP
            | CloneFlags::CLONE_NEWPID,
    )
    .map_err(|e| ctx("unshare the namespaces", e))?;

    // The new pid namespace applies to children: fork its PID 1. The first process reports
    // the child's host pid and leaves; the child goes on only after that line is written.
    let (gate_r, gate_w) = nix::unistd::pipe().map_err(|e| ctx("pipe", e))?;
    // SAFETY: this process is single-threaded (start-up of `ai2in agent`), so the child may
    // do anything after fork.
    match unsafe { fork() }.map_err(|e| ctx("fork the sandbox init", e))? {
        ForkResult::Parent { child } => {
            drop(gate_r);
            let _ = writeln!(control, "pid {child}");
            drop(gate_w);
            std::process::exit(0);
        }
        ForkResult::Child => {
            drop(gate_w);
            let mut gate = std::fs::File::from(gate_r);
            let _ = io::Read::read(&mut gate, &mut [0u8; 1]);
        }
    }
    setsid().map_err(|e| ctx("setsid", e))?;
    rootfs::build(spec, trees)?;
    sethostname(&spec.id).map_err(|e| ctx("set the hostname", e))?;
    loopback_up()?;
    Ok(())
}

fn ctx(what: &str, e: nix::Error) -> io::Error {
    io::Error::other(format!("{what}: {e}"))
}

/// Brings up `lo`, the only interface of the sandbox's network namespace.
fn loopback_up() -> io::Result<()> {
    // SAFETY: a plain datagram socket used only for the interface ioctls below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is the socket just created and owned here.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    use std::os::fd::AsRawFd;
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write `req`, a valid ifreq for "lo".
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

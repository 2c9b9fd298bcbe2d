//! Small wrappers over raw system calls used by the runtime.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

/// Duplicates `fd` to a new descriptor numbered at least `min`, close-on-exec.
pub fn dup_above(fd: &impl AsRawFd, min: RawFd) -> io::Result<RawFd> {
    // SAFETY: F_DUPFD_CLOEXEC only creates a new descriptor; `fd` stays owned by the caller.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(new)
}

/// Closes every descriptor from `first` up, except those in `keep`.
pub fn close_fds_except(first: RawFd, keep: &[RawFd]) {
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for fd in fds {
        if fd >= first && !keep.contains(&fd) {
            // SAFETY: closing a descriptor this process owns and no Rust object refers to
            // (called only at start-up, before any are created past `first`).
            unsafe { libc::close(fd) };
        }
    }
}

/// Sends `bytes` with the descriptors `fds` (SCM_RIGHTS) on a Unix stream socket.
pub fn send_with_fds(
    sock: &impl AsRawFd,
    bytes: &[u8],
    fds: &[std::os::fd::OwnedFd],
) -> io::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let iov = [io::IoSlice::new(bytes)];
    let cmsg = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &cmsg };
    let sent = sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::empty(), None)?;
    if sent != bytes.len() {
        return Err(io::Error::other("short write of a control message"));
    }
    Ok(())
}

/// Receives one message of at most `max` bytes and up to `max_fds` descriptors sent with
/// [`send_with_fds`]; the descriptors are close-on-exec.
pub fn recv_with_fds(
    sock: &impl AsRawFd,
    max: usize,
    max_fds: usize,
) -> io::Result<(Vec<u8>, Vec<std::os::fd::OwnedFd>)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    use std::os::fd::FromRawFd;
    let mut buf = vec![0u8; max];
    // SAFETY: CMSG_SPACE only computes a size.
    let space_len =
        unsafe { libc::CMSG_SPACE((std::mem::size_of::<RawFd>() * max_fds.max(1)) as u32) };
    let mut space = vec![0u8; space_len as usize];
    let mut iov = [io::IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(received) = cmsg {
            for fd in received {
                // SAFETY: the kernel just installed `fd` in this process for this message.
                fds.push(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
        return Err(io::Error::other("descriptors were cut off"));
    }
    let n = msg.bytes;
    buf.truncate(n);
    Ok((buf, fds))
}

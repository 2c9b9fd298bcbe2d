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

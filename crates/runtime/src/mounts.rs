//! Detached mounts the node makes for a sandbox: each image layer (and each host directory
//! the `host` image binds) as a read-only clone, and its disk and volumes, idmapped to the
//! sandbox's uid range so that files owned by root on them are root's inside. The node makes
//! them as host root (an idmapped mount needs privilege over the filesystem) and hands the
//! descriptors to the sandbox's PID 1, which attaches them in its own mount namespace: no
//! mount of a sandbox ever exists on the host, and the sandbox never opens a host path.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// `struct mount_attr` of `mount_setattr(2)`, version 0.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn cstr(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::other("path holds NUL"))
}

/// A read-only, nosuid, nodev detached clone of the tree at `path`, idmapped through the
/// user namespace `userns` when given.
pub fn detached(path: &Path, userns: Option<&OwnedFd>) -> io::Result<OwnedFd> {
    let c = cstr(path)?;
    // SAFETY: open_tree with a valid NUL-terminated path; returns a new descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            OPEN_TREE_CLONE | AT_RECURSIVE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(ctx("open_tree", path));
    }
    // SAFETY: `fd` was just returned by open_tree and is owned by nothing else.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    set_attrs(&tree, true, userns)
        .map_err(|e| io::Error::new(e.kind(), format!("{e}: {}", path.display())))?;
    Ok(tree)
}

/// Makes the detached mount `tree` nosuid and nodev (and read-only when asked), idmapped
/// through the user namespace `userns` when given. An idmap can be set only once, and only
/// on a mount attached nowhere.
pub fn set_attrs(tree: &OwnedFd, read_only: bool, userns: Option<&OwnedFd>) -> io::Result<()> {
    let mut attr = MountAttr {
        attr_set: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    if read_only {
        attr.attr_set |= MOUNT_ATTR_RDONLY;
    }
    if let Some(ns) = userns {
        attr.attr_set |= MOUNT_ATTR_IDMAP;
        attr.userns_fd = ns.as_raw_fd() as u64;
    }
    // SAFETY: mount_setattr on a detached tree, with a valid struct of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("mount_setattr: {e}")));
    }
    Ok(())
}

/// Attaches the detached tree `tree` at `target` (in the caller's mount namespace).
pub fn attach(tree: &OwnedFd, target: &Path) -> io::Result<()> {
    let c = cstr(target)?;
    // SAFETY: move_mount from a detached tree descriptor to a valid path.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            c.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(ctx("move_mount", target));
    }
    Ok(())
}

/// Attaches the detached tree `tree` on the directory `target` (an `O_PATH` descriptor).
pub fn attach_at(tree: &OwnedFd, target: &OwnedFd) -> io::Result<()> {
    // SAFETY: move_mount between two descriptors, both paths empty.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("move_mount: {e}")));
    }
    Ok(())
}

fn ctx(what: &str, path: &Path) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// Whether this kernel and filesystem give idmapped mounts of `dir`: tried once at start on
/// a user namespace made for the purpose.
pub fn probe_idmap(dir: &Path) -> io::Result<()> {
    let ns = ProbeUserns::new()?;
    detached(dir, Some(&ns.fd)).map(drop)
}

/// A user namespace mapping 0 to an unused high range, held by a child that waits.
struct ProbeUserns {
    fd: OwnedFd,
}

impl ProbeUserns {
    fn new() -> io::Result<Self> {
        let (ready_r, ready_w) = nix::unistd::pipe()?;
        let (done_r, done_w) = nix::unistd::pipe()?;
        // SAFETY: the child only makes async-signal-safe calls (unshare, read, write, _exit).
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: in the child of fork: plain syscalls on descriptors it inherited.
            unsafe {
                // Only the parent may hold the write end, or the read below never ends.
                libc::close(done_w.as_raw_fd());
                libc::close(ready_r.as_raw_fd());
                let ok = libc::unshare(libc::CLONE_NEWUSER) == 0;
                libc::write(ready_w.as_raw_fd(), [ok as u8].as_ptr().cast(), 1);
                let mut b = [0u8; 1];
                libc::read(done_r.as_raw_fd(), b.as_mut_ptr().cast(), 1);
                libc::_exit(0);
            }
        }
        drop((ready_w, done_r));
        let result = (|| {
            let mut ok = [0u8; 1];
            nix::unistd::read(&ready_r, &mut ok)?;
            if ok[0] != 1 {
                return Err(io::Error::other("unshare(CLONE_NEWUSER) failed"));
            }
            // The top of the uid space: no sandbox slot and no host user has it.
            let map = "0 4026531840 65536\n";
            std::fs::write(format!("/proc/{pid}/uid_map"), map)?;
            std::fs::write(format!("/proc/{pid}/gid_map"), map)?;
            let fd = std::fs::File::open(format!("/proc/{pid}/ns/user"))?;
            Ok(ProbeUserns { fd: fd.into() })
        })();
        drop(done_w);
        // SAFETY: waiting for the child forked above.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        result
    }
}

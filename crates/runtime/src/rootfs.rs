//! The sandbox's root filesystem, built by its PID 1 inside its own mount namespace: a
//! size-limited tmpfs holds the overlay's writable layer above the image, host directories
//! of the image are bound read-only, then /proc (masked), a minimal /dev, and pivot_root.
//! Every mount lives in the sandbox's namespace and vanishes with its last process.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt, chown, symlink};
use std::path::Path;

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::statvfs::{FsFlags, statvfs};
use nix::unistd::{chdir, pivot_root};

use crate::spec::InitSpec;

/// Directories of the writable layer: path, mode, owner uid/gid inside.
const UPPER_DIRS: &[(&str, u32, u32)] = &[
    ("etc", 0o755, 0),
    ("tmp", 0o1777, 0),
    ("root", 0o700, 0),
    ("home", 0o755, 0),
    ("home/user", 0o755, 1000),
    ("var", 0o755, 0),
    ("var/tmp", 0o1777, 0),
    ("run", 0o755, 0),
    ("opt", 0o755, 0),
    ("mnt", 0o755, 0),
    ("srv", 0o755, 0),
    ("usr", 0o755, 0),
    ("proc", 0o555, 0),
    ("dev", 0o755, 0),
];

/// Files of /proc hidden behind /dev/null.
const MASKED_FILES: &[&str] = &[
    "kcore",
    "keys",
    "key-users",
    "timer_list",
    "sched_debug",
    "latency_stats",
    "kallsyms",
    "kpageflags",
    "kpagecount",
    "kpagecgroup",
    "config.gz",
];
/// Directories of /proc hidden behind an empty read-only tmpfs.
const MASKED_DIRS: &[&str] = &["acpi", "scsi", "firmware"];
/// Parts of /proc made read-only.
const READONLY_PROC: &[&str] = &["sys", "sysrq-trigger", "irq", "bus", "fs"];
/// Device nodes bound from the host into the minimal /dev.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

fn err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{what}: {e}"))
}

fn mnt(
    src: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> io::Result<()> {
    mount(src, target, fstype, flags, data).map_err(|e| {
        err(
            format_args!(
                "mount {} on {}",
                fstype.or(src).unwrap_or(""),
                target.display()
            ),
            e,
        )
    })
}

fn mkdir(path: &Path, mode: u32) -> io::Result<()> {
    match fs::DirBuilder::new().mode(mode).create(path) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(err(path.display(), e)),
        _ => fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|e| err(path.display(), e)),
    }
}

/// Builds the root and pivots into it. Called in the sandbox's PID 1 after the namespaces
/// were entered.
pub fn build(spec: &InitSpec) -> io::Result<()> {
    // Nothing done below may propagate to the host.
    mnt(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )?;
    let scratch = spec.sandbox_dir.join("root");
    let size = format!("size={},mode=0755", spec.disk_bytes);
    mnt(
        Some("tmpfs"),
        &scratch,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(&size),
    )?;
    let (upper, work, root) = (
        scratch.join("upper"),
        scratch.join("work"),
        scratch.join("merged"),
    );
    for dir in [&upper, &work, &root] {
        mkdir(dir, 0o755)?;
    }
    for (path, mode, owner) in UPPER_DIRS {
        let dir = upper.join(path);
        mkdir(&dir, *mode)?;
        chown(&dir, Some(*owner), Some(*owner)).map_err(|e| err(dir.display(), e))?;
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={},userxattr",
        spec.lower.display(),
        upper.display(),
        work.display()
    );
    mnt(
        Some("overlay"),
        &root,
        Some("overlay"),
        MsFlags::empty(),
        Some(&options),
    )?;

    for (path, content) in &spec.files {
        let file = root.join(path.trim_start_matches('/'));
        fs::write(&file, content).map_err(|e| err(file.display(), e))?;
    }
    for bind in &spec.binds {
        bind_readonly(bind, &root.join(bind.strip_prefix("/").unwrap_or(bind)))?;
    }
    mount_proc(&root.join("proc"))?;
    mount_dev(&root.join("dev"))?;

    chdir(&root).map_err(|e| err("chdir to the new root", e))?;
    pivot_root(".", ".").map_err(|e| err("pivot_root", e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| err("detach the old root", e))?;
    chdir("/").map_err(|e| err("chdir /", e))?;
    Ok(())
}

/// Binds `src` at `dst` read-only, nosuid, nodev, keeping the flags the kernel locks.
fn bind_readonly(src: &Path, dst: &Path) -> io::Result<()> {
    mnt(
        src.to_str(),
        dst,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;
    let mut flags = MsFlags::MS_BIND
        | MsFlags::MS_REMOUNT
        | MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV;
    // A bind of a host mount keeps its atime and noexec flags locked: repeat them.
    let host = statvfs(src).map_err(|e| err(src.display(), e))?.flags();
    for (f, m) in [
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if host.contains(f) {
            flags |= m;
        }
    }
    mnt(None, dst, None, flags, None)
}

fn mount_proc(proc: &Path) -> io::Result<()> {
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mnt(Some("proc"), proc, Some("proc"), nosuid, None)?;
    for name in MASKED_FILES {
        let path = proc.join(name);
        if path.exists() {
            mnt(Some("/dev/null"), &path, None, MsFlags::MS_BIND, None)?;
        }
    }
    for name in MASKED_DIRS {
        let path = proc.join(name);
        if path.is_dir() {
            mnt(
                Some("tmpfs"),
                &path,
                Some("tmpfs"),
                MsFlags::MS_RDONLY | nosuid,
                Some("size=0"),
            )?;
        }
    }
    for name in READONLY_PROC {
        let path = proc.join(name);
        if path.exists() {
            mnt(
                path.to_str(),
                &path,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )?;
            mnt(
                None,
                &path,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | nosuid,
                None,
            )?;
        }
    }
    Ok(())
}

fn mount_dev(dev: &Path) -> io::Result<()> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    mnt(
        Some("tmpfs"),
        dev,
        Some("tmpfs"),
        flags,
        Some("mode=0755,size=65536"),
    )?;
    for name in DEVICES {
        let path = dev.join(name);
        fs::write(&path, b"").map_err(|e| err(path.display(), e))?;
        mnt(
            Some(&format!("/dev/{name}")),
            &path,
            None,
            MsFlags::MS_BIND,
            None,
        )?;
    }
    let pts = dev.join("pts");
    mkdir(&pts, 0o755)?;
    mnt(
        Some("devpts"),
        &pts,
        Some("devpts"),
        flags,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )?;
    let shm = dev.join("shm");
    mkdir(&shm, 0o1777)?;
    mnt(
        Some("shm"),
        &shm,
        Some("tmpfs"),
        flags | MsFlags::MS_NODEV,
        Some("mode=1777,size=67108864"),
    )?;
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(target, dev.join(link)).map_err(|e| err(link, e))?;
    }
    Ok(())
}

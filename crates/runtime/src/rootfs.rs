//! The sandbox's root filesystem, built by its PID 1 inside its own mount namespace: its disk
//! (or a size-limited tmpfs) holds the overlay's writable layer above the image, host
//! directories of the image are bound read-only, its volumes are attached, then /proc
//! (masked), a minimal /dev, and pivot_root.
//! Every mount lives in the sandbox's namespace and vanishes with its last process.

use std::fs;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt, chown, symlink};
use std::path::Path;

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::unistd::{chdir, pivot_root};

use crate::mounts;
use crate::spec::{InitSpec, VOLUME_ERROR};

/// Directories of the writable layer of an OCI image: mount points, a scratch directory,
/// the home of the default directory, and /etc for the files the node writes.
const IMAGE_UPPER_DIRS: &[(&str, u32, u32)] = &[
    ("etc", 0o755, 0),
    ("tmp", 0o1777, 0),
    ("home", 0o755, 0),
    ("home/user", 0o755, 1000),
    ("proc", 0o555, 0),
    ("dev", 0o755, 0),
];

/// Directories of the writable layer of the `host` image: path, mode, owner uid/gid inside.
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
    // The host's block devices, the loop devices of every sandbox's disk among them.
    "partitions",
    "diskstats",
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
/// were entered, with the detached mounts of the image's layers then its binds.
pub fn build(spec: &InitSpec, trees: Vec<OwnedFd>) -> io::Result<()> {
    // Nothing done below may propagate to the host.
    mnt(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )?;
    let scratch = spec.sandbox_dir.join("root");
    let mut trees = trees.into_iter();
    let layers: Vec<OwnedFd> = trees.by_ref().take(spec.layers.len()).collect();
    let binds: Vec<OwnedFd> = trees.by_ref().take(spec.binds.len()).collect();
    if spec.disk {
        let disk = trees
            .next()
            .ok_or_else(|| io::Error::other("the node sent no disk"))?;
        mounts::attach(&disk, &scratch)?;
    } else {
        let size = format!("size={},mode=0755", spec.disk_bytes);
        mnt(
            Some("tmpfs"),
            &scratch,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(&size),
        )?;
    }
    let (upper, work, root, lowers) = (
        scratch.join("upper"),
        scratch.join("work"),
        scratch.join("merged"),
        scratch.join("l"),
    );
    for dir in [&upper, &work, &root, &lowers] {
        mkdir(dir, 0o755)?;
    }
    let dirs = if spec.skeleton {
        UPPER_DIRS
    } else {
        IMAGE_UPPER_DIRS
    };
    for (path, mode, owner) in dirs {
        let dir = upper.join(path);
        mkdir(&dir, *mode)?;
        chown(&dir, Some(*owner), Some(*owner)).map_err(|e| err(dir.display(), e))?;
    }
    // Short relative names keep the options within a page however many layers there are.
    let mut names = Vec::new();
    for (i, tree) in layers.iter().enumerate() {
        let dir = lowers.join(i.to_string());
        mkdir(&dir, 0o755)?;
        mounts::attach(tree, &dir)?;
        names.push(format!("l/{i}"));
    }
    if names.is_empty() {
        // An image without layers: an empty root.
        mkdir(&lowers.join("0"), 0o755)?;
        names.push("l/0".into());
    }
    names.reverse();
    let options = format!(
        "lowerdir={},upperdir=upper,workdir=work,userxattr",
        names.join(":")
    );
    chdir(&scratch).map_err(|e| err("chdir to the scratch directory", e))?;
    mnt(
        Some("overlay"),
        &root,
        Some("overlay"),
        MsFlags::empty(),
        Some(&options),
    )?;

    for (path, content) in &spec.files {
        write_in_root(&root, path, content)?;
    }
    for (bind, tree) in spec.binds.iter().zip(binds) {
        mounts::attach(&tree, &root.join(bind.strip_prefix("/").unwrap_or(bind)))?;
    }
    for (volume, tree) in spec.volumes.iter().zip(trees) {
        let target = make_dirs_in_root(&root, &volume.path)
            .map_err(|e| err(format_args!("{VOLUME_ERROR} {}", volume.path), e))?;
        mounts::attach_at(&tree, &target)?;
    }
    mount_proc(&root.join("proc"))?;
    mount_dev(&root.join("dev"))?;

    chdir(&root).map_err(|e| err("chdir to the new root", e))?;
    pivot_root(".", ".").map_err(|e| err("pivot_root", e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| err("detach the old root", e))?;
    chdir("/").map_err(|e| err("chdir /", e))?;
    Ok(())
}

/// Writes `content` at `path` of the new root, replacing what the image has there. The
/// image is hostile: its directories and files may be symlinks to host paths, so the parent
/// is resolved inside the root and the file is never followed.
fn write_in_root(root: &Path, path: &str, content: &str) -> io::Result<()> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat, openat2};
    use nix::sys::stat::Mode;
    let failed = |e: nix::Error| err(path, e);
    let (parent, name) = path
        .trim_start_matches('/')
        .rsplit_once('/')
        .unwrap_or(("", path.trim_start_matches('/')));
    let root_fd = openat(
        nix::fcntl::AT_FDCWD,
        root,
        OFlag::O_DIRECTORY | OFlag::O_PATH | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(failed)?;
    let dir = openat2(
        &root_fd,
        if parent.is_empty() { "." } else { parent },
        OpenHow::new()
            .flags(OFlag::O_DIRECTORY | OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS),
    )
    .map_err(failed)?;
    match nix::unistd::unlinkat(&dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(failed(e)),
    }
    let file = openat(
        &dir,
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )
    .map_err(failed)?;
    fs::File::from(file)
        .write_all(content.as_bytes())
        .map_err(|e| err(path, e))
}

/// Makes the directories of `path` in the new root (an image is hostile: no component may be
/// a symlink), and opens the last one.
fn make_dirs_in_root(root: &Path, path: &str) -> nix::Result<OwnedFd> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag, open, openat2};
    use nix::sys::stat::{Mode, mkdirat};
    let flags = OFlag::O_DIRECTORY | OFlag::O_PATH | OFlag::O_CLOEXEC;
    let mut dir = open(root, flags, Mode::empty())?;
    for name in path.split('/').filter(|c| !c.is_empty()) {
        match mkdirat(&dir, name, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(e),
        }
        dir = openat2(
            &dir,
            name,
            OpenHow::new()
                .flags(flags)
                .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_BENEATH),
        )?;
    }
    Ok(dir)
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

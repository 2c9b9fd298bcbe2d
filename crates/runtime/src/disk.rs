//! Disks: ext4 filesystems in files on the node's disk, each on a loop device of its own, so
//! that a full disk fills nothing else (the kernel has no quotas to share one filesystem).
//!
//! - A sandbox's **scratch disk** holds its writable layer. It is a sparse copy of a template
//!   made once per size by `mkfs.ext4` (no journal: nothing on it outlives the sandbox), put
//!   on a loop device with autoclear and direct I/O, mounted as a detached mount and unlinked
//!   at once. Nothing of it is ever mounted on the host: its PID 1 attaches it in its own
//!   mount namespace, and the kernel frees the mount, the loop device and the file when the
//!   sandbox's last process is gone (after a delete, a failed create or a node killed with
//!   -9 alike). A few are kept ready for the sizes most recently asked for.
//! - A **volume** is an ext4 file with a journal that outlives sandboxes. Every mount of one
//!   goes through the one loop device bound to its file, so that all its mounts share one
//!   superblock (two loop devices on one file would be two filesystems writing the same
//!   blocks).

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Directories every scratch disk starts with: the overlay's upper and work directories,
/// the mount point of the merged root and the directory of the layers' mount points.
pub const SCRATCH_DIRS: &[&str] = &["upper", "work", "merged", "l"];
/// Templates kept, one per size, most recently used first.
const MAX_TEMPLATES: usize = 8;
/// Scratch disks kept ready per size, for this many of the most recent sizes.
const SPARES_PER_SIZE: usize = 2;
const SPARE_SIZES: usize = 4;
/// Where `mkfs.ext4` may be when `PATH` does not name it (a service's `PATH` often lacks
/// the sbin directories).
const MKFS_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_GET_STATUS64: libc::c_ulong = 0x4C05;
const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_FLAGS_DIRECT_IO: u32 = 16;
const LOOP_MAJOR: u32 = 7;

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;

/// `struct loop_info64`.
#[repr(C)]
#[derive(Clone, Copy)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config`.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// What a disk is: a sandbox's scratch disk or a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A sandbox's writable layer: its file is gone once it is on its loop device.
    Scratch,
    /// A volume: its file stays; freed blocks go back to the node's disk.
    Volume,
}

/// The loop device a disk is on, and the file behind it (device and inode), which tells it
/// from a loop device later reused for another file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// `/dev/loopN`.
    pub path: PathBuf,
    /// Device and inode numbers of the backing file.
    pub file: (u64, u64),
}

impl Device {
    /// The one-line form kept in a sandbox's directory.
    pub fn to_line(&self) -> String {
        format!("{} {} {}\n", self.path.display(), self.file.0, self.file.1)
    }

    /// Reads back [`Device::to_line`].
    pub fn from_line(line: &str) -> Option<Device> {
        let mut it = line.split_whitespace();
        let path = PathBuf::from(it.next()?);
        let file = (it.next()?.parse().ok()?, it.next()?.parse().ok()?);
        Some(Device { path, file })
    }

    /// The loop device open, if it still serves the same file (it may have been freed and
    /// taken for another since it was noted). Held open, it is not freed.
    fn open(&self) -> Option<File> {
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&self.path)
            .ok()?;
        let info = loop_status(&f).ok()?;
        ((info.lo_device, info.lo_inode) == self.file).then_some(f)
    }
}

/// A filesystem mounted nowhere yet: the descriptor of a detached mount.
#[derive(Debug)]
pub struct Disk {
    /// The detached mount (nosuid, nodev).
    pub mount: OwnedFd,
    /// Its loop device.
    pub device: Device,
}

/// The node's disks: templates, spare scratch disks, and the making of volumes.
#[derive(Debug)]
pub struct Disks {
    dir: PathBuf,
    mkfs: PathBuf,
    /// Templates by size, most recently used first.
    templates: Mutex<Vec<(u64, Arc<Template>)>>,
    /// Spare scratch disks by size, and the sizes most recently asked for (first).
    spares: Mutex<Spares>,
    /// Whether a replenish runs: one at a time is enough.
    replenishing: AtomicBool,
    counter: AtomicU64,
}

#[derive(Debug, Default)]
struct Template {
    /// The template's open file, once made; a copy reads it even after eviction unlinks it.
    file: Mutex<Option<Arc<File>>>,
}

#[derive(Debug, Default)]
struct Spares {
    ready: HashMap<u64, Vec<Disk>>,
    recent: Vec<u64>,
}

/// Serializes the choice of a volume's loop device: two mounts of one volume at once must
/// not each attach a loop device of their own.
static VOLUME_LOOPS: Mutex<()> = Mutex::new(());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn ctx(what: impl std::fmt::Display, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl Disks {
    /// Disks kept in `dir` (made if missing; what a previous run left there is removed).
    /// Fails when this host cannot make them: no `mkfs.ext4`, no loop devices, or a kernel
    /// without the new mount API.
    pub fn open(dir: &Path) -> io::Result<Disks> {
        fs::create_dir_all(dir).map_err(|e| ctx(dir.display(), e))?;
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let _ = fs::remove_file(&path);
        }
        let mkfs = find_mkfs().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "mkfs.ext4 was not found: install e2fsprogs",
            )
        })?;
        if !Path::new("/dev/loop-control").exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "/dev/loop-control is missing: load the loop module (modprobe loop)",
            ));
        }
        let disks = Disks {
            dir: dir.to_path_buf(),
            mkfs,
            templates: Mutex::new(Vec::new()),
            spares: Mutex::new(Spares::default()),
            replenishing: AtomicBool::new(false),
            counter: AtomicU64::new(0),
        };
        // Proves the whole path once: template, loop device, mount.
        disks.make_scratch(16 << 20).map(drop)?;
        Ok(disks)
    }

    /// A fresh scratch disk of `size` bytes, with [`SCRATCH_DIRS`] made.
    pub fn scratch(&self, size: u64) -> io::Result<Disk> {
        let spare = {
            let mut spares = lock(&self.spares);
            spares.recent.retain(|s| *s != size);
            spares.recent.insert(0, size);
            spares.recent.truncate(SPARE_SIZES);
            spares.ready.get_mut(&size).and_then(Vec::pop)
        };
        match spare {
            Some(disk) => Ok(disk),
            None => self.make_scratch(size),
        }
    }

    /// Makes spare scratch disks for the sizes most recently asked for, and drops those of
    /// other sizes. Called after a create, not during one; returns at once while another
    /// call runs.
    pub fn replenish(&self) {
        if self.replenishing.swap(true, Ordering::AcqRel) {
            return;
        }
        self.fill_spares();
        self.replenishing.store(false, Ordering::Release);
    }

    fn fill_spares(&self) {
        let recent = {
            let mut spares = lock(&self.spares);
            let recent = spares.recent.clone();
            spares.ready.retain(|size, _| recent.contains(size));
            recent
        };
        for size in recent {
            loop {
                let have = lock(&self.spares).ready.get(&size).map_or(0, Vec::len);
                if have >= SPARES_PER_SIZE {
                    break;
                }
                match self.make_scratch(size) {
                    Ok(disk) => lock(&self.spares).ready.entry(size).or_default().push(disk),
                    Err(e) => {
                        tracing::warn!(size, error = %e, "could not make a spare disk");
                        return;
                    }
                }
            }
        }
    }

    fn make_scratch(&self, size: u64) -> io::Result<Disk> {
        let template = self.template(size)?;
        let path = self.temp_path("scratch");
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| ctx(path.display(), e))?;
        let attached = copy_sparse(&template, &file, size)
            .and_then(|()| attach_loop(&file, false))
            .map_err(|e| ctx("make a scratch disk", e));
        // The loop device holds the file: its name is not needed any more.
        let _ = fs::remove_file(&path);
        let (device_file, device) = attached?;
        let disk = mount(&device_file, device, Kind::Scratch, false)?;
        for dir in SCRATCH_DIRS {
            mkdirat(&disk.mount, dir, 0o755)?;
        }
        Ok(disk)
    }

    /// The template of `size`, made when missing.
    fn template(&self, size: u64) -> io::Result<Arc<File>> {
        let template = {
            let mut templates = lock(&self.templates);
            let entry = match templates.iter().position(|(s, _)| *s == size) {
                Some(i) => templates.remove(i),
                None => (size, Arc::new(Template::default())),
            };
            templates.insert(0, entry.clone());
            let keep = MAX_TEMPLATES.min(templates.len());
            for (old, _) in templates.drain(keep..) {
                let _ = fs::remove_file(self.template_path(old));
            }
            entry.1
        };
        let mut file = lock(&template.file);
        if let Some(f) = &*file {
            return Ok(f.clone());
        }
        let path = self.template_path(size);
        let tmp = self.temp_path("template");
        let made = self
            .mkfs(
                &tmp,
                size,
                &[
                    "-O",
                    "^has_journal,^resize_inode,sparse_super2",
                    "-E",
                    "num_backup_sb=0,lazy_itable_init=1,root_owner=0:0,nodiscard",
                ],
            )
            .and_then(|()| fs::rename(&tmp, &path))
            .and_then(|()| File::open(&path));
        if made.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        let f = Arc::new(made?);
        *file = Some(f.clone());
        Ok(f)
    }

    fn template_path(&self, size: u64) -> PathBuf {
        self.dir.join(format!("template-{size}.ext4"))
    }

    fn temp_path(&self, what: &str) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!(".{what}-{}-{n}", std::process::id()))
    }

    /// Runs `mkfs.ext4` on a new sparse file `path` of `size` bytes.
    fn mkfs(&self, path: &Path, size: u64, options: &[&str]) -> io::Result<()> {
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| ctx(path.display(), e))?;
        file.set_len(size)?;
        drop(file);
        let out = Command::new(&self.mkfs)
            .args(["-q", "-F", "-m", "0", "-T", "default"])
            .args(options)
            .arg(path)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| ctx(self.mkfs.display(), e))?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "mkfs.ext4 failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }

    /// Makes the file of a new volume of `size` bytes at `path` (which must not exist). It is
    /// made under another name and renamed when whole: a crash leaves no half-made volume at
    /// `path`.
    pub fn create_volume(&self, path: &Path, size: u64) -> io::Result<()> {
        let mut part = path.as_os_str().to_owned();
        part.push(".part");
        let part = PathBuf::from(part);
        let options = [
            "-E",
            "lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0,nodiscard",
        ];
        let made = self
            .mkfs(&part, size, &options)
            .and_then(|()| File::open(&part)?.sync_all())
            .and_then(|()| fs::rename(&part, path));
        if made.is_err() {
            let _ = fs::remove_file(&part);
        }
        made
    }

    /// A detached mount of the volume at `path`, read-only when asked, through the loop
    /// device already bound to its file when there is one.
    pub fn mount_volume(&self, path: &Path, read_only: bool) -> io::Result<Disk> {
        let _guard = lock(&VOLUME_LOOPS);
        let meta = fs::metadata(path).map_err(|e| ctx(path.display(), e))?;
        let want = (meta.dev(), meta.ino());
        let bound = bound_to(path, want).and_then(|d| Some((d.open()?, d)));
        if let Some((f, device)) = bound {
            return mount(&f, device, Kind::Volume, read_only);
        }
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| ctx(path.display(), e))?;
        let (device_file, device) = attach_loop(&file, false)?;
        mount(&device_file, device, Kind::Volume, read_only)
    }

    /// Bytes used on the volume at `path`, as `df` counts them.
    pub fn volume_used_bytes(&self, path: &Path) -> io::Result<u64> {
        used_bytes(&self.mount_volume(path, true)?.mount)
    }
}

/// Bytes used on the filesystem of `fd`, as `df` counts them.
pub fn used_bytes(fd: &impl AsFd) -> io::Result<u64> {
    let st = nix::sys::statfs::fstatfs(fd).map_err(io::Error::from)?;
    Ok((st.blocks() - st.blocks_free()) * st.block_size() as u64)
}

/// A new mount of the scratch disk on `device` (the sandbox's superblock, not a new one),
/// or `None` when the device no longer serves that disk.
pub fn remount(device: &Device) -> io::Result<Option<Disk>> {
    match device.open() {
        Some(f) => mount(&f, device.clone(), Kind::Scratch, false).map(Some),
        None => Ok(None),
    }
}

fn find_mkfs() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(MKFS_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join("mkfs.ext4"))
        .find(|p| p.is_file())
}

/// Makes `dst` `size` bytes long with the data of `template`, leaving holes as holes.
fn copy_sparse(template: &File, dst: &File, size: u64) -> io::Result<()> {
    dst.set_len(size)?;
    let end = template.metadata()?.len() as i64;
    let (src, out) = (template.as_raw_fd(), dst.as_raw_fd());
    let mut pos: i64 = 0;
    while pos < end {
        // SAFETY: lseek on an open descriptor; no pointers.
        let data = unsafe { libc::lseek(src, pos, libc::SEEK_DATA) };
        if data < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENXIO) {
                break;
            }
            return Err(e);
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(src, data, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(io::Error::last_os_error());
        }
        let (mut from, mut to) = (data, data);
        while from < hole {
            // SAFETY: copy_file_range between two open descriptors with offsets owned here.
            let n = unsafe {
                libc::copy_file_range(src, &mut from, out, &mut to, (hole - from) as usize, 0)
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            if n == 0 {
                break;
            }
        }
        pos = hole;
    }
    Ok(())
}

/// Puts `file` on a free loop device (autoclear, direct I/O): the device's open file and
/// what it is.
fn attach_loop(file: &File, read_only: bool) -> io::Result<(File, Device)> {
    let meta = file.metadata()?;
    let control = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/loop-control")
        .map_err(|e| ctx("/dev/loop-control", e))?;
    let mut flags = LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO;
    if read_only {
        flags |= LO_FLAGS_READ_ONLY;
    }
    // Another process may take the free device between the two calls: try again then.
    for _ in 0..64 {
        // SAFETY: an ioctl without argument on the control device.
        let n = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if n < 0 {
            return Err(ctx("find a free loop device", io::Error::last_os_error()));
        }
        let path = PathBuf::from(format!("/dev/loop{n}"));
        let device = match open_loop(&path, n as u32) {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => continue,
            Err(e) => return Err(ctx(path.display(), e)),
        };
        // SAFETY: zeroes are a valid loop_config.
        let mut config: LoopConfig = unsafe { std::mem::zeroed() };
        config.fd = file.as_raw_fd() as u32;
        config.info.lo_flags = flags;
        // SAFETY: LOOP_CONFIGURE with a valid struct loop_config.
        let r = unsafe { libc::ioctl(device.as_raw_fd(), LOOP_CONFIGURE, &config) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EBUSY) {
                continue;
            }
            return Err(ctx(format_args!("configure {}", path.display()), e));
        }
        return Ok((
            device,
            Device {
                path,
                file: (meta.dev(), meta.ino()),
            },
        ));
    }
    Err(io::Error::other("no free loop device could be taken"))
}

/// Opens loop device `n`, making its node when `/dev` lacks it.
fn open_loop(path: &Path, n: u32) -> io::Result<File> {
    let open = || {
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
    };
    match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let c = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
            // SAFETY: mknod with a valid path; makedev only computes a number.
            let r = unsafe {
                libc::mknod(
                    c.as_ptr(),
                    libc::S_IFBLK | 0o660,
                    libc::makedev(LOOP_MAJOR, n),
                )
            };
            if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
                return Err(io::Error::last_os_error());
            }
            open()
        }
        other => other,
    }
}

fn loop_status(device: &File) -> io::Result<LoopInfo64> {
    // SAFETY: zeroes are a valid loop_info64; LOOP_GET_STATUS64 fills it.
    let mut info: LoopInfo64 = unsafe { std::mem::zeroed() };
    // SAFETY: as above, with a struct of the size the ioctl writes.
    if unsafe { libc::ioctl(device.as_raw_fd(), LOOP_GET_STATUS64, &mut info) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(info)
}

/// The loop device bound to the file at `path` (device and inode `file`), as sysfs names
/// it: a name to check with [`Device::open`], which tells a device freed meanwhile.
fn bound_to(path: &Path, file: (u64, u64)) -> Option<Device> {
    fs::read_dir("/sys/block").ok()?.find_map(|e| {
        let name = e.ok()?.file_name().into_string().ok()?;
        name.strip_prefix("loop")?.parse::<u32>().ok()?;
        let backing = fs::read(format!("/sys/block/{name}/loop/backing_file")).ok()?;
        (backing.strip_suffix(b"\n").unwrap_or(&backing) == path.as_os_str().as_bytes()).then(
            || Device {
                path: PathBuf::from("/dev").join(&name),
                file,
            },
        )
    })
}

/// Mounts the ext4 filesystem on `device` as a detached mount (nosuid, nodev, and read-only
/// when asked). `device_file`, the device open, is held until the filesystem holds the
/// device: an autoclear loop device closed by its last user is freed.
fn mount(device_file: &File, device: Device, kind: Kind, read_only: bool) -> io::Result<Disk> {
    // SAFETY: fsopen with a NUL-terminated name; returns a new descriptor or -1.
    let fs_fd = unsafe { libc::syscall(libc::SYS_fsopen, c"ext4".as_ptr(), FSOPEN_CLOEXEC) };
    if fs_fd < 0 {
        return Err(ctx("fsopen ext4", io::Error::last_os_error()));
    }
    // SAFETY: the descriptor was just returned by fsopen.
    let fs_fd = unsafe { OwnedFd::from_raw_fd(fs_fd as i32) };
    let source = CString::new(device.path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    fsconfig(&fs_fd, FSCONFIG_SET_STRING, c"source", Some(&source))?;
    match kind {
        // Inode tables are zeroed by nobody: the file is fresh, its holes read as zeroes.
        // No cache flushes: nothing on it outlives the sandbox, so neither its unmount nor
        // an fsync inside waits for the host's disk to empty its cache.
        Kind::Scratch => {
            fsconfig(&fs_fd, FSCONFIG_SET_FLAG, c"noinit_itable", None)?;
            fsconfig(&fs_fd, FSCONFIG_SET_FLAG, c"nobarrier", None)?;
        }
        // Freed blocks become holes again in the volume's file.
        Kind::Volume => fsconfig(&fs_fd, FSCONFIG_SET_FLAG, c"discard", None)?,
    }
    fsconfig(&fs_fd, FSCONFIG_CMD_CREATE, c"", None).map_err(|e| {
        ctx(
            format_args!("mount the ext4 of {}", device.path.display()),
            e,
        )
    })?;
    use crate::mounts::{MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY};
    let mut attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    if read_only {
        attrs |= MOUNT_ATTR_RDONLY;
    }
    // SAFETY: fsmount on the configured context.
    let m = unsafe { libc::syscall(libc::SYS_fsmount, fs_fd.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) };
    if m < 0 {
        return Err(ctx("fsmount", io::Error::last_os_error()));
    }
    let _held_until_here = device_file;
    Ok(Disk {
        // SAFETY: the descriptor was just returned by fsmount.
        mount: unsafe { OwnedFd::from_raw_fd(m as i32) },
        device,
    })
}

fn fsconfig(
    fs_fd: &OwnedFd,
    cmd: libc::c_uint,
    key: &std::ffi::CStr,
    value: Option<&CString>,
) -> io::Result<()> {
    let key_ptr = if cmd == FSCONFIG_CMD_CREATE {
        std::ptr::null()
    } else {
        key.as_ptr()
    };
    let value_ptr = value.map_or(std::ptr::null(), |v| v.as_ptr());
    // SAFETY: fsconfig with NUL-terminated strings or null pointers as the command wants.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs_fd.as_raw_fd(),
            cmd,
            key_ptr,
            value_ptr,
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn mkdirat(dir: &OwnedFd, name: &str, mode: u32) -> io::Result<()> {
    match nix::sys::stat::mkdirat(dir, name, nix::sys::stat::Mode::from_bits_truncate(mode)) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(ctx(name, e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ai2in-disk-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn bound(device: &Device) -> bool {
        device.open().is_some()
    }

    /// The kernel frees an autoclear loop device shortly after its last mount goes.
    fn freed(device: &Device) -> bool {
        (0..200).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            !bound(device)
        })
    }

    // Loop devices and mounts need root: the suite runs as root (scripts/test).
    #[test]
    fn a_scratch_disk_is_an_ext4_of_its_size_that_leaves_nothing_behind() {
        let dir = scratch_dir("scratch");
        let disks = Disks::open(&dir).expect("open the disks");
        let disk = disks.scratch(64 * MIB).expect("a scratch disk");
        let st = nix::sys::statfs::fstatfs(&disk.mount).unwrap();
        let total = st.blocks() * st.block_size() as u64;
        assert!(total > 56 * MIB && total <= 64 * MIB, "{total}");
        assert!(used_bytes(&disk.mount).unwrap() < 4 * MIB);
        for name in SCRATCH_DIRS {
            nix::sys::stat::fstatat(&disk.mount, *name, nix::fcntl::AtFlags::empty())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert!(bound(&disk.device));
        // Its file was unlinked: only the template is left in the directory.
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}"); // the 16 MiB probe's and this size's templates
        let again = remount(&disk.device).unwrap().expect("the same disk again");
        drop(again);
        let device = disk.device.clone();
        drop(disk);
        assert!(freed(&device), "{device:?} still bound");
        assert!(remount(&device).unwrap().is_none());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn spares_are_made_for_recent_sizes_only() {
        let dir = scratch_dir("spares");
        let disks = Disks::open(&dir).unwrap();
        drop(disks.scratch(32 * MIB).unwrap());
        disks.replenish();
        let spare = lock(&disks.spares)
            .ready
            .get(&(32 * MIB))
            .map_or(0, Vec::len);
        assert_eq!(spare, SPARES_PER_SIZE);
        let taken = disks.scratch(32 * MIB).unwrap();
        assert_eq!(
            lock(&disks.spares).ready[&(32 * MIB)].len(),
            SPARES_PER_SIZE - 1
        );
        drop(taken);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_mount_of_a_volume_shares_its_one_loop_device() {
        let dir = scratch_dir("volume");
        let disks = Disks::open(&dir.join("disks")).unwrap();
        let path = dir.join("vol.img");
        disks.create_volume(&path, 32 * MIB).unwrap();
        let rw = disks.mount_volume(&path, false).unwrap();
        let ro = disks.mount_volume(&path, true).unwrap();
        assert_eq!(rw.device, ro.device);
        let before = disks.volume_used_bytes(&path).unwrap();
        let file = nix::fcntl::openat(
            &rw.mount,
            "f",
            nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CREAT,
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        let mut file = File::from(file);
        io::Write::write_all(&mut file, &vec![7u8; 4 * MIB as usize]).unwrap();
        file.sync_all().unwrap();
        assert!(disks.volume_used_bytes(&path).unwrap() >= before + 4 * MIB);
        // Past its size, a write fails with ENOSPC.
        let big = io::Write::write_all(&mut file, &vec![7u8; 40 * MIB as usize]);
        assert_eq!(big.unwrap_err().raw_os_error(), Some(libc::ENOSPC));
        let device = rw.device.clone();
        drop((file, rw, ro));
        assert!(freed(&device));
        fs::remove_dir_all(&dir).unwrap();
    }
}

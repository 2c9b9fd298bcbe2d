//! Unpacks a layer tar into an empty directory, in the form overlayfs reads as a lower layer:
//! `.wh.NAME` becomes a whiteout (a 0/0 character device), `.wh..wh..opq` marks its directory
//! opaque (`user.overlay.opaque`, as sandboxes mount their overlay with `userxattr`).
//!
//! A layer is hostile input. Nothing here may write outside the directory: every parent is
//! opened with `openat2(RESOLVE_IN_ROOT)` (symlinks and `..` resolve inside the layer), and
//! every change is a single-component `*at` call on that parent, never following a symlink
//! at the leaf. Entries naming `..` are refused, absolute ones are taken relative to the
//! layer, hard links must point inside it, device nodes are skipped (a sandbox gets its own
//! minimal /dev), and the sizes and entry count are bounded.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::{Mode, SFlag, mkdirat, mknodat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchownat, linkat, symlinkat, unlinkat};

/// Bounds on one layer.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most bytes of file content, and of the uncompressed tar stream.
    pub max_bytes: u64,
    /// Most entries.
    pub max_files: u64,
}

/// What a layer holds once unpacked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unpacked {
    /// Bytes of file content.
    pub size_bytes: u64,
    /// Entries written.
    pub files: u64,
    /// Device nodes left out.
    pub skipped_devices: u64,
}

/// Why a layer could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The tar stream is malformed or could not be read.
    #[error("the layer is not a valid tar archive")]
    Tar(#[source] io::Error),
    /// An entry is outside the layer or otherwise refused.
    #[error("the layer has a forbidden entry {path:?}: {why}")]
    Forbidden {
        /// The entry's path.
        path: String,
        /// Why.
        why: &'static str,
    },
    /// Over a limit.
    #[error("the layer is over the node's limit of {0}")]
    TooLarge(String),
    /// Writing the unpacked layer failed.
    #[error("failed to write {path:?}")]
    Write {
        /// The entry.
        path: String,
        /// The failure.
        #[source]
        source: io::Error,
    },
}

/// Counts what is read and refuses to read past a limit (a decompression bomb stops here).
struct Bounded<R> {
    inner: R,
    read: u64,
    max: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.max {
            return Err(io::Error::new(io::ErrorKind::FileTooLarge, "stream limit"));
        }
        Ok(n)
    }
}

/// Unpacks the tar stream `tar` into `dest`, an empty directory that only this call writes.
pub fn unpack(tar: impl Read, dest: &Path, limits: &Limits) -> Result<Unpacked, UnpackError> {
    let root = openat(
        nix::fcntl::AT_FDCWD,
        dest,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| write_err("", e))?;
    // Tar's own padding and headers: allow a margin over the content limit.
    let bounded = Bounded {
        inner: tar,
        read: 0,
        max: limits
            .max_bytes
            .saturating_add(limits.max_bytes / 8 + (16 << 20)),
    };
    let mut archive = tar::Archive::new(bounded);
    let mut done = Unpacked::default();
    let mut parents = ParentCache::default();
    let mut entries = archive.entries().map_err(UnpackError::Tar)?;
    for entry in entries.by_ref() {
        let mut entry = entry.map_err(bomb_or_tar)?;
        done.files += 1;
        if done.files > limits.max_files {
            return Err(UnpackError::TooLarge(format!(
                "{} entries per layer",
                limits.max_files
            )));
        }
        let raw = entry.path_bytes().into_owned();
        let display = String::from_utf8_lossy(&raw).into_owned();
        let Some(components) = split_path(&raw).map_err(|why| forbidden(&display, why))? else {
            // The root itself ("./"): its metadata is the layer directory's.
            continue;
        };
        let (name, parent_path) = components.split_last().expect("non-empty");
        let kind = entry.header().entry_type();
        if kind.is_gnu_longname() || kind.is_gnu_longlink() || kind.is_pax_global_extensions() {
            continue;
        }
        let parent = parents.open(&root, parent_path, &display)?;
        let parent = parent.as_fd();
        let name: &[u8] = name;
        if kind != tar::EntryType::Directory {
            // Whatever this replaces is no directory afterwards.
            parents.forget(&components);
        }
        if name == b".wh..wh..opq" {
            set_opaque(parent).map_err(|e| write_err(&display, e))?;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(b".wh.") {
            if hidden.starts_with(b".wh.") || hidden.is_empty() {
                // aufs metadata (.wh..wh.plnk and the like): not part of the image.
                continue;
            }
            check_leaf(hidden).map_err(|why| forbidden(&display, why))?;
            remove_all(parent, hidden).map_err(|e| write_err(&display, e))?;
            parents.forget(&[parent_path, &[hidden]].concat());
            mknodat(parent, hidden, SFlag::S_IFCHR, Mode::empty(), 0)
                .map_err(|e| write_err(&display, e))?;
            continue;
        }
        let header = entry.header();
        let mode = Mode::from_bits_truncate(header.mode().map_err(UnpackError::Tar)? & 0o7777);
        let uid = header.uid().map_err(UnpackError::Tar)? as u32;
        let gid = header.gid().map_err(UnpackError::Tar)? as u32;
        let mtime = header.mtime().unwrap_or(0);
        let owner = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
        use tar::EntryType as T;
        match kind {
            T::Directory => {
                match mkdirat(parent, name, Mode::from_bits_truncate(0o700)) {
                    Ok(()) => {}
                    Err(Errno::EEXIST) if is_dir(parent, name) => {}
                    Err(Errno::EEXIST) => {
                        remove_all(parent, name).map_err(|e| write_err(&display, e))?;
                        mkdirat(parent, name, Mode::from_bits_truncate(0o700))
                            .map_err(|e| write_err(&display, e))?;
                    }
                    Err(e) => return Err(write_err(&display, e)),
                }
                let dir = open_leaf(parent, name, OFlag::O_DIRECTORY)
                    .map_err(|e| write_err(&display, e))?;
                set_owner_mode(dir.as_fd(), owner, mode).map_err(|e| write_err(&display, e))?;
                parents.forget(&components);
            }
            T::Regular | T::Continuous | T::GNUSparse => {
                let size = entry.size();
                done.size_bytes = done.size_bytes.saturating_add(size);
                if done.size_bytes > limits.max_bytes {
                    return Err(too_large(limits));
                }
                replace(parent, name).map_err(|e| write_err(&display, e))?;
                let fd = openat(
                    parent,
                    name,
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| write_err(&display, e))?;
                let mut file = File::from(fd);
                io::copy(&mut entry, &mut file).map_err(bomb_or_tar)?;
                set_owner_mode(file.as_fd(), owner, mode).map_err(|e| write_err(&display, e))?;
                set_mtime(file.as_fd(), mtime);
            }
            T::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| forbidden(&display, "a symlink without a target"))?;
                replace(parent, name).map_err(|e| write_err(&display, e))?;
                symlinkat(
                    std::ffi::OsStr::from_bytes(&target),
                    parent,
                    std::ffi::OsStr::from_bytes(name),
                )
                .map_err(|e| write_err(&display, e))?;
                fchownat(parent, name, owner.0, owner.1, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(|e| write_err(&display, e))?;
            }
            T::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| forbidden(&display, "a hard link without a target"))?;
                let target = split_path(&target)
                    .map_err(|why| forbidden(&display, why))?
                    .ok_or_else(|| forbidden(&display, "a hard link to the layer's root"))?;
                // Resolved inside the layer, never through a symlink at its end.
                let source = openat2(
                    &root,
                    &join(&target),
                    OpenHow::new()
                        .flags(OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
                        .resolve(in_root()),
                )
                .map_err(|_| forbidden(&display, "a hard link to a path not in this layer"))?;
                replace(parent, name).map_err(|e| write_err(&display, e))?;
                linkat(&source, c"", parent, name, AtFlags::AT_EMPTY_PATH).map_err(|e| {
                    if e == Errno::EPERM {
                        forbidden(&display, "a hard link to a directory")
                    } else {
                        write_err(&display, e)
                    }
                })?;
            }
            T::Fifo => {
                replace(parent, name).map_err(|e| write_err(&display, e))?;
                mknodat(parent, name, SFlag::S_IFIFO, mode, 0)
                    .map_err(|e| write_err(&display, e))?;
                fchownat(parent, name, owner.0, owner.1, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(|e| write_err(&display, e))?;
            }
            T::Char | T::Block => done.skipped_devices += 1,
            // PAX headers are consumed by the reader; anything else carries no file.
            _ => {}
        }
    }
    // The tar's end blocks and anything after them count toward the limit too.
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(bomb_or_tar)?;
    Ok(done)
}

fn in_root() -> ResolveFlag {
    ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS | ResolveFlag::RESOLVE_NO_XDEV
}

/// The path's components, relative to the layer; `None` for the root itself. `..` anywhere
/// is refused: no legitimate layer has it.
fn split_path(raw: &[u8]) -> Result<Option<Vec<&[u8]>>, &'static str> {
    let mut out = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("its path goes up with '..'"),
            c => {
                check_leaf(c)?;
                out.push(c);
            }
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

fn check_leaf(name: &[u8]) -> Result<(), &'static str> {
    if name.contains(&0) {
        return Err("its path holds NUL");
    }
    if name.len() > 255 {
        return Err("a path component is longer than 255 bytes");
    }
    if name == b"." || name == b".." {
        return Err("its path goes up with '..'");
    }
    Ok(())
}

fn join(components: &[&[u8]]) -> std::path::PathBuf {
    std::ffi::OsStr::from_bytes(&components.join(&b'/')).into()
}

/// Parent directories by path: entries come grouped by directory, so the last few are kept
/// open.
#[derive(Default)]
struct ParentCache {
    entries: Vec<(Vec<u8>, OwnedFd)>,
}

impl ParentCache {
    const SIZE: usize = 8;

    /// The directory `path` (a duplicate descriptor, so the cache may change meanwhile).
    fn open(
        &mut self,
        root: &OwnedFd,
        path: &[&[u8]],
        display: &str,
    ) -> Result<OwnedFd, UnpackError> {
        let dup = |fd: &OwnedFd| {
            fd.try_clone().map_err(|e| {
                write_err(
                    display,
                    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EMFILE)),
                )
            })
        };
        if path.is_empty() {
            return dup(root);
        }
        let key = path.join(&b'/');
        if let Some((_, fd)) = self.entries.iter().find(|(k, _)| *k == key) {
            return dup(fd);
        }
        let fd = open_dir_creating(root, path).map_err(|e| write_err(display, e))?;
        if self.entries.len() == Self::SIZE {
            self.entries.remove(0);
        }
        let copy = dup(&fd)?;
        self.entries.push((key, fd));
        Ok(copy)
    }

    /// Drops cached directories at or below `path` (it was just replaced).
    fn forget(&mut self, path: &[&[u8]]) {
        let key = path.join(&b'/');
        self.entries.retain(|(k, _)| {
            !(k.starts_with(&key) && (k.len() == key.len() || k[key.len()] == b'/'))
        });
    }
}

/// Opens directory `path` of the layer, creating what is missing (mode 0755, root's, as
/// Docker does for parents a layer does not list). A symlink on the way whose target does
/// not exist yet has its target made, inside the layer (it resolves there).
fn open_dir_creating(root: &OwnedFd, path: &[&[u8]]) -> Result<OwnedFd, Errno> {
    let owned: Vec<Vec<u8>> = path.iter().map(|c| c.to_vec()).collect();
    open_dir_creating_from(root, owned, 0)
}

/// Symlinks followed while making parents, at most (the kernel's own limit).
const MAX_HOPS: u32 = 40;

fn open_dir_creating_from(root: &OwnedFd, path: Vec<Vec<u8>>, hops: u32) -> Result<OwnedFd, Errno> {
    if hops > MAX_HOPS {
        return Err(Errno::ELOOP);
    }
    let how = || {
        OpenHow::new()
            .flags(OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC)
            .resolve(in_root())
    };
    let parts: Vec<&[u8]> = path.iter().map(Vec::as_slice).collect();
    match openat2(root, &join(&parts), how()) {
        Err(Errno::ENOENT) => {}
        other => return other,
    }
    let mut dir: Option<OwnedFd> = None;
    for i in 0..parts.len() {
        let next = match openat2(root, &join(&parts[..=i]), how()) {
            Err(Errno::ENOENT) => {
                let parent = dir.as_ref().map_or(root.as_fd(), |d| d.as_fd());
                match mkdirat(parent, parts[i], Mode::from_bits_truncate(0o755)) {
                    Ok(()) => openat2(root, &join(&parts[..=i]), how())?,
                    Err(Errno::EEXIST) => {
                        // A dangling symlink: go on from its target, taken inside the layer.
                        let target = nix::fcntl::readlinkat(parent, parts[i])?;
                        let mut resolved: Vec<Vec<u8>> = if target.as_bytes().starts_with(b"/") {
                            Vec::new()
                        } else {
                            path[..i].to_vec()
                        };
                        for c in target.as_bytes().split(|&b| b == b'/') {
                            match c {
                                b"" | b"." => {}
                                b".." => {
                                    resolved.pop();
                                }
                                c => resolved.push(c.to_vec()),
                            }
                        }
                        resolved.extend(path[i + 1..].iter().cloned());
                        return open_dir_creating_from(root, resolved, hops + 1);
                    }
                    Err(e) => return Err(e),
                }
            }
            other => other?,
        };
        dir = Some(next);
    }
    dir.ok_or(Errno::ENOENT)
}

fn open_leaf(parent: BorrowedFd<'_>, name: &[u8], extra: OFlag) -> Result<OwnedFd, Errno> {
    openat(
        parent,
        name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | extra,
        Mode::empty(),
    )
}

fn is_dir(parent: BorrowedFd<'_>, name: &[u8]) -> bool {
    open_leaf(parent, name, OFlag::O_DIRECTORY).is_ok()
}

/// Makes room for a new entry `name`: a later entry of one layer replaces an earlier one.
fn replace(parent: BorrowedFd<'_>, name: &[u8]) -> Result<(), Errno> {
    match unlinkat(parent, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::EISDIR) => remove_all(parent, name),
        Err(e) => Err(e),
    }
}

/// Removes `name` in `parent` and everything below it, never following a symlink.
fn remove_all(parent: BorrowedFd<'_>, name: &[u8]) -> Result<(), Errno> {
    match unlinkat(parent, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => return Ok(()),
        Err(Errno::EISDIR) => {}
        Err(e) => return Err(e),
    }
    let dir = open_leaf(parent, name, OFlag::O_DIRECTORY)?;
    let mut listing = nix::dir::Dir::from_fd(dir.try_clone().map_err(|_| Errno::EBADF)?)?;
    let names: Vec<Vec<u8>> = listing
        .iter()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_bytes().to_vec())
        .filter(|n| n.as_slice() != b"." && n.as_slice() != b"..")
        .collect();
    for child in names {
        remove_all(dir.as_fd(), &child)?;
    }
    unlinkat(parent, name, UnlinkatFlags::RemoveDir)
}

fn set_owner_mode(
    fd: BorrowedFd<'_>,
    (uid, gid): (Option<Uid>, Option<Gid>),
    mode: Mode,
) -> Result<(), Errno> {
    // Owner first: chown clears the setuid and setgid bits.
    nix::unistd::fchown(fd, uid, gid)?;
    nix::sys::stat::fchmod(fd, mode)
}

fn set_mtime(fd: BorrowedFd<'_>, mtime: u64) {
    let t = nix::sys::time::TimeSpec::new(mtime.min(i64::MAX as u64) as i64, 0);
    // The time is cosmetic: a failure leaves the unpack time.
    let _ = nix::sys::stat::futimens(fd, &t, &t);
}

fn set_opaque(dir: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: the name and value are NUL-terminated / sized buffers living across the call.
    let r = unsafe {
        libc::fsetxattr(
            dir.as_raw_fd(),
            c"user.overlay.opaque".as_ptr(),
            b"y".as_ptr().cast(),
            1,
            0,
        )
    };
    Errno::result(r).map(drop)
}

fn forbidden(path: &str, why: &'static str) -> UnpackError {
    UnpackError::Forbidden {
        path: path.to_string(),
        why,
    }
}

fn too_large(limits: &Limits) -> UnpackError {
    UnpackError::TooLarge(format!("{} bytes per layer", limits.max_bytes))
}

fn write_err(path: &str, e: Errno) -> UnpackError {
    UnpackError::Write {
        path: path.to_string(),
        source: e.into(),
    }
}

/// A read error of the stream: over the limit, or a broken archive.
fn bomb_or_tar(e: io::Error) -> UnpackError {
    if e.kind() == io::ErrorKind::FileTooLarge {
        UnpackError::TooLarge("the uncompressed layer size".into())
    } else {
        UnpackError::Tar(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    /// A tar of raw entries: (name, kind, content or link target).
    fn layer(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let mut h = header(*kind, if kind.is_file() { data.len() as u64 } else { 0 });
            // Raw names: the builder's own path checks would refuse the hostile ones.
            let raw = &mut h.as_old_mut().name;
            raw.fill(0);
            raw[..name.len()].copy_from_slice(name.as_bytes());
            if matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link) {
                h.set_link_name(data).unwrap();
            }
            h.set_cksum();
            let body: &[u8] = if kind.is_file() { data.as_bytes() } else { &[] };
            b.append(&h, body).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn limits() -> Limits {
        Limits {
            max_bytes: 1 << 20,
            max_files: 100,
        }
    }

    fn scratch() -> (std::path::PathBuf, std::path::PathBuf) {
        let base = std::env::temp_dir().join(format!(
            "ai2in-unpack-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let dest = base.join("layer");
        std::fs::create_dir_all(&dest).unwrap();
        (base, dest)
    }

    use tar::EntryType as T;

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        let (base, dest) = scratch();
        let tar = layer(&[
            ("dir/", T::Directory, ""),
            ("dir/.wh..wh..opq", T::Regular, ""),
            ("dir/.wh.gone", T::Regular, ""),
            ("dir/kept", T::Regular, "k"),
        ]);
        unpack(&tar[..], &dest, &limits()).unwrap();
        use std::os::unix::fs::FileTypeExt;
        let gone = std::fs::symlink_metadata(dest.join("dir/gone")).unwrap();
        assert!(gone.file_type().is_char_device());
        assert!(!dest.join("dir/.wh.gone").exists());
        assert_eq!(std::fs::read(dest.join("dir/kept")).unwrap(), b"k");
        let mut v = [0u8; 4];
        let c = std::ffi::CString::new(dest.join("dir").as_os_str().as_bytes()).unwrap();
        // SAFETY: valid C strings and buffer.
        let n = unsafe {
            libc::getxattr(
                c.as_ptr(),
                c"user.overlay.opaque".as_ptr(),
                v.as_mut_ptr().cast(),
                4,
            )
        };
        assert_eq!((n, &v[..1]), (1, &b"y"[..]));
        std::fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn entries_never_leave_the_layer() {
        let (base, dest) = scratch();
        // Through a symlink to / and by an absolute path: both land inside.
        let tar = layer(&[
            ("evil", T::Symlink, "/"),
            ("evil/escaped", T::Regular, "x"),
            ("/abs", T::Regular, "y"),
            ("up", T::Symlink, "../../.."),
            ("up/escaped2", T::Regular, "z"),
        ]);
        unpack(&tar[..], &dest, &limits()).unwrap();
        assert_eq!(std::fs::read(dest.join("escaped")).unwrap(), b"x");
        assert_eq!(std::fs::read(dest.join("abs")).unwrap(), b"y");
        assert_eq!(std::fs::read(dest.join("escaped2")).unwrap(), b"z");
        assert!(!base.join("escaped2").exists() && !base.join("escaped").exists());
        for bad in [
            layer(&[("../out", T::Regular, "x")]),
            layer(&[("a/../../out", T::Regular, "x")]),
            layer(&[("link", T::Link, "../../etc/passwd")]),
        ] {
            let (b2, d2) = scratch();
            let e = unpack(&bad[..], &d2, &limits()).unwrap_err();
            assert!(matches!(e, UnpackError::Forbidden { .. }), "{e}");
            assert!(!b2.join("out").exists());
            std::fs::remove_dir_all(b2).unwrap();
        }
        std::fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn hard_links_stay_inside_and_devices_are_skipped() {
        let (base, dest) = scratch();
        let tar = layer(&[
            ("a", T::Regular, "same"),
            ("b", T::Link, "a"),
            ("dev", T::Char, ""),
            ("via", T::Symlink, "/etc/passwd"),
            ("c", T::Link, "via"),
        ]);
        let done = unpack(&tar[..], &dest, &limits()).unwrap();
        use std::os::unix::fs::MetadataExt;
        let (a, b) = (
            std::fs::metadata(dest.join("a")).unwrap(),
            std::fs::metadata(dest.join("b")).unwrap(),
        );
        assert_eq!(a.ino(), b.ino());
        assert!(!dest.join("dev").exists());
        assert_eq!(done.skipped_devices, 1);
        // A hard link to a symlink links the symlink, never what it points at.
        assert!(
            std::fs::symlink_metadata(dest.join("c"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        std::fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn entries_through_a_dangling_symlink_land_at_its_target_inside() {
        let (base, dest) = scratch();
        let outside = base.join("outside");
        let tar = layer(&[
            ("hostdir", T::Symlink, outside.to_str().unwrap()),
            ("hostdir/sub/victim", T::Regular, "v"),
            ("rel", T::Symlink, "../../../made"),
            ("rel/x", T::Regular, "x"),
        ]);
        unpack(&tar[..], &dest, &limits()).unwrap();
        assert!(!outside.exists(), "wrote outside the layer");
        let inside = dest
            .join(outside.strip_prefix("/").unwrap())
            .join("sub/victim");
        assert_eq!(std::fs::read(inside).unwrap(), b"v");
        assert_eq!(std::fs::read(dest.join("made/x")).unwrap(), b"x");
        std::fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn limits_stop_bombs() {
        let (base, dest) = scratch();
        let big = "x".repeat(2 << 20);
        let tar = layer(&[("big", T::Regular, &big)]);
        assert!(matches!(
            unpack(&tar[..], &dest, &limits()).unwrap_err(),
            UnpackError::TooLarge(_)
        ));
        let names: Vec<String> = (0..200).map(|i| format!("f{i}")).collect();
        let many: Vec<(&str, T, &str)> =
            names.iter().map(|n| (n.as_str(), T::Regular, "")).collect();
        let (b2, d2) = scratch();
        assert!(matches!(
            unpack(&layer(&many)[..], &d2, &limits()).unwrap_err(),
            UnpackError::TooLarge(_)
        ));
        // Zeros after the end of the archive count too.
        let (b3, d3) = scratch();
        let mut trailing = layer(&[("small", T::Regular, "x")]);
        trailing.extend(std::iter::repeat_n(0u8, 32 << 20));
        assert!(matches!(
            unpack(&trailing[..], &d3, &limits()).unwrap_err(),
            UnpackError::TooLarge(_)
        ));
        std::fs::remove_dir_all(base).unwrap();
        std::fs::remove_dir_all(b2).unwrap();
        std::fs::remove_dir_all(b3).unwrap();
    }
}

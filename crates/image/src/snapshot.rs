//! Snapshots: the writable layer of a running sandbox (the upper directory of its overlay)
//! becomes a layer of the content store, in the same overlay form as an unpacked image
//! layer, so that sandboxes can be created from it.
//!
//! The upper directory is written by the sandbox: it is hostile input. The walk never follows
//! a symlink and never opens a path of the host: every source entry is reached by a single
//! component `*at` call (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`) from the descriptor of its
//! directory, and a directory opened is checked to be the one just looked at. The walk is a
//! loop with its own stack, holding two directory descriptors at a time (the source and the
//! copy) and going back up through `..` (checked against the recorded device and inode), so
//! a 10,000-deep tree needs neither deep recursion nor thousands of descriptors.
//!
//! What is copied: directories, regular files (sparse where their data is zeros), symlinks
//! (their target as it is), fifos and whiteouts (0/0 character devices), with their mode
//! (setuid, setgid and sticky bits too), owner (sandbox-relative, as on disk), and times;
//! hard links within the layer stay hard links; the `user.*` extended attributes, with
//! `user.overlay.opaque` the only one kept of overlayfs's own `user.overlay.*` (the others
//! describe the sandbox's own layer stack). `trusted.*` and `security.*` attributes, other
//! device nodes and sockets are left out.
//!
//! The layer's id is `sha256:` of a description of the tree, computed while it is copied:
//! for each entry in walk order (depth first, names sorted by their bytes), its depth and
//! name, type, mode, owner, modification time, size, kept extended attributes, symlink
//! target or file data, and for a further hard link the ordinal of its first. Identical trees
//! give identical ids (the store keeps one copy); the id is no tar digest and names no
//! registry blob.

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2, readlinkat};
use nix::sys::stat::{
    FchmodatFlags, FileStat, Mode, SFlag, UtimensatFlags, fchmod, fchmodat, fstat, fstatat,
    futimens, mkdirat, mknodat, utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, fchown, fchownat, linkat, symlinkat};
use sha2::{Digest, Sha256};

use crate::error::ImageError;
use crate::layer::digest_of;
use crate::store::{ContentStore, LayerInfo};
use crate::unpack::Limits;

/// Copies the sandbox's writable layer, the overlay upper directory open as `upper` (with
/// `O_PATH` or `O_RDONLY | O_DIRECTORY`), into a new layer of `store` and publishes it (when
/// the same layer is already there, that one is kept).
///
/// The sandbox must be frozen meanwhile: a tree that changes under the walk may fail with
/// [`ImageError::Io`]. Over `limits` (bytes of file data, entries) it fails with
/// [`ImageError::TooLarge`]; on any failure nothing is left in the store. This blocks on
/// disk I/O for as long as the copy takes: call it off the async runtime.
pub fn layer_from_upper(
    store: &ContentStore,
    upper: BorrowedFd<'_>,
    limits: &Limits,
) -> Result<LayerInfo, ImageError> {
    let staging = store.staging()?;
    let dst_root = openat(
        AT_FDCWD,
        &staging.fs(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)?;
    let src_root = open_dir(upper, b".").map_err(|e| fail(b"", b"", e))?;
    let mut walk = Walk {
        limits,
        hasher: Sha256::new(),
        entries: 0,
        bytes: 0,
        ordinal: 0,
        skipped: 0,
        dirs: vec![(0, Vec::new())],
        links: HashMap::new(),
        dst_root,
        path: Vec::new(),
        buf: vec![0; COPY_CHUNK],
    };
    walk.run(src_root)?;
    let layer = LayerInfo {
        diff_id: digest_of(walk.hasher),
        size_bytes: walk.bytes,
    };
    if walk.skipped > 0 {
        tracing::info!(
            layer = %layer.diff_id,
            entries = walk.skipped,
            "device nodes and sockets left out of the snapshot"
        );
    }
    store.publish_layer(staging, &layer)?;
    Ok(layer)
}

/// Bytes read (and hashed) at a time.
const COPY_CHUNK: usize = 256 << 10;
/// Zeros this long and aligned are left as a hole in the copy.
const HOLE_BLOCK: usize = 4096;
/// Longest path given to one `openat2` when reopening a copied directory (under `PATH_MAX`).
const PATH_CHUNK: usize = 3800;
/// Prefix of the description the id hashes, naming its format.
const FORMAT: &[u8] = b"ai2in snapshot layer v1\0";

/// The copy in progress.
struct Walk<'a> {
    limits: &'a Limits,
    hasher: Sha256,
    /// Entries seen (each counts toward `max_files`, copied or left out).
    entries: u64,
    /// Bytes of file data copied.
    bytes: u64,
    /// Entries described so far: a further hard link names its first by this number.
    ordinal: u64,
    /// Device nodes and sockets left out.
    skipped: u64,
    /// Directories of the copy a first link is in (and their parents), as (index of the
    /// parent, name); the root is 0. Only these: a tree of a million directories would
    /// otherwise be held in memory.
    dirs: Vec<(usize, Vec<u8>)>,
    /// First copies of inodes with several links, by the source's (device, inode).
    links: HashMap<(u64, u64), FirstLink>,
    /// The layer's top directory.
    dst_root: OwnedFd,
    /// Path of the directory being copied ("/a/b"), for messages.
    path: Vec<u8>,
    buf: Vec<u8>,
}

/// Where the first copy of a multiply-linked inode is.
struct FirstLink {
    ordinal: u64,
    dir: usize,
    name: Vec<u8>,
}

/// One directory on the way down.
struct Level {
    /// Names still to copy, last first: popped in ascending byte order.
    names: Vec<Vec<u8>>,
    /// The source directory's status: its metadata is set on the copy after its contents.
    stat: FileStat,
    /// (device, inode) of the copy, to check `..` on the way back up.
    copy: (u64, u64),
    /// Its name in its parent; taken when it gets a number.
    name: Vec<u8>,
    /// Its index in `Walk::dirs`, once a first link is in it or below it.
    id: Option<usize>,
    /// Length of `Walk::path` for this directory.
    path_len: usize,
}

/// A directory to descend into: the source, its copy, and the source's status.
type Descend = (Dir, OwnedFd, FileStat);

impl Walk<'_> {
    fn run(&mut self, mut src: Dir) -> Result<(), ImageError> {
        self.hasher.update(FORMAT);
        let stat = fstat(src.as_fd()).map_err(|e| fail(b"", b"", e))?;
        let mut dst = self.dst_root.try_clone().map_err(|e| fail(b"", b"", e))?;
        self.describe(0, b"", b'd', &stat, 0);
        self.ordinal += 1;
        self.xattrs(src.as_fd(), dst.as_fd(), true)
            .map_err(|e| fail(b"", b"", e))?;
        let names = self.list(&mut src)?;
        let copy = identity(dst.as_fd()).map_err(|e| fail(b"", b"", e))?;
        let mut stack = vec![Level {
            names,
            stat,
            copy,
            name: Vec::new(),
            id: Some(0),
            path_len: 0,
        }];
        while let Some(level) = stack.last_mut() {
            if let Some(name) = level.names.pop() {
                let Some((child, child_dst, stat)) =
                    self.entry(src.as_fd(), dst.as_fd(), &mut stack, &name)?
                else {
                    continue;
                };
                let copy = identity(child_dst.as_fd()).map_err(|e| self.fail(&name, e))?;
                self.path.push(b'/');
                self.path.extend_from_slice(&name);
                src = child;
                dst = child_dst;
                let names = self.list(&mut src)?;
                stack.push(Level {
                    names,
                    stat,
                    copy,
                    name,
                    id: None,
                    path_len: self.path.len(),
                });
            } else {
                let done = stack.pop();
                // Times last: copying the contents changed the copy's.
                if let Some(done) = &done {
                    set_meta(dst.as_fd(), &done.stat).map_err(|e| self.fail(b"", e))?;
                }
                let Some(parent) = stack.last() else {
                    break;
                };
                let up = open_dir(src.as_fd(), b"..").map_err(|e| self.fail(b"..", e))?;
                let dst_up = open_copy_dir(dst.as_fd(), b"..").map_err(|e| self.fail(b"..", e))?;
                if identity(up.as_fd()).map_err(|e| self.fail(b"..", e))?
                    != (parent.stat.st_dev, parent.stat.st_ino)
                    || identity(dst_up.as_fd()).map_err(|e| self.fail(b"..", e))? != parent.copy
                {
                    return Err(self.fail(b"..", changed()));
                }
                src = up;
                dst = dst_up;
                self.path.truncate(parent.path_len);
            }
        }
        Ok(())
    }

    /// The names in `dir`, sorted, last first; each counts toward the entry limit as it is
    /// read, so a huge directory stops the walk before it fills memory.
    fn list(&mut self, dir: &mut Dir) -> Result<Vec<Vec<u8>>, ImageError> {
        let mut names = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(|e| fail(&self.path, b"", e))?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            self.entries += 1;
            if self.entries > self.limits.max_files {
                return Err(ImageError::TooLarge(format!(
                    "the sandbox's files are over the node's limit of {} entries per layer",
                    self.limits.max_files
                )));
            }
            names.push(name.to_vec());
        }
        names.sort_unstable_by(|a, b| b.cmp(a));
        Ok(names)
    }

    /// Copies entry `name` of `src` into `dst`, the directories at the top of `stack`; a
    /// directory is made, and returned to descend into.
    fn entry(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        stack: &mut [Level],
        name: &[u8],
    ) -> Result<Option<Descend>, ImageError> {
        let depth = stack.len() as u64;
        let st =
            fstatat(src, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| self.fail(name, e))?;
        let ordinal = self.ordinal;
        self.ordinal += 1;
        let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        let whiteout = kind == SFlag::S_IFCHR && st.st_rdev == 0;
        let linkable = st.st_nlink > 1
            && (kind == SFlag::S_IFREG || kind == SFlag::S_IFLNK || kind == SFlag::S_IFIFO);
        let key = (st.st_dev, st.st_ino);
        // A further link of an inode copied already: link to that copy. (Whiteouts are all
        // alike; overlayfs itself links them to one inode: each gets its own.)
        let mut described = false;
        let mut first_ordinal = ordinal;
        let first = if linkable {
            self.links
                .get(&key)
                .map(|f| (f.ordinal, f.dir, f.name.clone()))
        } else {
            None
        };
        if let Some((ordinal, first_dir, first_name)) = first {
            self.describe_link(depth, name, ordinal);
            first_ordinal = ordinal;
            described = true;
            let here = stack.last().and_then(|l| l.id);
            match self.link(first_dir, &first_name, here, dst, name) {
                Ok(()) => return Ok(None),
                // Too many links for the store's file system: a copy of its own, which
                // later links join.
                Err(Errno::EMLINK) => {}
                Err(e) => return Err(self.fail(name, e)),
            }
        }
        let hash = !described;
        match kind {
            SFlag::S_IFDIR => {
                self.describe(depth, name, b'd', &st, 0);
                mkdirat(dst, name, Mode::from_bits_truncate(0o700))
                    .map_err(|e| self.fail(name, e))?;
                let child = open_dir(src, name).map_err(|e| self.fail(name, e))?;
                if identity(child.as_fd()).map_err(|e| self.fail(name, e))? != key {
                    return Err(self.fail(name, changed()));
                }
                let child_dst = open_copy_dir(dst, name).map_err(|e| self.fail(name, e))?;
                self.xattrs(child.as_fd(), child_dst.as_fd(), true)
                    .map_err(|e| self.fail(name, e))?;
                return Ok(Some((child, child_dst, st)));
            }
            SFlag::S_IFREG => {
                let size = st.st_size.max(0) as u64;
                self.bytes = self.bytes.saturating_add(size);
                if self.bytes > self.limits.max_bytes {
                    return Err(ImageError::TooLarge(format!(
                        "the sandbox's files are over the node's limit of {} bytes per layer",
                        self.limits.max_bytes
                    )));
                }
                if hash {
                    self.describe(depth, name, b'f', &st, size);
                }
                self.copy_file(src, dst, name, &st, hash)?;
            }
            SFlag::S_IFLNK => {
                let target = readlinkat(src, name).map_err(|e| self.fail(name, e))?;
                let target = target.as_bytes();
                if hash {
                    self.describe(depth, name, b'l', &st, 0);
                    self.hasher.update((target.len() as u64).to_le_bytes());
                    self.hasher.update(target);
                }
                symlinkat(OsStr::from_bytes(target), dst, name).map_err(|e| self.fail(name, e))?;
                set_meta_at(dst, name, &st, false).map_err(|e| self.fail(name, e))?;
            }
            SFlag::S_IFIFO => {
                if hash {
                    self.describe(depth, name, b'p', &st, 0);
                }
                mknodat(
                    dst,
                    name,
                    SFlag::S_IFIFO,
                    Mode::from_bits_truncate(0o600),
                    0,
                )
                .map_err(|e| self.fail(name, e))?;
                set_meta_at(dst, name, &st, true).map_err(|e| self.fail(name, e))?;
            }
            _ if whiteout => {
                self.describe(depth, name, b'w', &st, 0);
                mknodat(dst, name, SFlag::S_IFCHR, Mode::empty(), 0)
                    .map_err(|e| self.fail(name, e))?;
                set_meta_at(dst, name, &st, true).map_err(|e| self.fail(name, e))?;
            }
            // Device nodes (a sandbox gets its own /dev) and sockets.
            _ => {
                self.skipped += 1;
                return Ok(None);
            }
        }
        if linkable {
            let dir = self.number(stack);
            self.links.insert(
                key,
                FirstLink {
                    ordinal: first_ordinal,
                    dir,
                    name: name.to_vec(),
                },
            );
        }
        Ok(None)
    }

    /// Copies regular file `name`: data (zeros left as holes), kept extended attributes,
    /// owner, mode, times. `hash`: add its attributes and data to the description.
    fn copy_file(
        &mut self,
        src_dir: BorrowedFd<'_>,
        dst_dir: BorrowedFd<'_>,
        name: &[u8],
        st: &FileStat,
        hash: bool,
    ) -> Result<(), ImageError> {
        // O_NONBLOCK: were it swapped for a fifo, the open must not hang (checked below).
        let src = open_src(
            src_dir,
            name,
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
        )
        .map_err(|e| self.fail(name, e))?;
        let opened = fstat(src.as_fd()).map_err(|e| self.fail(name, e))?;
        if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino) || opened.st_size != st.st_size
        {
            return Err(self.fail(name, changed()));
        }
        let dst = openat(
            dst_dir,
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| self.fail(name, e))?;
        self.xattrs(src.as_fd(), dst.as_fd(), hash)
            .map_err(|e| self.fail(name, e))?;
        let size = st.st_size.max(0) as u64;
        let mut src = File::from(src);
        let dst = File::from(dst);
        let mut offset = 0u64;
        while offset < size {
            let want = (size - offset).min(self.buf.len() as u64) as usize;
            let n = match src.read(&mut self.buf[..want]) {
                Ok(0) => return Err(self.fail(name, changed())),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.fail(name, e)),
            };
            let data = &self.buf[..n];
            if hash {
                self.hasher.update(data);
            }
            write_sparse(&dst, data, offset).map_err(|e| fail(&self.path, name, e))?;
            offset += n as u64;
        }
        // The length, with any hole at the end.
        dst.set_len(size).map_err(|e| self.fail(name, e))?;
        set_meta(dst.as_fd(), st).map_err(|e| self.fail(name, e))
    }

    /// The number in `dirs` of the directory at the top of `stack`, numbering it and those
    /// above it as needed.
    fn number(&mut self, stack: &mut [Level]) -> usize {
        let mut parent = 0;
        for level in stack.iter_mut() {
            parent = match level.id {
                Some(id) => id,
                None => {
                    self.dirs.push((parent, std::mem::take(&mut level.name)));
                    let id = self.dirs.len() - 1;
                    level.id = Some(id);
                    id
                }
            };
        }
        parent
    }

    /// Links `name` in `dst` (numbered `dir` in `dirs`, if it is) to the first copy
    /// `first_name` in directory `first_dir`.
    fn link(
        &self,
        first_dir: usize,
        first_name: &[u8],
        dir: Option<usize>,
        dst: BorrowedFd<'_>,
        name: &[u8],
    ) -> Result<(), Errno> {
        if Some(first_dir) == dir {
            return linkat(dst, first_name, dst, name, AtFlags::empty());
        }
        let parent = self.reopen(first_dir)?;
        linkat(&parent, first_name, dst, name, AtFlags::empty())
    }

    /// Opens directory `dir` of the copy from the layer's top, a few thousand bytes of path
    /// at a time (a deep one is longer than `PATH_MAX`), through no symlink.
    fn reopen(&self, mut dir: usize) -> Result<OwnedFd, Errno> {
        let mut components = Vec::new();
        while dir != 0 {
            let (parent, name) = self.dirs.get(dir).ok_or(Errno::ENOENT)?;
            components.push(name.as_slice());
            dir = *parent;
        }
        components.reverse();
        let how = || {
            OpenHow::new()
                .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
                .resolve(
                    ResolveFlag::RESOLVE_BENEATH
                        | ResolveFlag::RESOLVE_NO_SYMLINKS
                        | ResolveFlag::RESOLVE_NO_MAGICLINKS
                        | ResolveFlag::RESOLVE_NO_XDEV,
                )
        };
        let mut fd: Option<OwnedFd> = None;
        let mut chunk: Vec<u8> = Vec::new();
        for (i, c) in components.iter().enumerate() {
            if !chunk.is_empty() {
                chunk.push(b'/');
            }
            chunk.extend_from_slice(c);
            let last = i + 1 == components.len();
            if last || chunk.len() + 1 + components[i + 1].len() > PATH_CHUNK {
                let at = fd.as_ref().map_or(self.dst_root.as_fd(), |f| f.as_fd());
                fd = Some(openat2(at, OsStr::from_bytes(&chunk), how())?);
                chunk.clear();
            }
        }
        match fd {
            Some(fd) => Ok(fd),
            None => self.dst_root.try_clone().map_err(|_| Errno::EMFILE),
        }
    }

    /// Copies the kept extended attributes of `src` to `dst`; `hash`: adds them to the
    /// description.
    fn xattrs(&mut self, src: BorrowedFd<'_>, dst: BorrowedFd<'_>, hash: bool) -> io::Result<()> {
        let attrs = kept_xattrs(src)?;
        if hash {
            self.hasher.update((attrs.len() as u64).to_le_bytes());
        }
        for (name, value) in &attrs {
            if hash {
                let name = name.as_bytes();
                self.hasher.update((name.len() as u64).to_le_bytes());
                self.hasher.update(name);
                self.hasher.update((value.len() as u64).to_le_bytes());
                self.hasher.update(value);
            }
            // SAFETY: `name` is NUL-terminated and `value` is a live buffer of the length
            // passed; the kernel only reads them during the call.
            let r = unsafe {
                libc::fsetxattr(
                    dst.as_raw_fd(),
                    name.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                )
            };
            Errno::result(r)?;
        }
        Ok(())
    }

    /// Adds an entry to the description.
    fn describe(&mut self, depth: u64, name: &[u8], kind: u8, st: &FileStat, size: u64) {
        let h = &mut self.hasher;
        h.update(depth.to_le_bytes());
        h.update((name.len() as u64).to_le_bytes());
        h.update(name);
        h.update([kind]);
        h.update((st.st_mode & 0o7777).to_le_bytes());
        h.update(st.st_uid.to_le_bytes());
        h.update(st.st_gid.to_le_bytes());
        h.update(st.st_mtime.to_le_bytes());
        h.update(st.st_mtime_nsec.to_le_bytes());
        h.update(size.to_le_bytes());
    }

    /// Adds a further hard link to the description.
    fn describe_link(&mut self, depth: u64, name: &[u8], first: u64) {
        let h = &mut self.hasher;
        h.update(depth.to_le_bytes());
        h.update((name.len() as u64).to_le_bytes());
        h.update(name);
        h.update([b'h']);
        h.update(first.to_le_bytes());
    }

    fn fail(&self, name: &[u8], e: impl Into<io::Error>) -> ImageError {
        fail(&self.path, name, e)
    }
}

/// An I/O failure at `name` in directory `dir` of the layer.
fn fail(dir: &[u8], name: &[u8], e: impl Into<io::Error>) -> ImageError {
    let e = e.into();
    let mut path = dir.to_vec();
    if !name.is_empty() {
        path.push(b'/');
        path.extend_from_slice(name);
    }
    if path.is_empty() {
        path.push(b'/');
    }
    // A deep path can be thousands of bytes: its end says enough.
    let shown = String::from_utf8_lossy(&path[path.len().saturating_sub(200)..]).into_owned();
    let ellipsis = if path.len() > 200 { "…" } else { "" };
    ImageError::Io(io::Error::new(
        e.kind(),
        format!("snapshot of {ellipsis}{shown}: {e}"),
    ))
}

fn changed() -> io::Error {
    io::Error::other("changed while it was copied (was the sandbox frozen?)")
}

/// Opens source entry `name` of `dir` without following a symlink and, where allowed,
/// without touching its access time.
fn open_src(dir: BorrowedFd<'_>, name: &[u8], flags: OFlag) -> Result<OwnedFd, Errno> {
    let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match openat(dir, name, flags | OFlag::O_NOATIME, Mode::empty()) {
        // O_NOATIME needs to own the file or CAP_FOWNER.
        Err(Errno::EPERM) => openat(dir, name, flags, Mode::empty()),
        other => other,
    }
}

/// Opens source directory `name` of `dir` (`.` or `..` too) to read it and to open in it.
fn open_dir(dir: BorrowedFd<'_>, name: &[u8]) -> Result<Dir, Errno> {
    Dir::from_fd(open_src(dir, name, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?)
}

/// Opens directory `name` of the copy.
fn open_copy_dir(dir: BorrowedFd<'_>, name: &[u8]) -> Result<OwnedFd, Errno> {
    openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// (device, inode) of an open file.
fn identity(fd: BorrowedFd<'_>) -> Result<(u64, u64), Errno> {
    let st = fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

fn times(st: &FileStat) -> (TimeSpec, TimeSpec) {
    (
        TimeSpec::new(st.st_atime, st.st_atime_nsec),
        TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
    )
}

/// Owner, mode and times of an open copy (owner first: chown clears setuid and setgid).
fn set_meta(fd: BorrowedFd<'_>, st: &FileStat) -> Result<(), Errno> {
    fchown(
        fd,
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
    )?;
    fchmod(fd, Mode::from_bits_truncate(st.st_mode & 0o7777))?;
    let (atime, mtime) = times(st);
    futimens(fd, &atime, &mtime)
}

/// Owner, (with `chmod`) mode, and times of copy `name` in `dir`, not following it were it a
/// symlink (a symlink's mode is always 0777; the copy is the walk's own, no symlink when
/// `chmod` is asked).
fn set_meta_at(dir: BorrowedFd<'_>, name: &[u8], st: &FileStat, chmod: bool) -> Result<(), Errno> {
    fchownat(
        dir,
        name,
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )?;
    if chmod {
        fchmodat(
            dir,
            name,
            Mode::from_bits_truncate(st.st_mode & 0o7777),
            FchmodatFlags::FollowSymlink,
        )?;
    }
    let (atime, mtime) = times(st);
    utimensat(dir, name, &atime, &mtime, UtimensatFlags::NoFollowSymlink)
}

/// Writes `data` at `offset`, leaving aligned blocks of zeros unwritten (holes).
fn write_sparse(dst: &File, data: &[u8], offset: u64) -> io::Result<()> {
    let zero = |b: &[u8]| b.iter().all(|&x| x == 0);
    let mut i = 0;
    while i < data.len() {
        let end = (i + HOLE_BLOCK).min(data.len());
        if zero(&data[i..end]) {
            i = end;
            continue;
        }
        let start = i;
        while i < data.len() {
            let end = (i + HOLE_BLOCK).min(data.len());
            if zero(&data[i..end]) {
                break;
            }
            i = end;
        }
        dst.write_all_at(&data[start..i], offset + start as u64)?;
    }
    Ok(())
}

/// Whether an extended attribute goes into the layer: the sandbox's own `user.*` ones and
/// the opaque mark, not overlayfs's other bookkeeping, `trusted.*` or `security.*`.
fn keep_xattr(name: &[u8]) -> bool {
    name == b"user.overlay.opaque"
        || (name.starts_with(b"user.") && !name.starts_with(b"user.overlay."))
}

/// The kept extended attributes of `fd`, sorted by name.
fn kept_xattrs(fd: BorrowedFd<'_>) -> io::Result<Vec<(CString, Vec<u8>)>> {
    let list = match read_sized(|buf| {
        // SAFETY: `buf` is a live, writable buffer of the length passed (null with 0 to ask
        // for the size); the kernel writes at most that many bytes.
        unsafe { libc::flistxattr(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) }
    }) {
        Ok(list) => list,
        Err(Errno::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for name in list.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if !keep_xattr(name) {
            continue;
        }
        let cname = CString::new(name).map_err(io::Error::other)?;
        let value = match read_sized(|buf| {
            // SAFETY: `cname` is NUL-terminated; `buf` is a live, writable buffer of the
            // length passed; the kernel writes at most that many bytes.
            unsafe {
                libc::fgetxattr(
                    fd.as_raw_fd(),
                    cname.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            }
        }) {
            Ok(value) => value,
            Err(Errno::ENODATA) => continue,
            Err(e) => return Err(e.into()),
        };
        out.push((cname, value));
    }
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Calls `get` first with an empty buffer for the size, then with a buffer of that size
/// (again if it grew meanwhile).
fn read_sized(mut get: impl FnMut(&mut [u8]) -> libc::ssize_t) -> Result<Vec<u8>, Errno> {
    for _ in 0..4 {
        let size = Errno::result(get(&mut []))?;
        if size == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; size as usize];
        match Errno::result(get(&mut buf)) {
            Ok(n) => {
                buf.truncate(n as usize);
                return Ok(buf);
            }
            Err(Errno::ERANGE) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Errno::ERANGE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};

    const DEPTH: usize = 3000;

    fn scratch(tag: &str) -> PathBuf {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "ai2in-snapshot-{tag}-{}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&p).unwrap();
        p
    }

    fn c(path: &Path) -> CString {
        CString::new(path.as_os_str().as_bytes()).unwrap()
    }

    fn set_mtime(path: &Path, secs: i64) {
        let t = TimeSpec::new(secs, 0);
        utimensat(AT_FDCWD, path, &t, &t, UtimensatFlags::NoFollowSymlink).unwrap();
    }

    fn set_xattr(path: &Path, name: &CStr, value: &[u8]) {
        // SAFETY: NUL-terminated strings and a live buffer of the length passed.
        let r = unsafe {
            libc::lsetxattr(
                c(path).as_ptr(),
                name.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        assert_eq!(r, 0, "setxattr {name:?}: {}", io::Error::last_os_error());
    }

    fn get_xattr(path: &Path, name: &CStr) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 256];
        // SAFETY: NUL-terminated strings and a live buffer of the length passed.
        let n = unsafe {
            libc::lgetxattr(
                c(path).as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        (n >= 0).then(|| buf[..n as usize].to_vec())
    }

    use std::ffi::CStr;

    fn open_dir_fd(path: &Path) -> OwnedFd {
        openat(
            AT_FDCWD,
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    }

    /// A chain of `DEPTH` directories `d` below `top`, with file `leaf` at the bottom,
    /// linked as `top/zz_deep_link` too.
    fn deep_chain(top: &Path) {
        let top_fd = open_dir_fd(top);
        let mut fd = top_fd.try_clone().unwrap();
        for _ in 0..DEPTH {
            mkdirat(&fd, "d", Mode::from_bits_truncate(0o755)).unwrap();
            fd = open_copy_dir(fd.as_fd(), b"d").unwrap();
        }
        let leaf = openat(
            &fd,
            "leaf",
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        File::from(leaf).write_all_at(b"bottom", 0).unwrap();
        linkat(&fd, "leaf", &top_fd, "zz_deep_link", AtFlags::empty()).unwrap();
    }

    /// The contents and inode of `leaf` at the bottom of the chain below `top`.
    fn read_deep_leaf(top: &Path) -> (String, u64) {
        let mut fd = open_dir_fd(top);
        for _ in 0..DEPTH {
            fd = open_copy_dir(fd.as_fd(), b"d").unwrap();
        }
        let leaf = open_src(fd.as_fd(), b"leaf", OFlag::O_RDONLY).unwrap();
        let ino = fstat(leaf.as_fd()).unwrap().st_ino;
        let mut s = String::new();
        File::from(leaf).read_to_string(&mut s).unwrap();
        (s, ino)
    }

    /// Bytes of file data `build` writes (hard links once).
    const DATA_BYTES: u64 = 11 + 6 + 9 + 2 + 6 + 5 + 6 + (1 << 20);

    /// An upper directory with one of everything.
    fn build(src: &Path) {
        let p = |n: &str| src.join(n);
        fs::write(p("hello"), "hello world").unwrap();
        fs::set_permissions(p("hello"), fs::Permissions::from_mode(0o644)).unwrap();
        set_xattr(&p("hello"), c"user.custom", b"v");
        set_xattr(&p("hello"), c"trusted.dropped", b"x");
        set_xattr(&p("hello"), c"user.overlay.origin", b"junk");
        set_mtime(&p("hello"), 1_000_000);
        fs::create_dir_all(p("a/b/c")).unwrap();
        fs::write(p("a/b/c/nested"), "nested").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", p("escape")).unwrap();
        std::os::unix::fs::symlink("/etc", p("escape_dir")).unwrap();
        fs::write(p("suid"), "#!/bin/sh").unwrap();
        fs::set_permissions(p("suid"), fs::Permissions::from_mode(0o4755)).unwrap();
        nix::unistd::mkfifo(&p("pipe"), Mode::from_bits_truncate(0o640)).unwrap();
        fs::set_permissions(p("pipe"), fs::Permissions::from_mode(0o640)).unwrap();
        nix::sys::stat::mknod(&p("gone"), SFlag::S_IFCHR, Mode::empty(), 0).unwrap();
        // overlayfs links its whiteouts to one inode.
        fs::hard_link(p("gone"), p("a/gone_too")).unwrap();
        fs::create_dir(p("opq")).unwrap();
        set_xattr(&p("opq"), c"user.overlay.opaque", b"y");
        fs::write(p("opq/in"), "in").unwrap();
        fs::write(p("h1"), "linked").unwrap();
        fs::hard_link(p("h1"), p("h2")).unwrap();
        fs::hard_link(p("h1"), p("a/b/h3")).unwrap();
        fs::write(p("owned"), "mine!").unwrap();
        std::os::unix::fs::chown(p("owned"), Some(1000), Some(1000)).unwrap();
        let null = nix::sys::stat::makedev(1, 3);
        nix::sys::stat::mknod(
            &p("null"),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            null,
        )
        .unwrap();
        drop(std::os::unix::net::UnixListener::bind(p("sock")).unwrap());
        let sparse = File::create(p("sparse")).unwrap();
        sparse.set_len(1 << 20).unwrap();
        sparse.write_all_at(b"x", 512 << 10).unwrap();
        deep_chain(src);
        set_mtime(&p("a"), 2_000_000);
        fs::set_permissions(src, fs::Permissions::from_mode(0o751)).unwrap();
        std::os::unix::fs::chown(src, Some(0), Some(0)).unwrap();
        set_mtime(src, 3_000_000);
    }

    fn limits() -> Limits {
        Limits {
            max_bytes: 64 << 20,
            max_files: 100_000,
        }
    }

    fn snapshot(
        store: &ContentStore,
        src: &Path,
        limits: &Limits,
    ) -> Result<LayerInfo, ImageError> {
        let fd = open_dir_fd(src);
        layer_from_upper(store, fd.as_fd(), limits)
    }

    fn staging_is_empty(root: &Path) -> bool {
        fs::read_dir(root.join("tmp")).unwrap().next().is_none()
    }

    #[test]
    fn the_upper_directory_becomes_a_layer() {
        let base = scratch("copy");
        let src = base.join("upper");
        fs::create_dir(&src).unwrap();
        build(&src);
        let store = ContentStore::open(&base.join("store"), limits()).unwrap();
        let info = snapshot(&store, &src, &limits()).unwrap();
        assert!(info.diff_id.starts_with("sha256:") && info.diff_id.len() == 71);
        assert_eq!(info.size_bytes, DATA_BYTES);
        assert_eq!(store.layer(&info.diff_id), Some(info.clone()));
        assert!(staging_is_empty(&base.join("store")));
        let layer = store.layer_dir(&info.diff_id);
        let p = |n: &str| layer.join(n);
        let meta = |n: &str| fs::symlink_metadata(p(n)).unwrap();

        // The top, a file, its times and attributes.
        assert_eq!(meta("").mode() & 0o7777, 0o751);
        assert_eq!(meta("").mtime(), 3_000_000);
        assert_eq!(fs::read_to_string(p("hello")).unwrap(), "hello world");
        assert_eq!(meta("hello").mode() & 0o7777, 0o644);
        assert_eq!(meta("hello").mtime(), 1_000_000);
        assert_eq!(
            get_xattr(&p("hello"), c"user.custom").as_deref(),
            Some(&b"v"[..])
        );
        assert_eq!(get_xattr(&p("hello"), c"trusted.dropped"), None);
        assert_eq!(get_xattr(&p("hello"), c"user.overlay.origin"), None);
        // Nested directories, their times set after their contents.
        assert_eq!(fs::read_to_string(p("a/b/c/nested")).unwrap(), "nested");
        assert_eq!(meta("a").mtime(), 2_000_000);
        // Symlinks stay symlinks, never followed.
        assert!(meta("escape").file_type().is_symlink());
        assert_eq!(
            fs::read_link(p("escape")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert!(meta("escape_dir").file_type().is_symlink());
        assert_eq!(fs::read_link(p("escape_dir")).unwrap(), Path::new("/etc"));
        // Special bits, fifos, whiteouts, opaque directories.
        assert_eq!(meta("suid").mode() & 0o7777, 0o4755);
        assert!(meta("pipe").file_type().is_fifo());
        assert_eq!(meta("pipe").mode() & 0o7777, 0o640);
        for w in ["gone", "a/gone_too"] {
            assert!(meta(w).file_type().is_char_device());
            assert_eq!(meta(w).rdev(), 0);
        }
        assert_ne!(meta("gone").ino(), meta("a/gone_too").ino());
        assert_eq!(
            get_xattr(&p("opq"), c"user.overlay.opaque").as_deref(),
            Some(&b"y"[..])
        );
        assert_eq!(fs::read_to_string(p("opq/in")).unwrap(), "in");
        // Hard links, also across directories.
        assert_eq!(meta("h1").ino(), meta("h2").ino());
        assert_eq!(meta("h1").ino(), meta("a/b/h3").ino());
        assert_eq!(meta("h1").nlink(), 3);
        // Owners as they are.
        assert_eq!((meta("owned").uid(), meta("owned").gid()), (1000, 1000));
        assert_eq!((meta("hello").uid(), meta("hello").gid()), (0, 0));
        // Devices and sockets are left out.
        assert!(fs::symlink_metadata(p("null")).is_err());
        assert!(fs::symlink_metadata(p("sock")).is_err());
        // Sparse files stay sparse.
        let sparse = fs::read(p("sparse")).unwrap();
        assert_eq!(sparse.len(), 1 << 20);
        assert_eq!(sparse.iter().filter(|&&b| b != 0).count(), 1);
        assert_eq!(sparse[512 << 10], b'x');
        assert!(meta("sparse").blocks() * 512 < 256 << 10);
        // The deep chain.
        let (leaf, ino) = read_deep_leaf(&layer);
        assert_eq!(leaf, "bottom");
        // Linked to from the top: the first copy is reopened by a path over PATH_MAX.
        assert_eq!(meta("zz_deep_link").ino(), ino);

        // The same tree, the same layer; a change, another.
        let again = snapshot(&store, &src, &limits()).unwrap();
        assert_eq!(again, info);
        assert!(staging_is_empty(&base.join("store")));
        fs::write(src.join("hello"), "hello World").unwrap();
        set_mtime(&src.join("hello"), 1_000_000);
        let changed = snapshot(&store, &src, &limits()).unwrap();
        assert_ne!(changed.diff_id, info.diff_id);
        assert_eq!(changed.size_bytes, info.size_bytes);
        // Opaque or not is part of the layer (removing the mark leaves the times alone).
        // SAFETY: NUL-terminated strings.
        let r = unsafe {
            libc::removexattr(
                c(&src.join("opq")).as_ptr(),
                c"user.overlay.opaque".as_ptr(),
            )
        };
        assert_eq!(r, 0);
        let plain = snapshot(&store, &src, &limits()).unwrap();
        assert_ne!(plain.diff_id, changed.diff_id);
        let plain_opq = store.layer_dir(&plain.diff_id).join("opq");
        assert_eq!(get_xattr(&plain_opq, c"user.overlay.opaque"), None);
        // A layer thousands deep goes away too.
        store.remove_layer(&info.diff_id).unwrap();
        assert!(store.layer(&info.diff_id).is_none());
        assert!(staging_is_empty(&base.join("store")));
        crate::store::remove_tree(&base).unwrap();
        assert!(!base.exists());
    }

    #[test]
    fn over_a_limit_nothing_is_left() {
        let base = scratch("limits");
        let src = base.join("upper");
        fs::create_dir(&src).unwrap();
        build(&src);
        let root = base.join("store");
        let store = ContentStore::open(&root, limits()).unwrap();
        for limits in [
            Limits {
                max_bytes: 64 << 20,
                max_files: 5,
            },
            Limits {
                max_bytes: 1000,
                max_files: 100_000,
            },
            // Fails deep in the chain, after the small files.
            Limits {
                max_bytes: 64 << 20,
                max_files: 2000,
            },
        ] {
            let e = snapshot(&store, &src, &limits).unwrap_err();
            assert!(matches!(e, ImageError::TooLarge(_)), "{e}");
            assert!(staging_is_empty(&root));
        }
        assert!(store.layers().unwrap().is_empty());
        crate::store::remove_tree(&base).unwrap();
    }
}

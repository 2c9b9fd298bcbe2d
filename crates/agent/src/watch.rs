//! Watches: inotify on a file or a directory tree, with events queued (bounded, with an
//! `overflow` marker when some were lost) until the node polls or streams them. Watches live
//! in the agent, so they survive node restarts.

use std::collections::{HashMap, VecDeque};
use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use ai2in_protocol::{Event, FailKind, FrameError, FsTarget, WatchEvent, write_frame};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::net::UnixStream;
use tokio::sync::Notify;

use crate::fs::{FsError, blocking};

/// Events kept per watch between two polls.
const MAX_QUEUED: usize = 4096;
/// Events per frame sent to the node.
const EVENTS_PER_FRAME: usize = 256;
/// Watches per sandbox.
const MAX_WATCHES: usize = 128;
const MASK: u32 = libc::IN_CREATE
    | libc::IN_MODIFY
    | libc::IN_CLOSE_WRITE
    | libc::IN_DELETE
    | libc::IN_DELETE_SELF
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_MOVE_SELF;

/// Every watch of the sandbox.
#[derive(Default)]
pub struct Watches {
    map: Mutex<HashMap<String, Arc<Watch>>>,
}

struct Watch {
    queue: Mutex<Queue>,
    changed: Notify,
    task: tokio::task::AbortHandle,
}

#[derive(Default)]
struct Queue {
    events: VecDeque<WatchEvent>,
    overflowed: bool,
    stopped: bool,
}

impl Queue {
    fn push(&mut self, kind: &str, path: &Path) {
        let event = WatchEvent {
            kind: kind.into(),
            path: path.to_string_lossy().into_owned(),
            timestamp_ms: now_ms(),
        };
        // A burst of writes to one file is one change.
        if kind == "modify" && self.events.back() == Some(&event) {
            return;
        }
        if self.events.len() >= MAX_QUEUED {
            self.overflowed = true;
            return;
        }
        self.events.push_back(event);
    }

    fn drain(&mut self) -> Vec<WatchEvent> {
        let mut events: Vec<_> = self.events.drain(..).collect();
        if std::mem::take(&mut self.overflowed) {
            events.push(WatchEvent {
                kind: "overflow".into(),
                path: String::new(),
                timestamp_ms: now_ms(),
            });
        }
        events
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// An inotify instance and what its watch descriptors stand for.
struct Inotify {
    fd: OwnedFd,
    dirs: HashMap<i32, PathBuf>,
    recursive: bool,
}

impl AsRawFd for Inotify {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

impl Inotify {
    fn new(recursive: bool) -> io::Result<Self> {
        // SAFETY: inotify_init1 takes flags only.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just created and is owned here.
        Ok(Inotify {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            dirs: HashMap::new(),
            recursive,
        })
    }

    fn add(&mut self, path: &Path) -> io::Result<()> {
        let c = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
        // SAFETY: a valid fd and a NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), MASK) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        self.dirs.insert(wd, path.to_path_buf());
        Ok(())
    }

    /// Watches `dir` and, when recursive, every directory below it; with `queue`, reports
    /// what already exists below a directory that just appeared.
    fn add_tree(&mut self, dir: &Path, mut queue: Option<&mut Queue>) -> io::Result<()> {
        self.add(dir)?;
        if !self.recursive {
            return Ok(());
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if let Some(q) = queue.as_deref_mut() {
                q.push("create", &path);
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                self.add_tree(&path, queue.as_deref_mut())?;
            }
        }
        Ok(())
    }
}

impl Watches {
    /// Starts a watch on `target`.
    pub async fn start(&self, target: FsTarget, recursive: bool) -> Result<String, FsError> {
        if self.map.lock().expect("watches lock").len() >= MAX_WATCHES {
            return Err(FsError(
                FailKind::Exhausted,
                format!("at most {MAX_WATCHES} watches per sandbox; stop one first"),
            ));
        }
        let inotify = blocking(&target, move |path| {
            let meta = std::fs::metadata(path).map_err(|e| FsError::io(path, e))?;
            let mut inotify =
                Inotify::new(recursive && meta.is_dir()).map_err(|e| limit_error(path, e))?;
            inotify
                .add_tree(path, None)
                .map_err(|e| limit_error(path, e))?;
            Ok(inotify)
        })
        .await?;
        let id = format!("wch_{:016x}", crate::process::random_u64());
        // SAFETY: the AsyncFd owns the Inotify and with it the descriptor, open for its life.
        let afd = unsafe { AsyncFd::register_with_interest(inotify, Interest::READABLE) }
            .map_err(|e| FsError(FailKind::Other, e.to_string()))?;
        let watch = Arc::new_cyclic(|weak: &std::sync::Weak<Watch>| {
            let weak = weak.clone();
            let task = tokio::spawn(run(afd, weak)).abort_handle();
            Watch {
                queue: Mutex::default(),
                changed: Notify::new(),
                task,
            }
        });
        self.map
            .lock()
            .expect("watches lock")
            .insert(id.clone(), watch);
        Ok(id)
    }

    fn get(&self, id: &str) -> Result<Arc<Watch>, FsError> {
        self.map
            .lock()
            .expect("watches lock")
            .get(id)
            .cloned()
            .ok_or_else(|| FsError(FailKind::NotFound, format!("no watch {id}")))
    }

    /// Drains the queued events of watch `id`.
    pub fn poll(&self, id: &str) -> Result<Vec<WatchEvent>, FsError> {
        Ok(self.get(id)?.queue.lock().expect("queue lock").drain())
    }

    /// Streams the events of watch `id` to `conn` until it stops or the node hangs up.
    pub async fn stream(&self, id: &str, conn: &mut UnixStream) -> Result<(), FrameError> {
        let watch = match self.get(id) {
            Ok(w) => w,
            Err(e) => return e.send(conn).await,
        };
        loop {
            let changed = watch.changed.notified();
            let (events, stopped) = {
                let mut q = watch.queue.lock().expect("queue lock");
                (q.drain(), q.stopped)
            };
            send_events(conn, events).await?;
            if stopped {
                return write_frame(
                    conn,
                    &Event::Done {
                        path: String::new(),
                        size_bytes: 0,
                    },
                    &[],
                )
                .await;
            }
            changed.await;
        }
    }

    /// Ends watch `id`.
    pub fn stop(&self, id: &str) -> Result<(), FsError> {
        let watch = self
            .map
            .lock()
            .expect("watches lock")
            .remove(id)
            .ok_or_else(|| FsError(FailKind::NotFound, format!("no watch {id}")))?;
        watch.task.abort();
        watch.queue.lock().expect("queue lock").stopped = true;
        watch.changed.notify_waiters();
        Ok(())
    }
}

/// Sends `events` in frames of a bounded size.
pub async fn send_events(conn: &mut UnixStream, events: Vec<WatchEvent>) -> Result<(), FrameError> {
    for chunk in events.chunks(EVENTS_PER_FRAME) {
        write_frame(
            conn,
            &Event::WatchEvents {
                events: chunk.to_vec(),
            },
            &[],
        )
        .await?;
    }
    Ok(())
}

fn limit_error(path: &Path, e: io::Error) -> FsError {
    match e.raw_os_error() {
        Some(libc::ENOSPC) => FsError(
            FailKind::Exhausted,
            "the kernel's inotify watch limit is reached; watch fewer directories".into(),
        ),
        Some(libc::EMFILE) => FsError(
            FailKind::Exhausted,
            "the kernel's inotify instance limit is reached; stop a watch first".into(),
        ),
        _ => FsError::io(path, e),
    }
}

/// Reads inotify events and queues them, until the watch is dropped or its root goes.
async fn run(mut afd: AsyncFd<Inotify>, watch: std::sync::Weak<Watch>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let Ok(mut guard) = afd.readable_mut().await else {
            return;
        };
        let inotify = guard.get_inner_mut();
        // SAFETY: reading into our own buffer from the inotify fd.
        let n = unsafe { libc::read(inotify.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock {
                guard.clear_ready();
                continue;
            }
            return;
        }
        let Some(watch) = watch.upgrade() else { return };
        let ended = {
            let mut q = watch.queue.lock().expect("queue lock");
            translate(&buf[..n as usize], inotify, &mut q)
        };
        watch.changed.notify_waiters();
        if ended {
            return;
        }
    }
}

/// Turns a buffer of raw inotify events into queued events; true when nothing is left
/// to watch.
fn translate(mut buf: &[u8], inotify: &mut Inotify, q: &mut Queue) -> bool {
    let header = std::mem::size_of::<libc::inotify_event>();
    let mut moved_from: HashMap<u32, PathBuf> = HashMap::new();
    while buf.len() >= header {
        // SAFETY: the kernel writes whole inotify_event records; read_unaligned copes with
        // the byte buffer's alignment.
        let ev: libc::inotify_event = unsafe { std::ptr::read_unaligned(buf.as_ptr().cast()) };
        let len = header + ev.len as usize;
        let name = &buf[header..len.min(buf.len())];
        let name =
            OsStr::from_bytes(&name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())]);
        buf = &buf[len.min(buf.len())..];
        if ev.mask & libc::IN_Q_OVERFLOW != 0 {
            q.overflowed = true;
            continue;
        }
        let Some(dir) = inotify.dirs.get(&ev.wd).cloned() else {
            continue;
        };
        let path = if name.is_empty() {
            dir.clone()
        } else {
            dir.join(name)
        };
        let is_dir = ev.mask & libc::IN_ISDIR != 0;
        if ev.mask & libc::IN_IGNORED != 0 {
            inotify.dirs.remove(&ev.wd);
        } else if ev.mask & libc::IN_CREATE != 0 {
            q.push("create", &path);
            if is_dir && inotify.recursive {
                let _ = inotify.add_tree(&path, Some(q));
            }
        } else if ev.mask & (libc::IN_MODIFY | libc::IN_CLOSE_WRITE) != 0 {
            if ev.mask & libc::IN_MODIFY != 0 {
                q.push("modify", &path);
            }
        } else if ev.mask & libc::IN_DELETE != 0 {
            q.push("delete", &path);
        } else if ev.mask & libc::IN_MOVED_FROM != 0 {
            moved_from.insert(ev.cookie, path);
        } else if ev.mask & libc::IN_MOVED_TO != 0 {
            let renamed = moved_from.remove(&ev.cookie).is_some();
            q.push(if renamed { "rename" } else { "create" }, &path);
            if is_dir && inotify.recursive {
                let _ = inotify.add_tree(&path, None);
            }
        } else if ev.mask & (libc::IN_DELETE_SELF | libc::IN_MOVE_SELF) != 0
            && inotify.dirs.len() == 1
        {
            q.push("delete", &path);
        }
    }
    // Moved out of the watched tree: gone, as far as the watch can tell.
    for path in moved_from.into_values() {
        q.push("delete", &path);
    }
    inotify.dirs.is_empty()
}

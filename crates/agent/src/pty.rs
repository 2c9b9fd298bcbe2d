//! Terminals: a program on a new pseudo-terminal, in its own session. Output is kept in a
//! bounded buffer that `output` drains, or streamed to one attached client (the WebSocket
//! route) while attached. Resizing sets the window size, and the kernel tells the program
//! (SIGWINCH).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

use ai2in_protocol::{
    Event, FailKind, FrameError, FrameReader, Limits, PtySpec, Request, write_frame,
};
use nix::pty::{Winsize, openpty};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::net::UnixStream;
use tokio::sync::{Notify, mpsc};

use crate::fs::FsError;
use crate::process::{signal_group, spawn_on_terminal};
use crate::reaper::{Exit, Reaper};
use crate::spawner::Spawner;
use crate::users;

/// Output kept between two drains, per terminal: the most recent 1 MiB.
const KEPT: usize = 1 << 20;
/// Terminals per sandbox.
const MAX_PTYS: usize = 64;

struct Pty {
    pid: u32,
    master: AsyncFd<OwnedFd>,
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Default)]
struct State {
    buffer: VecDeque<u8>,
    exit: Option<Exit>,
    /// The program's output has ended (EIO/EOF on the master).
    closed: bool,
    attached: Option<mpsc::UnboundedSender<Vec<u8>>>,
}

impl Pty {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn status(&self) -> Event {
        let state = self.state();
        let exit_code = match state.exit {
            Some(Exit::Code(c)) => Some(c),
            Some(Exit::Signal(s)) => Some(128 + s),
            None => None,
        };
        Event::PtyStatus {
            alive: state.exit.is_none() || !state.buffer.is_empty(),
            exit_code,
        }
    }

    async fn write(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.master.writable().await?;
            match guard.try_io(|fd| {
                // SAFETY: write(2) from our buffer to the terminal master we own.
                let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            }) {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    fn resize(&self, cols: u16, rows: u16) -> io::Result<()> {
        let size = Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a valid winsize from our stack.
        if unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &size) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Every terminal of the sandbox, by pid.
#[derive(Default)]
pub struct Ptys {
    map: Mutex<HashMap<u32, Arc<Pty>>>,
}

fn not_found(pid: u32) -> FsError {
    FsError(FailKind::NotFound, format!("no terminal with pid {pid}"))
}

fn io_fail(e: io::Error) -> FsError {
    FsError(FailKind::Other, e.to_string())
}

impl Ptys {
    fn get(&self, pid: u32) -> Result<Arc<Pty>, FsError> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&pid)
            .cloned()
            .ok_or_else(|| not_found(pid))
    }

    /// Starts `spec` on a new terminal; returns its pid.
    pub async fn create(
        &self,
        spec: PtySpec,
        sandbox_env: &[(String, String)],
        spawner: &Spawner,
        reaper: &Reaper,
    ) -> Result<u32, FsError> {
        {
            let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            map.retain(|_, p| p.state().exit.is_none() || !p.state().buffer.is_empty());
            if map.len() >= MAX_PTYS {
                return Err(FsError(
                    FailKind::Exhausted,
                    format!("at most {MAX_PTYS} terminals per sandbox; kill one first"),
                ));
            }
        }
        let user = users::lookup(&spec.user)
            .ok_or_else(|| FsError(FailKind::Invalid, format!("unknown user {:?}", spec.user)))?;
        let size = Winsize {
            ws_row: spec.rows,
            ws_col: spec.cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = openpty(&size, None)
            .map_err(|e| FsError(FailKind::Exhausted, format!("no terminal available: {e}")))?;
        let argv: Vec<String> = match spec.cmd {
            Some(cmd) => vec!["/bin/sh".into(), "-c".into(), cmd],
            None if std::path::Path::new("/bin/bash").exists() => {
                vec!["/bin/bash".into(), "-l".into()]
            }
            None => vec!["/bin/sh".into()],
        };
        let env = users::base_env(&user)
            .into_iter()
            .chain([("TERM".to_string(), "xterm-256color".to_string())])
            .chain(sandbox_env.iter().cloned())
            .chain(spec.env);
        let epoch = reaper.epoch();
        let pid = spawn_on_terminal(spawner, argv, env, spec.cwd, &user, pty.slave.as_fd())
            .await
            .map_err(|e| FsError(FailKind::Invalid, e))?;
        drop(pty.slave);
        let exited = reaper.watch(pid, epoch);
        set_nonblocking(&pty.master).map_err(io_fail)?;
        // SAFETY: the AsyncFd owns the master descriptor, open for its whole life.
        let master = unsafe {
            AsyncFd::register_with_interest(pty.master, Interest::READABLE | Interest::WRITABLE)
        }
        .map_err(|e| io_fail(io::Error::other(e.to_string())))?;
        let pty = Arc::new(Pty {
            pid,
            master,
            state: Mutex::default(),
            changed: Notify::new(),
        });
        tokio::spawn(pump(pty.clone()));
        let waiter = pty.clone();
        tokio::spawn(async move {
            let exit = exited.await.ok();
            waiter.state().exit = exit.or(Some(Exit::Signal(libc::SIGKILL)));
            waiter.changed.notify_waiters();
        });
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pid, pty);
        Ok(pid)
    }

    /// Types `data`.
    pub async fn input(&self, pid: u32, data: &[u8]) -> Result<(), FsError> {
        self.get(pid)?
            .write(data)
            .await
            .map_err(|e| FsError(FailKind::Invalid, format!("the terminal is closed: {e}")))
    }

    /// Drains the output kept since the last call, then the status.
    pub async fn output(&self, pid: u32, conn: &mut UnixStream) -> Result<(), FrameError> {
        let pty = match self.get(pid) {
            Ok(p) => p,
            Err(e) => return e.send(conn).await,
        };
        let data: Vec<u8> = pty.state().buffer.drain(..).collect();
        for chunk in data.chunks(256 * 1024) {
            write_frame(conn, &Event::Data, chunk).await?;
        }
        write_frame(conn, &pty.status(), &[]).await
    }

    /// Resizes a terminal.
    pub fn resize(&self, pid: u32, cols: u16, rows: u16) -> Result<(), FsError> {
        self.get(pid)?.resize(cols, rows).map_err(io_fail)
    }

    /// Signals a terminal's session.
    pub fn kill(&self, pid: u32, signal: i32) -> Result<(), FsError> {
        let pty = self.get(pid)?;
        if pty.state().exit.is_none() {
            signal_group(pty.pid, signal);
        }
        Ok(())
    }

    /// Streams a terminal both ways until its program ends or the node hangs up.
    pub async fn attach(&self, pid: u32, conn: &mut UnixStream) -> Result<(), FrameError> {
        let pty = match self.get(pid) {
            Ok(p) => p,
            Err(e) => return e.send(conn).await,
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let backlog: Vec<u8> = {
            let mut state = pty.state();
            state.attached = Some(tx);
            state.buffer.drain(..).collect()
        };
        let result: Result<(), FrameError> = async {
            if !backlog.is_empty() {
                write_frame(conn, &Event::Data, &backlog).await?;
            }
            let (read, mut write) = conn.split();
            let mut frames = FrameReader::new(read, Limits::default());
            loop {
                let ended = pty.changed.notified();
                tokio::select! {
                    data = rx.recv() => match data {
                        Some(data) => write_frame(&mut write, &Event::Data, &data).await?,
                        None => return Ok(()),
                    },
                    frame = frames.next::<Request>() => match frame? {
                        Some((Request::PtyInput { .. }, data)) => {
                            if pty.write(&data).await.is_err() {
                                return Ok(());
                            }
                        }
                        Some((Request::PtyResize { cols, rows, .. }, _)) => {
                            let _ = pty.resize(cols, rows);
                        }
                        Some(_) => {}
                        None => return Ok(()),
                    },
                    _ = ended => {
                        let state = pty.state();
                        if state.exit.is_some() && state.closed {
                            return Ok(());
                        }
                    }
                }
            }
        }
        .await;
        pty.state().attached = None;
        result?;
        let status = pty.status();
        write_frame(conn, &status, &[]).await
    }
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own; no pointers.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Moves the terminal's output to the attached client or the bounded buffer.
async fn pump(pty: Arc<Pty>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let Ok(mut guard) = pty.master.readable().await else {
            break;
        };
        let read = guard.try_io(|fd| {
            // SAFETY: read(2) into our buffer from the terminal master we own.
            let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        });
        match read {
            Err(_would_block) => continue,
            // EIO once the last holder of the terminal's other side is gone.
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                let mut state = pty.state();
                let sent = state
                    .attached
                    .as_ref()
                    .is_some_and(|tx| tx.send(buf[..n].to_vec()).is_ok());
                if !sent {
                    state.buffer.extend(&buf[..n]);
                    let excess = state.buffer.len().saturating_sub(KEPT);
                    state.buffer.drain(..excess);
                }
            }
        }
    }
    pty.state().closed = true;
    pty.changed.notify_waiters();
}

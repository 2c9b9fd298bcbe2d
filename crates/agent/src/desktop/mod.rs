//! The sandbox's display: an X server (Xvfb) and a window manager (openbox) started on
//! request, as processes of the sandbox like any other (its cgroup, its namespaces, no host
//! socket: `/tmp/.X11-unix` and the abstract socket are the sandbox's own), and what the node
//! does on it — screenshots, pointer and keys through XTEST, the window list — talking X11
//! directly over one connection of the agent's.

mod x11;

use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ai2in_protocol::{DesktopAction, DisplaySpec, Event, FailKind, write_frame};
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;
use tokio::net::unix::pipe;
use tokio::sync::oneshot::error::TryRecvError;

use crate::fs::FsError;
use crate::process::{Launch, spawn};
use crate::reaper::Reaper;
use crate::spawner::Spawner;

use x11::X;

/// The display's name: `DISPLAY` of every process of a desktop sandbox.
pub const DISPLAY: &str = ":0";
/// How long the X server and the window manager may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Made by the window manager once it manages the screen.
const MANAGED: &str = "/tmp/.ai2in-wm-ready";
/// The end of what a display process printed, kept to say why it failed.
const KEPT_OUTPUT: usize = 4096;

/// The sandbox's display, once started.
#[derive(Default)]
pub struct Desktop {
    started: tokio::sync::Mutex<bool>,
    x: Mutex<Option<Arc<Mutex<X>>>>,
}

/// The sandbox's environment and spawner, for the display's processes.
pub struct Place<'a> {
    pub env: &'a [(String, String)],
    pub spawner: &'a Arc<Spawner>,
    pub reaper: &'a Reaper,
}

impl Desktop {
    /// Starts the X server at `spec` and the window manager, and connects to the display;
    /// answers once both serve.
    pub async fn start(&self, spec: DisplaySpec, place: Place<'_>) -> Result<(), FsError> {
        let mut started = self.started.lock().await;
        if *started {
            return Err(FsError(
                FailKind::Invalid,
                "the display is started already".into(),
            ));
        }
        *started = true;
        let deadline = Instant::now() + START_TIMEOUT;
        // The X server's socket directory, as X servers expect it (root's, world-writable,
        // sticky); the server itself runs as `user`.
        std::fs::create_dir_all("/tmp/.X11-unix")
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions("/tmp/.X11-unix", std::fs::Permissions::from_mode(0o1777))
            })
            .map_err(|e| FsError(FailKind::Other, format!("/tmp/.X11-unix: {e}")))?;
        let size = format!("{}x{}x24", spec.width, spec.height);
        let dpi = spec.dpi.to_string();
        let mut server = Started::spawn(
            &place,
            &[
                "Xvfb",
                DISPLAY,
                "-screen",
                "0",
                &size,
                "-dpi",
                &dpi,
                "-nolisten",
                "tcp",
            ],
            "xvfb",
        )
        .await?;
        let x = loop {
            match X::connect(DISPLAY) {
                Ok(x) => break x,
                Err(e) => server.still_starting(deadline, &format!("the X server: {e}"))?,
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        // Openbox runs its startup command once it manages the screen (before that, a new
        // window waits for it: xterm, 5 s).
        let _ = std::fs::remove_file(MANAGED);
        let startup = format!("touch {MANAGED}");
        let mut manager =
            Started::spawn(&place, &["openbox", "--startup", &startup], "openbox").await?;
        while !std::path::Path::new(MANAGED).exists() {
            manager.still_starting(deadline, "the window manager")?;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        *self.x.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(Mutex::new(x)));
        Ok(())
    }

    /// Carries out `action` on the display and answers on `conn`.
    pub async fn act(
        &self,
        action: DesktopAction,
        conn: &mut UnixStream,
    ) -> Result<(), ai2in_protocol::FrameError> {
        let Some(x) = self.x.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
            let message = "this sandbox has no display".to_string();
            return FsError(FailKind::Invalid, message).send(conn).await;
        };
        let done = tokio::task::spawn_blocking(move || lock(&x).act(action))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        match done {
            Ok(Answer::Png(png)) => {
                for piece in png.chunks(ai2in_protocol::FILE_CHUNK / 4) {
                    write_frame(conn, &Event::Data, piece).await?;
                }
                let done = Event::Done {
                    path: String::new(),
                    size_bytes: png.len() as u64,
                };
                write_frame(conn, &done, &[]).await
            }
            Ok(Answer::Event(event)) => write_frame(conn, &event, &[]).await,
            Ok(Answer::Done) => {
                let done = Event::Done {
                    path: String::new(),
                    size_bytes: 0,
                };
                write_frame(conn, &done, &[]).await
            }
            Err(e) => {
                FsError(FailKind::Other, format!("the display failed: {e}"))
                    .send(conn)
                    .await
            }
        }
    }
}

/// What an action answers.
pub enum Answer {
    Png(Vec<u8>),
    Event(Event),
    Done,
}

fn lock(x: &Mutex<X>) -> std::sync::MutexGuard<'_, X> {
    x.lock().unwrap_or_else(|e| e.into_inner())
}

/// A display process just started: its exit and the end of its output.
struct Started {
    program: String,
    package: &'static str,
    exited: tokio::sync::oneshot::Receiver<crate::reaper::Exit>,
    output: Arc<Mutex<Vec<u8>>>,
}

impl Started {
    /// Starts `argv` as `user` with `DISPLAY` set; `package` is the Debian package that
    /// has it, for the error when it is missing.
    async fn spawn(
        place: &Place<'_>,
        argv: &[&str],
        package: &'static str,
    ) -> Result<Self, FsError> {
        let mut env = place.env.to_vec();
        env.push(("DISPLAY".into(), DISPLAY.into()));
        let launch = Launch {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            cwd: "/".into(),
            env,
            user: "user".into(),
            stdin: false,
            extra_fds: Vec::new(),
        };
        let program = argv[0].to_string();
        let missing = || {
            FsError(
                FailKind::NotFound,
                format!(
                    "{program} is not installed in the sandbox's image (Debian package {package})"
                ),
            )
        };
        let epoch = place.reaper.epoch();
        let spawned = spawn(place.spawner, launch).await.map_err(|e| {
            if e.contains("No such file") {
                missing()
            } else {
                FsError(FailKind::Other, e)
            }
        })?;
        let output = Arc::new(Mutex::new(Vec::new()));
        for fd in [spawned.stdout, spawned.stderr] {
            keep_tail(fd, output.clone());
        }
        Ok(Started {
            program,
            package,
            exited: place.reaper.watch(spawned.pid, epoch),
            output,
        })
    }

    /// Ok while the process runs and time is left; else why it failed, with its output.
    fn still_starting(&mut self, deadline: Instant, what: &str) -> Result<(), FsError> {
        let output =
            String::from_utf8_lossy(&self.output.lock().unwrap_or_else(|e| e.into_inner()))
                .trim()
                .to_string();
        let said = if output.is_empty() {
            String::new()
        } else {
            format!(": {output}")
        };
        let running = matches!(self.exited.try_recv(), Err(TryRecvError::Empty));
        if !running {
            return Err(FsError(
                FailKind::Other,
                format!(
                    "{} ({}) exited as it started{said}",
                    self.program, self.package
                ),
            ));
        }
        if Instant::now() > deadline {
            return Err(FsError(
                FailKind::Other,
                format!("{what} did not come up in {START_TIMEOUT:?}{said}"),
            ));
        }
        Ok(())
    }
}

/// Drains `fd` in the background, keeping its last [`KEPT_OUTPUT`] bytes in `tail`.
fn keep_tail(fd: OwnedFd, tail: Arc<Mutex<Vec<u8>>>) {
    let Ok(mut pipe) = pipe::Receiver::from_owned_fd(fd) else {
        return;
    };
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf).await {
            if n == 0 {
                return;
            }
            let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
            tail.extend_from_slice(&buf[..n]);
            let excess = tail.len().saturating_sub(KEPT_OUTPUT);
            tail.drain(..excess);
        }
    });
}

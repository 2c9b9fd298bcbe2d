//! The agent's accept loop: one task per connection, one request per connection.

use std::sync::{Arc, OnceLock};

use ai2in_protocol::{Event, FailKind, Limits, PROTOCOL_VERSION, Request, read_frame, write_frame};
use ai2in_runtime::InitSpec;
use ai2in_runtime::init::Sandbox;
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{SignalKind, signal};

use crate::commands::Commands;
use crate::desktop::{Desktop, Place};
use crate::fs::{self, FsError};
use crate::kernels::{Env as KernelEnv, Kernels};
use crate::pty::Ptys;
use crate::reaper::Reaper;
use crate::spawner::Spawner;
use crate::watch::{self, Watches};
use crate::{connect, shell};

/// What every request handler may use.
pub struct Context {
    /// The spec the sandbox was built from.
    pub spec: InitSpec,
    /// The environment given when a pooled sandbox was claimed (replaces the spec's).
    pub claimed_env: OnceLock<Vec<(String, String)>>,
    /// Exit statuses of the processes the agent starts.
    pub reaper: Reaper,
    /// Starts them.
    pub spawner: Arc<Spawner>,
    /// File watches.
    pub watches: Watches,
    /// Background commands.
    pub commands: Commands,
    /// Code contexts.
    pub kernels: Kernels,
    /// Terminals.
    pub ptys: Ptys,
    /// The display, in a desktop sandbox.
    pub desktop: Desktop,
}

impl Context {
    /// The environment of every process the agent starts.
    pub fn env(&self) -> &[(String, String)] {
        self.claimed_env.get().unwrap_or(&self.spec.env)
    }

    fn kernel_env(&self) -> KernelEnv<'_> {
        KernelEnv {
            cwd: &self.spec.workdir,
            sandbox_env: self.env(),
            spawner: &self.spawner,
            reaper: &self.reaper,
        }
    }
}

/// Largest request the node may send: a header and up to 32 MiB of file contents.
pub(crate) const REQUEST_LIMITS: Limits = Limits {
    max_header: 1 << 20,
    max_data: 32 << 20,
};

/// Serves the node until the agent is told to stop.
pub async fn serve(
    sandbox: Sandbox,
    spawner: std::os::unix::net::UnixStream,
) -> std::io::Result<()> {
    sandbox.listener.set_nonblocking(true)?;
    let listener = UnixListener::from_std(sandbox.listener)?;
    let reaper = Reaper::default();
    tokio::spawn(reaper.clone().run());
    let spawner = Arc::new(Spawner::new(sandbox.spec.work_fds.clone(), spawner)?);
    let ctx = Arc::new(Context {
        spec: sandbox.spec,
        claimed_env: OnceLock::new(),
        spawner,
        reaper,
        watches: Watches::default(),
        commands: Commands::default(),
        kernels: Kernels::default(),
        ptys: Ptys::default(),
        desktop: Desktop::default(),
    });
    let mut term = signal(SignalKind::terminate())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((conn, _)) = accepted {
                    tokio::spawn(handle(ctx.clone(), conn));
                }
            }
            // PID 1 leaving ends every process of the pid namespace.
            _ = term.recv() => return Ok(()),
        }
    }
}

async fn handle(ctx: Arc<Context>, mut conn: UnixStream) {
    let request = match read_frame::<_, Request>(&mut conn, REQUEST_LIMITS).await {
        Ok(Some(request)) => request,
        Ok(None) => return,
        Err(e) => {
            let failed = Event::Failed {
                kind: FailKind::Invalid,
                message: format!("bad request: {e}"),
            };
            let _ = write_frame(&mut conn, &failed, &[]).await;
            return;
        }
    };
    let _ = match request {
        (Request::Ping, _) => {
            let pong = Event::Pong {
                version: PROTOCOL_VERSION,
            };
            write_frame(&mut conn, &pong, &[]).await
        }
        (Request::Shell(spec), stdin) => shell::run(&ctx, spec, stdin, &mut conn).await,
        (Request::FsList(target), _) => fs::list(target, &mut conn).await,
        (
            Request::FsRead {
                target,
                max_bytes,
                range,
            },
            _,
        ) => fs::read(target, max_bytes, range, &mut conn).await,
        (Request::FsWrite { target, size_bytes }, first) => {
            fs::write(target, size_bytes, first, &mut conn).await
        }
        (Request::WatchStart { target, recursive }, _) => {
            match ctx.watches.start(target, recursive).await {
                Ok(watch_id) => {
                    write_frame(&mut conn, &Event::WatchStarted { watch_id }, &[]).await
                }
                Err(e) => e.send(&mut conn).await,
            }
        }
        (Request::WatchPoll { watch_id }, _) => match ctx.watches.poll(&watch_id) {
            Ok(events) => match watch::send_events(&mut conn, events).await {
                Ok(()) => done_or_failed(Ok(()), &mut conn).await,
                Err(e) => Err(e),
            },
            Err(e) => e.send(&mut conn).await,
        },
        (Request::WatchStream { watch_id }, _) => ctx.watches.stream(&watch_id, &mut conn).await,
        (Request::Run(spec), _) => ctx.kernels.run(spec, &ctx.kernel_env(), &mut conn).await,
        (Request::ContextCreate { language, cwd }, _) => {
            match ctx.kernels.create(&language, cwd, &ctx.kernel_env()).await {
                Ok(info) => write_frame(&mut conn, &Event::Context { info }, &[]).await,
                Err(e) => e.send(&mut conn).await,
            }
        }
        (Request::ContextList, _) => {
            let contexts = Event::Contexts {
                contexts: ctx.kernels.list().await,
            };
            write_frame(&mut conn, &contexts, &[]).await
        }
        (Request::ContextDelete { context_id }, _) => {
            done_or_failed(ctx.kernels.delete(&context_id), &mut conn).await
        }
        (Request::ContextRestart { context_id }, _) => {
            match ctx.kernels.restart(&context_id, &ctx.kernel_env()).await {
                Ok(info) => write_frame(&mut conn, &Event::Context { info }, &[]).await,
                Err(e) => e.send(&mut conn).await,
            }
        }
        (Request::PtyCreate(spec), _) => {
            let created = ctx
                .ptys
                .create(spec, ctx.env(), &ctx.spawner, &ctx.reaper)
                .await;
            match created {
                Ok(pid) => {
                    let started = Event::PtyStarted {
                        pty_id: format!("pty_{pid}"),
                        pid,
                    };
                    write_frame(&mut conn, &started, &[]).await
                }
                Err(e) => e.send(&mut conn).await,
            }
        }
        (Request::PtyInput { pid }, data) => {
            done_or_failed(ctx.ptys.input(pid, &data).await, &mut conn).await
        }
        (Request::PtyOutput { pid }, _) => ctx.ptys.output(pid, &mut conn).await,
        (Request::PtyResize { pid, cols, rows }, _) => {
            done_or_failed(ctx.ptys.resize(pid, cols, rows), &mut conn).await
        }
        (Request::PtyKill { pid, signal }, _) => {
            done_or_failed(ctx.ptys.kill(pid, signal), &mut conn).await
        }
        (Request::PtyAttach { pid }, _) => ctx.ptys.attach(pid, &mut conn).await,
        (Request::CommandStart(spec), _) => {
            let started = ctx
                .commands
                .start(spec, ctx.env().to_vec(), &ctx.spawner, &ctx.reaper)
                .await;
            match started {
                Ok((command_id, pid)) => {
                    let started = Event::CommandStarted { command_id, pid };
                    write_frame(&mut conn, &started, &[]).await
                }
                Err(e) => e.send(&mut conn).await,
            }
        }
        (Request::CommandList, _) => {
            let commands = Event::Commands {
                commands: ctx.commands.list(),
            };
            write_frame(&mut conn, &commands, &[]).await
        }
        (
            Request::CommandLogs {
                command_id,
                stdout_offset,
                stderr_offset,
            },
            _,
        ) => {
            ctx.commands
                .logs(&command_id, stdout_offset, stderr_offset, &mut conn)
                .await
        }
        (
            Request::CommandFollow {
                command_id,
                stdout_offset,
                stderr_offset,
            },
            _,
        ) => {
            ctx.commands
                .follow(&command_id, stdout_offset, stderr_offset, &mut conn)
                .await
        }
        (Request::CommandKill { command_id, signal }, _) => {
            done_or_failed(ctx.commands.kill(&command_id, signal), &mut conn).await
        }
        (Request::WatchStop { watch_id }, _) => {
            done_or_failed(ctx.watches.stop(&watch_id), &mut conn).await
        }
        (Request::Connect { port }, _) => connect::connect(port, &mut conn).await,
        (Request::Claim { env }, _) => {
            let claimed = ctx
                .claimed_env
                .set(env)
                .map_err(|_| FsError(FailKind::Invalid, "the sandbox was claimed already".into()));
            done_or_failed(claimed, &mut conn).await
        }
        (Request::DesktopStart(spec), _) => {
            let place = Place {
                env: ctx.env(),
                spawner: &ctx.spawner,
                reaper: &ctx.reaper,
            };
            done_or_failed(ctx.desktop.start(spec, place).await, &mut conn).await
        }
        (Request::Desktop(action), _) => ctx.desktop.act(action, &mut conn).await,
        (Request::Chunk, _) => {
            let message = "a chunk must follow a request that takes more data".into();
            FsError(FailKind::Invalid, message).send(&mut conn).await
        }
    };
}

async fn done_or_failed(
    result: Result<(), FsError>,
    conn: &mut UnixStream,
) -> Result<(), ai2in_protocol::FrameError> {
    match result {
        Ok(()) => {
            let done = Event::Done {
                path: String::new(),
                size_bytes: 0,
            };
            write_frame(conn, &done, &[]).await
        }
        Err(e) => e.send(conn).await,
    }
}

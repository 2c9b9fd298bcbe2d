//! The agent's accept loop: one task per connection, one request per connection.

use std::sync::Arc;

use ai2in_protocol::{Event, Limits, PROTOCOL_VERSION, Request, read_frame, write_frame};
use ai2in_runtime::InitSpec;
use ai2in_runtime::init::Sandbox;
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{SignalKind, signal};

use crate::reaper::Reaper;
use crate::shell;

/// What every request handler may use.
pub struct Context {
    /// The spec the sandbox was built from (its environment, among others).
    pub spec: InitSpec,
    /// Exit statuses of the processes the agent starts.
    pub reaper: Reaper,
}

/// Largest request the node may send: a header and up to 16 MiB of standard input.
const REQUEST_LIMITS: Limits = Limits {
    max_header: 1 << 20,
    max_data: 16 << 20,
};

/// Serves the node until the agent is told to stop.
pub async fn serve(sandbox: Sandbox) -> std::io::Result<()> {
    sandbox.listener.set_nonblocking(true)?;
    let listener = UnixListener::from_std(sandbox.listener)?;
    let reaper = Reaper::default();
    tokio::spawn(reaper.clone().run());
    let ctx = Arc::new(Context {
        spec: sandbox.spec,
        reaper,
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
                message: format!("bad request: {e}"),
            };
            let _ = write_frame(&mut conn, &failed, &[]).await;
            return;
        }
    };
    let _ = match request {
        (Request::Ping, _) => {
            write_frame(
                &mut conn,
                &Event::Pong {
                    version: PROTOCOL_VERSION,
                },
                &[],
            )
            .await
        }
        (Request::Shell(spec), stdin) => shell::run(&ctx, spec, stdin, &mut conn).await,
    };
}

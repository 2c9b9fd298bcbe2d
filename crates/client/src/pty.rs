//! [`Pty`]: terminals in a sandbox, driven by requests: type bytes in, drain what the
//! program wrote. (For a live terminal the node also serves a WebSocket, which the `ai2in
//! shell` command uses.)

use ai2in_api::{CommandKillRequest, PtyInput, PtyOutput, PtyRequest, PtyResize, PtyStarted};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::error::{Error, Result};
use crate::http::Empty;
use crate::sandbox::Sandbox;

/// What a terminal wrote since the last read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PtyChunk {
    /// The bytes, as the program wrote them (escape sequences included).
    pub data: Vec<u8>,
    /// False once the program ended and nothing is left to read.
    pub alive: bool,
    /// Its exit status once it ended (128 + n for signal n).
    pub exit_code: Option<i32>,
}

/// The terminals of a sandbox, by the `pid` their creation answered; from
/// [`Sandbox::pty`].
///
/// ```no_run
/// # async fn demo(sandbox: ai2in_client::Sandbox) -> ai2in_client::Result<()> {
/// use ai2in_client::PtyRequest;
/// let pty = sandbox.pty();
/// let term = pty.create(PtyRequest { cmd: Some("cat".into()), ..Default::default() }).await?;
/// pty.input(term.pid, b"hello\n").await?;
/// let echoed = pty.output(term.pid).await?;
/// pty.kill(term.pid).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Pty<'a> {
    sandbox: &'a Sandbox,
}

impl<'a> Pty<'a> {
    pub(crate) fn new(sandbox: &'a Sandbox) -> Self {
        Pty { sandbox }
    }

    fn path(&self, pid: u32, route: &str) -> String {
        self.sandbox.path(&format!("pty/{pid}/{route}"))
    }

    /// Starts a program in a new terminal (by default the login shell, 80×24).
    pub async fn create(&self, request: PtyRequest) -> Result<PtyStarted> {
        self.sandbox
            .http()
            .post(&self.sandbox.path("pty"), &request)
            .await
    }

    /// Types `data` into the terminal.
    pub async fn input(&self, pid: u32, data: &[u8]) -> Result<()> {
        let body = PtyInput {
            data_b64: STANDARD.encode(data),
        };
        self.sandbox
            .http()
            .post_unit(&self.path(pid, "input"), &body)
            .await
    }

    /// Takes what the terminal wrote since the last call.
    pub async fn output(&self, pid: u32) -> Result<PtyChunk> {
        let out: PtyOutput = self
            .sandbox
            .http()
            .post(&self.path(pid, "output"), &Empty {})
            .await?;
        let data = STANDARD
            .decode(&out.data_b64)
            .map_err(|e| Error::InvalidResponse(format!("data_b64 is not base64: {e}")))?;
        Ok(PtyChunk {
            data,
            alive: out.alive,
            exit_code: out.exit_code,
        })
    }

    /// Resizes the terminal.
    pub async fn resize(&self, pid: u32, cols: u16, rows: u16) -> Result<()> {
        self.sandbox
            .http()
            .post_unit(&self.path(pid, "resize"), &PtyResize { cols, rows })
            .await
    }

    /// Kills the terminal's program (SIGKILL).
    pub async fn kill(&self, pid: u32) -> Result<()> {
        self.sandbox
            .http()
            .post_unit(&self.path(pid, "kill"), &CommandKillRequest::default())
            .await
    }
}

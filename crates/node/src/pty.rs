//! Terminals in a sandbox, through its agent: REST calls, and an attachment that carries
//! bytes both ways for the WebSocket route.

use ai2in_api::{PtyOutput, PtyRequest, Signal};
use ai2in_protocol::{Event, PtySpec, Request, write_frame};

use crate::agent_client::AgentCall;
use crate::auth::{Principal, Scope};
use crate::commands::signal_number;
use crate::error::NodeError;
use crate::node::Node;
use crate::shell::ProcessOptions;

/// Most output one drain returns (the agent keeps 1 MiB).
const MAX_OUTPUT: usize = 2 << 20;

fn check_size(cols: u16, rows: u16) -> Result<(), NodeError> {
    if cols == 0 || rows == 0 || cols > 1000 || rows > 1000 {
        return Err(NodeError::Invalid(
            "cols and rows must be between 1 and 1000".into(),
        ));
    }
    Ok(())
}

/// A live attachment to a terminal.
pub struct PtyAttachment {
    call: AgentCall,
}

/// What an attached terminal sends.
pub enum PtyEvent {
    /// Bytes it printed.
    Output(Vec<u8>),
    /// Its program ended.
    Exited(Option<i32>),
}

impl PtyAttachment {
    /// Types `data`.
    pub async fn input(&mut self, pid: u32, data: &[u8]) -> Result<(), NodeError> {
        self.call.send(&Request::PtyInput { pid }, data).await
    }

    /// Resizes the terminal.
    pub async fn resize(&mut self, pid: u32, cols: u16, rows: u16) -> Result<(), NodeError> {
        check_size(cols, rows)?;
        self.call
            .send(&Request::PtyResize { pid, cols, rows }, &[])
            .await
    }

    /// The next thing the terminal sends.
    pub async fn next(&mut self) -> Result<PtyEvent, NodeError> {
        match self.call.next().await? {
            (Event::Data, data) => Ok(PtyEvent::Output(data)),
            (Event::PtyStatus { exit_code, .. }, _) => Ok(PtyEvent::Exited(exit_code)),
            (other, _) => Err(self
                .call
                .unexpected(format_args!("unexpected answer {other:?}"))),
        }
    }
}

impl AgentCall {
    /// Sends one more frame on this connection (attachments).
    pub async fn send(&mut self, request: &Request, data: &[u8]) -> Result<(), NodeError> {
        write_frame(self.conn(), request, data)
            .await
            .map_err(|e| self.unexpected(e))
    }
}

impl Node {
    async fn pty_done(
        &self,
        caller: &Principal,
        id: &str,
        request: Request,
        data: &[u8],
    ) -> Result<(), NodeError> {
        let mut call = self.call_agent(caller, id, &request, data).await?;
        match call.next().await? {
            (Event::Done { .. }, _) => Ok(()),
            (other, _) => Err(call.unexpected(format_args!("unexpected answer {other:?}"))),
        }
    }

    /// Starts a program on a new terminal in sandbox `id`; returns its pid.
    pub async fn create_pty(
        &self,
        caller: &Principal,
        id: &str,
        req: PtyRequest,
    ) -> Result<u32, NodeError> {
        caller.require(Scope::SandboxesWrite)?;
        let (cols, rows) = (req.cols.unwrap_or(80), req.rows.unwrap_or(24));
        check_size(cols, rows)?;
        let ProcessOptions {
            cmd,
            cwd,
            env,
            user,
        } = self.process_options(
            caller,
            id,
            req.cmd.unwrap_or_default(),
            req.cwd,
            req.env,
            req.user,
        )?;
        let cmd = (!cmd.is_empty()).then_some(cmd);
        let request = Request::PtyCreate(PtySpec {
            cmd,
            cols,
            rows,
            cwd,
            env,
            user,
        });
        let mut call = self.send_to_agent(id, &request, &[]).await?;
        match call.next().await? {
            (Event::PtyStarted { pid, .. }, _) => Ok(pid),
            (other, _) => Err(call.unexpected(format_args!("unexpected answer {other:?}"))),
        }
    }

    /// Types into a terminal.
    pub async fn pty_input(
        &self,
        caller: &Principal,
        id: &str,
        pid: u32,
        data: &[u8],
    ) -> Result<(), NodeError> {
        caller.require(Scope::SandboxesWrite)?;
        self.pty_done(caller, id, Request::PtyInput { pid }, data)
            .await
    }

    /// Drains a terminal's output.
    pub async fn pty_output(
        &self,
        caller: &Principal,
        id: &str,
        pid: u32,
    ) -> Result<(Vec<u8>, PtyOutput), NodeError> {
        caller.require(Scope::SandboxesWrite)?;
        let mut call = self
            .call_agent(caller, id, &Request::PtyOutput { pid }, &[])
            .await?;
        let mut out = Vec::new();
        loop {
            match call.next().await? {
                (Event::Data, data) if out.len() + data.len() <= MAX_OUTPUT => {
                    out.extend_from_slice(&data)
                }
                (Event::PtyStatus { alive, exit_code }, _) => {
                    return Ok((
                        out,
                        PtyOutput {
                            data_b64: String::new(),
                            alive,
                            exit_code,
                        },
                    ));
                }
                (other, _) => {
                    return Err(call.unexpected(format_args!("unexpected answer {other:?}")));
                }
            }
        }
    }

    /// Resizes a terminal.
    pub async fn pty_resize(
        &self,
        caller: &Principal,
        id: &str,
        pid: u32,
        cols: u16,
        rows: u16,
    ) -> Result<(), NodeError> {
        caller.require(Scope::SandboxesWrite)?;
        check_size(cols, rows)?;
        self.pty_done(caller, id, Request::PtyResize { pid, cols, rows }, &[])
            .await
    }

    /// Signals a terminal's session (default SIGKILL).
    pub async fn pty_kill(
        &self,
        caller: &Principal,
        id: &str,
        pid: u32,
        signal: Option<Signal>,
    ) -> Result<(), NodeError> {
        caller.require(Scope::SandboxesWrite)?;
        self.pty_done(
            caller,
            id,
            Request::PtyKill {
                pid,
                signal: signal_number(signal)?,
            },
            &[],
        )
        .await
    }

    /// Attaches to a terminal.
    pub async fn pty_attach(
        &self,
        caller: &Principal,
        id: &str,
        pid: u32,
    ) -> Result<PtyAttachment, NodeError> {
        caller.require(Scope::SandboxesWrite)?;
        let call = self
            .call_agent(caller, id, &Request::PtyAttach { pid }, &[])
            .await?;
        Ok(PtyAttachment { call })
    }
}

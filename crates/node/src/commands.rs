//! Background commands in a sandbox, through its agent, which runs them and keeps their
//! output (bounded) so that clients can come back for it, even after a node restart.

use ai2in_api::{CommandInfo, CommandLogs, CommandRequest, CommandStatus, Signal};
use ai2in_protocol::{CommandSpec, Event, Request};

use crate::auth::{Principal, Scope};
use crate::error::NodeError;
use crate::ids;
use crate::node::Node;
use crate::shell::ProcessOptions;
use crate::text::whole_chars;
use crate::time::rfc3339;

/// Most output one logs answer carries per stream (the agent keeps 1 MiB per stream).
const MAX_LOG_BYTES: usize = 2 << 20;

fn info(c: ai2in_protocol::CommandInfo) -> CommandInfo {
    let status = match c.status.as_str() {
        "running" => CommandStatus::Running,
        "killed" => CommandStatus::Killed,
        _ => CommandStatus::Exited,
    };
    CommandInfo {
        command_id: c.command_id,
        pid: c.pid,
        cmd: c.cmd,
        status,
        exit_code: c.exit_code,
        started_at: rfc3339(c.started_at_ms),
        ended_at: c.ended_at_ms.map(rfc3339),
    }
}

fn check_command_id(id: &str) -> Result<(), NodeError> {
    ids::check(id, "cmd", "command")
}

/// The signal number of `signal` (default SIGKILL).
pub(crate) fn signal_number(signal: Option<Signal>) -> Result<i32, NodeError> {
    const NAMES: [(&str, i32); 10] = [
        ("HUP", libc::SIGHUP),
        ("INT", libc::SIGINT),
        ("QUIT", libc::SIGQUIT),
        ("KILL", libc::SIGKILL),
        ("USR1", libc::SIGUSR1),
        ("USR2", libc::SIGUSR2),
        ("TERM", libc::SIGTERM),
        ("CONT", libc::SIGCONT),
        ("STOP", libc::SIGSTOP),
        ("ALRM", libc::SIGALRM),
    ];
    let invalid = || {
        NodeError::Invalid(
            "signal must be a number from 1 to 64 or a name such as \"SIGTERM\"".into(),
        )
    };
    match signal {
        None => Ok(libc::SIGKILL),
        Some(Signal::Number(n)) if (1..=64).contains(&n) => Ok(n),
        Some(Signal::Number(_)) => Err(invalid()),
        Some(Signal::Name(name)) => {
            let upper = name.to_ascii_uppercase();
            let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
            NAMES
                .iter()
                .find(|(n, _)| *n == bare)
                .map(|(_, s)| *s)
                .ok_or_else(invalid)
        }
    }
}

impl Node {
    /// Starts a command in the background in sandbox `id`.
    pub async fn start_command(
        &self,
        caller: &Principal,
        id: &str,
        req: CommandRequest,
    ) -> Result<(String, u32), NodeError> {
        caller.require(Scope::SandboxesWrite)?;
        let ProcessOptions {
            cmd,
            cwd,
            env,
            user,
        } = self.process_options(caller, id, req.cmd, req.cwd, req.env, req.user)?;
        let request = Request::CommandStart(CommandSpec {
            cmd,
            cwd,
            env,
            user,
        });
        let mut call = self.send_to_agent(id, &request, &[]).await?;
        match call.next().await? {
            (Event::CommandStarted { command_id, pid }, _)
                if check_command_id(&command_id).is_ok() =>
            {
                Ok((command_id, pid))
            }
            (other, _) => Err(call.unexpected(format_args!("unexpected answer {other:?}"))),
        }
    }

    /// The background commands of sandbox `id`.
    pub async fn list_commands(
        &self,
        caller: &Principal,
        id: &str,
    ) -> Result<Vec<CommandInfo>, NodeError> {
        caller.require(Scope::SandboxesRead)?;
        let mut call = self
            .call_agent(caller, id, &Request::CommandList, &[])
            .await?;
        match call.next().await? {
            (Event::Commands { commands }, _) => Ok(commands.into_iter().map(info).collect()),
            (other, _) => Err(call.unexpected(format_args!("unexpected answer {other:?}"))),
        }
    }

    /// Output of a command from the given offsets.
    pub async fn command_logs(
        &self,
        caller: &Principal,
        id: &str,
        command_id: &str,
        stdout_offset: u64,
        stderr_offset: u64,
    ) -> Result<CommandLogs, NodeError> {
        caller.require(Scope::SandboxesRead)?;
        check_command_id(command_id)?;
        let request = Request::CommandLogs {
            command_id: command_id.to_string(),
            stdout_offset,
            stderr_offset,
        };
        let mut call = self.call_agent(caller, id, &request, &[]).await?;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        loop {
            match call.next().await? {
                (Event::Stdout, data) if out.len() + data.len() <= MAX_LOG_BYTES => {
                    out.extend_from_slice(&data)
                }
                (Event::Stderr, data) if err.len() + data.len() <= MAX_LOG_BYTES => {
                    err.extend_from_slice(&data)
                }
                (
                    Event::CommandLogs {
                        info: c,
                        stdout_offset: out_end,
                        stderr_offset: err_end,
                        dropped_bytes,
                    },
                    _,
                ) => {
                    let c = info(c);
                    let finished = c.status != CommandStatus::Running;
                    let (stdout, out_used) = whole_chars(&out, finished);
                    let (stderr, err_used) = whole_chars(&err, finished);
                    return Ok(CommandLogs {
                        stdout,
                        stderr,
                        status: c.status,
                        exit_code: c.exit_code,
                        stdout_offset: out_end - (out.len() - out_used) as u64,
                        stderr_offset: err_end - (err.len() - err_used) as u64,
                        dropped_bytes,
                    });
                }
                (other, _) => {
                    return Err(call.unexpected(format_args!("unexpected answer {other:?}")));
                }
            }
        }
    }

    /// Signals a command's process group.
    pub async fn kill_command(
        &self,
        caller: &Principal,
        id: &str,
        command_id: &str,
        signal: Option<Signal>,
    ) -> Result<(), NodeError> {
        caller.require(Scope::SandboxesWrite)?;
        check_command_id(command_id)?;
        let request = Request::CommandKill {
            command_id: command_id.to_string(),
            signal: signal_number(signal)?,
        };
        let mut call = self.call_agent(caller, id, &request, &[]).await?;
        match call.next().await? {
            (Event::Done { .. }, _) => Ok(()),
            (other, _) => Err(call.unexpected(format_args!("unexpected answer {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_number_and_name() {
        assert_eq!(signal_number(None).unwrap(), libc::SIGKILL);
        assert_eq!(
            signal_number(Some(Signal::Name("SIGTERM".into()))).unwrap(),
            libc::SIGTERM
        );
        assert_eq!(
            signal_number(Some(Signal::Name("int".into()))).unwrap(),
            libc::SIGINT
        );
        assert_eq!(signal_number(Some(Signal::Number(9))).unwrap(), 9);
        assert!(signal_number(Some(Signal::Number(0))).is_err());
        assert!(signal_number(Some(Signal::Name("BOGUS".into()))).is_err());
    }
}

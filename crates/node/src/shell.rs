//! `POST /shell`: one command to completion through the sandbox's agent.

use std::collections::BTreeMap;
use std::time::Duration;

use ai2in_api::{ShellRequest, ShellResponse};
use ai2in_protocol::{Event, Request, ShellSpec};

use crate::auth::{Principal, Scope};
use crate::error::NodeError;
use crate::node::Node;
use crate::sandbox::check_timeout;

/// Time the node gives an agent beyond the command's own timeout before giving up on it.
const GRACE: Duration = Duration::from_secs(5);

/// Output of one stream as the node keeps it: at most the cap, whatever the agent sends.
#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    truncated: bool,
}

impl Captured {
    fn push(&mut self, data: &[u8], cap: usize) {
        let room = cap.saturating_sub(self.bytes.len());
        if data.len() > room {
            self.truncated = true;
        }
        self.bytes.extend_from_slice(&data[..data.len().min(room)]);
    }
}

/// The extra environment of a process, checked: names non-empty without `=` or NUL,
/// values without NUL.
pub(crate) fn check_env(
    env: Option<BTreeMap<String, String>>,
) -> Result<Vec<(String, String)>, NodeError> {
    let env: Vec<(String, String)> = env.unwrap_or_default().into_iter().collect();
    if env
        .iter()
        .any(|(k, v)| k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0'))
    {
        return Err(NodeError::Invalid(
            "env names must be non-empty without '=' or NUL, values without NUL".into(),
        ));
    }
    Ok(env)
}

/// How to start a process, checked: the command line, an absolute working directory, the
/// extra environment and the account.
pub(crate) struct ProcessOptions {
    pub cmd: String,
    pub cwd: String,
    pub env: Vec<(String, String)>,
    pub user: String,
}

/// Where and as whom a process starts when the request does not say: the image's
/// `WorkingDir` (else `/home/user`) and `User` (else root).
pub(crate) struct RunDefaults {
    pub cwd: String,
    pub user: String,
}

impl RunDefaults {
    /// A working directory: `cwd` if absolute, else under the default one.
    pub fn cwd(&self, cwd: Option<String>) -> Result<String, NodeError> {
        Ok(match cwd {
            Some(cwd) if cwd.contains('\0') => {
                return Err(NodeError::Invalid("cwd must not contain NUL".into()));
            }
            Some(cwd) if cwd.starts_with('/') => cwd,
            Some(cwd) => format!("{}/{cwd}", self.cwd.trim_end_matches('/')),
            None => self.cwd.clone(),
        })
    }
}

impl ProcessOptions {
    /// Checks the options of a shell or background command against `defaults`.
    pub fn check(
        cmd: String,
        cwd: Option<String>,
        env: Option<BTreeMap<String, String>>,
        user: Option<String>,
        defaults: RunDefaults,
    ) -> Result<Self, NodeError> {
        let user = match user {
            Some(user) if user != "root" && user != "user" => {
                return Err(NodeError::Invalid(format!(
                    "user must be \"root\" or \"user\", not {user:?}"
                )));
            }
            Some(user) => user,
            None => defaults.user.clone(),
        };
        let cwd = defaults.cwd(cwd)?;
        let env = check_env(env)?;
        if cmd.contains('\0') {
            return Err(NodeError::Invalid("cmd must not contain NUL".into()));
        }
        Ok(ProcessOptions {
            cmd,
            cwd,
            env,
            user,
        })
    }
}

impl Node {
    /// The defaults of processes in the caller's running sandbox `id`, from its image (409
    /// while paused, as any call into it). A caller of this has checked the sandbox: it may
    /// send to its agent with [`Node::send_to_agent`] without reading its record again.
    pub(crate) fn run_defaults(
        &self,
        caller: &Principal,
        id: &str,
    ) -> Result<RunDefaults, NodeError> {
        let record = self.running_record(caller, id)?;
        let settings = match &record.image_digest {
            Some(digest) => Some(self.images().content(digest)?),
            None => None,
        };
        let settings = settings.as_ref().map(|c| &c.settings);
        Ok(RunDefaults {
            cwd: settings
                .and_then(|s| s.workdir.clone())
                .unwrap_or_else(|| "/home/user".into()),
            user: settings
                .and_then(|s| s.user.clone())
                .unwrap_or_else(|| "root".into()),
        })
    }

    /// The options of a process in the caller's running sandbox `id`, checked, with its
    /// image's defaults (see [`Node::run_defaults`]).
    pub(crate) fn process_options(
        &self,
        caller: &Principal,
        id: &str,
        cmd: String,
        cwd: Option<String>,
        env: Option<BTreeMap<String, String>>,
        user: Option<String>,
    ) -> Result<ProcessOptions, NodeError> {
        ProcessOptions::check(cmd, cwd, env, user, self.run_defaults(caller, id)?)
    }

    /// The timeout of a shell command or code run: the request's, checked, or the default.
    pub(crate) fn run_timeout(&self, requested: Option<u64>) -> Result<u64, NodeError> {
        let cfg = self.config();
        check_timeout(
            "timeout_ms",
            requested.unwrap_or(cfg.defaults.shell_timeout_ms),
            cfg.limits.max_timeout_ms,
        )
    }

    /// Runs `/bin/sh -c cmd` in sandbox `id` to completion.
    pub async fn shell(
        &self,
        caller: &Principal,
        id: &str,
        req: ShellRequest,
    ) -> Result<ShellResponse, NodeError> {
        caller.require(Scope::SandboxesWrite)?;
        let cfg = self.config();
        let timeout_ms = self.run_timeout(req.timeout_ms)?;
        let ProcessOptions {
            cmd,
            cwd,
            env,
            user,
        } = self.process_options(caller, id, req.cmd, req.cwd, req.env, req.user)?;
        let cap = cfg.limits.shell_output_bytes;
        let spec = ShellSpec {
            cmd,
            cwd,
            env,
            user,
            timeout_ms: Some(timeout_ms),
            output_cap: cap,
        };
        let stdin = req.stdin.unwrap_or_default();
        let run = async {
            let mut call = self
                .send_to_agent(id, &Request::Shell(spec), stdin.as_bytes())
                .await?;
            let (mut out, mut err) = (Captured::default(), Captured::default());
            loop {
                match call.next().await? {
                    (Event::Stdout, data) => out.push(&data, cap as usize),
                    (Event::Stderr, data) => err.push(&data, cap as usize),
                    (
                        Event::Exited {
                            exit_code,
                            signal,
                            timed_out,
                            truncated,
                            duration_ms,
                        },
                        _,
                    ) => {
                        let error = if timed_out {
                            Some(format!(
                                "the command timed out after {timeout_ms} ms and was killed"
                            ))
                        } else {
                            signal.map(|s| format!("the command was killed by signal {s}"))
                        };
                        return Ok(ShellResponse {
                            stdout: String::from_utf8_lossy(&out.bytes).into_owned(),
                            stderr: String::from_utf8_lossy(&err.bytes).into_owned(),
                            exit_code: if timed_out { None } else { exit_code },
                            duration_ms,
                            truncated: truncated || out.truncated || err.truncated,
                            error,
                        });
                    }
                    (other, _) => {
                        return Err(call.unexpected(format_args!("unexpected answer {other:?}")));
                    }
                }
            }
        };
        match tokio::time::timeout(Duration::from_millis(timeout_ms) + GRACE, run).await {
            Ok(result) => result,
            Err(_) => Err(self.unresponsive_or_paused(caller, id)),
        }
    }

    /// The error for a call that got no answer in time: 409 when the sandbox was paused
    /// meanwhile, else the agent is unresponsive.
    fn unresponsive_or_paused(&self, caller: &Principal, id: &str) -> NodeError {
        match self.running_record(caller, id) {
            Err(e) => e,
            Ok(_) => NodeError::Unresponsive(id.to_string(), "no answer in time".into()),
        }
    }
}

//! Running code in a sandbox's contexts, through its agent: as one Execution, or as a stream
//! of events for Server-Sent Events. Dropping a stream closes the agent connection, which
//! interrupts the run (a client that disconnects stops its code).

use std::time::Duration;

use ai2in_api::{ContextInfo, ExecError, ExecResult, Execution, Logs, RunRequest};
use ai2in_protocol::{Event, Request, RunSpec};

use crate::agent_client::AgentCall;
use crate::auth::{Principal, Scope};
use crate::error::NodeError;
use crate::ids;
use crate::node::Node;
use crate::shell::check_env;
use crate::text::Utf8Stream;

/// Most output and result bytes one run collects; past it output is dropped (with a note).
const MAX_RUN_BYTES: usize = 64 << 20;
/// Time the node gives an agent beyond the run's timeout (it interrupts, then waits for the
/// interpreter to stop) before giving up on it.
const GRACE: Duration = Duration::from_secs(10);

/// One event of a run, in order; `Done` is last.
#[derive(Debug, Clone)]
pub enum RunEvent {
    /// Text the code wrote to standard output.
    Stdout(String),
    /// Text the code wrote to standard error.
    Stderr(String),
    /// A result.
    Result(ExecResult),
    /// The error the code raised.
    Error(ExecError),
    /// The whole Execution.
    Done(Box<Execution>),
}

/// A run in progress.
pub struct RunStream {
    call: AgentCall,
    execution: Execution,
    streams: [Utf8Stream; 2],
    collected: usize,
    deadline: tokio::time::Instant,
    sandbox: String,
    finished: bool,
}

fn context_info(c: ai2in_protocol::ContextInfo) -> ContextInfo {
    ContextInfo {
        context_id: c.context_id,
        language: c.language,
        cwd: c.cwd,
        alive: c.alive,
    }
}

fn check_context_id(id: &str) -> Result<(), NodeError> {
    ids::check(id, "ctx", "context")
}

impl RunStream {
    /// The next event; `None` after `Done`.
    pub async fn next(&mut self) -> Option<Result<RunEvent, NodeError>> {
        if self.finished {
            return None;
        }
        loop {
            let next = match tokio::time::timeout_at(self.deadline, self.call.next()).await {
                Ok(next) => next,
                Err(_) => {
                    self.finished = true;
                    return Some(Err(NodeError::Unresponsive(
                        self.sandbox.clone(),
                        "the run did not end in time".into(),
                    )));
                }
            };
            let event = match next {
                Ok(event) => event,
                Err(e) => {
                    self.finished = true;
                    return Some(Err(e));
                }
            };
            match event {
                (Event::Stdout, data) | (Event::Stderr, data)
                    if self.collected + data.len() > MAX_RUN_BYTES =>
                {
                    continue;
                }
                (Event::Stdout, data) => {
                    self.collected += data.len();
                    let text = self.streams[0].push(&data);
                    if text.is_empty() {
                        continue;
                    }
                    self.execution.logs.stdout.push(text.clone());
                    return Some(Ok(RunEvent::Stdout(text)));
                }
                (Event::Stderr, data) => {
                    self.collected += data.len();
                    let text = self.streams[1].push(&data);
                    if text.is_empty() {
                        continue;
                    }
                    self.execution.logs.stderr.push(text.clone());
                    return Some(Ok(RunEvent::Stderr(text)));
                }
                (Event::RunResult { is_main_result }, data) => {
                    self.collected += data.len();
                    let Ok(bundle) =
                        serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&data)
                    else {
                        continue;
                    };
                    if self.collected > MAX_RUN_BYTES {
                        continue;
                    }
                    let result = ExecResult {
                        is_main_result,
                        data: bundle,
                    };
                    self.execution.results.push(result.clone());
                    return Some(Ok(RunEvent::Result(result)));
                }
                (
                    Event::RunError {
                        name,
                        value,
                        traceback,
                    },
                    _,
                ) => {
                    let error = ExecError {
                        name,
                        value,
                        traceback,
                    };
                    self.execution.error = Some(error.clone());
                    return Some(Ok(RunEvent::Error(error)));
                }
                (
                    Event::RunDone {
                        context_id,
                        execution_count,
                        duration_ms,
                        exit_code,
                    },
                    _,
                ) => {
                    self.finished = true;
                    for (i, logs) in [0, 1].into_iter().zip([true, false]) {
                        let rest = self.streams[i].finish();
                        if !rest.is_empty() {
                            let target = if logs {
                                &mut self.execution.logs.stdout
                            } else {
                                &mut self.execution.logs.stderr
                            };
                            target.push(rest);
                        }
                    }
                    self.execution.context_id = context_id;
                    self.execution.execution_count = execution_count;
                    self.execution.duration_ms = duration_ms;
                    self.execution.exit_code = exit_code;
                    return Some(Ok(RunEvent::Done(Box::new(self.execution.clone()))));
                }
                (other, _) => {
                    self.finished = true;
                    return Some(Err(self
                        .call
                        .unexpected(format_args!("unexpected answer {other:?}"))));
                }
            }
        }
    }
}

impl Node {
    /// Starts running code in sandbox `id`; events come from the stream.
    pub async fn run_stream(
        &self,
        caller: &Principal,
        id: &str,
        req: RunRequest,
    ) -> Result<RunStream, NodeError> {
        caller.require(Scope::SandboxesWrite)?;
        let timeout_ms = self.run_timeout(req.timeout_ms)?;
        if let Some(language) = &req.language {
            if !matches!(language.as_str(), "python" | "javascript" | "bash") {
                return Err(NodeError::Invalid(format!(
                    "language {language:?} is not one of python, javascript, bash"
                )));
            }
        }
        if let Some(context_id) = &req.context_id {
            check_context_id(context_id)?;
        }
        let env = check_env(req.env)?;
        let spec = RunSpec {
            code: req.code,
            language: req.language,
            context_id: req.context_id,
            timeout_ms,
            env,
        };
        let call = self
            .call_agent(caller, id, &Request::Run(spec), &[])
            .await?;
        Ok(RunStream {
            call,
            execution: Execution {
                results: Vec::new(),
                logs: Logs::default(),
                error: None,
                execution_count: 0,
                duration_ms: 0.0,
                context_id: String::new(),
                exit_code: None,
            },
            streams: Default::default(),
            collected: 0,
            deadline: tokio::time::Instant::now() + Duration::from_millis(timeout_ms) + GRACE,
            sandbox: id.to_string(),
            finished: false,
        })
    }

    /// Runs code in sandbox `id` to completion.
    pub async fn run(
        &self,
        caller: &Principal,
        id: &str,
        req: RunRequest,
    ) -> Result<Execution, NodeError> {
        let mut stream = self.run_stream(caller, id, req).await?;
        while let Some(event) = stream.next().await {
            if let RunEvent::Done(execution) = event? {
                return Ok(*execution);
            }
        }
        Err(NodeError::Unresponsive(
            id.to_string(),
            "the run ended without a result".into(),
        ))
    }

    async fn context_call(
        &self,
        caller: &Principal,
        id: &str,
        request: Request,
    ) -> Result<ContextInfo, NodeError> {
        let mut call = self.call_agent(caller, id, &request, &[]).await?;
        match call.next().await? {
            (Event::Context { info }, _) => Ok(context_info(info)),
            (other, _) => Err(call.unexpected(format_args!("unexpected answer {other:?}"))),
        }
    }

    /// Creates a code context (its interpreter starts now).
    pub async fn create_context(
        &self,
        caller: &Principal,
        id: &str,
        language: String,
        cwd: Option<String>,
    ) -> Result<ContextInfo, NodeError> {
        caller.require(Scope::SandboxesWrite)?;
        if !matches!(language.as_str(), "python" | "javascript" | "bash") {
            return Err(NodeError::Invalid(format!(
                "language {language:?} is not one of python, javascript, bash"
            )));
        }
        let cwd = self.run_defaults(caller, id)?.cwd(cwd)?;
        self.context_call(caller, id, Request::ContextCreate { language, cwd })
            .await
    }

    /// The code contexts of sandbox `id`.
    pub async fn list_contexts(
        &self,
        caller: &Principal,
        id: &str,
    ) -> Result<Vec<ContextInfo>, NodeError> {
        caller.require(Scope::SandboxesRead)?;
        let mut call = self
            .call_agent(caller, id, &Request::ContextList, &[])
            .await?;
        match call.next().await? {
            (Event::Contexts { contexts }, _) => {
                Ok(contexts.into_iter().map(context_info).collect())
            }
            (other, _) => Err(call.unexpected(format_args!("unexpected answer {other:?}"))),
        }
    }

    /// Restarts a context's interpreter (its state is lost).
    pub async fn restart_context(
        &self,
        caller: &Principal,
        id: &str,
        context_id: &str,
    ) -> Result<ContextInfo, NodeError> {
        caller.require(Scope::SandboxesWrite)?;
        check_context_id(context_id)?;
        self.context_call(
            caller,
            id,
            Request::ContextRestart {
                context_id: context_id.to_string(),
            },
        )
        .await
    }

    /// Ends a context.
    pub async fn delete_context(
        &self,
        caller: &Principal,
        id: &str,
        context_id: &str,
    ) -> Result<(), NodeError> {
        caller.require(Scope::SandboxesWrite)?;
        check_context_id(context_id)?;
        let mut call = self
            .call_agent(
                caller,
                id,
                &Request::ContextDelete {
                    context_id: context_id.to_string(),
                },
                &[],
            )
            .await?;
        match call.next().await? {
            (Event::Done { .. }, _) => Ok(()),
            (other, _) => Err(call.unexpected(format_args!("unexpected answer {other:?}"))),
        }
    }
}

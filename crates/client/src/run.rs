//! Running code: `Sandbox::run` answers the whole Execution, `Sandbox::run_stream` the
//! events as they happen (`stdout`, `stderr`, `result`, `error`, then `done`).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;

use ai2in_api::{ExecError, ExecResult, Execution, RunRequest};
use futures_util::Stream;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::sandbox::{Sandbox, millis};
use crate::sse::{self, SseEvent};

/// A language the node runs code in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Language {
    /// Python 3 (the default), with notebook-style results.
    #[default]
    Python,
    /// JavaScript (Node.js).
    Javascript,
    /// Bash; the Execution carries the snippet's `exit_code`.
    Bash,
}

impl Language {
    /// Its name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::Javascript => "javascript",
            Language::Bash => "bash",
        }
    }
}

impl std::fmt::Display for Language {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Language {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "python" | "py" => Ok(Language::Python),
            "javascript" | "js" | "node" => Ok(Language::Javascript),
            "bash" | "sh" => Ok(Language::Bash),
            other => Err(format!(
                "unknown language {other:?}: use python, javascript or bash"
            )),
        }
    }
}

/// Code and how to run it, for [`Sandbox::run_with`] and [`Sandbox::run_stream`]; a
/// `&str` or `String` converts into the default options.
///
/// ```no_run
/// # async fn demo(sandbox: ai2in_client::Sandbox) -> ai2in_client::Result<()> {
/// use ai2in_client::{Language, RunOptions};
/// use std::time::Duration;
/// let execution = sandbox
///     .run_with(
///         RunOptions::new("echo $GREETING; exit 3")
///             .language(Language::Bash)
///             .env("GREETING", "hi")
///             .timeout(Duration::from_secs(10)),
///     )
///     .await?;
/// assert_eq!(execution.exit_code, Some(3));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RunOptions(RunRequest);

impl RunOptions {
    /// `code`, in Python unless said otherwise.
    pub fn new(code: impl Into<String>) -> Self {
        RunOptions(RunRequest {
            code: code.into(),
            ..Default::default()
        })
    }

    /// The language (default Python); not needed with [`RunOptions::context`].
    pub fn language(mut self, language: Language) -> Self {
        self.0.language = Some(language.as_str().to_string());
        self
    }

    /// Runs in this context (`ctx_…`) instead of the language's default one.
    pub fn context(mut self, context_id: impl Into<String>) -> Self {
        self.0.context_id = Some(context_id.into());
        self
    }

    /// Interrupts the run after `timeout` (the context survives).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.0.timeout_ms = Some(millis(timeout));
        self
    }

    /// Adds an environment variable for this run (the context keeps it).
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.0
            .env
            .get_or_insert_with(BTreeMap::new)
            .insert(name.into(), value.into());
        self
    }
}

impl From<&str> for RunOptions {
    fn from(code: &str) -> Self {
        RunOptions::new(code)
    }
}

impl From<String> for RunOptions {
    fn from(code: String) -> Self {
        RunOptions::new(code)
    }
}

/// One event of [`Sandbox::run_stream`]. `Done` is always last.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEvent {
    /// Text the code printed to standard output.
    Stdout(String),
    /// Text the code printed to standard error.
    Stderr(String),
    /// A result (the main one is the value of the last expression).
    Result(ExecResult),
    /// The error the code raised.
    Error(ExecError),
    /// The run ended: the whole Execution.
    Done(Execution),
}

#[derive(Deserialize)]
struct Text {
    text: String,
}

#[derive(Deserialize)]
struct ResultEvent {
    result: ExecResult,
}

#[derive(Deserialize)]
struct DoneEvent {
    execution: Option<Execution>,
    #[serde(default)]
    error: Option<String>,
}

impl RunEvent {
    /// The event `sse` stands for; `None` for events this SDK does not know (skipped, so
    /// that a newer node does not break older clients).
    fn decode(sse: &SseEvent) -> Result<Option<RunEvent>> {
        Ok(Some(match sse.event.as_str() {
            "stdout" => RunEvent::Stdout(sse.json::<Text>()?.text),
            "stderr" => RunEvent::Stderr(sse.json::<Text>()?.text),
            "result" => RunEvent::Result(sse.json::<ResultEvent>()?.result),
            "error" => RunEvent::Error(sse.json()?),
            "done" => match sse.json::<DoneEvent>()? {
                DoneEvent {
                    execution: Some(execution),
                    ..
                } => RunEvent::Done(execution),
                DoneEvent { error, .. } => {
                    return Err(Error::Stream(
                        error.unwrap_or_else(|| "the run failed".into()),
                    ));
                }
            },
            _ => return Ok(None),
        }))
    }
}

/// A boxed stream of run events, as [`Sandbox::run_stream`] answers.
pub type RunStream = Pin<Box<dyn Stream<Item = Result<RunEvent>> + Send>>;

/// Helpers on an [`Execution`] (a wire type of `ai2in_api`).
pub trait ExecutionExt {
    /// The `text/plain` form of the main result (the value of the last expression).
    fn text(&self) -> Option<&str>;
    /// Everything printed to standard output, joined.
    fn stdout(&self) -> String;
}

impl ExecutionExt for Execution {
    fn text(&self) -> Option<&str> {
        self.results
            .iter()
            .find(|r| r.is_main_result)
            .and_then(|r| r.data.get("text/plain"))
            .and_then(|t| t.as_str())
    }

    fn stdout(&self) -> String {
        self.logs.stdout.concat()
    }
}

impl Sandbox {
    /// Runs Python `code` in the sandbox's default context and answers the Execution. An
    /// error raised by the code is in `execution.error`, not an `Err`.
    ///
    /// ```no_run
    /// # async fn demo(sandbox: ai2in_client::Sandbox) -> ai2in_client::Result<()> {
    /// use ai2in_client::ExecutionExt;
    /// sandbox.run("x = 21").await?;
    /// assert_eq!(sandbox.run("x * 2").await?.text(), Some("42"));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn run(&self, code: &str) -> Result<Execution> {
        self.run_with(RunOptions::new(code)).await
    }

    /// Runs code with options (language, context, timeout, env).
    pub async fn run_with(&self, options: impl Into<RunOptions>) -> Result<Execution> {
        self.http().post(&self.path("run"), &options.into().0).await
    }

    /// Runs code and answers its events as they happen, `RunEvent::Done` last. Dropping
    /// the stream interrupts the run.
    ///
    /// ```no_run
    /// # async fn demo(sandbox: ai2in_client::Sandbox) -> ai2in_client::Result<()> {
    /// use ai2in_client::RunEvent;
    /// use futures_util::StreamExt;
    /// let mut events = sandbox.run_stream("print('a'); 1 + 1").await?;
    /// while let Some(event) = events.next().await {
    ///     match event? {
    ///         RunEvent::Stdout(text) => print!("{text}"),
    ///         RunEvent::Done(execution) => println!("took {} ms", execution.duration_ms),
    ///         _ => {}
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn run_stream(&self, options: impl Into<RunOptions>) -> Result<RunStream> {
        let response = self
            .http()
            .post_raw(&self.path("run/stream"), &options.into().0)
            .await?;
        Ok(Box::pin(run_events(sse::events(response))))
    }
}

/// Run events from SSE events: unknown events skipped, the stream closed after `done`, and
/// an error if it ends before `done`.
fn run_events(
    events: impl Stream<Item = Result<SseEvent>> + Send + 'static,
) -> impl Stream<Item = Result<RunEvent>> + Send {
    sse::until_last(
        events,
        RunEvent::decode,
        |e| matches!(e, RunEvent::Done(_)),
        "run",
    )
}

//! Code contexts: one long-lived interpreter per context, running a small driver program
//! (`src/drivers/`) that speaks newline-delimited JSON on its fd 3 while the program's own
//! fd 1 and 2 carry output written below the language (subprocesses). Runs in a context are
//! serialized; a timeout or a node that hangs up interrupts the run (SIGINT) and the
//! context survives; an interpreter that dies is reported and restarted on the next run.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ai2in_protocol::{ContextInfo, Event, FailKind, FrameError, RunSpec, write_frame};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf, pipe};
use tokio::sync::oneshot;

use crate::fs::FsError;
use crate::process::{Launch, kill_group_fully, read_now, signal_group, spawn};
use crate::reaper::{Exit, Reaper};
use crate::spawner::Spawner;

/// How long an interpreter may take to say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long an interrupted run may take to finish before its interpreter is killed.
const INTERRUPT_GRACE: Duration = Duration::from_secs(3);
/// Longest protocol line accepted from a driver (a large image result).
const MAX_LINE: usize = 16 << 20;
/// Contexts per sandbox.
const MAX_CONTEXTS: usize = 64;

/// A language a context runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    Python,
    JavaScript,
    Bash,
}

impl Language {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "python" => Some(Language::Python),
            "javascript" => Some(Language::JavaScript),
            "bash" => Some(Language::Bash),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::JavaScript => "javascript",
            Language::Bash => "bash",
        }
    }

    /// The command line of its driver.
    fn argv(self) -> Vec<String> {
        let (program, flags, source): (&str, &[&str], &str) = match self {
            Language::Python => ("python3", &["-u", "-c"], include_str!("drivers/python.py")),
            Language::JavaScript => ("node", &["-e"], include_str!("drivers/javascript.js")),
            Language::Bash => (
                "bash",
                &["--noprofile", "--norc", "-c"],
                include_str!("drivers/bash.sh"),
            ),
        };
        let mut argv = vec![program.to_string()];
        argv.extend(flags.iter().map(|f| f.to_string()));
        argv.push(source.to_string());
        if self == Language::Bash {
            argv.push("bash".into());
        }
        argv
    }
}

/// A running interpreter.
struct Driver {
    language: Language,
    pid: u32,
    lines: Lines,
    requests: OwnedWriteHalf,
    stdout: pipe::Receiver,
    stderr: pipe::Receiver,
    /// Whether fd 1 / fd 2 of the interpreter are still open.
    open: [bool; 2],
    exited: oneshot::Receiver<Exit>,
}

impl Driver {
    /// How it ended, if it has.
    fn exited_now(&mut self) -> Option<Exit> {
        self.exited.try_recv().ok()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        kill_group_fully(self.pid);
    }
}

#[derive(Default)]
struct Slot {
    driver: Option<Driver>,
    execution_count: u64,
    /// The last interpreter died: the next run says its state was lost.
    lost_state: bool,
}

struct Kernel {
    id: String,
    language: Language,
    cwd: String,
    slot: tokio::sync::Mutex<Slot>,
}

impl Kernel {
    fn info(&self, alive: bool) -> ContextInfo {
        ContextInfo {
            context_id: self.id.clone(),
            language: self.language.name().into(),
            cwd: self.cwd.clone(),
            alive,
        }
    }
}

/// What starting an interpreter needs from the agent.
pub struct Env<'a> {
    /// Where contexts start unless told (the image's working directory).
    pub cwd: &'a str,
    pub sandbox_env: &'a [(String, String)],
    pub spawner: &'a Arc<Spawner>,
    pub reaper: &'a Reaper,
}

/// Every context of the sandbox.
#[derive(Default)]
pub struct Kernels {
    map: Mutex<HashMap<String, Arc<Kernel>>>,
    defaults: Mutex<HashMap<Language, String>>,
    /// A Python interpreter started ahead (in the default directory) once the sandbox has used
    /// Python, so that a new context's first run does not wait for Python to start.
    spare: Arc<tokio::sync::Mutex<Option<Driver>>>,
}

/// One message of a driver.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum DriverMessage {
    Ready,
    Stdout {
        text: String,
    },
    Stderr {
        text: String,
    },
    Result {
        is_main_result: bool,
        data: serde_json::Value,
    },
    Error {
        name: String,
        value: String,
        traceback: String,
    },
    Done {
        exit_code: Option<i32>,
    },
}

/// The driver's message lines. A line read in part is kept between calls, so that `next`
/// may lose a race in `select!` (a long line, an image, arrives in pieces).
struct Lines {
    reader: BufReader<OwnedReadHalf>,
    partial: Vec<u8>,
}

impl Lines {
    fn new(reader: BufReader<OwnedReadHalf>) -> Self {
        Lines {
            reader,
            partial: Vec::new(),
        }
    }

    /// The next line (without its newline), or `None` at EOF; lines over [`MAX_LINE`] fail.
    /// Cancel-safe.
    async fn next(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            let available = self.reader.fill_buf().await?;
            if available.is_empty() {
                return Ok(None);
            }
            let (take, done) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            self.partial.extend_from_slice(&available[..take]);
            self.reader.consume(take);
            if self.partial.len() > MAX_LINE {
                self.partial.clear();
                return Err(std::io::Error::other("driver line too long"));
            }
            if done {
                let mut line = std::mem::take(&mut self.partial);
                line.pop();
                return Ok(Some(line));
            }
        }
    }
}

async fn start(language: Language, cwd: &str, env: &Env<'_>) -> Result<Driver, FsError> {
    let argv = language.argv();
    if !on_path(&argv[0], env.sandbox_env) {
        return Err(FsError(
            FailKind::Invalid,
            format!(
                "this sandbox's image has no {} on its PATH, which {} code needs; create the \
                 sandbox from an image that has it (the host image has what the node has)",
                argv[0],
                language.name()
            ),
        ));
    }
    start_driver(language, argv, cwd, env)
        .await
        .map_err(|m| FsError(FailKind::Other, m))
}

/// Whether `program` is an executable file in a directory of the sandbox's PATH.
fn on_path(program: &str, env: &[(String, String)]) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map_or(crate::users::DEFAULT_PATH, |(_, v)| v.as_str());
    path.split(':').filter(|d| !d.is_empty()).any(|dir| {
        std::fs::metadata(std::path::Path::new(dir).join(program))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

async fn start_driver(
    language: Language,
    argv: Vec<String>,
    cwd: &str,
    env: &Env<'_>,
) -> Result<Driver, String> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(|e| e.to_string())?;
    let launch = Launch {
        argv,
        cwd: cwd.to_string(),
        env: env.sandbox_env.to_vec(),
        user: "root".into(),
        stdin: false,
        extra_fds: vec![OwnedFd::from(theirs)],
    };
    let epoch = env.reaper.epoch();
    let spawned = spawn(env.spawner, launch).await?;
    let exited = env.reaper.watch(spawned.pid, epoch);
    let setup = (|| {
        ours.set_nonblocking(true)?;
        let (read, write) = UnixStream::from_std(ours)?.into_split();
        Ok::<_, std::io::Error>((
            BufReader::new(read),
            write,
            pipe::Receiver::from_owned_fd(spawned.stdout)?,
            pipe::Receiver::from_owned_fd(spawned.stderr)?,
        ))
    })();
    let (lines, requests, stdout, stderr) = setup.map_err(|e| {
        kill_group_fully(spawned.pid);
        e.to_string()
    })?;
    let mut driver = Driver {
        language,
        pid: spawned.pid,
        lines: Lines::new(lines),
        requests,
        stdout,
        stderr,
        open: [true, true],
        exited,
    };
    let ready = tokio::time::timeout(START_TIMEOUT, driver.lines.next()).await;
    match ready {
        Ok(Ok(Some(line))) if matches!(serde_json::from_slice(&line), Ok(DriverMessage::Ready)) => {
            Ok(driver)
        }
        Ok(Ok(Some(_))) => Err(format!(
            "the {} interpreter did not start properly",
            language.name()
        )),
        Ok(_) => {
            let mut why = Vec::new();
            let _ = tokio::time::timeout(
                Duration::from_millis(200),
                driver.stderr.read_to_end(&mut why),
            )
            .await;
            Err(format!(
                "the {} interpreter could not start: {}",
                language.name(),
                String::from_utf8_lossy(&why).trim()
            ))
        }
        Err(_) => Err(format!(
            "the {} interpreter did not start within {START_TIMEOUT:?}",
            language.name()
        )),
    }
}

fn describe_exit(exit: Option<Exit>) -> String {
    match exit {
        Some(Exit::Code(c)) => format!("exited with status {c}"),
        Some(Exit::Signal(9)) => "was killed (out of memory?)".into(),
        Some(Exit::Signal(s)) => format!("was killed by signal {s}"),
        None => "went away".into(),
    }
}

impl Kernels {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Kernel>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, id: &str) -> Result<Arc<Kernel>, FsError> {
        self.map()
            .get(id)
            .cloned()
            .ok_or_else(|| FsError(FailKind::NotFound, format!("no context {id}")))
    }

    fn insert(&self, language: Language, cwd: String) -> Result<Arc<Kernel>, FsError> {
        let mut map = self.map();
        if map.len() >= MAX_CONTEXTS {
            return Err(FsError(
                FailKind::Exhausted,
                format!("at most {MAX_CONTEXTS} contexts per sandbox; delete one first"),
            ));
        }
        let kernel = Arc::new(Kernel {
            id: format!("ctx_{:016x}", crate::process::random_u64()),
            language,
            cwd,
            slot: tokio::sync::Mutex::default(),
        });
        map.insert(kernel.id.clone(), kernel.clone());
        Ok(kernel)
    }

    /// The context a run goes to.
    fn resolve(
        &self,
        language: Option<&str>,
        context_id: Option<&str>,
        default_cwd: &str,
    ) -> Result<Arc<Kernel>, FsError> {
        let language = match language {
            None => None,
            Some(l) => Some(Language::parse(l).ok_or_else(|| {
                FsError(
                    FailKind::Invalid,
                    format!("unknown language {l:?}; use python, javascript or bash"),
                )
            })?),
        };
        if let Some(id) = context_id {
            let kernel = self.get(id)?;
            if language.is_some_and(|l| l != kernel.language) {
                return Err(FsError(
                    FailKind::Invalid,
                    format!(
                        "context {id} runs {}, not {}",
                        kernel.language.name(),
                        language.map_or("", Language::name)
                    ),
                ));
            }
            return Ok(kernel);
        }
        let language = language.unwrap_or(Language::Python);
        let mut defaults = self.defaults.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(kernel) = defaults.get(&language).and_then(|id| self.get(id).ok()) {
            return Ok(kernel);
        }
        let kernel = self.insert(language, default_cwd.into())?;
        defaults.insert(language, kernel.id.clone());
        Ok(kernel)
    }

    /// A started interpreter for a new context: the spare when it fits, else a new one.
    /// Taking (or starting) a Python interpreter starts the next spare in the background.
    async fn obtain(
        &self,
        language: Language,
        cwd: &str,
        env: &Env<'_>,
    ) -> Result<Driver, FsError> {
        if language != Language::Python {
            return start(language, cwd, env).await;
        }
        let spare = if cwd == env.cwd {
            self.spare.lock().await.take()
        } else {
            None
        };
        let spare = spare.and_then(|mut d| d.exited_now().is_none().then_some(d));
        let driver = match spare {
            Some(driver) => driver,
            None => start(language, cwd, env).await?,
        };
        let slot = self.spare.clone();
        let owned = (
            env.cwd.to_string(),
            env.sandbox_env.to_vec(),
            env.spawner.clone(),
            env.reaper.clone(),
        );
        tokio::spawn(async move {
            let mut slot = slot.lock().await;
            if slot.is_none() {
                let env = Env {
                    cwd: &owned.0,
                    sandbox_env: &owned.1,
                    spawner: &owned.2,
                    reaper: &owned.3,
                };
                *slot = start(Language::Python, env.cwd, &env).await.ok();
            }
        });
        Ok(driver)
    }

    /// Creates a context and starts its interpreter.
    pub async fn create(
        &self,
        language: &str,
        cwd: String,
        env: &Env<'_>,
    ) -> Result<ContextInfo, FsError> {
        let language = Language::parse(language).ok_or_else(|| {
            FsError(
                FailKind::Invalid,
                format!("unknown language {language:?}; use python, javascript or bash"),
            )
        })?;
        let kernel = self.insert(language, cwd)?;
        let mut slot = kernel.slot.lock().await;
        match self.obtain(language, &kernel.cwd, env).await {
            Ok(driver) => slot.driver = Some(driver),
            Err(e) => {
                self.map().remove(&kernel.id);
                return Err(e);
            }
        }
        Ok(kernel.info(true))
    }

    /// The contexts.
    pub async fn list(&self) -> Vec<ContextInfo> {
        let kernels: Vec<_> = self.map().values().cloned().collect();
        let mut out = Vec::new();
        for k in kernels {
            // A busy context is alive by definition.
            let alive = k.slot.try_lock().map_or(true, |s| s.driver.is_some());
            out.push(k.info(alive));
        }
        out.sort_by(|a, b| a.context_id.cmp(&b.context_id));
        out
    }

    /// Ends a context and its interpreter.
    pub fn delete(&self, id: &str) -> Result<(), FsError> {
        let kernel = self
            .map()
            .remove(id)
            .ok_or_else(|| FsError(FailKind::NotFound, format!("no context {id}")))?;
        self.defaults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, v| v != id);
        if let Ok(mut slot) = kernel.slot.try_lock() {
            slot.driver = None;
        }
        Ok(())
    }

    /// Restarts a context's interpreter: its state is lost.
    pub async fn restart(&self, id: &str, env: &Env<'_>) -> Result<ContextInfo, FsError> {
        let kernel = self.get(id)?;
        let mut slot = kernel.slot.lock().await;
        slot.driver = None;
        slot.lost_state = false;
        let driver = start(kernel.language, &kernel.cwd, env).await?;
        slot.driver = Some(driver);
        Ok(kernel.info(true))
    }

    /// Runs code and streams what it produces to `conn`.
    pub async fn run(
        &self,
        spec: RunSpec,
        env: &Env<'_>,
        conn: &mut UnixStream,
    ) -> Result<(), FrameError> {
        let kernel = match self.resolve(
            spec.language.as_deref(),
            spec.context_id.as_deref(),
            env.cwd,
        ) {
            Ok(k) => k,
            Err(e) => return e.send(conn).await,
        };
        let mut slot = kernel.slot.lock().await;
        let started = Instant::now();
        if slot.driver.is_none() {
            let note = std::mem::take(&mut slot.lost_state).then(|| {
                format!("[ai2in] the {} interpreter of this context was restarted; its earlier state was lost\n", kernel.language.name())
            });
            match self.obtain(kernel.language, &kernel.cwd, env).await {
                Ok(driver) => slot.driver = Some(driver),
                Err(e) => return e.send(conn).await,
            }
            if let Some(note) = note {
                write_frame(conn, &Event::Stderr, note.as_bytes()).await?;
            }
        }
        slot.execution_count += 1;
        let execution_count = slot.execution_count;
        let driver = slot.driver.as_mut().expect("started above");
        let outcome = execute(driver, &spec, execution_count, conn).await;
        let (died, exit_code) = match outcome {
            Outcome::Done(exit_code) => (None, exit_code),
            Outcome::Died => {
                let mut driver = slot.driver.take().expect("running");
                let exit = tokio::time::timeout(Duration::from_secs(1), &mut driver.exited)
                    .await
                    .ok()
                    .and_then(|r| r.ok());
                slot.lost_state = true;
                (Some(exit), None)
            }
            Outcome::Gone(e) => return Err(e),
        };
        drop(slot);
        if let Some(exit) = died {
            let error = Event::RunError {
                name: "InterpreterDied".into(),
                value: format!(
                    "the {} interpreter {}; the context's state is lost and the next run starts a new one",
                    kernel.language.name(),
                    describe_exit(exit)
                ),
                traceback: String::new(),
            };
            write_frame(conn, &error, &[]).await?;
        }
        let done = Event::RunDone {
            context_id: kernel.id.clone(),
            execution_count,
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
            exit_code,
        };
        write_frame(conn, &done, &[]).await
    }
}

enum Outcome {
    /// The driver said done (with the bash exit status).
    Done(Option<i32>),
    /// The interpreter died mid-run.
    Died,
    /// The node went away and the run could not be interrupted cleanly.
    Gone(FrameError),
}

/// The request line for a run. Python and JavaScript read JSON; the bash driver reads
/// `execute ID CODE_B64 ENV_B64` (export lines), which bash can parse without help.
fn execute_line(language: Language, spec: &RunSpec, id: u64) -> Vec<u8> {
    use base64::Engine;
    let mut line = if language == Language::Bash {
        let b64 = base64::engine::general_purpose::STANDARD;
        let exports: String = spec
            .env
            .iter()
            .map(|(k, v)| format!("export {k}='{}'\n", v.replace('\'', r"'\''")))
            .collect();
        format!(
            "execute {id} {} {}",
            b64.encode(&spec.code),
            b64.encode(exports)
        )
        .into_bytes()
    } else {
        let env: serde_json::Map<String, serde_json::Value> = spec
            .env
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        let request = serde_json::json!({ "type": "execute", "id": id.to_string(), "code": spec.code, "env": env });
        serde_json::to_vec(&request).expect("JSON value serializes")
    };
    line.push(b'\n');
    line
}

/// One run on a live driver: forwards its output and results to the node.
async fn execute(driver: &mut Driver, spec: &RunSpec, id: u64, conn: &mut UnixStream) -> Outcome {
    let line = execute_line(driver.language, spec, id);
    if driver.requests.write_all(&line).await.is_err() {
        return Outcome::Died;
    }
    let (conn_read, mut conn_write) = conn.split();
    let sleep = tokio::time::sleep(Duration::from_millis(spec.timeout_ms));
    tokio::pin!(sleep);
    let (mut interrupted, mut client_gone) = (false, false);
    let (mut out_buf, mut err_buf) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    let mut send_failed: Option<FrameError> = None;
    loop {
        let forward: Option<(Event, Vec<u8>)> = tokio::select! {
            line = driver.lines.next() => match line {
                Ok(Some(line)) => match serde_json::from_slice::<DriverMessage>(&line) {
                    Ok(DriverMessage::Done { exit_code }) => {
                        // What the program wrote to fd 1 and 2 before it said done is in
                        // the pipes by now.
                        if !client_gone {
                            for (event, pipe, buf) in [(Event::Stdout, &driver.stdout, &mut out_buf), (Event::Stderr, &driver.stderr, &mut err_buf)] {
                                while let Ok(n @ 1..) = read_now(pipe, buf) {
                                    if let Err(e) = write_frame(&mut conn_write, &event, &buf[..n]).await {
                                        return Outcome::Gone(e);
                                    }
                                }
                            }
                        }
                        return match send_failed {
                            Some(e) if client_gone => Outcome::Gone(e),
                            _ => Outcome::Done(exit_code),
                        };
                    }
                    Ok(DriverMessage::Stdout { text }) => Some((Event::Stdout, text.into_bytes())),
                    Ok(DriverMessage::Stderr { text }) => Some((Event::Stderr, text.into_bytes())),
                    Ok(DriverMessage::Result { is_main_result, data }) => {
                        Some((Event::RunResult { is_main_result }, serde_json::to_vec(&data).unwrap_or_default()))
                    }
                    Ok(DriverMessage::Error { name, value, traceback }) => Some((Event::RunError { name, value, traceback }, Vec::new())),
                    Ok(DriverMessage::Ready) | Err(_) => None,
                },
                Ok(None) | Err(_) => return Outcome::Died,
            },
            n = driver.stdout.read(&mut out_buf), if driver.open[0] => match n {
                Ok(n) if n > 0 => Some((Event::Stdout, out_buf[..n].to_vec())),
                _ => {
                    driver.open[0] = false;
                    None
                }
            },
            n = driver.stderr.read(&mut err_buf), if driver.open[1] => match n {
                Ok(n) if n > 0 => Some((Event::Stderr, err_buf[..n].to_vec())),
                _ => {
                    driver.open[1] = false;
                    None
                }
            },
            _ = &mut sleep => {
                if interrupted {
                    // It did not stop: kill it; the next run starts a new one.
                    return Outcome::Died;
                }
                interrupted = true;
                signal_group(driver.pid, libc::SIGINT);
                sleep.as_mut().reset(tokio::time::Instant::now() + INTERRUPT_GRACE);
                None
            }
            _ = conn_read.readable(), if !client_gone => {
                let mut probe = [0u8; 1];
                if matches!(conn_read.try_read(&mut probe), Ok(0)) {
                    client_gone = true;
                    if !interrupted {
                        interrupted = true;
                        signal_group(driver.pid, libc::SIGINT);
                        sleep.as_mut().reset(tokio::time::Instant::now() + INTERRUPT_GRACE);
                    }
                }
                None
            }
        };
        if let (Some((event, data)), false) = (forward, client_gone) {
            if let Err(e) = write_frame(&mut conn_write, &event, &data).await {
                client_gone = true;
                send_failed = Some(e);
                if !interrupted {
                    interrupted = true;
                    signal_group(driver.pid, libc::SIGINT);
                    sleep
                        .as_mut()
                        .reset(tokio::time::Instant::now() + INTERRUPT_GRACE);
                }
            }
        }
    }
}

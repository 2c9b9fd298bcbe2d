//! `ai2in run`, `ai2in exec` and `ai2in commands`: code and commands in a sandbox from
//! the command line.

use std::io::{BufRead, BufReader, Read, Write};

use ai2in_api::{
    CommandList, CommandLogs, CommandLogsRequest, CommandRequest, CommandStarted, Execution,
    RunRequest, ShellRequest, ShellResponse,
};
use anyhow::{Context, bail};
use reqwest::Method;

use crate::client::{Connection, send};

/// Arguments of `ai2in run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// The sandbox
    sandbox: String,
    /// A file with the code, or - for standard input
    file: Option<String>,
    /// The code itself
    #[arg(short = 'c', long = "code", conflicts_with = "file")]
    code: Option<String>,
    /// python, javascript or bash
    #[arg(long = "lang", default_value = "python")]
    language: String,
    /// A context to run in (keeps state between runs)
    #[arg(long)]
    context: Option<String>,
    /// Interrupt the run after this many milliseconds
    #[arg(long)]
    timeout_ms: Option<u64>,
    #[command(flatten)]
    conn: Connection,
}

/// Arguments of `ai2in exec`.
#[derive(clap::Args)]
pub struct ExecArgs {
    /// The sandbox
    sandbox: String,
    /// Working directory inside the sandbox
    #[arg(long)]
    cwd: Option<String>,
    /// Run as `root` (default) or `user`
    #[arg(long)]
    user: Option<String>,
    /// Kill it after this many milliseconds
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// The command and its arguments, after `--`
    #[arg(last = true, required = true)]
    argv: Vec<String>,
    #[command(flatten)]
    conn: Connection,
}

#[derive(clap::Subcommand)]
pub enum CommandsCommand {
    /// Start a command in the background; prints its id.
    ///
    /// Example: `ai2in commands start sbx_… -- python3 -m http.server`
    Start {
        sandbox: String,
        #[arg(last = true, required = true)]
        argv: Vec<String>,
        #[command(flatten)]
        conn: Connection,
    },
    /// List the background commands.
    Ls {
        sandbox: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Print a command's output; with --follow, until it ends.
    Logs {
        sandbox: String,
        command: String,
        #[arg(long, short)]
        follow: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Kill a command's process group.
    Kill {
        sandbox: String,
        command: String,
        /// Signal name or number (default KILL)
        #[arg(long, short)]
        signal: Option<String>,
        #[command(flatten)]
        conn: Connection,
    },
}

/// Quotes `argv` for `/bin/sh -c`.
pub fn shell_quote(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `ai2in run`: output as it comes, then the results; exit status 1 when the code
/// raised an error.
pub fn run(args: RunArgs) -> anyhow::Result<std::process::ExitCode> {
    let code = match (args.code, args.file.as_deref()) {
        (Some(code), _) => code,
        (None, Some("-") | None) => {
            let mut code = String::new();
            std::io::stdin()
                .read_to_string(&mut code)
                .context("read the code from standard input")?;
            code
        }
        (None, Some(path)) => {
            std::fs::read_to_string(path).with_context(|| format!("read {path}"))?
        }
    };
    let body = RunRequest {
        code,
        language: args.context.is_none().then_some(args.language),
        context_id: args.context,
        timeout_ms: args.timeout_ms,
        env: None,
    };
    let route = format!("/v1/sandboxes/{}/run/stream", args.sandbox);
    let response = send(args.conn.request(Method::POST, &route)?.json(&body))?;
    let mut event = String::new();
    let mut execution: Option<Execution> = None;
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    for line in BufReader::new(response).lines() {
        let line = line.context("the stream broke")?;
        if let Some(name) = line.strip_prefix("event:") {
            event = name.trim().to_string();
            continue;
        }
        let Some(data) = line.strip_prefix("data:") else {
            continue;
        };
        let data: serde_json::Value = serde_json::from_str(data.trim())?;
        match event.as_str() {
            "stdout" => write!(out, "{}", data["text"].as_str().unwrap_or_default())?,
            "stderr" => write!(err, "{}", data["text"].as_str().unwrap_or_default())?,
            "error" => writeln!(
                err,
                "{}",
                data["traceback"]
                    .as_str()
                    .filter(|t| !t.is_empty())
                    .map_or_else(
                        || format!(
                            "{}: {}",
                            data["name"].as_str().unwrap_or("Error"),
                            data["value"].as_str().unwrap_or("")
                        ),
                        str::to_string,
                    )
            )?,
            "done" => {
                if let Some(message) = data["error"].as_str() {
                    bail!("{message}");
                }
                execution = Some(serde_json::from_value(data["execution"].clone())?);
            }
            _ => {}
        }
        out.flush()?;
    }
    let execution = execution.context("the stream ended without a result")?;
    if args.conn.json {
        println!("{}", serde_json::to_string_pretty(&execution)?);
    } else {
        for result in execution.results.iter().filter(|r| r.is_main_result) {
            if let Some(text) = result.data.get("text/plain").and_then(|t| t.as_str()) {
                println!("{text}");
            }
        }
    }
    Ok(
        if execution.error.is_some() || execution.exit_code.is_some_and(|c| c != 0) {
            std::process::ExitCode::FAILURE
        } else {
            std::process::ExitCode::SUCCESS
        },
    )
}

/// Runs `ai2in exec`; the command's exit status becomes ours.
pub fn exec(args: ExecArgs) -> anyhow::Result<std::process::ExitCode> {
    let body = ShellRequest {
        cmd: shell_quote(&args.argv),
        cwd: args.cwd,
        user: args.user,
        timeout_ms: args.timeout_ms,
        ..Default::default()
    };
    let res: ShellResponse = args
        .conn
        .post(&format!("/v1/sandboxes/{}/shell", args.sandbox), &body)?;
    std::io::stdout().write_all(res.stdout.as_bytes())?;
    std::io::stderr().write_all(res.stderr.as_bytes())?;
    if let Some(error) = &res.error {
        eprintln!("ai2in: {error}");
    }
    Ok(std::process::ExitCode::from(
        res.exit_code.map_or(1, |c| c.clamp(0, 255) as u8),
    ))
}

/// Runs `ai2in commands …`.
pub fn commands(cmd: CommandsCommand) -> anyhow::Result<()> {
    match cmd {
        CommandsCommand::Start {
            sandbox,
            argv,
            conn,
        } => {
            let body = CommandRequest {
                cmd: shell_quote(&argv),
                ..Default::default()
            };
            let started: CommandStarted =
                conn.post(&format!("/v1/sandboxes/{sandbox}/commands"), &body)?;
            if conn.json {
                println!("{}", serde_json::to_string(&started)?);
            } else {
                println!("{}", started.command_id);
            }
        }
        CommandsCommand::Ls { sandbox, conn } => {
            let list: CommandList =
                send(conn.request(Method::GET, &format!("/v1/sandboxes/{sandbox}/commands"))?)?
                    .json()?;
            if conn.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!(
                    "{:<22} {:>6} {:<8} {:>4}  CMD",
                    "ID", "PID", "STATUS", "EXIT"
                );
                for c in list.commands {
                    let exit = c.exit_code.map_or("-".into(), |e| e.to_string());
                    println!(
                        "{:<22} {:>6} {:<8} {:>4}  {}",
                        c.command_id,
                        c.pid,
                        format!("{:?}", c.status).to_lowercase(),
                        exit,
                        c.cmd
                    );
                }
            }
        }
        CommandsCommand::Logs {
            sandbox,
            command,
            follow,
            conn,
        } => {
            let route = format!("/v1/sandboxes/{sandbox}/commands/{command}/logs");
            let mut offsets = CommandLogsRequest {
                stdout_offset: Some(0),
                stderr_offset: Some(0),
            };
            loop {
                let logs: CommandLogs = conn.post(&route, &offsets)?;
                print!("{}", logs.stdout);
                eprint!("{}", logs.stderr);
                std::io::stdout().flush()?;
                offsets = CommandLogsRequest {
                    stdout_offset: Some(logs.stdout_offset),
                    stderr_offset: Some(logs.stderr_offset),
                };
                let running = logs.status == ai2in_api::CommandStatus::Running;
                if !follow || (!running && logs.stdout.is_empty() && logs.stderr.is_empty()) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        }
        CommandsCommand::Kill {
            sandbox,
            command,
            signal,
            conn,
        } => {
            let signal = signal.map(|s| {
                s.parse::<i32>()
                    .map_or(ai2in_api::Signal::Name(s), ai2in_api::Signal::Number)
            });
            let body = ai2in_api::CommandKillRequest { signal };
            send(
                conn.request(
                    Method::POST,
                    &format!("/v1/sandboxes/{sandbox}/commands/{command}/kill"),
                )?
                .json(&body),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_quoted_for_sh() {
        let argv = ["echo", "a b", "it's", "$HOME", ""].map(String::from);
        assert_eq!(shell_quote(&argv), r#"echo 'a b' 'it'\''s' '$HOME' ''"#);
    }
}

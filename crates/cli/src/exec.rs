//! `ai2in run`, `ai2in exec` and `ai2in commands`: code and commands in a sandbox from
//! the command line.

use std::io::{Read, Write};
use std::time::Duration;

use ai2in_client::api::CommandList;
use ai2in_client::{
    CommandRequest, CommandStatus, Execution, Language, RunEvent, RunOptions, ShellOptions, Signal,
};
use anyhow::Context;
use futures_util::StreamExt;

use crate::connect::Connection;
use crate::output::{self, Colour, Table};

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
    /// python, javascript or bash [default: python]
    #[arg(long = "lang")]
    language: Option<Language>,
    /// A context to run in (keeps state between runs)
    #[arg(long)]
    context: Option<String>,
    /// Interrupt the run after this long, e.g. 30s
    #[arg(long, value_parser = crate::args::duration)]
    timeout: Option<Duration>,
    /// Environment variable for the run (repeat)
    #[arg(long, value_name = "KEY=VALUE", value_parser = crate::args::pair)]
    env: Vec<(String, String)>,
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
    /// Kill it after this long, e.g. 30s
    #[arg(long, value_parser = crate::args::duration)]
    timeout: Option<Duration>,
    /// Environment variable (repeat)
    #[arg(long, value_name = "KEY=VALUE", value_parser = crate::args::pair)]
    env: Vec<(String, String)>,
    /// The command and its arguments, after `--`
    #[arg(last = true, required = true)]
    argv: Vec<String>,
    #[command(flatten)]
    conn: Connection,
}

#[derive(clap::Subcommand)]
pub enum CommandsCommand {
    /// Start a command in the background; prints its id.
    #[command(
        after_help = "Example:\n  cid=$(ai2in commands start sbx_… -- python3 -m http.server 8000)"
    )]
    Start {
        sandbox: String,
        #[arg(last = true, required = true)]
        argv: Vec<String>,
        #[command(flatten)]
        conn: Connection,
    },
    /// List the background commands.
    #[command(
        after_help = "Example:\n  ai2in commands ls sbx_… --json | jq -r '.commands[].status'"
    )]
    Ls {
        sandbox: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Print a command's output; with --follow, until it ends.
    #[command(after_help = "Example:\n  ai2in commands logs sbx_… cmd_… --follow")]
    Logs {
        sandbox: String,
        command: String,
        #[arg(long, short)]
        follow: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Kill a command's process group.
    #[command(
        after_help = "Examples:\n  ai2in commands kill sbx_… cmd_…\n  ai2in commands kill sbx_… cmd_… --signal TERM"
    )]
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

/// The code of `ai2in run`: `-c`, a file, or standard input.
fn code(args: &RunArgs) -> anyhow::Result<String> {
    match (&args.code, args.file.as_deref()) {
        (Some(code), _) => Ok(code.clone()),
        (None, Some("-") | None) => {
            let mut code = String::new();
            std::io::stdin()
                .read_to_string(&mut code)
                .context("read the code from standard input")?;
            Ok(code)
        }
        (None, Some(path)) => std::fs::read_to_string(path).with_context(|| format!("read {path}")),
    }
}

/// The error the code raised, as a traceback (or `name: value`).
fn error_text(error: &ai2in_client::ExecError) -> String {
    if error.traceback.is_empty() {
        format!("{}: {}", error.name, error.value)
    } else {
        error.traceback.clone()
    }
}

/// Runs `ai2in run`: output as it comes, then the results; exit status 1 when the code
/// raised an error (or a bash snippet's own status).
pub async fn run(args: RunArgs) -> anyhow::Result<std::process::ExitCode> {
    let mut options = RunOptions::new(code(&args)?);
    if let Some(context) = &args.context {
        options = options.context(context);
    }
    if let Some(language) = args
        .language
        .or(args.context.is_none().then_some(Language::Python))
    {
        options = options.language(language);
    }
    if let Some(timeout) = args.timeout {
        options = options.timeout(timeout);
    }
    for (name, value) in args.env {
        options = options.env(name, value);
    }
    let sandbox = args.conn.client()?.sandbox(&args.sandbox);
    let mut events = sandbox.run_stream(options).await?;
    let mut execution: Option<Execution> = None;
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    while let Some(event) = events.next().await {
        match event? {
            RunEvent::Stdout(text) => {
                out.write_all(text.as_bytes())?;
                out.flush()?;
            }
            RunEvent::Stderr(text) => err.write_all(text.as_bytes())?,
            RunEvent::Error(error) => writeln!(err, "{}", error_text(&error))?,
            RunEvent::Result(_) => {}
            RunEvent::Done(done) => execution = Some(done),
        }
    }
    let execution = execution.context("the stream ended without a result")?;
    if args.conn.json {
        output::print_json(&execution)?;
    } else if let Some(text) = ai2in_client::ExecutionExt::text(&execution) {
        println!("{text}");
    }
    Ok(match (execution.error.is_some(), execution.exit_code) {
        (true, _) => std::process::ExitCode::FAILURE,
        (false, Some(code)) => std::process::ExitCode::from(code.clamp(0, 255) as u8),
        (false, None) => std::process::ExitCode::SUCCESS,
    })
}

/// Runs `ai2in exec`; the command's exit status becomes ours.
pub async fn exec(args: ExecArgs) -> anyhow::Result<std::process::ExitCode> {
    let mut options = ShellOptions::new(shell_quote(&args.argv));
    if let Some(cwd) = args.cwd {
        options = options.cwd(cwd);
    }
    if let Some(user) = args.user {
        options = options.user(user);
    }
    if let Some(timeout) = args.timeout {
        options = options.timeout(timeout);
    }
    for (name, value) in args.env {
        options = options.env(name, value);
    }
    let res = args
        .conn
        .client()?
        .sandbox(&args.sandbox)
        .shell_with(options)
        .await?;
    std::io::stdout().write_all(res.stdout.as_bytes())?;
    std::io::stderr().write_all(res.stderr.as_bytes())?;
    if let Some(error) = &res.error {
        eprintln!("ai2in: {error}");
    }
    Ok(std::process::ExitCode::from(
        res.exit_code.map_or(1, |c| c.clamp(0, 255) as u8),
    ))
}

fn print_commands(list: CommandList) {
    let mut table = Table::new(&["ID", "PID", "STATUS", "EXIT", "CMD"]);
    for c in list.commands {
        let status = match c.status {
            CommandStatus::Running => ("running", Colour::Green),
            CommandStatus::Exited => ("exited", Colour::Dim),
            CommandStatus::Killed => ("killed", Colour::Red),
        };
        table.styled_row(vec![
            (c.command_id, None),
            (c.pid.to_string(), None),
            (status.0.to_string(), Some(status.1)),
            (c.exit_code.map_or("-".into(), |e| e.to_string()), None),
            (c.cmd, None),
        ]);
    }
    table.print();
}

/// Runs `ai2in commands …`.
pub async fn commands(cmd: CommandsCommand) -> anyhow::Result<()> {
    match cmd {
        CommandsCommand::Start {
            sandbox,
            argv,
            conn,
        } => {
            let request = CommandRequest {
                cmd: shell_quote(&argv),
                ..Default::default()
            };
            let started = conn
                .client()?
                .sandbox(sandbox)
                .commands()
                .start_with(request)
                .await?;
            if conn.json {
                println!("{}", serde_json::to_string(&started)?);
            } else {
                println!("{}", started.command_id);
            }
        }
        CommandsCommand::Ls { sandbox, conn } => {
            let commands = conn.client()?.sandbox(sandbox).commands().list().await?;
            let list = CommandList { commands };
            if conn.json {
                output::print_json(&list)?;
            } else {
                print_commands(list);
            }
        }
        CommandsCommand::Logs {
            sandbox,
            command,
            follow,
            conn,
        } => {
            let sandbox = conn.client()?.sandbox(sandbox);
            let commands = sandbox.commands();
            if !follow {
                let logs = commands.logs(&command).await?;
                print!("{}", logs.stdout);
                eprint!("{}", logs.stderr);
                return Ok(());
            }
            let mut chunks = std::pin::pin!(commands.follow(&command));
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk?;
                print!("{}", chunk.stdout);
                eprint!("{}", chunk.stderr);
                std::io::stdout().flush()?;
            }
        }
        CommandsCommand::Kill {
            sandbox,
            command,
            signal,
            conn,
        } => {
            let signal = signal.map_or(Signal::Name("KILL".into()), |s| {
                s.parse::<i32>().map_or(Signal::Name(s), Signal::Number)
            });
            conn.client()?
                .sandbox(sandbox)
                .commands()
                .signal(&command, signal)
                .await?;
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

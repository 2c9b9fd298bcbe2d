//! `ai2in`: the node (`serve`), the in-sandbox agent (`agent`, internal), and the user
//! commands that talk to a node over its API.

mod client;
mod config;
mod exec;
mod files;
mod keys;
mod serve;
mod terminal;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Secure sandboxes for untrusted code.
#[derive(Parser)]
#[command(name = "ai2in", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a node in the foreground (no configuration needed).
    ///
    /// Example: `ai2in serve --state-dir /var/lib/ai2in --listen 127.0.0.1:4747`
    Serve(serve::ServeArgs),
    /// Copy files and directories between this machine and a sandbox.
    ///
    /// Examples: `ai2in cp ./src sbx_…:/home/user/app`, `ai2in cp sbx_…:/home/user/out.csv .`
    Cp(files::CpArgs),
    /// Files of a sandbox: ls, cat, watch.
    #[command(subcommand)]
    Fs(files::FsCommand),
    /// Run code in a sandbox, printing output as it comes and then the result.
    ///
    /// Examples: `ai2in run sbx_… -c 'print(1+1)'`, `ai2in run sbx_… --lang javascript app.js`
    Run(exec::RunArgs),
    /// Run a command in a sandbox; its exit status becomes ours.
    ///
    /// Example: `ai2in exec sbx_… -- ls -la /home/user`
    Exec(exec::ExecArgs),
    /// An interactive terminal in a sandbox (Ctrl-D ends it).
    Shell(terminal::ShellArgs),
    /// Background commands: start, ls, logs, kill.
    #[command(subcommand)]
    Commands(exec::CommandsCommand),
    /// Manage API keys (admin).
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// The sandbox's PID 1; started by the node, not by people.
    #[command(hide = true)]
    Agent,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        // Before anything else: the agent must start single-threaded (it forks).
        Command::Agent => ai2in_agent::run()
            .map_err(anyhow::Error::from)
            .map(|()| ExitCode::SUCCESS),
        Command::Serve(args) => serve::run(args).map(|()| ExitCode::SUCCESS),
        Command::Keys(cmd) => keys::run(cmd).map(|()| ExitCode::SUCCESS),
        Command::Cp(args) => files::cp(args).map(|()| ExitCode::SUCCESS),
        Command::Fs(cmd) => files::fs(cmd).map(|()| ExitCode::SUCCESS),
        Command::Run(args) => exec::run(args),
        Command::Exec(args) => exec::exec(args),
        Command::Shell(args) => terminal::shell(args),
        Command::Commands(cmd) => exec::commands(cmd).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

//! `ai2in`: the node (`serve`), the in-sandbox agent (`agent`, internal), and the user
//! commands that talk to a node over its API.

mod client;
mod config;
mod files;
mod keys;
mod serve;

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
    /// Manage API keys (admin).
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// The sandbox's PID 1; started by the node, not by people.
    #[command(hide = true)]
    Agent,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        // Before anything else: the agent must start single-threaded (it forks).
        Command::Agent => ai2in_agent::run().map_err(anyhow::Error::from),
        Command::Serve(args) => serve::run(args),
        Command::Keys(cmd) => keys::run(cmd),
        Command::Cp(args) => files::cp(args),
        Command::Fs(cmd) => files::fs(cmd),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

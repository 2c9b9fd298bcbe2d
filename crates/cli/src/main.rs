//! `ai2in`: the node (`serve`), the in-sandbox agent (`agent`, internal), and the user
//! commands that talk to a node through the Rust SDK (`ai2in-client`).

mod args;
mod config;
mod connect;
mod database;
mod desktop;
mod exec;
mod exit;
mod files;
mod gateway;
mod image;
mod keys;
mod member;
mod nodes;
mod output;
mod sandbox;
mod serve;
mod service;
mod terminal;
mod volume;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Secure sandboxes for untrusted code.
#[derive(Parser)]
#[command(name = "ai2in", version, about, propagate_version = true, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The end of `ai2in --help`: configuration, examples and exit statuses.
const AFTER_HELP: &str = "\
Configuration (the first place that has a setting wins):
  flags (--base-url, --api-key), then AI2IN_BASE_URL and AI2IN_API_KEY, then
  $XDG_CONFIG_HOME/ai2in/config.toml (default ~/.config/ai2in/config.toml) with
  base_url and api_key, then, for a node on this machine, its admin key in
  $AI2IN_STATE_DIR/admin.key (default /var/lib/ai2in). The URL defaults to
  http://127.0.0.1:4747.

Examples:
  ai2in image pull python:3.12-slim
  id=$(ai2in sandbox create --image python:3.12-slim --json | jq -r .id)
  ai2in run \"$id\" -c 'print(1 + 1)'
  ai2in exec \"$id\" -- ls -la
  ai2in sandbox rm \"$id\"

Exit status:
  0  success (exec and run: the command's or the code's own status)
  1  any other error (such as a registry that failed: 502)
  2  wrong usage (unknown flag, missing argument)
  3  no key, an unknown key (401) or a missing scope (403)
  4  not found (404) or ended (410)
  5  a conflict (409): the sandbox is paused (resume it first), a sandbox
     uses the image or volume to remove, or the name is taken
  6  quota exceeded (429), or node at capacity or draining (503)
  7  the node could not be reached";

#[derive(Subcommand)]
enum Command {
    /// Start a node in the foreground (no configuration needed).
    #[command(
        after_help = "Example:\n  ai2in serve --state-dir /var/lib/ai2in --listen 127.0.0.1:4747"
    )]
    Serve(serve::ServeArgs),
    /// Serve one API for a cluster of nodes sharing a PostgreSQL database.
    #[command(after_help = "Example:\n  \
        ai2in gateway --postgres postgres://ai2in@db/ai2in --listen 0.0.0.0:4747")]
    Gateway(gateway::GatewayArgs),
    #[command(flatten)]
    Remote(Remote),
    /// Print a shell completion script.
    #[command(after_help = "Examples:\n  \
        ai2in completions bash > /etc/bash_completion.d/ai2in\n  \
        ai2in completions zsh > \"${fpath[1]}/_ai2in\"\n  \
        ai2in completions fish > ~/.config/fish/completions/ai2in.fish")]
    Completions {
        /// bash, zsh or fish
        shell: clap_complete::Shell,
    },
    /// The sandbox's PID 1; started by the node, not by people.
    #[command(hide = true)]
    Agent,
}

/// The commands that talk to a node.
#[derive(Subcommand)]
enum Remote {
    /// Sandboxes: create, ls, info, rm, pause, resume, timeout, metrics, expose, snapshot.
    #[command(subcommand, visible_alias = "sbx")]
    Sandbox(sandbox::SandboxCommand),
    /// Images sandboxes start from: pull, import, ls, info, rm.
    #[command(subcommand, visible_alias = "img")]
    Image(image::ImageCommand),
    /// Volumes sandboxes mount: create, ls, info, rm.
    #[command(subcommand, visible_alias = "vol")]
    Volume(volume::VolumeCommand),
    /// Services the node keeps running and serves at a URL: deploy, ls, info, logs,
    /// redeploy, stop, start, rm.
    #[command(subcommand, visible_alias = "svc")]
    Service(service::ServiceCommand),
    /// Managed databases (PostgreSQL, MySQL, Redis) the node runs at a url: create, ls, info,
    /// engines, reset-password, rm.
    #[command(subcommand, visible_alias = "database")]
    Db(database::DatabaseCommand),
    /// The display of a desktop sandbox: screenshot, click, move, drag, scroll, type, key,
    /// launch, windows, cursor, stream, info.
    #[command(subcommand)]
    Desktop(desktop::DesktopCommand),
    /// Run code in a sandbox, printing output as it comes and then the result.
    #[command(after_help = "Examples:\n  \
        ai2in run sbx_… -c 'print(1 + 1)'\n  \
        ai2in run sbx_… --lang javascript app.js\n  \
        echo 'echo hi' | ai2in run sbx_… --lang bash -")]
    Run(exec::RunArgs),
    /// Run a command in a sandbox; its exit status becomes ours.
    #[command(after_help = "Example:\n  ai2in exec sbx_… --cwd /tmp -- ls -la")]
    Exec(exec::ExecArgs),
    /// An interactive terminal in a sandbox (Ctrl-D ends it).
    #[command(after_help = "Example:\n  ai2in shell sbx_…")]
    Shell(terminal::ShellArgs),
    /// Background commands: start, ls, logs, kill.
    #[command(subcommand)]
    Commands(exec::CommandsCommand),
    /// Copy files and directories between this machine and a sandbox.
    #[command(after_help = "Examples:\n  \
        ai2in cp ./src sbx_…:/home/user/app\n  \
        ai2in cp sbx_…:/home/user/out.csv .")]
    Cp(files::CpArgs),
    /// Files of a sandbox: ls, cat, watch.
    #[command(subcommand)]
    Fs(files::FsCommand),
    /// Manage API keys (admin).
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// The nodes of a cluster (admin): ls, drain. A node on its own is a cluster of one.
    #[command(subcommand)]
    Nodes(nodes::NodesCommand),
}

impl Remote {
    async fn run(self) -> anyhow::Result<ExitCode> {
        let ok = |()| ExitCode::SUCCESS;
        match self {
            Remote::Sandbox(cmd) => sandbox::run(cmd).await.map(ok),
            Remote::Image(cmd) => image::run(cmd).await.map(ok),
            Remote::Volume(cmd) => volume::run(cmd).await.map(ok),
            Remote::Service(cmd) => service::run(cmd).await.map(ok),
            Remote::Db(cmd) => database::run(cmd).await.map(ok),
            Remote::Desktop(cmd) => desktop::run(cmd).await.map(ok),
            Remote::Run(args) => exec::run(args).await,
            Remote::Exec(args) => exec::exec(args).await,
            Remote::Shell(args) => terminal::shell(args).await,
            Remote::Commands(cmd) => exec::commands(cmd).await.map(ok),
            Remote::Cp(args) => files::cp(args).await.map(ok),
            Remote::Fs(cmd) => files::fs(cmd).await.map(ok),
            Remote::Keys(cmd) => keys::run(cmd).await.map(ok),
            Remote::Nodes(cmd) => nodes::run(cmd).await.map(ok),
        }
    }
}

fn main() -> ExitCode {
    // The agent's spawner, started once per sandbox: before any parsing.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == ai2in_agent::SPAWNER_ARG)
    {
        return match ai2in_agent::run_spawner() {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        };
    }
    let cli = Cli::parse();
    if matches!(cli.command, Command::Remote(_)) {
        quiet_on_closed_pipe();
    }
    let result = match cli.command {
        // Before anything else: the agent must start single-threaded (it forks).
        Command::Agent => ai2in_agent::run()
            .map_err(anyhow::Error::from)
            .map(|()| ExitCode::SUCCESS),
        // The node builds its own multi-threaded runtime.
        Command::Serve(args) => serve::run(args).map(|()| ExitCode::SUCCESS),
        Command::Gateway(args) => gateway::run(args).map(|()| ExitCode::SUCCESS),
        Command::Completions { shell } => {
            quiet_on_closed_pipe();
            clap_complete::generate(shell, &mut Cli::command(), "ai2in", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Remote(command) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| runtime.block_on(command.run())),
    };
    result.unwrap_or_else(|e| exit::report(&e))
}

/// Lets a closed standard output (`ai2in sandbox ls | head -1`) end the process quietly, as
/// it does other Unix tools, instead of a panic in `println!`.
fn quiet_on_closed_pipe() {
    // SAFETY: restoring the default disposition of SIGPIPE, before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

//! The agent: PID 1 of every sandbox. It builds the sandbox (through the runtime's init),
//! hardens itself, then serves the node over its Unix socket: one request per connection,
//! answered with a stream of events. It reaps every orphan and forwards termination to the
//! processes it started. It never trusts that the node is there: sandboxes outlive node
//! restarts.
#![warn(missing_docs)]

mod commands;
mod connect;
mod desktop;
mod fs;
mod kernels;
mod process;
mod pty;
mod reaper;
mod serve;
mod shell;
mod spawner;
mod users;
mod watch;

pub use spawner::SPAWNER_ARG;

/// Runs `ai2in spawner`, the agent's helper that starts the workload's processes (started
/// by the agent only). Returns when the agent hangs up.
pub fn run_spawner() -> std::io::Result<()> {
    spawner::serve()
}

/// Runs `ai2in agent`. Returns only on failure (the exit status is then 1).
pub fn run() -> std::io::Result<()> {
    let sandbox = ai2in_runtime::init::enter()?;
    ai2in_runtime::harden::apply()?;
    // While single-threaded: the spawner is a fork of the agent.
    let spawner = spawner::fork_first(&sandbox.spec.work_fds)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve::serve(sandbox, spawner))
}

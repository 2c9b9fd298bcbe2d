//! `ai2in serve`: the node in the foreground.

use std::io::IsTerminal;
use std::path::PathBuf;

use ai2in_node::Node;
use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};

use crate::config::{DEFAULT_LISTEN, DEFAULT_STATE_DIR, FileConfig};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Directory of the store, keys, images and sandboxes [default: /var/lib/ai2in]
    #[arg(long, env = "AI2IN_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Address of the API [default: 127.0.0.1:4747]
    #[arg(long, env = "AI2IN_LISTEN")]
    listen: Option<String>,
    /// TOML file with node settings ([defaults], [limits], [quotas], [capacity])
    #[arg(long, env = "AI2IN_CONFIG")]
    config: Option<PathBuf>,
    /// Join the cluster whose state is in this PostgreSQL database
    /// (postgres://user[:password]@host[:port]/db): the node then serves only its gateways
    #[arg(long, env = "AI2IN_CLUSTER", value_name = "POSTGRES_URL")]
    cluster: Option<String>,
    /// Where the cluster's gateways reach this node's API, host:port [default: --listen]
    #[arg(long, env = "AI2IN_ADVERTISE", requires = "cluster")]
    advertise: Option<String>,
}

/// Logs to stderr at `AI2IN_LOG`'s level (info by default).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AI2IN_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_logging();
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let state_dir = args
        .state_dir
        .or(file.state_dir)
        .unwrap_or_else(|| DEFAULT_STATE_DIR.into());
    let listen = args
        .listen
        .or(file.listen)
        .unwrap_or_else(|| DEFAULT_LISTEN.into());
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!("ai2in serve must run as root: it creates namespaces, cgroups and mounts");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        // The port first: a node that cannot serve must not start recovery or the pool.
        let listener = tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("listen on {listen}"))?;
        let node = Node::start(&state_dir, file.node).await?;
        if let Some(url) = &args.cluster {
            let advertise = args.advertise.clone().unwrap_or_else(|| listen.clone());
            crate::member::Member::join(&node, url, advertise).await?;
        }
        tracing::info!(listen = %listener.local_addr()?, state_dir = %state_dir.display(), "ai2in node serving");
        ai2in_server::serve(listener, node.clone(), shutdown_signal()?).await?;
        node.shutdown().await;
        tracing::info!("stopped; sandboxes keep running and are reattached at the next start");
        Ok(())
    })
}

pub(crate) fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

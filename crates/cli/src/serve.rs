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
            join(&node, url, advertise).await?;
        }
        tracing::info!(listen = %listener.local_addr()?, state_dir = %state_dir.display(), "ai2in node serving");
        ai2in_server::serve(listener, node.clone(), shutdown_signal()?).await?;
        node.shutdown().await;
        tracing::info!("stopped; sandboxes keep running and are reattached at the next start");
        Ok(())
    })
}

/// Joins the cluster at `url`: from now on the node serves only the cluster's gateways, and
/// reports its capacity and liveness every second (reconnecting by itself when PostgreSQL
/// goes away and comes back).
async fn join(node: &Node, url: &str, advertise: String) -> anyhow::Result<()> {
    let cluster = ai2in_cluster::Cluster::connect(url)
        .await
        .context("join the cluster (--cluster)")?;
    node.trust_gateways(cluster.secret().await?);
    forget_ended(node, &cluster).await?;
    let beat = move |node: &Node| -> anyhow::Result<ai2in_cluster::Heartbeat> {
        let (capacity, used) = node.load()?;
        Ok(ai2in_cluster::Heartbeat {
            id: node.id().to_string(),
            address: advertise.clone(),
            capacity,
            used,
        })
    };
    cluster.heartbeat(&beat(node)?).await?;
    tracing::info!(node = node.id(), "joined the cluster");
    let node = node.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(ai2in_cluster::HEARTBEAT);
        let mut failing = false;
        loop {
            tick.tick().await;
            let sent = match beat(&node) {
                Ok(beat) => cluster.heartbeat(&beat).await.map_err(anyhow::Error::from),
                Err(e) => Err(e),
            };
            match sent {
                Err(e) if !failing => {
                    tracing::warn!(error = %e, "could not report to the cluster; retrying every second");
                    failing = true;
                }
                Ok(()) if failing => {
                    tracing::info!("reporting to the cluster again");
                    failing = false;
                }
                _ => {}
            }
        }
    });
    Ok(())
}

/// Keeps the cluster's record of this node's sandboxes true: those that ended while the node
/// was away (or down) are forgotten now, and each that ends from now on as it ends (retried
/// while PostgreSQL does not answer), which gives its tenant's quota the room back.
async fn forget_ended(node: &Node, cluster: &ai2in_cluster::Cluster) -> anyhow::Result<()> {
    let mut ends = node
        .watch_ends()
        .context("the node already reports its sandboxes' ends")?;
    let live: std::collections::HashSet<String> = node.live_sandbox_ids()?.into_iter().collect();
    for id in cluster.sandboxes_on(node.id()).await? {
        if !live.contains(&id) {
            cluster.unplace(&id).await?;
        }
    }
    let cluster = cluster.clone();
    tokio::spawn(async move {
        let mut pending: Vec<String> = Vec::new();
        loop {
            if pending.is_empty() {
                match ends.recv().await {
                    Some(id) => pending.push(id),
                    None => return,
                }
            } else if let Ok(next) =
                tokio::time::timeout(ai2in_cluster::HEARTBEAT, ends.recv()).await
            {
                let Some(id) = next else { return };
                pending.push(id);
            }
            let mut failed = Vec::new();
            for id in pending.drain(..) {
                if let Err(e) = cluster.unplace(&id).await {
                    tracing::warn!(sandbox = %id, error = %e, "could not tell the cluster a sandbox ended; retrying");
                    failed.push(id);
                }
            }
            pending = failed;
        }
    });
    Ok(())
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

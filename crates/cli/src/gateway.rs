//! `ai2in gateway`: one API for a cluster of nodes, in the foreground.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use ai2in_cluster::Cluster;
use ai2in_server::{Gateway, GatewayConfig};
use anyhow::Context;

use crate::serve::{init_logging, shutdown_signal};

/// The gateway's default address: every interface, the node's port.
const DEFAULT_LISTEN: &str = "0.0.0.0:4747";

#[derive(clap::Args)]
pub struct GatewayArgs {
    /// The cluster's PostgreSQL database, postgres://user[:password]@host[:port]/db
    #[arg(long, env = "AI2IN_POSTGRES", value_name = "POSTGRES_URL")]
    postgres: String,
    /// Address of the API [default: 0.0.0.0:4747]
    #[arg(long, env = "AI2IN_LISTEN")]
    listen: Option<String>,
    /// TOML file with gateway settings ([quotas]: sandboxes, services, databases per tenant
    /// over the whole cluster)
    #[arg(long, env = "AI2IN_GATEWAY_CONFIG")]
    config: Option<PathBuf>,
    /// Where the first gateway of a new cluster writes its admin key (admin.key)
    #[arg(
        long,
        env = "AI2IN_STATE_DIR",
        default_value = "/var/lib/ai2in-gateway"
    )]
    state_dir: PathBuf,
}

pub fn run(args: GatewayArgs) -> anyhow::Result<()> {
    init_logging();
    let listen = args.listen.unwrap_or_else(|| DEFAULT_LISTEN.into());
    let config: GatewayConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("read {}", path.display()))?;
            toml::from_str(&text)
                .with_context(|| format!("{} is not a valid gateway config", path.display()))?
        }
        None => GatewayConfig::default(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("listen on {listen}"))?;
        let cluster = Cluster::connect(&args.postgres)
            .await
            .context("connect to the cluster's database (--postgres)")?;
        first_admin_key(&cluster, &args.state_dir).await?;
        let gateway = Gateway::start(cluster, config).await?;
        tracing::info!(listen = %listener.local_addr()?, "ai2in gateway serving");
        ai2in_server::serve_gateway(listener, gateway, shutdown_signal()?).await?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// On a cluster without keys, makes the admin key of the default tenant and writes it to
/// `state_dir/admin.key` (0600), as a node does on its first start.
async fn first_admin_key(cluster: &Cluster, state_dir: &std::path::Path) -> anyhow::Result<()> {
    let (record, secret) = ai2in_node::key_record("admin", "default", vec!["admin".into()]);
    if !cluster.insert_first_key(&record).await? {
        return Ok(());
    }
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("create the state dir {}", state_dir.display()))?;
    let path = state_dir.join("admin.key");
    let tmp = state_dir.join(".admin.key.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("write {}", tmp.display()))?;
    file.write_all(format!("{secret}\n").as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("write {}", path.display()))?;
    tracing::info!(path = %path.display(), "created the cluster's admin API key");
    Ok(())
}

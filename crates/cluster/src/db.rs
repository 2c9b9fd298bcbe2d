use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_postgres::{Client, Config, NoTls};

use crate::{ClusterError, schema};

/// How long connecting to PostgreSQL may take before the attempt fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to the cluster's database that comes back by itself: after PostgreSQL
/// restarts (or the network drops), the next call connects again. Concurrent calls share
/// the connection; PostgreSQL's protocol pipelines them.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    client: Mutex<Option<Arc<Client>>>,
}

impl Cluster {
    /// Connects to `url` (`postgres://user[:password]@host[:port]/db`) and brings its schema
    /// up to this version's (the first gateway or node to start on an empty database
    /// creates it).
    pub async fn connect(url: &str) -> Result<Cluster, ClusterError> {
        let mut config: Config = url.parse().map_err(|e| {
            ClusterError::Schema(format!(
                "{url:?} is not a PostgreSQL URL ({e}); use postgres://user@host:port/database"
            ))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.application_name("ai2in");
        let cluster = Cluster {
            inner: Arc::new(Inner {
                config,
                client: Mutex::new(None),
            }),
        };
        schema::migrate(&*cluster.client().await?).await?;
        Ok(cluster)
    }

    /// The open connection, or a new one when the last one closed.
    pub(crate) async fn client(&self) -> Result<Arc<Client>, ClusterError> {
        let mut slot = self.inner.client.lock().await;
        if let Some(client) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(client.clone());
        }
        let (client, connection) = self.inner.config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "the connection to the cluster's database ended");
            }
        });
        let client = Arc::new(client);
        *slot = Some(client.clone());
        Ok(client)
    }
}

impl Cluster {
    /// The secret with which gateways prove themselves to nodes, made by the first caller.
    pub async fn secret(&self) -> Result<String, ClusterError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| ClusterError::Schema(format!("no randomness for the secret: {e}")))?;
        let made: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO ai2in_cluster (id, secret) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
                &[&made],
            )
            .await?;
        Ok(client
            .query_one("SELECT secret FROM ai2in_cluster WHERE id = 1", &[])
            .await?
            .get(0))
    }
}

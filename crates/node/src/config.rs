//! Node settings, with embedded defaults: a node starts with no configuration at all.

use serde::{Deserialize, Serialize};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Everything the node needs besides its state directory.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Name of this node in sandbox objects; the host name when absent.
    pub node_id: Option<String>,
    /// What a create request gets for fields it leaves out.
    pub defaults: Defaults,
    /// The most (and least) a create request may ask for.
    pub limits: Limits,
    /// Per-tenant quotas.
    pub quotas: Quotas,
    /// What the whole node holds.
    pub capacity: Capacity,
    /// How exposed ports are reached.
    pub proxy: Proxy,
    /// The sandboxes' network.
    pub network: NetworkConfig,
    /// The warm pool.
    pub pool: PoolConfig,
    /// Images: registries and the content store's bounds.
    pub images: ImagesConfig,
    /// Where sandboxes keep what they write.
    pub storage: StorageConfig,
    /// Services: readiness, stopping, logs.
    pub hosting: HostingConfig,
    /// Databases: where their endpoints listen.
    pub databases: DatabasesConfig,
}

/// Where databases are reached.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabasesConfig {
    /// The address the endpoints listen on; the host's main address (the source of its
    /// default route) when absent.
    pub listen: Option<std::net::IpAddr>,
    /// The host name or address urls name; the listen address when absent.
    pub public_host: Option<String>,
    /// The ports endpoints take, one per database: `first-last`.
    pub ports: String,
    /// Whether PostgreSQL and MySQL servers offer TLS (with the node's certificate).
    pub tls: bool,
    /// The certificate (PEM, its chain after it) servers present; when absent the node makes
    /// a self-signed one for `public_host` in `STATE_DIR/tls/` once.
    pub tls_cert: Option<std::path::PathBuf>,
    /// Its private key (PEM), with `tls_cert`.
    pub tls_key: Option<std::path::PathBuf>,
    /// Where PostgreSQL servers come from (`[databases.postgres]`).
    pub postgres: EngineConfig,
    /// Where MySQL servers come from (`[databases.mysql]`).
    pub mysql: EngineConfig,
    /// Where Redis servers come from (`[databases.redis]`).
    pub redis: EngineConfig,
}

/// Where an engine's servers come from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// An image the engine's servers run from (pulled by the node, e.g. `postgres:17`),
    /// instead of the host's packages.
    pub image: Option<String>,
}

impl Default for DatabasesConfig {
    fn default() -> Self {
        DatabasesConfig {
            listen: None,
            public_host: None,
            ports: "21000-21999".into(),
            tls: true,
            tls_cert: None,
            tls_key: None,
            postgres: EngineConfig::default(),
            mysql: EngineConfig::default(),
            redis: EngineConfig::default(),
        }
    }
}

impl DatabasesConfig {
    /// The first and last port of `ports`.
    pub fn port_range(&self) -> Result<(u16, u16), String> {
        let parsed = self.ports.split_once('-').and_then(|(a, b)| {
            let (a, b) = (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?);
            (a > 0 && a <= b).then_some((a, b))
        });
        parsed.ok_or_else(|| {
            format!(
                "[databases] ports {:?} is not a range such as \"21000-21999\"",
                self.ports
            )
        })
    }
}

/// How services are run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostingConfig {
    /// How long a new instance has to open its port (and pass its health check) before it
    /// counts as crashed.
    pub start_timeout_ms: u64,
    /// How long a stopped instance has between SIGTERM and SIGKILL.
    pub stop_grace_ms: u64,
    /// Log lines kept per service.
    pub log_lines: u64,
}

impl Default for HostingConfig {
    fn default() -> Self {
        HostingConfig {
            start_timeout_ms: 60_000,
            stop_grace_ms: 10_000,
            log_lines: 10_000,
        }
    }
}

/// Defaults of a create request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Defaults {
    /// Lifetime.
    pub timeout_ms: u64,
    /// CPU quota in cores.
    pub cpu: f64,
    /// Memory limit.
    pub memory_bytes: u64,
    /// Writable layer size.
    pub disk_bytes: u64,
    /// Image.
    pub image: String,
    /// Timeout of a shell command that names none.
    pub shell_timeout_ms: u64,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            timeout_ms: 300_000,
            cpu: 1.0,
            memory_bytes: 512 * MIB,
            disk_bytes: 2 * GIB,
            image: "host".into(),
            shell_timeout_ms: 60_000,
        }
    }
}

/// Bounds on a create request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Longest lifetime.
    pub max_timeout_ms: u64,
    /// Most CPU cores.
    pub max_cpu: f64,
    /// Least memory.
    pub min_memory_bytes: u64,
    /// Most memory.
    pub max_memory_bytes: u64,
    /// Least writable layer.
    pub min_disk_bytes: u64,
    /// Most writable layer.
    pub max_disk_bytes: u64,
    /// Tasks (processes and threads) per sandbox.
    pub pids: u64,
    /// Output kept per stream of a shell command.
    pub shell_output_bytes: u64,
    /// Smallest volume.
    pub min_volume_bytes: u64,
    /// Largest volume.
    pub max_volume_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_timeout_ms: ai2in_api::MAX_TIMEOUT_MS,
            max_cpu: std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
            min_memory_bytes: 16 * MIB,
            max_memory_bytes: 8 * GIB,
            min_disk_bytes: 4 * MIB,
            max_disk_bytes: 16 * GIB,
            pids: 1024,
            shell_output_bytes: 16 * MIB,
            min_volume_bytes: 16 * MIB,
            max_volume_bytes: 256 * GIB,
        }
    }
}

/// Per-tenant quotas, on what is live at once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Quotas {
    /// Sandboxes.
    pub sandboxes: u64,
    /// Memory limits of those sandboxes, summed.
    pub memory_bytes: u64,
    /// Sizes of the tenant's volumes, summed.
    pub volume_bytes: u64,
    /// Services.
    pub services: u64,
    /// Databases.
    pub databases: u64,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            sandboxes: 100,
            memory_bytes: 64 * GIB,
            volume_bytes: 1024 * GIB,
            services: 20,
            databases: 10,
        }
    }
}

/// Node capacity.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Capacity {
    /// Sandboxes at once, all tenants.
    pub sandboxes: u64,
    /// Memory limits of all sandboxes, summed (memory is overcommitted: most sandboxes
    /// use a small part of their limit).
    pub memory_bytes: u64,
    /// CPU quotas of all sandboxes, summed, in cores (overcommitted like memory).
    pub cpu: f64,
}

impl Default for Capacity {
    fn default() -> Self {
        Capacity {
            sandboxes: 1000,
            memory_bytes: 1024 * GIB,
            cpu: 64.0 * std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
        }
    }
}

/// The proxy that serves exposed ports at `{port}-{id}.{domain}` and services at
/// `{name}-{id}.{domain}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Proxy {
    /// The public domain under which sandboxes' ports are named; `localhost` resolves to
    /// loopback in browsers, so the default works on the node's own machine.
    pub domain: String,
    /// The public scheme (`https` behind a TLS front).
    pub scheme: String,
    /// The public port in URLs; the API's own port when absent. 80 and 443 are left out of
    /// URLs for http and https.
    pub public_port: Option<u16>,
    /// A connection joined to a sandbox's port is cut after this long without a byte
    /// either way.
    pub idle_timeout_ms: u64,
}

impl Default for Proxy {
    fn default() -> Self {
        Proxy {
            domain: "localhost".into(),
            scheme: "http".into(),
            public_port: None,
            idle_timeout_ms: 600_000,
        }
    }
}

/// The sandboxes' network.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Give sandboxes a link to the outside (egress through NAT). Off: sandboxes have
    /// loopback only; exposed ports work either way.
    pub enabled: bool,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig { enabled: true }
    }
}

/// The warm pool: ready sandboxes that creates claim.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Ready sandboxes kept per shape in demand (the default shape always); 0 turns the pool
    /// off.
    pub size: u32,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig { size: 2 }
    }
}

/// Images: how registries are reached and what one layer may hold.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImagesConfig {
    /// Registry host → the host serving it instead, e.g. `"docker.io" = "mirror.lan:5000"`.
    pub mirrors: std::collections::HashMap<String, String>,
    /// Registries spoken to over plain HTTP (loopback addresses always are).
    pub insecure: Vec<String>,
    /// Credentials per registry host.
    pub credentials: std::collections::HashMap<String, ai2in_image::Credentials>,
    /// Budget of the image store in bytes (layers unpacked, each counted once): past it, the
    /// least recently used pulled images no sandbox runs are removed (they can be pulled
    /// again; imports and snapshots are never removed). 0: no budget.
    pub max_bytes: u64,
    /// Most bytes one layer may hold unpacked.
    pub max_layer_bytes: u64,
    /// Most entries one layer may hold.
    pub max_layer_files: u64,
    /// Largest archive `POST /v1/images/import` accepts.
    pub max_import_bytes: u64,
}

impl Default for ImagesConfig {
    fn default() -> Self {
        ImagesConfig {
            mirrors: Default::default(),
            insecure: Vec::new(),
            credentials: Default::default(),
            max_bytes: 0,
            max_layer_bytes: 16 * GIB,
            max_layer_files: 1_000_000,
            max_import_bytes: 32 * GIB,
        }
    }
}

/// Where a sandbox's writable layer lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WritableLayer {
    /// A disk of its own (ext4 on a loop device), bounded by `disk_bytes`.
    #[default]
    Disk,
    /// A tmpfs bounded by `disk_bytes`, counted against the sandbox's memory.
    Tmpfs,
}

/// Storage settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Where sandboxes' writable layers live: `disk` or `tmpfs`. Snapshots need `disk`.
    pub writable_layer: WritableLayer,
}

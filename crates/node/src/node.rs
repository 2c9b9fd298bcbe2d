//! The node handle and its start-up: state directory, store, images, disks and volumes,
//! runtime, first admin key, recovery of the sandboxes a previous run left, and the reaper.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use ai2in_runtime::Runtime;
use ai2in_runtime::disk::Disks;
use ai2in_runtime::network::{HostPorts, Network};
use ai2in_store::Store;
use nix::fcntl::{Flock, FlockArg};
use tokio::sync::Notify;

use crate::auth::DEFAULT_TENANT;
use crate::config::{NodeConfig, WritableLayer};
use crate::error::{NodeError, error_chain};
use crate::expose::Routes;
use crate::metrics::NodeMetrics;
use crate::pool::Pool;

/// How many sandboxes start at once: twice the cores, at least 4 (a start also waits, on
/// the kernel and the sandbox's first process).
fn concurrent_starts() -> usize {
    std::thread::available_parallelism().map_or(4, |n| (2 * n.get()).max(4))
}

/// A running node; cheap to clone.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    /// Held for the node's life: one node per state directory.
    _state_lock: Flock<fs::File>,
    config: NodeConfig,
    node_id: String,
    store: Arc<Store>,
    runtime: Runtime,
    images: crate::images::Images,
    volumes: crate::volumes::Volumes,
    host_image: PathBuf,
    /// Serializes admission (quota and capacity checks, uid slot choice, insert).
    admission: Mutex<()>,
    /// Bounds the sandboxes being started at once (see [`Node::start_permit`]).
    starts: tokio::sync::Semaphore,
    /// One lock per sandbox for its lifecycle transitions.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Wakes the reaper when a lifetime changes.
    reaper_wake: Notify,
    /// The address the API listens on, once serving (its port is the default public port of
    /// the proxy).
    api_address: OnceLock<std::net::SocketAddr>,
    /// Its standing in a cluster.
    membership: crate::cluster::Membership,
    /// What the node counts about itself.
    metrics: NodeMetrics,
    /// What the proxy knows of sandboxes.
    routes: Routes,
    /// The warm pool.
    pool: Pool,
    /// Uid slots whose network link is still being removed: not handed out meanwhile.
    detaching: Mutex<HashSet<u32>>,
    /// Services and their supervisors.
    services: crate::services::Services,
    /// Databases: engines, templates, endpoints.
    databases: crate::databases::Databases,
    /// Why desktops cannot run on the `host` image, if they cannot.
    desktop_support: Option<String>,
    /// Desktops' live views.
    streams: crate::desktop::Streams,
}

impl Node {
    /// Starts a node on `state_dir`: creates what is missing, recovers what a previous run
    /// left, and starts the reaper (so it must be called inside a tokio runtime).
    pub async fn start(state_dir: &Path, config: NodeConfig) -> Result<Node, NodeError> {
        if let Err(e) = crate::sandbox::admit(&config, Default::default()) {
            return Err(NodeError::Invalid(format!(
                "the configuration's [defaults] do not fit its [limits]: {e}"
            )));
        }
        config.databases.port_range().map_err(NodeError::Invalid)?;
        if config.proxy.idle_timeout_ms < 1000 {
            return Err(NodeError::Invalid(format!(
                "[proxy] idle_timeout_ms = {} is under a second; give it 1000 or more",
                config.proxy.idle_timeout_ms
            )));
        }
        crate::databases::check_images(&config.databases)?;
        for (dir, mode) in [
            (state_dir.to_path_buf(), 0o711),
            (state_dir.join("sandboxes"), 0o711),
            (state_dir.join("images"), 0o755),
        ] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(&dir)
                .map_err(|e| internal(&format!("create {}", dir.display()), &e))?;
        }
        // An existing state dir may be 0700: sandboxes must be able to reach their layers.
        set_mode(state_dir, 0o711).map_err(|e| internal("set the state directory's mode", &e))?;
        let state_lock = lock_state_dir(state_dir)?;
        let store = Arc::new(open_store(&state_dir.join("ai2in.db"))?);
        let images =
            crate::images::Images::open(&state_dir.join("images"), &config.images, store.clone())?;
        let host_image = ai2in_runtime::image::prepare_host(&state_dir.join("images"))
            .map_err(|e| internal("prepare the host image", &e))?;
        let mut runtime =
            Runtime::new(state_dir.join("sandboxes"), PathBuf::from("/proc/self/exe"))
                .map_err(|e| internal("set up cgroups", &e))?;
        let disks = match Disks::open(&state_dir.join("disks")) {
            Ok(disks) => Some(Arc::new(disks)),
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "this host cannot make disks: sandboxes' writable layers are tmpfs (counted \
                     as memory), and volumes and snapshots are unavailable"
                );
                None
            }
        };
        if let Some(disks) = &disks {
            runtime = runtime.with_disks(disks.clone());
        }
        let layer = match (&disks, config.storage.writable_layer) {
            (Some(_), WritableLayer::Disk) => "disk",
            _ => "tmpfs",
        };
        let volumes =
            crate::volumes::Volumes::open(&state_dir.join("volumes"), store.clone(), disks)?;
        let databases = crate::databases::Databases::new(&config.databases, state_dir)
            .map_err(|e| internal("start the databases' endpoints", &e))?;
        if config.network.enabled {
            let db_ports = HostPorts {
                listen: databases.listen,
                first: databases.ports.0,
                last: databases.ports.1,
            };
            match Network::start(state_dir, Some(db_ports)) {
                Ok(network) => runtime = runtime.with_network(network),
                Err(e) => tracing::warn!(
                    error = %error_chain(&e),
                    "sandboxes get no network (no egress; exposed ports still work)"
                ),
            }
        }
        tracing::info!(
            cgroup = ?runtime.cgroups().version(),
            idmapped_images = runtime.idmapped(),
            writable_layer = layer,
            "runtime ready"
        );
        let node_id = config.node_id.clone().unwrap_or_else(hostname);
        let desktop_support = crate::desktop::host_support();
        match &desktop_support {
            None => tracing::info!("desktops available"),
            Some(why) => tracing::info!("desktops unavailable: {why}"),
        }
        let node = Node {
            inner: Arc::new(Inner {
                _state_lock: state_lock,
                config,
                node_id,
                store,
                runtime,
                images,
                volumes,
                host_image,
                admission: Mutex::new(()),
                starts: tokio::sync::Semaphore::new(concurrent_starts()),
                locks: Mutex::new(HashMap::new()),
                reaper_wake: Notify::new(),
                api_address: OnceLock::new(),
                membership: Default::default(),
                metrics: NodeMetrics::default(),
                routes: Routes::default(),
                pool: Pool::default(),
                detaching: Mutex::new(HashSet::new()),
                services: Default::default(),
                databases,
                desktop_support,
                streams: Default::default(),
            }),
        };
        node.bootstrap_admin_key(state_dir)?;
        node.recover().await;
        node.resume_services().await;
        node.resume_databases();
        node.prepare_engine_images();
        // Layers of a pull that a crash cut off before it was recorded belong to nothing.
        node.images().collect_garbage(0);
        tokio::spawn(node.clone().reap());
        if node.config().pool.size > 0 {
            tokio::spawn(node.clone().run_pool());
        }
        Ok(node)
    }

    /// On the very first start, creates an admin key and writes it to `admin.key` (0600).
    fn bootstrap_admin_key(&self, state_dir: &Path) -> Result<(), NodeError> {
        if self.store().key_count()? > 0 {
            return Ok(());
        }
        let (_, secret) = self.insert_key("admin", DEFAULT_TENANT, vec!["admin".into()])?;
        let path = state_dir.join("admin.key");
        let tmp = state_dir.join(".admin.key.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(secret.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| NodeError::Internal(format!("write {}: {e}", path.display())))?;
        tracing::info!(path = %path.display(), "created the admin API key");
        Ok(())
    }

    pub(crate) fn config(&self) -> &NodeConfig {
        &self.inner.config
    }

    /// Records the address the API listens on (its port is the proxy's public port unless
    /// configured).
    pub fn set_api_address(&self, address: std::net::SocketAddr) {
        let _ = self.inner.api_address.set(address);
    }

    /// Removes the network link of a destroyed sandbox's `slot` in the background: the kernel
    /// takes tens of milliseconds to delete a veth (it waits for a grace period), which a
    /// delete need not wait for. The slot is not reused until the link is gone.
    pub(crate) fn detach_link(&self, slot: u32) {
        let Some(name) = self.runtime().network().map(|n| n.link_name(slot)) else {
            return;
        };
        self.detaching_lock().insert(slot);
        let node = self.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(net) = node.runtime().network() {
                if let Err(e) = net.detach(&name) {
                    tracing::warn!(link = %name, error = %e, "could not remove a network link");
                }
            }
            node.detaching_lock().remove(&slot);
        });
    }

    pub(crate) fn detaching_slots(&self) -> Vec<u32> {
        self.detaching_lock().iter().copied().collect()
    }

    fn detaching_lock(&self) -> std::sync::MutexGuard<'_, HashSet<u32>> {
        self.inner
            .detaching
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn pool_state(&self) -> &Pool {
        &self.inner.pool
    }

    pub(crate) fn inner_routes(&self) -> &Routes {
        &self.inner.routes
    }

    pub(crate) fn metrics_state(&self) -> &NodeMetrics {
        &self.inner.metrics
    }

    pub(crate) fn api_address(&self) -> Option<std::net::SocketAddr> {
        self.inner.api_address.get().copied()
    }

    pub(crate) fn membership(&self) -> &crate::cluster::Membership {
        &self.inner.membership
    }

    /// Before the process exits: destroys the warm pool, then takes the network rules down
    /// unless sandboxes still run (they outlive the node process and keep their rules).
    pub async fn shutdown(&self) {
        self.drain_pool().await;
        if let Some(network) = self.runtime().network() {
            let live = self.store().usage(None).map_or(true, |u| u.sandboxes > 0);
            network.stop(live);
        }
    }

    /// This node's id (`node_id` of what it holds).
    pub fn id(&self) -> &str {
        &self.inner.node_id
    }

    pub(crate) fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The store, to keep.
    pub(crate) fn store_handle(&self) -> Arc<Store> {
        self.inner.store.clone()
    }

    pub(crate) fn images(&self) -> &crate::images::Images {
        &self.inner.images
    }

    pub(crate) fn databases(&self) -> &crate::databases::Databases {
        &self.inner.databases
    }

    /// Why desktops cannot run on the `host` image, if they cannot.
    pub(crate) fn desktop_support(&self) -> Option<&str> {
        self.inner.desktop_support.as_deref()
    }

    pub(crate) fn streams(&self) -> &crate::desktop::Streams {
        &self.inner.streams
    }

    pub(crate) fn services(&self) -> &crate::services::Services {
        &self.inner.services
    }

    pub(crate) fn volumes(&self) -> &crate::volumes::Volumes {
        &self.inner.volumes
    }

    /// Whether sandboxes' writable layers are disks of their own (else tmpfs).
    pub(crate) fn disk_layer(&self) -> bool {
        self.config().storage.writable_layer == WritableLayer::Disk
            && self.runtime().disks().is_some()
    }

    pub(crate) fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    pub(crate) fn host_image(&self) -> &Path {
        &self.inner.host_image
    }

    pub(crate) fn admission(&self) -> std::sync::MutexGuard<'_, ()> {
        self.inner
            .admission
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// A turn to start a sandbox. Starting one is CPU work, most of it in the kernel: a
    /// burst of creates all started at once share the cores and all finish late, while
    /// taken a few at a time (in order) the first finish early and the last no later.
    pub(crate) async fn start_permit(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.inner
            .starts
            .acquire()
            .await
            .expect("the semaphore is never closed")
    }

    pub(crate) fn reaper_wake(&self) -> &Notify {
        &self.inner.reaper_wake
    }

    /// The lifecycle lock of sandbox `id`.
    pub(crate) fn lock_of(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.inner.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.retain(|_, l| Arc::strong_count(l) > 1 || l.try_lock().is_err());
        locks.entry(id.to_string()).or_default().clone()
    }
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "node".into())
}

/// Locks `state_dir` for this process: two nodes on one state directory would both recover,
/// reap and pool the same sandboxes.
fn lock_state_dir(state_dir: &Path) -> Result<Flock<fs::File>, NodeError> {
    let path = state_dir.join("node.lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| NodeError::Internal(format!("open {}: {e}", path.display())))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|_| {
        NodeError::Internal(format!(
            "another node is running on the state directory {}; stop it first or pass another \
             --state-dir",
            state_dir.display()
        ))
    })
}

/// Opens the store, readable by root only: it holds key hashes and tenants' metadata. SQLite
/// gives its journal files the database file's mode.
fn open_store(path: &Path) -> Result<Store, NodeError> {
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| internal("create the store", &e))?;
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        if file.exists() {
            set_mode(&file, 0o600).map_err(|e| internal("set the store's mode", &e))?;
        }
    }
    Store::open(path).map_err(|e| internal("open the store", &e))
}

/// A start-up failure: what was being done, and why it failed.
fn internal(what: &str, e: &dyn std::error::Error) -> NodeError {
    NodeError::Internal(format!("{what}: {}", error_chain(e)))
}

//! The databases subsystem's state: the engines this node serves, the template images made
//! for them, and the endpoint of every database.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::endpoint::main_address;
use super::engines::{Installed, detect};
use super::tls::{self, Tls};
use crate::config::DatabasesConfig;
use crate::images::Content;

/// The node's databases.
pub(crate) struct Databases {
    /// What the host's packages provide.
    pub engines: Vec<Installed>,
    /// Where endpoints listen.
    pub listen: IpAddr,
    /// What urls name.
    pub public_host: String,
    /// The endpoints' ports.
    pub ports: (u16, u16),
    /// Template images by engine and version, made once.
    pub templates: tokio::sync::Mutex<HashMap<String, Arc<Content>>>,
    /// Serializes creates' quota checks and port choices.
    pub admission: tokio::sync::Mutex<()>,
    /// The endpoints' runtime, on a thread of its own.
    pub runtime: Handle,
    endpoints: Mutex<HashMap<String, JoinHandle<()>>>,
    /// Serializes changes of the ports' forwarding.
    forwards: Mutex<()>,
    /// The certificate servers offer TLS with, unless TLS is off.
    pub tls: Option<Tls>,
}

impl Databases {
    pub fn new(cfg: &DatabasesConfig, state_dir: &Path) -> std::io::Result<Self> {
        let engines = detect();
        let listen = cfg.listen.unwrap_or_else(main_address);
        let public_host = cfg
            .public_host
            .clone()
            .unwrap_or_else(|| listen.to_string());
        // The certificate names what urls name, and the address endpoints listen on.
        let mut names = vec![public_host.clone()];
        if !listen.is_unspecified() && public_host != listen.to_string() {
            names.push(listen.to_string());
        }
        let tls = tls::load(cfg, state_dir, &names);
        tracing::info!(
            engines = ?engines.iter().map(|e| (e.engine.as_str(), &e.versions)).collect::<Vec<_>>(),
            %listen,
            tls = tls.is_some(),
            "databases"
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name("ai2in-databases".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
        Ok(Databases {
            engines,
            listen,
            public_host,
            ports: cfg.port_range().unwrap_or((21000, 21999)),
            templates: Default::default(),
            admission: Default::default(),
            runtime: handle,
            endpoints: Default::default(),
            forwards: Default::default(),
            tls,
        })
    }

    fn endpoints(&self) -> std::sync::MutexGuard<'_, HashMap<String, JoinHandle<()>>> {
        self.endpoints.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Held while a port's forwarding changes.
    pub fn lock_forwards(&self) -> std::sync::MutexGuard<'_, ()> {
        self.forwards.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps the endpoint of database `id`.
    pub fn add_endpoint(&self, id: &str, endpoint: JoinHandle<()>) {
        if let Some(old) = self.endpoints().insert(id.to_string(), endpoint) {
            old.abort();
        }
    }

    /// Closes the endpoint of database `id`.
    pub fn remove_endpoint(&self, id: &str) {
        if let Some(endpoint) = self.endpoints().remove(id) {
            endpoint.abort();
        }
    }
}

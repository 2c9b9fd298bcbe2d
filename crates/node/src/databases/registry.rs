//! The databases subsystem's state: the engines this node serves (from the host's packages,
//! or from engine images, probed once), the template images made for them, and the endpoint
//! of every database.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::endpoint::main_address;
use super::engines::{Engine, Installed, detect};
use super::tls::{self, Tls};
use crate::config::{DatabasesConfig, EngineConfig};
use crate::error::NodeError;
use crate::images::Content;

/// Where an engine's servers come from.
pub(crate) enum Source {
    /// The host's packages: found at start.
    Host(Installed),
    /// An engine image: pulled and probed once, when first needed (or as the node starts).
    Image {
        engine: Engine,
        reference: String,
        probed: tokio::sync::Mutex<Option<Installed>>,
    },
}

/// `[databases.ENGINE]`.
pub(crate) fn engine_config(cfg: &DatabasesConfig, engine: Engine) -> &EngineConfig {
    match engine {
        Engine::Postgres => &cfg.postgres,
        Engine::Mysql => &cfg.mysql,
        Engine::Redis => &cfg.redis,
    }
}

/// 400 naming `[databases.ENGINE] image` when it is no image reference.
pub(crate) fn check_images(cfg: &DatabasesConfig) -> Result<(), NodeError> {
    for engine in Engine::ALL {
        if let Some(image) = &engine_config(cfg, engine).image {
            ai2in_image::Reference::parse(image).map_err(|e| {
                NodeError::Invalid(format!(
                    "[databases.{}] image {image:?} is not an image reference: {e}",
                    engine.as_str()
                ))
            })?;
        }
    }
    Ok(())
}

/// The node's databases.
pub(crate) struct Databases {
    /// The engines it serves, in [`Engine::ALL`]'s order.
    pub sources: Vec<Source>,
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
        let from_host = Engine::ALL
            .into_iter()
            .filter(|e| engine_config(cfg, *e).image.is_none());
        let mut host = detect(from_host).into_iter().peekable();
        let mut sources = Vec::new();
        for engine in Engine::ALL {
            if let Some(reference) = &engine_config(cfg, engine).image {
                sources.push(Source::Image {
                    engine,
                    reference: reference.clone(),
                    probed: Default::default(),
                });
            } else if let Some(installed) = host.next_if(|i| i.engine == engine) {
                sources.push(Source::Host(installed));
            }
        }
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
            engines = ?sources.iter().map(|s| match s {
                Source::Host(i) => (i.engine.as_str(), i.versions.join(", ")),
                Source::Image { engine, reference, .. } => (engine.as_str(), reference.clone()),
            }).collect::<Vec<_>>(),
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
            sources,
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

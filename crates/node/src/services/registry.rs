//! The services subsystem's state in memory: per service, the channel to its supervisor,
//! its log, and what the proxy needs (its name, status and the instance that serves it).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use ai2in_api::ServiceStatus;
use tokio::sync::mpsc;

use super::logs::ServiceLog;
use super::supervisor::Control;
use crate::error::NodeError;

/// What the proxy knows of a service.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub name: String,
    pub status: ServiceStatus,
    /// Its internal port: a service without one has no URL.
    pub port: Option<u16>,
    /// The ready instance's sandbox and port.
    pub target: Option<(String, u16)>,
    /// Whether the proxy serves it (a database's server is reached through its own port).
    pub public: bool,
}

struct Entry {
    control: mpsc::Sender<Control>,
    log: Arc<ServiceLog>,
    route: Route,
}

/// Every service of the node with a supervisor.
#[derive(Default)]
pub(crate) struct Services {
    entries: RwLock<HashMap<String, Entry>>,
    /// Serializes deploys' quota checks and inserts.
    pub admission: tokio::sync::Mutex<()>,
}

impl Services {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Entry>> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Entry>> {
        self.entries.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn insert(
        &self,
        id: &str,
        control: mpsc::Sender<Control>,
        log: Arc<ServiceLog>,
        route: Route,
    ) {
        self.write().insert(
            id.to_string(),
            Entry {
                control,
                log,
                route,
            },
        );
    }

    pub fn remove(&self, id: &str) {
        self.write().remove(id);
    }

    /// Sets service `id`'s route; whether its target changed.
    pub fn set_route(&self, id: &str, route: Route) -> bool {
        match self.write().get_mut(id) {
            Some(entry) => {
                let moved = entry.route.target != route.target;
                entry.route = route;
                moved
            }
            None => false,
        }
    }

    pub fn control(&self, id: &str) -> Option<mpsc::Sender<Control>> {
        self.read().get(id).map(|e| e.control.clone())
    }

    pub fn log(&self, id: &str) -> Option<Arc<ServiceLog>> {
        self.read().get(id).map(|e| e.log.clone())
    }

    /// The service whose host label is `{name}-{body}`.
    pub fn by_host(&self, name: &str, body: &str) -> Option<String> {
        let id = format!("svc_{body}");
        self.read()
            .get(&id)
            .filter(|e| e.route.public && e.route.name == name)
            .map(|_| id)
    }

    /// Where service `id` is in its life, and its ready instance's sandbox.
    pub fn state(&self, id: &str) -> Option<(ServiceStatus, Option<String>)> {
        self.read()
            .get(id)
            .map(|e| (e.route.status, e.route.target.as_ref().map(|t| t.0.clone())))
    }

    /// The sandbox and port serving service `id`: 503 while it has no ready instance.
    pub fn upstream(&self, id: &str) -> Result<(String, u16), NodeError> {
        let entries = self.read();
        let route = &entries
            .get(id)
            .ok_or_else(|| NodeError::NotFound(format!("no service {id}")))?
            .route;
        if let Some(target) = &route.target {
            return Ok(target.clone());
        }
        let name = &route.name;
        if route.port.is_none() {
            return Err(NodeError::NotFound(format!(
                "service {name} has no internal_port, so no URL; redeploy it with one"
            )));
        }
        Err(NodeError::Unavailable(match route.status {
            ServiceStatus::Deploying | ServiceStatus::Running => {
                format!("service {name} is deploying: it answers once its port accepts connections")
            }
            ServiceStatus::Crashed => {
                format!("service {name} has crashed and is waiting to restart; its logs say why")
            }
            ServiceStatus::Stopped => {
                format!("service {name} is stopped; start it to serve again")
            }
        }))
    }
}

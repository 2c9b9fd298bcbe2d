//! The node's service calls (deploy, list, get, logs, redeploy, stop, start, delete), and
//! taking up every service again when the node starts.

use std::sync::Arc;

use ai2in_api::{
    DeployServiceRequest, LogLine, RedeployServiceRequest, Service, ServiceExit, ServiceLogs,
    ServiceStatus,
};
use ai2in_store::{LogRecord, ServiceRecord, Status};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::instance;
use super::logs::{ServiceLog, log_line};
use super::registry::Route;
use super::spec::{ServiceSpec, check_name};
use super::supervisor::{Control, Supervisor, parse_status};
use crate::auth::{Principal, Scope};
use crate::error::NodeError;
use crate::ids;
use crate::images::{Content, PullPolicy};
use crate::node::Node;
use crate::time::{now_ms, rfc3339};

/// Lines a logs answer holds by default, and at most.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;
/// Requests queued for one supervisor.
const CONTROL_QUEUE: usize = 16;

/// A follower of a service's log: the lines after a cursor, then each new one.
pub struct LogFollower {
    backlog: std::vec::IntoIter<LogRecord>,
    live: broadcast::Receiver<LogRecord>,
    last: u64,
    node: Node,
    service: String,
}

impl LogFollower {
    /// The next line; `None` once the service is deleted.
    pub async fn next(&mut self) -> Option<LogLine> {
        loop {
            if let Some(line) = self.backlog.next() {
                self.last = line.seq;
                return Some(log_line(line));
            }
            match self.live.recv().await {
                Ok(line) if line.seq <= self.last => continue,
                Ok(line) => {
                    self.last = line.seq;
                    return Some(log_line(line));
                }
                // Too slow: what was missed is read back from the store.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let lines = self
                        .node
                        .store()
                        .logs(&self.service, Some(self.last), MAX_LIMIT)
                        .ok()?;
                    self.backlog = lines.into_iter();
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

impl Node {
    /// The caller's service `key` (id or name): 404 when unknown or another tenant's.
    fn service_record(&self, caller: &Principal, key: &str) -> Result<ServiceRecord, NodeError> {
        let not_found = || NodeError::NotFound(format!("no service {key}"));
        if key.is_empty() || key.len() > 64 {
            return Err(not_found());
        }
        // A database's server is the database's, not a service of the tenant's.
        self.store()
            .service(&caller.tenant, key)?
            .filter(|r| r.owner.is_none())
            .ok_or_else(not_found)
    }

    fn service_info(&self, r: &ServiceRecord) -> Result<Service, NodeError> {
        let spec: ServiceSpec = serde_json::from_str(&r.spec)
            .map_err(|e| NodeError::Internal(format!("stored spec of {}: {e}", r.id)))?;
        let body = r.id.trim_start_matches("svc_");
        Ok(Service {
            id: r.id.clone(),
            name: r.name.clone(),
            image: spec.image.clone(),
            image_digest: r.image_digest.clone(),
            status: parse_status(&r.status),
            url: spec
                .internal_port
                .map(|_| self.public_url(&format!("{}-{body}", r.name))),
            internal_port: spec.internal_port,
            start_cmd: spec.start_cmd.clone(),
            health_path: spec.health_path.clone(),
            created_at: rfc3339(r.created_at_ms),
            deployed_at: r.deployed_at_ms.map(rfc3339),
            restarts: r.restarts,
            last_exit: r.exit_at_ms.map(|at| ServiceExit {
                exit_code: r.exit_code,
                signal: r.exit_signal,
                at: rfc3339(at),
            }),
            next_restart_at: r.next_restart_at_ms.map(rfc3339),
            sandbox_id: r.instance.clone(),
            resources: spec.resources(),
            volumes: spec.volumes,
        })
    }

    /// Deploys a service: checks it, pulls its image, starts its first instance, and answers
    /// while it gets ready (`deploying`).
    pub async fn deploy_service(
        &self,
        caller: &Principal,
        req: DeployServiceRequest,
    ) -> Result<Service, NodeError> {
        caller.require(Scope::HostingWrite)?;
        self.check_taking_work()?;
        check_name(&req.name)?;
        let name = req.name.clone();
        let spec = ServiceSpec::new(self.config(), req)?;
        crate::volumes::require_scopes(caller, &spec.volumes)?;
        let content = self.images().resolve(&caller.tenant, &spec.image).await?;
        spec.command_line(&content)?;
        let record = {
            let _admission = self.services().admission.lock().await;
            let quota = self.config().quotas.services;
            if self.store().service_count(&caller.tenant)? >= quota {
                return Err(NodeError::Quota(format!(
                    "quota exceeded: at most {quota} services per tenant; delete one first"
                )));
            }
            let record = new_record(ids::new_id("svc"), &caller.tenant, &name, &spec, &content);
            if !self.store().insert_service(&record)? {
                return Err(NodeError::Exists(format!(
                    "a service named {name} exists already; redeploy it or pick another name"
                )));
            }
            record
        };
        let info = self.launch_service(record, spec, content).await?;
        tracing::info!(service = %info.id, tenant = %caller.tenant, "deployed");
        Ok(info)
    }

    /// Runs the server of a database as service `id` of `tenant`, owned by the database
    /// `owner` (not the tenant's to see); answers once its process started.
    pub(crate) async fn deploy_owned_service(
        &self,
        id: &str,
        tenant: &str,
        owner: &str,
        spec: ServiceSpec,
        content: Arc<Content>,
    ) -> Result<(), NodeError> {
        let mut record = new_record(id.to_string(), tenant, id, &spec, &content);
        record.owner = Some(owner.to_string());
        if !self.store().insert_service(&record)? {
            return Err(NodeError::Internal(format!("service {id} exists already")));
        }
        self.launch_service(record, spec, content).await.map(|_| ())
    }

    /// Deletes service `id` whoever owns it (a database's server).
    pub(crate) async fn delete_owned_service(&self, id: &str) -> Result<(), NodeError> {
        let (reply, done) = oneshot::channel();
        self.control_service(id, Control::Delete(reply)).await?;
        done.await.map_err(|_| gone(id))
    }

    /// Starts the first instance of a stored service and its supervisor; the record is
    /// forgotten when the instance cannot start.
    async fn launch_service(
        &self,
        mut record: ServiceRecord,
        spec: ServiceSpec,
        content: Arc<Content>,
    ) -> Result<Service, NodeError> {
        let log = Arc::new(ServiceLog::new(
            &record.id,
            self.store_handle(),
            self.config().hosting.log_lines,
        ));
        log.system(format!("deploying image {}", spec.image));
        let first = instance::start(self, &record.id, &record.tenant, &spec, &content, &log).await;
        let first = match first {
            Ok(first) => first,
            Err(e) => {
                self.store().delete_service(&record.id)?;
                return Err(e);
            }
        };
        record.instance = Some(first.sandbox_id.clone());
        self.store().update_service(&record)?;
        let info = self.service_info(&record)?;
        self.supervise(Supervisor {
            node: self.clone(),
            record,
            spec,
            content: Some(content),
            log,
            current: Some(first),
            failures: 0,
            deploying: true,
        });
        Ok(info)
    }

    /// Starts the supervisor of a service.
    fn supervise(&self, supervisor: Supervisor) {
        let (control, requests) = mpsc::channel(CONTROL_QUEUE);
        let record = &supervisor.record;
        self.services().insert(
            &record.id,
            control,
            supervisor.log.clone(),
            Route {
                name: record.name.clone(),
                status: parse_status(&record.status),
                port: supervisor.spec.internal_port,
                target: None,
                public: record.owner.is_none(),
            },
        );
        tokio::spawn(supervisor.run(requests));
    }

    /// The caller's services, oldest first.
    pub fn list_services(&self, caller: &Principal) -> Result<Vec<Service>, NodeError> {
        caller.require(Scope::HostingRead)?;
        self.store()
            .services(Some(&caller.tenant))?
            .iter()
            .filter(|r| r.owner.is_none())
            .map(|r| self.service_info(r))
            .collect()
    }

    /// The caller's service `key` (id or name).
    pub fn get_service(&self, caller: &Principal, key: &str) -> Result<Service, NodeError> {
        caller.require(Scope::HostingRead)?;
        self.service_info(&self.service_record(caller, key)?)
    }

    /// Lines of the log of service `key`: after `since`, or the most recent.
    pub fn service_logs(
        &self,
        caller: &Principal,
        key: &str,
        since: Option<u64>,
        limit: Option<u32>,
    ) -> Result<ServiceLogs, NodeError> {
        caller.require(Scope::HostingRead)?;
        let record = self.service_record(caller, key)?;
        let limit = check_limit(limit)?;
        let lines = self.store().logs(&record.id, since, limit)?;
        let next_since = match lines.last() {
            Some(line) => line.seq,
            None => since.unwrap_or(self.store().last_log_seq(&record.id)?),
        };
        Ok(ServiceLogs {
            logs: lines.into_iter().map(log_line).collect(),
            next_since,
        })
    }

    /// Follows the log of service `key`: the lines after `since` (the last 100 when absent),
    /// then each new one.
    pub fn follow_service_logs(
        &self,
        caller: &Principal,
        key: &str,
        since: Option<u64>,
    ) -> Result<LogFollower, NodeError> {
        caller.require(Scope::HostingRead)?;
        let record = self.service_record(caller, key)?;
        let log = self
            .services()
            .log(&record.id)
            .ok_or_else(|| NodeError::NotFound(format!("no service {key}")))?;
        // Subscribed before reading the store: no line falls between the two.
        let live = log.subscribe();
        let backlog = self.store().logs(&record.id, since, DEFAULT_LIMIT)?;
        Ok(LogFollower {
            last: since.unwrap_or(0),
            backlog: backlog.into_iter(),
            live,
            node: self.clone(),
            service: record.id,
        })
    }

    /// Redeploys service `key` with `changes`: answers once the new instance serves (422
    /// when it never got ready: the old one keeps serving).
    pub async fn redeploy_service(
        &self,
        caller: &Principal,
        key: &str,
        changes: RedeployServiceRequest,
    ) -> Result<Service, NodeError> {
        caller.require(Scope::HostingWrite)?;
        let record = self.service_record(caller, key)?;
        let old: ServiceSpec = serde_json::from_str(&record.spec)
            .map_err(|e| NodeError::Internal(format!("stored spec of {}: {e}", record.id)))?;
        let spec = old.changed(self.config(), changes)?;
        // Pulled again: the tag may have moved.
        let content = self
            .images()
            .resolve_with(&caller.tenant, &spec.image, PullPolicy::Always)
            .await?;
        spec.command_line(&content)?;
        let (reply, answer) = oneshot::channel();
        self.control_service(
            &record.id,
            Control::Redeploy {
                spec: Box::new(spec),
                content,
                reply,
            },
        )
        .await?;
        answer.await.map_err(|_| gone(key))??;
        self.get_service(caller, key)
    }

    /// Stops service `key` (its state, logs and URL are kept).
    pub async fn stop_service(&self, caller: &Principal, key: &str) -> Result<Service, NodeError> {
        self.simple_control(caller, key, Control::Stop).await
    }

    /// Starts stopped service `key` again.
    pub async fn start_service(&self, caller: &Principal, key: &str) -> Result<Service, NodeError> {
        self.simple_control(caller, key, Control::Start).await
    }

    /// Deletes service `key`: its instance, its log and its record.
    pub async fn delete_service(&self, caller: &Principal, key: &str) -> Result<(), NodeError> {
        caller.require(Scope::HostingWrite)?;
        let record = self.service_record(caller, key)?;
        let (reply, done) = oneshot::channel();
        self.control_service(&record.id, Control::Delete(reply))
            .await?;
        done.await.map_err(|_| gone(key))
    }

    async fn simple_control(
        &self,
        caller: &Principal,
        key: &str,
        control: fn(oneshot::Sender<()>) -> Control,
    ) -> Result<Service, NodeError> {
        caller.require(Scope::HostingWrite)?;
        let record = self.service_record(caller, key)?;
        let (reply, done) = oneshot::channel();
        self.control_service(&record.id, control(reply)).await?;
        done.await.map_err(|_| gone(key))?;
        self.get_service(caller, key)
    }

    async fn control_service(&self, id: &str, control: Control) -> Result<(), NodeError> {
        let sender = self.services().control(id).ok_or_else(|| gone(id))?;
        sender.send(control).await.map_err(|_| gone(id))
    }

    /// Takes up every service at start (after sandboxes are recovered): an instance still
    /// running is followed from where the last run stopped; one that is gone (the host
    /// restarted) is started again; stale instances are destroyed.
    pub(crate) async fn resume_services(&self) {
        let records = match self.store().services(None) {
            Ok(records) => records,
            Err(e) => {
                tracing::error!(error = %e, "could not read the services");
                return;
            }
        };
        let owned = self.store().live_sandboxes(None).unwrap_or_default();
        for mut record in records {
            let spec: ServiceSpec = match serde_json::from_str(&record.spec) {
                Ok(spec) => spec,
                Err(e) => {
                    tracing::error!(service = %record.id, error = %e, "malformed service spec");
                    continue;
                }
            };
            let log = Arc::new(ServiceLog::new(
                &record.id,
                self.store_handle(),
                self.config().hosting.log_lines,
            ));
            let live = |id: &str| {
                owned
                    .iter()
                    .any(|s| s.id == id && matches!(s.status, Status::Running | Status::Paused))
            };
            let current = record
                .instance
                .as_deref()
                .filter(|id| live(id))
                .and_then(|id| self.store().instance(id).ok().flatten())
                .map(|found| {
                    let mut current = instance::resume(self, &log, found);
                    current.ready = parse_status(&record.status) == ServiceStatus::Running;
                    current
                });
            for stale in owned.iter().filter(|s| {
                s.owner.as_deref() == Some(record.id.as_str())
                    && Some(&s.id) != current.as_ref().map(|c| &c.sandbox_id)
            }) {
                instance::remove(self, &stale.id).await;
            }
            let running = matches!(
                parse_status(&record.status),
                ServiceStatus::Deploying | ServiceStatus::Running
            );
            if current.is_none() && running {
                log.system("the node started and found no instance running: starting one");
                record.status = "deploying".into();
            }
            let content = match &record.image_digest {
                Some(digest) => self.images().content(digest).ok(),
                None => Some(Arc::new(Content::host())),
            };
            self.supervise(Supervisor {
                node: self.clone(),
                record,
                spec,
                content,
                log,
                current,
                failures: 0,
                deploying: false,
            });
        }
    }
}

/// The record of a new service, `deploying`.
fn new_record(
    id: String,
    tenant: &str,
    name: &str,
    spec: &ServiceSpec,
    content: &Content,
) -> ServiceRecord {
    ServiceRecord {
        id,
        tenant: tenant.to_string(),
        name: name.to_string(),
        spec: serde_json::to_string(spec).expect("a spec serializes"),
        image_digest: content.digest.clone(),
        status: "deploying".into(),
        created_at_ms: now_ms(),
        deployed_at_ms: None,
        restarts: 0,
        exit_code: None,
        exit_signal: None,
        exit_at_ms: None,
        next_restart_at_ms: None,
        instance: None,
        owner: None,
    }
}

fn check_limit(limit: Option<u32>) -> Result<u32, NodeError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(NodeError::Invalid(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        ))),
    }
}

/// The error when a service went away during a call (deleted meanwhile).
fn gone(key: &str) -> NodeError {
    NodeError::NotFound(format!("service {key} was deleted meanwhile"))
}

//! The node's database calls (engines, create, list, get, reset_password, delete), and the
//! endpoints of every database opened again when the node starts.
//!
//! A database is a record, a volume for its data, a service of the node's supervisor running
//! its server from the `host` image or an engine image (for PostgreSQL and MySQL, from a
//! template image made of it: see `sources`), and an endpoint. The volume and the service are
//! owned by it: the tenant does not see them among its own.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ai2in_api::{
    CreateDatabaseRequest, Database, DatabaseResources, DatabaseStatus, EngineInfo, ServiceStatus,
    ShellRequest, VolumeAttachment,
};
use ai2in_store::DatabaseRecord;

use super::endpoint;
use super::engines::{DATA, Engine, Installed};
use crate::auth::{Principal, Scope};
use crate::error::NodeError;
use crate::ids;
use crate::images::Content;
use crate::node::Node;
use crate::services::ServiceSpec;
use crate::time::{now_ms, rfc3339};

/// A database's defaults: memory of its server and size of its volume.
const DEFAULT_MEMORY: u64 = 256 << 20;
const DEFAULT_DISK: u64 = 1 << 30;
/// The writable layer of a database's sandbox (its data is on the volume).
const SERVER_DISK: u64 = 256 << 20;
/// Longest database name.
const MAX_NAME: usize = 63;

fn check_name(name: &str) -> Result<(), NodeError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.as_bytes()[0].is_ascii_lowercase()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(NodeError::Invalid(format!(
            "name {name:?} is not a database name: use 1 to {MAX_NAME} of a-z, 0-9 and _, \
             starting with a letter"
        )))
    }
}

impl Node {
    /// The engines this node serves.
    pub async fn database_engines(&self, caller: &Principal) -> Result<Vec<EngineInfo>, NodeError> {
        caller.require(Scope::DatabasesRead)?;
        Ok(self.engine_list().await)
    }

    async fn engine_list(&self) -> Vec<EngineInfo> {
        self.served_engines()
            .await
            .into_iter()
            .map(|e| EngineInfo {
                engine: e.engine.as_str().into(),
                default: e.versions[0].clone(),
                versions: e.versions,
                image: e.image,
            })
            .collect()
    }

    /// The engine and version a create asks for, or 400 listing what this node serves (503
    /// when the engine's image cannot be used).
    async fn pick_engine(
        &self,
        engine: &str,
        version: Option<&str>,
    ) -> Result<(Installed, String), NodeError> {
        let served = match Engine::parse(engine) {
            Some(e) => self.served_engine(e).await.transpose()?,
            None => None,
        };
        let serves = || async {
            let list: Vec<String> = self
                .engine_list()
                .await
                .iter()
                .map(|e| format!("{} ({})", e.engine, e.versions.join(", ")))
                .collect();
            if list.is_empty() {
                "this node serves no engine (install postgresql, mariadb-server or redis-server on the host)".to_string()
            } else {
                format!("this node serves {}", list.join(", "))
            }
        };
        let Some(installed) = served else {
            return Err(NodeError::Invalid(format!(
                "engine {engine:?} is not served: {}",
                serves().await
            )));
        };
        let version = match version {
            None => installed.versions[0].clone(),
            Some(v) => match installed
                .versions
                .iter()
                .find(|have| Engine::names_version(v, have))
            {
                Some(have) => have.clone(),
                None => {
                    return Err(NodeError::Invalid(format!(
                        "version {v:?} of {engine} is not served: {}",
                        serves().await
                    )));
                }
            },
        };
        Ok((installed, version))
    }

    fn database_info(&self, r: &DatabaseRecord) -> Result<Database, NodeError> {
        let engine = Engine::parse(&r.engine)
            .ok_or_else(|| NodeError::Internal(format!("stored engine {}", r.engine)))?;
        let service = self.store().service(&r.tenant, &r.service_id)?;
        let status = match self.services().state(&r.service_id).map(|s| s.0) {
            Some(ServiceStatus::Running) => DatabaseStatus::Available,
            Some(ServiceStatus::Deploying)
                if service.as_ref().is_some_and(|s| s.deployed_at_ms.is_none()) =>
            {
                DatabaseStatus::Creating
            }
            Some(ServiceStatus::Deploying | ServiceStatus::Crashed) => DatabaseStatus::Restarting,
            Some(ServiceStatus::Stopped) | None => DatabaseStatus::Failed,
        };
        let host = &self.databases().public_host;
        Ok(Database {
            id: r.id.clone(),
            engine: r.engine.clone(),
            version: r.version.clone(),
            name: r.name.clone(),
            status,
            url: engine.url(&r.username, &r.password, host, r.port, &r.name),
            host: host.clone(),
            port: r.port,
            username: r.username.clone(),
            password: r.password.clone(),
            created_at: rfc3339(r.created_at_ms),
            resources: DatabaseResources {
                memory_bytes: r.memory_bytes,
                disk_bytes: r.disk_bytes,
            },
        })
    }

    fn database_record(&self, caller: &Principal, id: &str) -> Result<DatabaseRecord, NodeError> {
        let not_found = || NodeError::NotFound(format!("no database {id}"));
        if !ids::is_valid(id, "db") {
            return Err(not_found());
        }
        self.store()
            .database(Some(&caller.tenant), id)?
            .ok_or_else(not_found)
    }

    /// Creates a database and answers once its server accepts connections.
    pub async fn create_database(
        &self,
        caller: &Principal,
        req: CreateDatabaseRequest,
    ) -> Result<Database, NodeError> {
        caller.require(Scope::DatabasesWrite)?;
        self.check_taking_work()?;
        let (installed, version) = self
            .pick_engine(&req.engine, req.version.as_deref())
            .await?;
        let engine = installed.engine;
        let name = match engine {
            // Redis numbers its databases: the url names 0, whatever the request says.
            Engine::Redis => "0".to_string(),
            Engine::Postgres | Engine::Mysql => {
                let name = req.name.unwrap_or_else(|| "app".into());
                check_name(&name)?;
                name
            }
        };
        let limits = &self.config().limits;
        let memory_bytes = req.memory_bytes.unwrap_or(DEFAULT_MEMORY);
        if memory_bytes < limits.min_memory_bytes.max(64 << 20)
            || memory_bytes > limits.max_memory_bytes
        {
            return Err(NodeError::Invalid(format!(
                "memory_bytes must be between {} and {}",
                limits.min_memory_bytes.max(64 << 20),
                limits.max_memory_bytes
            )));
        }
        let disk_bytes = req.disk_bytes.unwrap_or(DEFAULT_DISK);
        let least = limits.min_volume_bytes.max(engine.min_disk_bytes());
        if disk_bytes < least || disk_bytes > limits.max_volume_bytes {
            return Err(NodeError::Invalid(format!(
                "disk_bytes of a {} database must be between {least} and {}",
                engine.as_str(),
                limits.max_volume_bytes
            )));
        }
        // What can be made ahead is made once (the first create of an engine's version).
        let content = self.database_template(&installed, &version).await?;
        let record = {
            let _admission = self.databases().admission.lock().await;
            let mine = self.store().databases(Some(&caller.tenant))?;
            let quota = self.config().quotas.databases;
            if mine.len() as u64 >= quota {
                return Err(NodeError::Quota(format!(
                    "quota exceeded: at most {quota} databases per tenant; delete one first"
                )));
            }
            let taken: Vec<u16> = self
                .store()
                .databases(None)?
                .iter()
                .map(|d| d.port)
                .collect();
            let (first, last) = self.databases().ports;
            let listen = self.databases().listen;
            // The first port no database has and nothing else holds.
            let (port, listener) = (first..=last)
                .filter(|p| !taken.contains(p))
                .find_map(|p| Some((p, std::net::TcpListener::bind((listen, p)).ok()?)))
                .ok_or_else(|| {
                    NodeError::Capacity(format!(
                        "every database port ({first}-{last}) on {listen} is taken"
                    ))
                })?;
            let record = DatabaseRecord {
                id: ids::new_id("db"),
                tenant: caller.tenant.clone(),
                engine: engine.as_str().into(),
                version: version.clone(),
                name,
                // 12 random lowercase letters and digits.
                username: format!("u_{}", &ids::new_id("u")[2..14]),
                password: ids::random_base62(32),
                port,
                service_id: ids::new_id("svc"),
                volume_id: ids::new_id("vol"),
                memory_bytes,
                disk_bytes,
                created_at_ms: now_ms(),
            };
            // The port is taken with the record.
            if !self.store().insert_database(&record)? {
                return Err(NodeError::Internal(format!("port {port} is taken twice")));
            }
            (record, listener)
        };
        let (record, listener) = record;
        let started = self
            .start_database(&record, listener, &installed, &version, content)
            .await;
        match started {
            Ok(()) => {
                tracing::info!(database = %record.id, tenant = %record.tenant, engine = %record.engine, "created");
                self.database_info(&record)
            }
            Err(e) => {
                self.remove_database(&record).await;
                Err(e)
            }
        }
    }

    /// Makes the volume, the service and the endpoint of a new database, and waits until
    /// its server is ready.
    async fn start_database(
        &self,
        record: &DatabaseRecord,
        listener: std::net::TcpListener,
        installed: &Installed,
        version: &str,
        content: Arc<Content>,
    ) -> Result<(), NodeError> {
        let engine = installed.engine;
        self.create_owned_volume(
            &record.volume_id,
            &record.tenant,
            &record.service_id,
            record.disk_bytes,
        )
        .await?;
        let mut env = BTreeMap::from([
            ("DB_NAME".to_string(), record.name.clone()),
            ("DB_USER".to_string(), record.username.clone()),
            ("DB_PASSWORD".to_string(), record.password.clone()),
        ]);
        if let Some(tls) = self
            .databases()
            .tls
            .as_ref()
            .filter(|_| engine.offers_tls())
        {
            env.insert("DB_TLS_CERT".into(), tls.cert.clone());
            env.insert("DB_TLS_KEY".into(), tls.key.clone());
        }
        let spec = ServiceSpec {
            image: match (engine.template_cmd(version), &installed.image) {
                (Some(_), _) => format!("{}-{version} template", engine.as_str()),
                (None, Some(image)) => image.clone(),
                (None, None) => "host".into(),
            },
            internal_port: Some(engine.port()),
            env,
            start_cmd: Some(engine.start_cmd(version, record.memory_bytes, record.disk_bytes)),
            health_path: None,
            cpu: self.config().defaults.cpu,
            memory_bytes: record.memory_bytes,
            disk_bytes: SERVER_DISK,
            volumes: vec![VolumeAttachment {
                volume_id: record.volume_id.clone(),
                path: DATA.into(),
                read_only: false,
            }],
            egress_denied: true,
            ready_cmd: engine.ready_cmd(),
        };
        self.deploy_owned_service(
            &record.service_id,
            &record.tenant,
            &record.id,
            spec,
            content,
        )
        .await?;
        self.open_endpoint(record, listener)?;
        // Ready when the server accepts connections (or never: then it failed).
        let deadline = tokio::time::Instant::now()
            + Duration::from_millis(self.config().hosting.start_timeout_ms);
        loop {
            match self.services().state(&record.service_id).map(|s| s.0) {
                Some(ServiceStatus::Running) => return Ok(()),
                Some(ServiceStatus::Crashed | ServiceStatus::Stopped) | None => {
                    let lines = self.store().logs(&record.service_id, None, 5)?;
                    let why: Vec<String> = lines.into_iter().map(|l| l.line).collect();
                    return Err(NodeError::Internal(format!(
                        "the {} server did not start: {}",
                        engine.as_str(),
                        why.join("; ")
                    )));
                }
                Some(_) if tokio::time::Instant::now() >= deadline => {
                    return Err(NodeError::Internal(format!(
                        "the {} server did not accept connections in time",
                        engine.as_str()
                    )));
                }
                Some(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    fn open_endpoint(
        &self,
        record: &DatabaseRecord,
        listener: std::net::TcpListener,
    ) -> Result<(), NodeError> {
        let runtime = &self.databases().runtime;
        let served = endpoint::serve(self, runtime, listener, &record.service_id)?;
        self.databases().add_endpoint(&record.id, served);
        Ok(())
    }

    /// Removes what there is of a database: endpoint, service (its sandbox), volume, record.
    async fn remove_database(&self, record: &DatabaseRecord) {
        self.databases().remove_endpoint(&record.id);
        if self.services().state(&record.service_id).is_some() {
            if let Err(e) = self.delete_owned_service(&record.service_id).await {
                tracing::error!(database = %record.id, error = %e, "could not delete its server");
            }
        }
        // The service is gone: the port is the listener's until the listener closes.
        let node = self.clone();
        let (port, service) = (record.port, record.service_id.clone());
        let _ = tokio::task::spawn_blocking(move || node.point_port(port, &service)).await;
        if let Err(e) = self.delete_owned_volume(&record.volume_id) {
            tracing::error!(database = %record.id, error = %e, "could not delete its volume");
        }
        if let Err(e) = self.store().delete_database(&record.id) {
            tracing::error!(database = %record.id, error = %e, "could not forget it");
        }
    }

    /// The caller's databases, oldest first.
    pub fn list_databases(&self, caller: &Principal) -> Result<Vec<Database>, NodeError> {
        caller.require(Scope::DatabasesRead)?;
        self.store()
            .databases(Some(&caller.tenant))?
            .iter()
            .map(|r| self.database_info(r))
            .collect()
    }

    /// The caller's database `id`, its url with its password.
    pub fn get_database(&self, caller: &Principal, id: &str) -> Result<Database, NodeError> {
        caller.require(Scope::DatabasesRead)?;
        self.database_info(&self.database_record(caller, id)?)
    }

    /// Gives database `id` a new password; the old one fails at once.
    pub async fn reset_database_password(
        &self,
        caller: &Principal,
        id: &str,
    ) -> Result<Database, NodeError> {
        caller.require(Scope::DatabasesWrite)?;
        let record = self.database_record(caller, id)?;
        let engine = Engine::parse(&record.engine)
            .ok_or_else(|| NodeError::Internal(format!("stored engine {}", record.engine)))?;
        let Some((ServiceStatus::Running, Some(sandbox))) =
            self.services().state(&record.service_id)
        else {
            return Err(NodeError::Conflict(format!(
                "database {id} is not available (its server is restarting); try again shortly"
            )));
        };
        let password = ids::random_base62(32);
        let request = ShellRequest {
            cmd: engine.set_password_cmd(&record.version),
            env: Some(BTreeMap::from([
                ("DB_USER".to_string(), record.username.clone()),
                ("DB_PASSWORD".to_string(), password.clone()),
                ("DB_OLD_PASSWORD".to_string(), record.password.clone()),
            ])),
            user: Some(engine.admin_user().into()),
            timeout_ms: Some(30_000),
            ..Default::default()
        };
        let done = self
            .shell(&Principal::node(&record.tenant), &sandbox, request)
            .await?;
        if done.exit_code != Some(0) {
            return Err(NodeError::Unavailable(format!(
                "the {} server did not take the new password (try again): {}",
                record.engine,
                done.stderr.trim()
            )));
        }
        self.store().set_database_password(&record.id, &password)?;
        tracing::info!(database = %record.id, "password reset");
        self.get_database(caller, id)
    }

    /// Deletes database `id`: its server, its data and its port.
    pub async fn delete_database(&self, caller: &Principal, id: &str) -> Result<(), NodeError> {
        caller.require(Scope::DatabasesWrite)?;
        let record = self.database_record(caller, id)?;
        self.remove_database(&record).await;
        tracing::info!(database = %record.id, "deleted");
        Ok(())
    }

    /// Opens the endpoint of every database (after services are taken up at start).
    pub(crate) fn resume_databases(&self) {
        let records = match self.store().databases(None) {
            Ok(records) => records,
            Err(e) => {
                tracing::error!(error = %e, "could not read the databases");
                return;
            }
        };
        for record in records {
            let address = SocketAddr::new(self.databases().listen, record.port);
            let opened = std::net::TcpListener::bind(address)
                .map_err(|e| NodeError::Unavailable(format!("listen on {address}: {e}")))
                .and_then(|listener| self.open_endpoint(&record, listener));
            if let Err(e) = opened {
                tracing::error!(database = %record.id, error = %e, "no endpoint");
            }
        }
    }
}

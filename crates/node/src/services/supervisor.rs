//! A service's supervisor: one task per service, the only writer of its record while the node
//! runs. It starts instances, notices their exit at once (the end of the followed output),
//! restarts them after a backoff (1 s doubling to 5 min, reset after 10 min up), probes
//! readiness, switches the proxy's route, and carries out redeploys, stops, starts and the
//! delete. Requests reach it over a channel, so nothing else races it.

use std::sync::Arc;
use std::time::Duration;

use ai2in_api::ServiceStatus;
use ai2in_store::ServiceRecord;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::instance::{self, End, Instance, Readiness};
use super::logs::ServiceLog;
use super::registry::Route;
use super::spec::ServiceSpec;
use crate::error::NodeError;
use crate::images::Content;
use crate::node::Node;
use crate::time::now_ms;

/// First restart delay; each exit after a short run doubles it.
const BACKOFF_FIRST_MS: u64 = 1_000;
/// Longest restart delay.
const BACKOFF_MAX_MS: u64 = 300_000;
/// A run this long resets the backoff.
const RESET_AFTER: Duration = Duration::from_secs(600);
/// Longest pause between two readiness probes: short while most servers start (a probe
/// costs a connection attempt inside the sandbox), longer after.
const PROBE_EVERY_EARLY: Duration = Duration::from_millis(10);
const PROBE_EVERY_LATE: Duration = Duration::from_millis(100);
/// How long probes stay frequent.
const PROBE_EARLY: Duration = Duration::from_secs(3);
/// How long an instance that never became ready has to stop.
const UNREADY_GRACE: Duration = Duration::from_secs(1);

/// What the API asks of a supervisor.
pub(crate) enum Control {
    /// Start an instance of `spec` beside the current one and switch to it once it is ready.
    Redeploy {
        spec: Box<ServiceSpec>,
        content: Arc<Content>,
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
    Stop(oneshot::Sender<()>),
    Start(oneshot::Sender<()>),
    Delete(oneshot::Sender<()>),
}

/// The status stored in a record.
pub(crate) fn parse_status(s: &str) -> ServiceStatus {
    match s {
        "running" => ServiceStatus::Running,
        "crashed" => ServiceStatus::Crashed,
        "stopped" => ServiceStatus::Stopped,
        _ => ServiceStatus::Deploying,
    }
}

fn status_str(s: ServiceStatus) -> &'static str {
    match s {
        ServiceStatus::Deploying => "deploying",
        ServiceStatus::Running => "running",
        ServiceStatus::Crashed => "crashed",
        ServiceStatus::Stopped => "stopped",
    }
}

/// The delay before the restart that follows `failures` exits after short runs.
fn backoff_ms(failures: u32) -> u64 {
    BACKOFF_FIRST_MS
        .saturating_mul(1u64 << failures.min(20))
        .min(BACKOFF_MAX_MS)
}

enum Wake {
    Control(Option<Control>),
    Ended(End),
    Ready(Result<(), String>),
    RestartDue,
}

pub(crate) struct Supervisor {
    pub node: Node,
    pub record: ServiceRecord,
    pub spec: ServiceSpec,
    /// `None` when the image's content is gone (each start then fails, and says so).
    pub content: Option<Arc<Content>>,
    pub log: Arc<ServiceLog>,
    pub current: Option<Instance>,
    /// Exits after short runs in a row: the backoff's exponent.
    pub failures: u32,
    /// Whether the current instance comes from a deploy not yet ready (its readiness sets
    /// `deployed_at`).
    pub deploying: bool,
}

impl Supervisor {
    fn status(&self) -> ServiceStatus {
        parse_status(&self.record.status)
    }

    fn set_status(&mut self, status: ServiceStatus) {
        self.record.status = status_str(status).to_string();
    }

    /// Stores the record and tells the proxy where the service is.
    fn publish(&mut self) {
        self.record.instance = self.current.as_ref().map(|i| i.sandbox_id.clone());
        if let Err(e) = self.node.store().update_service(&self.record) {
            tracing::error!(service = %self.record.id, error = %e, "could not store a service");
        }
        let target = match (&self.current, self.spec.internal_port) {
            (Some(i), Some(port)) if i.ready => Some((i.sandbox_id.clone(), port)),
            _ => None,
        };
        let moved = self.node.services().set_route(
            &self.record.id,
            Route {
                name: self.record.name.clone(),
                status: self.status(),
                port: self.spec.internal_port,
                target,
                public: self.record.owner.is_none(),
            },
        );
        // A database's port follows its server.
        if let Some(owner) = self.record.owner.as_deref().filter(|_| moved) {
            self.node.database_moved(owner);
        }
    }

    fn grace(&self) -> Duration {
        Duration::from_millis(self.node.config().hosting.stop_grace_ms)
    }

    /// What makes an instance of `spec` ready; `None` without a port (a started process is).
    fn readiness(&self, spec: &ServiceSpec) -> Option<Readiness> {
        let body = self.record.id.trim_start_matches("svc_");
        Some(Readiness {
            tenant: self.record.tenant.clone(),
            port: spec.internal_port?,
            health_path: spec.health_path.clone(),
            ready_cmd: spec.ready_cmd.clone(),
            host: format!(
                "{}-{body}.{}",
                self.record.name,
                self.node.config().proxy.domain
            ),
        })
    }

    /// Runs until the service is deleted (or the node stops).
    pub async fn run(mut self, mut control: mpsc::Receiver<Control>) {
        loop {
            if self.current.is_none()
                && matches!(
                    self.status(),
                    ServiceStatus::Deploying | ServiceStatus::Running
                )
            {
                self.launch().await;
            }
            // Without a port to probe, a started process is ready.
            if self.spec.internal_port.is_none() && self.current.as_ref().is_some_and(|i| !i.ready)
            {
                self.ready();
            }
            self.publish();
            let wake = self.next(&mut control).await;
            match wake {
                Wake::Control(None) => return,
                Wake::Control(Some(Control::Delete(reply))) => {
                    self.delete().await;
                    let _ = reply.send(());
                    return;
                }
                Wake::Control(Some(Control::Stop(reply))) => {
                    self.stop().await;
                    let _ = reply.send(());
                }
                Wake::Control(Some(Control::Start(reply))) => {
                    if self.status() == ServiceStatus::Stopped {
                        self.failures = 0;
                        self.deploying = true;
                        self.set_status(ServiceStatus::Deploying);
                        self.log.system("starting");
                        self.launch().await;
                    }
                    let _ = reply.send(());
                }
                Wake::Control(Some(Control::Redeploy {
                    spec,
                    content,
                    reply,
                })) => {
                    let result = self.redeploy(*spec, content).await;
                    let _ = reply.send(result);
                }
                Wake::Ended(end) => {
                    if let Some(instance) = self.current.take() {
                        instance::remove(&self.node, &instance.sandbox_id).await;
                        self.exited(end, instance.started.elapsed());
                    }
                }
                Wake::Ready(Ok(())) => self.ready(),
                Wake::Ready(Err(why)) => {
                    let timeout = self.node.config().hosting.start_timeout_ms;
                    self.log.system(format!(
                        "not ready within {timeout} ms ({why}): the instance counts as crashed"
                    ));
                    if let Some(instance) = self.current.take() {
                        let started = instance.started;
                        let end = instance::stop(&self.node, instance, UNREADY_GRACE).await;
                        self.exited(
                            end.unwrap_or(End {
                                exit_code: None,
                                signal: Some(libc::SIGKILL),
                            }),
                            started.elapsed(),
                        );
                    }
                }
                Wake::RestartDue => {
                    self.record.restarts += 1;
                    self.record.next_restart_at_ms = None;
                    self.set_status(ServiceStatus::Deploying);
                    self.log
                        .system(format!("restarting (restart {})", self.record.restarts));
                    self.launch().await;
                }
            }
        }
    }

    /// Waits for what happens next: a request, the instance's end, its readiness, or the
    /// time to restart.
    async fn next(&mut self, control: &mut mpsc::Receiver<Control>) -> Wake {
        let probe = match (&self.current, self.readiness(&self.spec)) {
            (Some(i), Some(ready)) if !i.ready => {
                let deadline =
                    i.started + Duration::from_millis(self.node.config().hosting.start_timeout_ms);
                Some(ready_by(
                    self.node.clone(),
                    i.sandbox_id.clone(),
                    ready,
                    deadline,
                ))
            }
            _ => None,
        };
        let restart_at = match (self.status(), self.record.next_restart_at_ms) {
            (ServiceStatus::Crashed, Some(at)) => {
                Some(Instant::now() + Duration::from_millis((at - now_ms()).max(0) as u64))
            }
            _ => None,
        };
        let ended = async {
            match self.current.as_mut() {
                Some(i) => (&mut i.ended).await.unwrap_or(End {
                    exit_code: None,
                    signal: None,
                }),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            c = control.recv() => Wake::Control(c),
            end = ended => Wake::Ended(end),
            r = async { probe.expect("guarded").await }, if probe.is_some() => Wake::Ready(r),
            _ = tokio::time::sleep_until(restart_at.unwrap_or_else(Instant::now)), if restart_at.is_some() => Wake::RestartDue,
        }
    }

    /// Starts an instance of the current spec; a failure counts as a crash.
    async fn launch(&mut self) {
        let started = match &self.content {
            Some(content) => {
                instance::start(
                    &self.node,
                    &self.record.id,
                    &self.record.tenant,
                    &self.spec,
                    content,
                    &self.log,
                )
                .await
            }
            None => Err(NodeError::NotFound(format!(
                "the content of image {} is gone; redeploy the service",
                self.spec.image
            ))),
        };
        match started {
            Ok(instance) => self.current = Some(instance),
            Err(e) => {
                self.log.system(format!("could not start: {e}"));
                self.schedule_restart();
            }
        }
    }

    /// The current instance is ready: the route goes to it.
    fn ready(&mut self) {
        let Some(instance) = self.current.as_mut() else {
            return;
        };
        instance.ready = true;
        if std::mem::take(&mut self.deploying) {
            self.record.deployed_at_ms = Some(now_ms());
        }
        self.set_status(ServiceStatus::Running);
        self.log
            .system(match (self.spec.internal_port, &self.spec.health_path) {
                (Some(port), Some(path)) => format!("ready: port {port} answers {path}"),
                (Some(port), None) => format!("ready: port {port} accepts connections"),
                (None, _) => "running".to_string(),
            });
    }

    /// The instance's process ended after running for `ran`: restart after the backoff.
    fn exited(&mut self, end: End, ran: Duration) {
        if ran >= RESET_AFTER {
            self.failures = 0;
        }
        self.record.exit_code = end.exit_code;
        self.record.exit_signal = end.signal;
        self.record.exit_at_ms = Some(now_ms());
        self.log.system(format!("the process {}", end.describe()));
        self.schedule_restart();
    }

    fn schedule_restart(&mut self) {
        let delay = backoff_ms(self.failures);
        self.failures += 1;
        self.set_status(ServiceStatus::Crashed);
        self.record.next_restart_at_ms = Some(now_ms() + delay as i64);
        self.log.system(format!(
            "restarting in {} s",
            Duration::from_millis(delay).as_secs_f64()
        ));
    }

    async fn stop(&mut self) {
        if let Some(instance) = self.current.take() {
            self.set_status(ServiceStatus::Stopped);
            // Requests go nowhere new while it stops.
            self.publish();
            self.log
                .system("stopping: SIGTERM, then SIGKILL after the grace period");
            instance::stop(&self.node, instance, self.grace()).await;
        }
        self.set_status(ServiceStatus::Stopped);
        self.record.next_restart_at_ms = None;
        self.log.system("stopped");
    }

    async fn delete(&mut self) {
        if let Some(instance) = self.current.take() {
            instance.ended.abort();
            instance::remove(&self.node, &instance.sandbox_id).await;
        }
        self.node.services().remove(&self.record.id);
        if let Err(e) = self.node.store().delete_service(&self.record.id) {
            tracing::error!(service = %self.record.id, error = %e, "could not forget a service");
        }
        tracing::info!(service = %self.record.id, "deleted");
    }

    /// Starts an instance of `spec` beside the current one and switches to it once it is
    /// ready (the old one then stops once its connections are done); a new instance that
    /// never gets ready is stopped and the old one keeps serving. With a volume mounted
    /// read-write, the old instance stops first: two cannot mount it.
    async fn redeploy(
        &mut self,
        spec: ServiceSpec,
        content: Arc<Content>,
    ) -> Result<(), NodeError> {
        self.log
            .system(format!("redeploying from image {}", spec.image));
        if spec.exclusive() || self.spec.exclusive() {
            if let Some(old) = self.current.take() {
                self.log.system(
                    "stopping the old instance first: a volume is mounted read-write, and \
                     two instances cannot mount it",
                );
                self.publish();
                instance::stop(&self.node, old, self.grace()).await;
            }
        }
        let old = self.current.take();
        let started = instance::start(
            &self.node,
            &self.record.id,
            &self.record.tenant,
            &spec,
            &content,
            &self.log,
        )
        .await;
        let mut new = match started {
            Ok(new) => new,
            Err(e) => {
                self.log
                    .system(format!("the new instance could not start: {e}"));
                self.current = old;
                return Err(e);
            }
        };
        let mut new_end = None;
        let outcome = match self.readiness(&spec) {
            None => Ok(()),
            Some(ready) => {
                let deadline = new.started
                    + Duration::from_millis(self.node.config().hosting.start_timeout_ms);
                let probe = ready_by(self.node.clone(), new.sandbox_id.clone(), ready, deadline);
                tokio::select! {
                    r = probe => r,
                    end = &mut new.ended => {
                        let end = end.unwrap_or(End { exit_code: None, signal: None });
                        new_end = Some(end);
                        Err(format!("its process {} before it was ready", end.describe()))
                    }
                }
            }
        };
        // Why the new instance is not serving, for the log and the answer.
        let timeout = self.node.config().hosting.start_timeout_ms;
        let not_ready = move |why: &str| match new_end {
            Some(_) => format!("the new instance failed: {why}"),
            None => format!("the new instance was not ready within {timeout} ms ({why})"),
        };
        match (outcome, old) {
            (Ok(()), old) => {
                self.adopt(spec, content);
                self.current = Some(new);
                self.deploying = true;
                self.failures = 0;
                self.record.next_restart_at_ms = None;
                self.ready();
                self.publish();
                self.log.system(format!(
                    "redeployed: sandbox {} serves",
                    self.current.as_ref().map_or("", |i| i.sandbox_id.as_str())
                ));
                if let Some(old) = old {
                    tokio::spawn(retire(
                        self.node.clone(),
                        self.log.clone(),
                        old,
                        self.grace(),
                    ));
                }
                Ok(())
            }
            (Err(why), Some(old)) => {
                let message = format!("{}; the old one keeps serving", not_ready(&why));
                self.log.system(message.clone());
                if new_end.is_none() {
                    new.ended.abort();
                }
                instance::remove(&self.node, &new.sandbox_id).await;
                self.current = Some(old);
                Err(NodeError::DeployFailed(format!(
                    "{message}; see the service's logs"
                )))
            }
            (Err(why), None) => {
                // Nothing served: the new spec stays, and the instance counts as crashed.
                self.adopt(spec, content);
                let started = new.started;
                let end = match new_end {
                    Some(end) => {
                        instance::remove(&self.node, &new.sandbox_id).await;
                        Some(end)
                    }
                    None => instance::stop(&self.node, new, UNREADY_GRACE).await,
                };
                let message = not_ready(&why);
                self.log.system(message.clone());
                self.exited(
                    end.unwrap_or(End {
                        exit_code: None,
                        signal: Some(libc::SIGKILL),
                    }),
                    started.elapsed(),
                );
                Err(NodeError::DeployFailed(format!(
                    "{message}; the service restarts it with backoff; see its logs"
                )))
            }
        }
    }

    fn adopt(&mut self, spec: ServiceSpec, content: Arc<Content>) {
        self.record.spec = serde_json::to_string(&spec).expect("a spec serializes");
        self.record.image_digest = content.digest.clone();
        self.spec = spec;
        self.content = Some(content);
    }
}

/// Probes until the instance is ready or `deadline` passes (then says what failed last).
async fn ready_by(
    node: Node,
    sandbox: String,
    ready: Readiness,
    deadline: Instant,
) -> Result<(), String> {
    let mut pause = Duration::from_millis(2);
    let began = Instant::now();
    loop {
        match instance::probe(&node, &sandbox, &ready).await {
            Ok(()) => return Ok(()),
            Err(why) if Instant::now() >= deadline => return Err(why),
            Err(_) => {}
        }
        tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        let most = if began.elapsed() < PROBE_EARLY {
            PROBE_EVERY_EARLY
        } else {
            PROBE_EVERY_LATE
        };
        pause = (pause * 3 / 2).min(most);
    }
}

/// Stops a replaced instance once the proxy's connections to it are done (or the grace
/// period is over).
async fn retire(node: Node, log: Arc<ServiceLog>, old: Instance, grace: Duration) {
    let deadline = Instant::now() + grace;
    while node.open_connections(&old.sandbox_id) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sandbox = old.sandbox_id.clone();
    let end = instance::stop(&node, old, grace).await;
    log.system(match end {
        Some(end) => format!(
            "the old instance in sandbox {sandbox} stopped: its process {}",
            end.describe()
        ),
        None => format!("the old instance in sandbox {sandbox} was killed after the grace period"),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_to_five_minutes() {
        let delays: Vec<u64> = (0..12).map(backoff_ms).collect();
        assert_eq!(&delays[..5], [1_000, 2_000, 4_000, 8_000, 16_000]);
        assert_eq!(delays[8], 256_000);
        assert_eq!(delays[9], 300_000);
        assert_eq!(backoff_ms(u32::MAX), 300_000);
    }
}

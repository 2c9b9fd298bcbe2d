//! One instance of a service: a sandbox of the service's image (owned by the service: no
//! lifetime, not listed with sandboxes) whose process is a background command of its agent.
//! Here it is started, its output followed into the service's log (from where the last
//! follower left: after a node restart too), its port probed, and it is stopped.

use std::sync::Arc;
use std::time::Duration;

use ai2in_api::ShellRequest;
use ai2in_protocol::{CommandSpec, Event, Request};
use ai2in_store::{InstanceRecord, SandboxRecord, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use super::logs::{LineSplitter, ServiceLog};
use super::spec::ServiceSpec;
use crate::auth::Principal;
use crate::error::NodeError;
use crate::ids;
use crate::images::Content;
use crate::node::Node;
use crate::time::now_ms;

/// An instance's sandbox never ends by time: 9999-12-31T23:59:59Z.
const NO_END_MS: i64 = 253_402_300_799_000;
/// How long a health check may take to answer.
const HEALTH_WAIT: Duration = Duration::from_secs(5);

/// How an instance's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct End {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
}

impl End {
    /// What a system line says of it.
    pub fn describe(&self) -> String {
        match (self.exit_code, self.signal) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(signal)) => format!("was killed by signal {signal}"),
            (None, None) => "ended with its sandbox".into(),
        }
    }
}

/// A running instance.
pub(crate) struct Instance {
    pub sandbox_id: String,
    pub command_id: String,
    /// Resolves when its process has ended and its output is in the log.
    pub ended: JoinHandle<End>,
    /// When it started (or was found again after a node restart).
    pub started: tokio::time::Instant,
    /// Whether it passed its readiness check.
    pub ready: bool,
}

/// Starts an instance of service `service_id` (of `tenant`) from `spec` and `content`.
pub(crate) async fn start(
    node: &Node,
    service_id: &str,
    tenant: &str,
    spec: &ServiceSpec,
    content: &Content,
    log: &Arc<ServiceLog>,
) -> Result<Instance, NodeError> {
    let cmd = spec.command_line(content)?;
    let now = now_ms();
    let record = SandboxRecord {
        id: ids::new_id("sbx"),
        tenant: tenant.to_string(),
        status: Status::Starting,
        image: spec.image.clone(),
        image_digest: content.digest.clone(),
        desktop: None,
        created_at_ms: now,
        end_at_ms: NO_END_MS,
        ended_at_ms: None,
        metadata: Default::default(),
        cpu: spec.cpu,
        memory_bytes: spec.memory_bytes,
        disk_bytes: spec.disk_bytes,
        uid_slot: 0,
        egress_denied: spec.egress_denied,
        pid: None,
        pid_start: None,
        owner: Some(service_id.to_string()),
    };
    let env: Vec<_> = spec.env.clone().into_iter().collect();
    let started = match node
        .start_sandbox(record.clone(), env.clone(), Status::Running, &spec.volumes)
        .await
    {
        // Pooled sandboxes hold the room an instance needs: one gives way.
        Err(NodeError::Capacity(_)) if node.evict_pooled().await? => {
            node.start_sandbox(record, env, Status::Running, &spec.volumes)
                .await?
        }
        started => started?,
    };
    let sandbox_id = started.id;
    let settings = &content.settings;
    let request = Request::CommandStart(CommandSpec {
        cmd,
        cwd: settings
            .workdir
            .clone()
            .unwrap_or_else(|| "/home/user".into()),
        env: Vec::new(),
        user: settings.user.clone().unwrap_or_else(|| "root".into()),
    });
    let command = async {
        let mut call = node.send_to_agent(&sandbox_id, &request, &[]).await?;
        match call.next().await? {
            (Event::CommandStarted { command_id, pid }, _)
                if ids::check(&command_id, "cmd", "command").is_ok() =>
            {
                Ok((command_id, pid))
            }
            (other, _) => Err(call.unexpected(format_args!("unexpected answer {other:?}"))),
        }
    };
    let (command_id, pid) = match command.await {
        Ok(started) => started,
        Err(e) => {
            let _ = node
                .destroy(&sandbox_id, "its service's process did not start")
                .await;
            return Err(e);
        }
    };
    let instance = InstanceRecord {
        sandbox_id: sandbox_id.clone(),
        service_id: service_id.to_string(),
        command_id: command_id.clone(),
        stdout_offset: 0,
        stderr_offset: 0,
    };
    node.store().insert_instance(&instance)?;
    log.system(format!("started in sandbox {sandbox_id} (pid {pid})"));
    Ok(Instance {
        ended: tokio::spawn(follow(node.clone(), log.clone(), instance)),
        sandbox_id,
        command_id,
        started: tokio::time::Instant::now(),
        ready: false,
    })
}

/// Takes up an instance a previous run of the node left running: its output is followed
/// from where that run stopped.
pub(crate) fn resume(node: &Node, log: &Arc<ServiceLog>, record: InstanceRecord) -> Instance {
    Instance {
        sandbox_id: record.sandbox_id.clone(),
        command_id: record.command_id.clone(),
        ended: tokio::spawn(follow(node.clone(), log.clone(), record)),
        started: tokio::time::Instant::now(),
        ready: false,
    }
}

/// Follows the instance's output into the log until its process ends.
async fn follow(node: Node, log: Arc<ServiceLog>, record: InstanceRecord) -> End {
    let request = Request::CommandFollow {
        command_id: record.command_id.clone(),
        stdout_offset: record.stdout_offset,
        stderr_offset: record.stderr_offset,
    };
    let sandbox = record.sandbox_id.as_str();
    let mut call = match node.send_to_agent(sandbox, &request, &[]).await {
        Ok(call) => call,
        Err(_) => {
            return End {
                exit_code: None,
                signal: None,
            };
        }
    };
    let mut splitters = [LineSplitter::default(), LineSplitter::default()];
    // Offsets of the bytes read so far, per stream.
    let mut read = [record.stdout_offset, record.stderr_offset];
    loop {
        let mut lines = Vec::new();
        let end = match call.next().await {
            Ok((
                Event::Output {
                    stderr,
                    offset,
                    at_ms,
                },
                data,
            )) => {
                let i = usize::from(stderr);
                let name = if stderr { "stderr" } else { "stdout" };
                if offset > read[i] {
                    lines.push((
                        at_ms,
                        "system",
                        format!(
                            "{} bytes of {name} were lost: the sandbox keeps the last 1 MiB of \
                             each stream while the node is away",
                            offset - read[i]
                        ),
                    ));
                }
                let mut text = Vec::new();
                splitters[i].push(&data, at_ms, &mut text);
                lines.extend(text.into_iter().map(|(at, line)| (at, name, line)));
                read[i] = offset + data.len() as u64;
                None
            }
            Ok((Event::CommandLogs { info, .. }, _)) => Some(End {
                exit_code: info.exit_code,
                signal: info.signal.or(if info.status == "killed" {
                    Some(libc::SIGKILL)
                } else {
                    None
                }),
            }),
            Ok(_) => Some(End {
                exit_code: None,
                signal: None,
            }),
            Err(_) => Some(End {
                exit_code: None,
                signal: None,
            }),
        };
        if end.is_some() {
            for (i, name) in [(0, "stdout"), (1, "stderr")] {
                let mut text = Vec::new();
                splitters[i].flush(&mut text);
                lines.extend(text.into_iter().map(|(at, line)| (at, name, line)));
            }
        }
        // What no line holds yet is read again after a restart of the node.
        let offsets = (
            sandbox,
            read[0] - splitters[0].pending(),
            read[1] - splitters[1].pending(),
        );
        if !lines.is_empty() {
            if let Err(e) = log.append(lines, Some(offsets)) {
                tracing::warn!(sandbox, error = %e, "could not write a service's log");
            }
        }
        if let Some(end) = end {
            return end;
        }
    }
}

/// What makes an instance ready.
#[derive(Debug, Clone)]
pub(crate) struct Readiness {
    pub tenant: String,
    pub port: u16,
    pub health_path: Option<String>,
    pub ready_cmd: Option<String>,
    /// The `Host` of health checks.
    pub host: String,
}

/// Whether the instance in `sandbox` is ready: its port accepts a connection, its ready
/// command succeeds, and its health path answers 2xx or 3xx. `Err` says what failed.
pub(crate) async fn probe(node: &Node, sandbox: &str, ready: &Readiness) -> Result<(), String> {
    let port = ready.port;
    let mut conn = node
        .connect_in(sandbox, port)
        .await
        .map_err(|_| format!("port {port} does not accept connections"))?;
    if let Some(cmd) = &ready.ready_cmd {
        let request = ShellRequest {
            cmd: cmd.clone(),
            user: Some("user".into()),
            timeout_ms: Some(HEALTH_WAIT.as_millis() as u64),
            ..Default::default()
        };
        let done = node
            .shell(&Principal::node(&ready.tenant), sandbox, request)
            .await
            .map_err(|e| format!("the ready check failed: {e}"))?;
        if done.exit_code != Some(0) {
            return Err("the server is not ready yet".into());
        }
    }
    let Some(path) = &ready.health_path else {
        return Ok(());
    };
    let host = &ready.host;
    let check = async {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: ai2in-health-check\r\n\
             Connection: close\r\n\r\n"
        );
        conn.write_all(request.as_bytes()).await.ok()?;
        let mut head = Vec::with_capacity(64);
        while !head.contains(&b'\n') && head.len() < 1024 {
            if conn.read_buf(&mut head).await.ok()? == 0 {
                break;
            }
        }
        let line = String::from_utf8_lossy(&head).into_owned();
        line.split_whitespace().nth(1)?.parse::<u16>().ok()
    };
    match tokio::time::timeout(HEALTH_WAIT, check).await {
        Ok(Some(status)) if (200..400).contains(&status) => Ok(()),
        Ok(Some(status)) => Err(format!("{path} answered {status}")),
        Ok(None) => Err(format!("{path} did not answer HTTP")),
        Err(_) => Err(format!(
            "{path} did not answer within {} s",
            HEALTH_WAIT.as_secs()
        )),
    }
}

/// Stops an instance: SIGTERM to its process, up to `grace` for it to end, then its whole
/// sandbox destroyed (which kills what is left).
pub(crate) async fn stop(node: &Node, mut instance: Instance, grace: Duration) -> Option<End> {
    let term = Request::CommandKill {
        command_id: instance.command_id.clone(),
        signal: libc::SIGTERM,
    };
    if let Ok(mut call) = node.send_to_agent(&instance.sandbox_id, &term, &[]).await {
        let _ = call.next().await;
    }
    let end = tokio::time::timeout(grace, &mut instance.ended)
        .await
        .ok()
        .and_then(Result::ok);
    remove(node, &instance.sandbox_id).await;
    instance.ended.abort();
    end
}

/// Destroys an instance's sandbox and forgets it.
pub(crate) async fn remove(node: &Node, sandbox: &str) {
    if let Err(e) = node.destroy(sandbox, "its service's instance ended").await {
        tracing::error!(sandbox, error = %e, "could not destroy a service's instance");
    }
    if let Err(e) = node.store().delete_instance(sandbox) {
        tracing::error!(sandbox, error = %e, "could not forget a service's instance");
    }
}

//! [`Sandbox`]: a handle on one sandbox — its lifecycle, and the entry points to code,
//! shell, commands, terminals, files and contexts.

use std::time::Duration;

use ai2in_api::{
    ExposeRequest, ExposeResponse, Image, SandboxInfo, SandboxMetrics, SetTimeoutRequest,
    SnapshotRequest,
};

use crate::commands::Commands;
use crate::contexts::Contexts;
use crate::desktop::Desktop;
use crate::error::Result;
use crate::fs::Fs;
use crate::http::{Empty, Http};
use crate::pty::Pty;

/// One sandbox, by id. Cheap to clone; made by [`crate::Client::create_sandbox`] or
/// [`crate::Client::sandbox`]. A sandbox lives until [`Sandbox::kill`] or its `end_at`,
/// whatever happens to this handle.
///
/// ```no_run
/// # async fn demo(client: ai2in_client::Client) -> ai2in_client::Result<()> {
/// let sandbox = client.sandbox("sbx_…");
/// sandbox.pause().await?;
/// sandbox.resume().await?;
/// sandbox.set_timeout(std::time::Duration::from_secs(600)).await?;
/// sandbox.kill().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Sandbox {
    http: Http,
    id: String,
}

impl Sandbox {
    pub(crate) fn new(http: Http, id: String) -> Self {
        Sandbox { http, id }
    }

    /// Its id, `sbx_…`.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn http(&self) -> &Http {
        &self.http
    }

    /// The path of `route` below this sandbox (`route` empty for the sandbox itself).
    pub(crate) fn path(&self, route: &str) -> String {
        if route.is_empty() {
            format!("/v1/sandboxes/{}", self.id)
        } else {
            format!("/v1/sandboxes/{}/{route}", self.id)
        }
    }

    /// Its status, lifetime, node, metadata and resources.
    pub async fn info(&self) -> Result<SandboxInfo> {
        self.http.get(&self.path("")).await
    }

    /// Freezes every process; in-sandbox calls answer [`crate::Error::Paused`] until
    /// [`Sandbox::resume`]. Idempotent.
    pub async fn pause(&self) -> Result<SandboxInfo> {
        self.http.post(&self.path("pause"), &Empty {}).await
    }

    /// Thaws a paused sandbox. Idempotent.
    pub async fn resume(&self) -> Result<SandboxInfo> {
        self.http.post(&self.path("resume"), &Empty {}).await
    }

    /// Ends the sandbox `timeout` from now (at most 24 h; it may shorten the lifetime).
    /// Millisecond precision.
    pub async fn set_timeout(&self, timeout: Duration) -> Result<SandboxInfo> {
        let body = SetTimeoutRequest {
            timeout_ms: millis(timeout),
        };
        self.http.post(&self.path("timeout"), &body).await
    }

    /// Live CPU, memory, disk, task and network figures.
    pub async fn metrics(&self) -> Result<SandboxMetrics> {
        self.http.get(&self.path("metrics")).await
    }

    /// A public URL for `port` inside the sandbox, served by the node's proxy.
    pub async fn expose(&self, port: u16) -> Result<ExposeResponse> {
        self.http
            .post(&self.path("expose"), &ExposeRequest { port })
            .await
    }

    /// Takes a snapshot of the sandbox's files as a new image named `reference`
    /// (`localhost/snapshots/{id}:{ms}` when `None`): its image plus everything it wrote,
    /// volumes excluded. The sandbox is frozen for the moment it takes and goes on after.
    /// Create sandboxes from the image (by its `r#ref` or `id`) to fork this one.
    pub async fn snapshot(&self, reference: Option<&str>) -> Result<Image> {
        let body = SnapshotRequest {
            r#ref: reference.map(str::to_string),
        };
        self.http.post(&self.path("snapshot"), &body).await
    }

    /// Destroys the sandbox and everything in it.
    pub async fn kill(&self) -> Result<()> {
        self.http.delete(&self.path("")).await
    }

    /// Background commands.
    pub fn commands(&self) -> Commands<'_> {
        Commands::new(self)
    }

    /// The display, in a desktop sandbox.
    pub fn desktop(&self) -> Desktop<'_> {
        Desktop::new(self)
    }

    /// Interactive terminals.
    pub fn pty(&self) -> Pty<'_> {
        Pty::new(self)
    }

    /// Files.
    pub fn fs(&self) -> Fs<'_> {
        Fs::new(self)
    }

    /// Code contexts (interpreters with their own state).
    pub fn contexts(&self) -> Contexts<'_> {
        Contexts::new(self)
    }
}

/// `duration` in whole milliseconds, saturating.
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

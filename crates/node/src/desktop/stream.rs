//! The live view of a desktop: x11vnc on the display (loopback only, with a password) and
//! websockify serving noVNC's page on [`PORT`], reached through the node's proxy like any
//! exposed port. Both run as one background command of the sandbox, so stopping the
//! stream, pausing or deleting the sandbox ends them and cuts their viewers.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use ai2in_api::{CommandRequest, ShellRequest, Stream, StreamInfo, StreamRequest};

use crate::auth::{Principal, Scope};
use crate::error::NodeError;
use crate::ids;
use crate::node::Node;

/// The sandbox port noVNC's page and its websocket are served on.
pub(crate) const PORT: u16 = 6080;
/// How long the viewer's programs may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running live view.
#[derive(Clone)]
struct Running {
    command_id: String,
    info: StreamInfo,
}

/// The live views of the node's sandboxes.
#[derive(Default)]
pub(crate) struct Streams {
    running: Mutex<HashMap<String, Running>>,
}

impl Streams {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sandbox `id`'s live view, while one runs.
    pub fn info(&self, id: &str) -> Option<StreamInfo> {
        self.lock().get(id).map(|r| r.info.clone())
    }

    /// Forgets sandbox `id`'s live view (the sandbox ended).
    pub fn forget(&self, id: &str) {
        self.lock().remove(id);
    }
}

/// What checks the image has the viewer's programs (a missing one is named, with its
/// Debian package), and ends a live view the node does not know of (one started before the
/// node's restart), so that the new one gets the port.
const CHECK: &str = "for p in x11vnc:x11vnc websockify:websockify; do \
     command -v \"${p%%:*}\" > /dev/null || { echo \"${p%%:*} (Debian package ${p##*:})\"; exit 1; }; \
     done; test -d /usr/share/novnc || { echo 'noVNC (Debian package novnc)'; exit 1; }; \
     pkill -9 -f '^[^ ]*python[^ ]* .*websockify --web /usr/share/novnc'; pkill -9 -x x11vnc; true";

/// What exits 0 when `python3` has websockify as a module: `python3 -m websockify` starts in
/// half the time of Debian's `websockify` script (whose entry point loads `pkg_resources`),
/// which matters in a sandbox whose CPU quota is used up.
const FIND_WEBSOCKIFY: &str =
    "'import importlib.util as u, sys; sys.exit(u.find_spec(\"websockify\") is None)'";

impl Node {
    /// `POST …/desktop/stream`: starts (or restarts) the live view.
    pub async fn start_stream(
        &self,
        caller: &Principal,
        id: &str,
        req: StreamRequest,
    ) -> Result<Stream, NodeError> {
        caller.require(Scope::SandboxesWrite)?;
        self.screen_of(caller, id, true)?;
        if self.streams().info(id).is_some() {
            self.stop_stream(caller, id).await?;
        }
        let check = ShellRequest {
            cmd: CHECK.into(),
            ..Default::default()
        };
        let checked = self.shell(caller, id, check).await?;
        if checked.exit_code != Some(0) {
            return Err(NodeError::Invalid(format!(
                "the live view needs {} in the sandbox's image",
                checked.stdout.trim()
            )));
        }
        // The old viewer's programs were killed: their port goes with them.
        self.until_stream_port_closes(id).await;
        let view_only = req.view_only.unwrap_or(false);
        // VNC passwords are 8 characters.
        let password = ids::random_base62(8);
        let cmd = format!(
            "umask 077\n\
             x11vnc -storepasswd \"$VNC_PASSWORD\" /tmp/.ai2in-vnc-passwd > /dev/null 2>&1\n\
             x11vnc -display :0 -rfbauth /tmp/.ai2in-vnc-passwd -rfbport 5900 -localhost \
             -forever -shared -quiet{} > /tmp/.ai2in-x11vnc.log 2>&1 &\n\
             if python3 -I -c {FIND_WEBSOCKIFY} 2> /dev/null; then\n\
             exec python3 -I -m websockify --web /usr/share/novnc {PORT} localhost:5900\n\
             fi\n\
             exec websockify --web /usr/share/novnc {PORT} localhost:5900",
            if view_only { " -viewonly" } else { "" }
        );
        let request = CommandRequest {
            cmd,
            env: Some(BTreeMap::from([(
                "VNC_PASSWORD".to_string(),
                password.clone(),
            )])),
            user: Some("user".into()),
            ..Default::default()
        };
        let (command_id, _) = self.start_command(caller, id, request).await?;
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        while self.connect_in(id, PORT).await.is_err() {
            if tokio::time::Instant::now() > deadline {
                let _ = self.kill_command(caller, id, &command_id, None).await;
                return Err(NodeError::Internal(format!(
                    "the live view did not listen on port {PORT} in {START_TIMEOUT:?} (is the \
                     port taken?); its command {command_id} has its output"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.store().expose_port(id, PORT)?;
        self.forget_route(id);
        let body = id.strip_prefix("sbx_").unwrap_or(id);
        let url = format!(
            "{}vnc.html?autoconnect=true&resize=scale",
            self.public_url(&format!("{PORT}-{body}"))
        );
        let info = StreamInfo {
            url: url.clone(),
            view_only,
        };
        self.streams()
            .lock()
            .insert(id.to_string(), Running { command_id, info });
        Ok(Stream {
            url,
            password,
            view_only,
        })
    }

    /// `DELETE …/desktop/stream`: ends the live view; its viewers are cut.
    pub async fn stop_stream(&self, caller: &Principal, id: &str) -> Result<(), NodeError> {
        caller.require(Scope::SandboxesWrite)?;
        self.screen_of(caller, id, true)?;
        let Some(running) = self.streams().lock().remove(id) else {
            return Err(NodeError::NotFound(format!(
                "no live view runs on sandbox {id}"
            )));
        };
        match self
            .kill_command(caller, id, &running.command_id, None)
            .await
        {
            // It ended on its own already.
            Ok(()) | Err(NodeError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        // Answered once the page's port is closed: the url then says nothing listens.
        self.until_stream_port_closes(id).await;
        Ok(())
    }

    /// Waits (a few seconds at most) until nothing listens on sandbox `id`'s [`PORT`].
    async fn until_stream_port_closes(&self, id: &str) {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        while self.connect_in(id, PORT).await.is_ok() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

//! The node's side of the agent protocol. The agent runs inside the sandbox and is
//! untrusted: every frame is bounded, and nothing it says names a host path.

use std::time::Duration;

use ai2in_protocol::{Event, FailKind, FrameReader, Limits, Request, write_frame};
use ai2in_store::Status;
use tokio::net::UnixStream;

use crate::auth::Principal;
use crate::error::{NodeError, error_chain};
use crate::node::Node;

/// Bounds on what the node accepts from an agent in one frame (a run's result, an image,
/// travels as one frame's data).
const FROM_AGENT: Limits = Limits {
    max_header: 256 * 1024,
    max_data: 16 << 20,
};

/// One request to one agent, and the stream of its answers.
pub struct AgentCall {
    /// The connection; its reader keeps a partly read frame, so that `next` may wait in a
    /// `select!` (a terminal's relay).
    frames: FrameReader<UnixStream>,
    sandbox: String,
    node: Node,
}

impl Node {
    /// Sends `request` (with `data`) to the agent of the caller's running sandbox `id`.
    pub(crate) async fn call_agent(
        &self,
        caller: &Principal,
        id: &str,
        request: &Request,
        data: &[u8],
    ) -> Result<AgentCall, NodeError> {
        self.running_record(caller, id)?;
        self.send_to_agent(id, request, data).await
    }

    /// The protocol version the agent of sandbox `id` speaks, asked with a ping (no caller:
    /// for the node's own checks). `None` when it does not answer within `wait`.
    pub(crate) async fn agent_version(&self, id: &str, wait: Duration) -> Option<u32> {
        let ask = async {
            let mut call = self.send_to_agent(id, &Request::Ping, &[]).await.ok()?;
            match call.next().await {
                Ok((Event::Pong { version }, _)) => Some(version),
                _ => None,
            }
        };
        tokio::time::timeout(wait, ask).await.ok().flatten()
    }

    /// Sends `request` to the agent of sandbox `id`, whoever asks: for the node's own calls,
    /// and callers that have checked the caller's sandbox already.
    pub(crate) async fn send_to_agent(
        &self,
        id: &str,
        request: &Request,
        data: &[u8],
    ) -> Result<AgentCall, NodeError> {
        let unresponsive =
            |e: &dyn std::error::Error| NodeError::Unresponsive(id.to_string(), error_chain(e));
        let mut conn = UnixStream::connect(self.runtime().agent_socket(id))
            .await
            .map_err(|e| unresponsive(&e))?;
        write_frame(&mut conn, request, data)
            .await
            .map_err(|e| unresponsive(&e))?;
        Ok(AgentCall {
            frames: FrameReader::new(conn, FROM_AGENT),
            sandbox: id.to_string(),
            node: self.clone(),
        })
    }
}

impl AgentCall {
    /// The next event. A `Failed` event becomes its error; a closed connection is an
    /// unresponsive agent.
    pub async fn next(&mut self) -> Result<(Event, Vec<u8>), NodeError> {
        match self.frames.next().await {
            Ok(Some((Event::Failed { kind, message }, _))) => Err(failure(kind, message)),
            Ok(Some(event)) => Ok(event),
            Ok(None) => Err(self.lost("the agent closed the connection")),
            Err(e) => Err(self.lost(error_chain(&e))),
        }
    }

    /// The error for a connection lost mid-call: the sandbox ended meanwhile (deleted,
    /// expired: its status says so from the start of the destroy), or its agent failed.
    fn lost(&self, what: impl std::fmt::Display) -> NodeError {
        match self.node.store().sandbox(&self.sandbox) {
            Ok(Some(r)) if matches!(r.status, Status::Stopping | Status::Ended) => {
                NodeError::Ended(self.sandbox.clone())
            }
            _ => self.unexpected(what),
        }
    }

    pub(crate) fn conn(&mut self) -> &mut UnixStream {
        self.frames.get_mut()
    }

    /// The error for an answer that makes no sense here.
    pub fn unexpected(&self, what: impl std::fmt::Display) -> NodeError {
        NodeError::Unresponsive(self.sandbox.clone(), what.to_string())
    }
}

fn failure(kind: FailKind, message: String) -> NodeError {
    match kind {
        FailKind::Invalid | FailKind::WrongType => NodeError::Invalid(message),
        FailKind::NotFound => NodeError::NotFound(message),
        FailKind::PermissionDenied => NodeError::PermissionDenied(format!(
            "{message}; pass \"user\": \"root\" to act as root"
        )),
        FailKind::NoSpace => NodeError::NoSpace(message),
        FailKind::TooLarge => NodeError::TooLarge(message),
        FailKind::Exhausted => NodeError::Quota(message),
        FailKind::Refused => NodeError::NoListener(message),
        FailKind::Other => NodeError::Internal(message),
    }
}

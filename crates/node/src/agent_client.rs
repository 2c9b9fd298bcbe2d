//! The node's side of the agent protocol. The agent runs inside the sandbox and is
//! untrusted: every frame is bounded, and nothing it says names a host path.

use std::path::Path;

use ai2in_protocol::{Event, FrameError, Limits, Request, read_frame, write_frame};
use tokio::net::UnixStream;

/// Bounds on what the node accepts from an agent in one frame.
const FROM_AGENT: Limits = Limits {
    max_header: 64 * 1024,
    max_data: 1 << 20,
};

/// One request to one agent, and the stream of its answers.
pub struct AgentCall {
    conn: UnixStream,
}

impl AgentCall {
    /// Connects to the agent at `socket` and sends `request` with `data`.
    pub async fn start(socket: &Path, request: &Request, data: &[u8]) -> Result<Self, FrameError> {
        let mut conn = UnixStream::connect(socket).await?;
        write_frame(&mut conn, request, data).await?;
        Ok(AgentCall { conn })
    }

    /// The next event, or `None` when the agent closed the connection.
    pub async fn next(&mut self) -> Result<Option<(Event, Vec<u8>)>, FrameError> {
        read_frame(&mut self.conn, FROM_AGENT).await
    }
}

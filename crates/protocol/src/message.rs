use serde::{Deserialize, Serialize};

/// What the node asks of the agent; the first frame of every connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Liveness check; answered with [`Event::Pong`].
    Ping,
    /// Run a command to completion; the frame's data is its standard input.
    Shell(ShellSpec),
}

/// A command run through `/bin/sh -c`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShellSpec {
    /// The command line.
    pub cmd: String,
    /// Working directory inside the sandbox.
    pub cwd: String,
    /// Variables for this command, over the sandbox's environment.
    pub env: Vec<(String, String)>,
    /// The account it runs as: `root` or `user`.
    pub user: String,
    /// Kill the process group after this long.
    pub timeout_ms: Option<u64>,
    /// Bytes of output kept per stream; the rest is dropped and reported as truncated.
    pub output_cap: u64,
}

/// What the agent sends back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// Answer to [`Request::Ping`].
    Pong {
        /// The agent's [`crate::PROTOCOL_VERSION`].
        version: u32,
    },
    /// A chunk of standard output, in the frame's data.
    Stdout,
    /// A chunk of standard error, in the frame's data.
    Stderr,
    /// The command ended; the last frame of a shell request.
    Exited {
        /// Exit status when it exited normally.
        exit_code: Option<i32>,
        /// The signal that ended it, if one did.
        signal: Option<i32>,
        /// Whether the timeout fired.
        timed_out: bool,
        /// Whether output was cut at the cap.
        truncated: bool,
        /// Wall time in milliseconds.
        duration_ms: f64,
    },
    /// The request could not be carried out; the last frame.
    Failed {
        /// One sentence for the user.
        message: String,
    },
}

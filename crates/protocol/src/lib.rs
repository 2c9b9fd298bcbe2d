//! Messages between the ai2in node and the agent inside a sandbox, and their framing.
//!
//! One request per connection: the node writes one [`Request`] frame, the agent answers with
//! a stream of [`Event`] frames ending in a terminal one. The agent is untrusted, so every
//! read is bounded by the caller's [`Limits`].
#![warn(missing_docs)]

mod frame;
mod message;

pub use frame::{FrameError, FrameReader, Limits, read_frame, write_frame};
pub use message::{
    ByteRange, CommandInfo, CommandSpec, ContextInfo, DesktopAction, DirEntry, DisplaySpec, Event,
    FailKind, FsTarget, PtySpec, Request, RunSpec, ShellSpec, WatchEvent, WindowInfo, char_keysym,
};

/// Bumped when a message changes shape. A node that reattaches to sandboxes (after an
/// upgrade) destroys those whose agent answers a ping with another version.
pub const PROTOCOL_VERSION: u32 = 4;

/// Largest piece of file data in one frame: a multiple of 3, so each piece of a file encodes
/// to base64 on its own.
pub const FILE_CHUNK: usize = 3 << 20;

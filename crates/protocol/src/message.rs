use serde::{Deserialize, Serialize};

/// What the node asks of the agent; the first frame of every connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Liveness check; answered with [`Event::Pong`].
    Ping,
    /// Run a command to completion; the frame's data is its standard input.
    Shell(ShellSpec),
    /// List a directory: [`Event::Entries`] frames, then [`Event::Done`].
    FsList(FsTarget),
    /// Read a regular file: [`Event::Opened`], [`Event::Data`] frames with the whole file or
    /// the part `range` names, then [`Event::Done`].
    FsRead {
        /// The file.
        target: FsTarget,
        /// Refuse files larger than this ([`FailKind::TooLarge`]).
        max_bytes: u64,
        /// Only this part of it (ignored for a file of unknown size); nothing follows
        /// [`Event::Opened`] when the range lies outside the file.
        range: Option<ByteRange>,
    },
    /// Replace a file atomically: this frame's data, then [`Request::Chunk`] frames until
    /// `size_bytes` have arrived or, when the size is not known ahead, until an empty
    /// [`Request::Chunk`]; answered with [`Event::Done`]. A connection that ends early leaves
    /// nothing behind.
    FsWrite {
        /// The file.
        target: FsTarget,
        /// The file's whole size, when known.
        size_bytes: Option<u64>,
    },
    /// More raw data (the frame's data) for the request this connection started with.
    Chunk,
    /// Hand a pooled sandbox to its user: the environment every process gets from now on
    /// (once only): [`Event::Done`].
    Claim {
        /// Name and value of each variable.
        env: Vec<(String, String)>,
    },
    /// Open a TCP connection to a port of the sandbox's loopback (IPv4, then IPv6):
    /// [`Event::Connected`], then one byte carrying the connected socket (`SCM_RIGHTS`).
    Connect {
        /// The port.
        port: u16,
    },
    /// Watch a path: [`Event::WatchStarted`].
    WatchStart {
        /// The file or directory.
        target: FsTarget,
        /// Also watch every directory below it, present and future.
        recursive: bool,
    },
    /// Drain a watch's queued events: [`Event::WatchEvents`] frames, then [`Event::Done`].
    WatchPoll {
        /// The watch.
        watch_id: String,
    },
    /// Stream a watch's events as they happen: [`Event::WatchEvents`] frames until the
    /// watch stops ([`Event::Done`]) or the node hangs up.
    WatchStream {
        /// The watch.
        watch_id: String,
    },
    /// End a watch: [`Event::Done`].
    WatchStop {
        /// The watch.
        watch_id: String,
    },
    /// Run code: [`Event::Stdout`], [`Event::Stderr`], [`Event::RunResult`] and
    /// [`Event::RunError`] frames as they come, then [`Event::RunDone`]. The node closing the
    /// connection interrupts the run.
    Run(RunSpec),
    /// Create a context: [`Event::Context`].
    ContextCreate {
        /// Its language.
        language: String,
        /// Its working directory.
        cwd: String,
    },
    /// The contexts: [`Event::Contexts`].
    ContextList,
    /// End a context and its interpreter: [`Event::Done`].
    ContextDelete {
        /// The context.
        context_id: String,
    },
    /// Restart a context's interpreter (its state is lost): [`Event::Context`].
    ContextRestart {
        /// The context.
        context_id: String,
    },
    /// Start a program on a new terminal: [`Event::PtyStarted`].
    PtyCreate(PtySpec),
    /// Type into a terminal (the frame's data): [`Event::Done`].
    PtyInput {
        /// The terminal's process.
        pid: u32,
    },
    /// What the terminal printed since the last drain: [`Event::Data`] frames, then
    /// [`Event::PtyStatus`].
    PtyOutput {
        /// The terminal's process.
        pid: u32,
    },
    /// Change a terminal's size (its program gets SIGWINCH): [`Event::Done`].
    PtyResize {
        /// The terminal's process.
        pid: u32,
        /// Columns.
        cols: u16,
        /// Rows.
        rows: u16,
    },
    /// Signal a terminal's session: [`Event::Done`].
    PtyKill {
        /// The terminal's process.
        pid: u32,
        /// Signal number.
        signal: i32,
    },
    /// Attach to a terminal: [`Event::Data`] frames as it prints, while the node may send
    /// further [`Request::PtyInput`] and [`Request::PtyResize`] frames on the same
    /// connection; [`Event::PtyStatus`] ends it when the program exits.
    PtyAttach {
        /// The terminal's process.
        pid: u32,
    },
    /// Start a command in the background: [`Event::CommandStarted`].
    CommandStart(CommandSpec),
    /// The background commands: [`Event::Commands`].
    CommandList,
    /// Output of a command from the given offsets: [`Event::Stdout`] / [`Event::Stderr`]
    /// frames, then [`Event::CommandLogs`].
    CommandLogs {
        /// The command.
        command_id: String,
        /// Byte offset into its standard output to start from.
        stdout_offset: u64,
        /// Byte offset into its standard error to start from.
        stderr_offset: u64,
    },
    /// Follow a command's output from the given offsets, on a kept connection: the output
    /// kept from there, then every new chunk as it is written, as [`Event::Output`] frames;
    /// [`Event::CommandLogs`] ends it once the command has exited and its output is sent.
    CommandFollow {
        /// The command.
        command_id: String,
        /// Byte offset into its standard output to start from.
        stdout_offset: u64,
        /// Byte offset into its standard error to start from.
        stderr_offset: u64,
    },
    /// Signal a command's whole process group: [`Event::Done`].
    CommandKill {
        /// The command.
        command_id: String,
        /// The signal number.
        signal: i32,
    },
    /// Start the sandbox's display (an X server and a window manager) and answer
    /// [`Event::Done`] once it accepts clients; a second start is refused.
    DesktopStart(DisplaySpec),
    /// Act on the display: [`DesktopAction`].
    Desktop(DesktopAction),
}

/// A display's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisplaySpec {
    /// Width in pixels.
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
    /// Dots per inch.
    pub dpi: u16,
}

/// What to do on the display; the node has checked coordinates and names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum DesktopAction {
    /// The screen as a PNG: [`Event::Data`] frames, then [`Event::Done`].
    Screenshot,
    /// Where the pointer is: [`Event::Cursor`].
    Cursor,
    /// The top-level windows: [`Event::Windows`].
    Windows,
    /// Move the pointer to `(x, y)`, then press and release each of `clicks` in turn:
    /// [`Event::Done`] once the server has processed them.
    Pointer {
        /// Where to move first, if anywhere.
        to: Option<(u16, u16)>,
        /// Button events after the move: (button, pressed).
        buttons: Vec<(u8, bool)>,
        /// Where to move after the button events (a drag's end), if anywhere.
        then: Option<(u16, u16)>,
        /// Button events after that move.
        finally: Vec<(u8, bool)>,
    },
    /// Type text: [`Event::Done`].
    Type {
        /// The text.
        text: String,
    },
    /// Press key combinations in turn, each a list of keysyms pressed in order and released
    /// in reverse: [`Event::Done`].
    Keys {
        /// The combinations.
        combos: Vec<Vec<u32>>,
    },
}

/// The keysym that types `c` (what [`DesktopAction::Type`] presses and a one-character key
/// name means): Latin-1 characters are their own, others `0x01000000` plus their code
/// point; line ends, tabs and backspaces are the Return, Tab and BackSpace keys.
pub fn char_keysym(c: char) -> u32 {
    match c {
        '\n' | '\r' => 0xff0d,
        '\t' => 0xff09,
        '\u{8}' => 0xff08,
        c if (' '..='~').contains(&c) || ('\u{a0}'..='\u{ff}').contains(&c) => c as u32,
        c => 0x0100_0000 + c as u32,
    }
}

/// A top-level window of a display.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowInfo {
    /// Its X id.
    pub id: u32,
    /// Its title.
    pub title: String,
    /// Its class (`WM_CLASS`'s second part).
    pub class: String,
    /// Its position on the screen.
    pub x: i32,
    /// Its position on the screen.
    pub y: i32,
    /// Its size.
    pub width: u32,
    /// Its size.
    pub height: u32,
    /// Whether it has the input focus.
    pub focused: bool,
}

/// Code to run in a context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    /// The source.
    pub code: String,
    /// `python`, `javascript` or `bash`; the context's when a context is named.
    pub language: Option<String>,
    /// The context; the language's default context when absent.
    pub context_id: Option<String>,
    /// Interrupt the run after this long.
    pub timeout_ms: u64,
    /// Variables set for this run (and kept by the context).
    pub env: Vec<(String, String)>,
}

/// A code context as the agent knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextInfo {
    /// `ctx_…`.
    pub context_id: String,
    /// Its language.
    pub language: String,
    /// Its working directory when it started.
    pub cwd: String,
    /// Whether its interpreter is running now.
    pub alive: bool,
}

/// A program on a new terminal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PtySpec {
    /// Command line for `/bin/sh -c`; the account's login shell when absent.
    pub cmd: Option<String>,
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
    /// Working directory.
    pub cwd: String,
    /// Variables over the sandbox's environment.
    pub env: Vec<(String, String)>,
    /// `root` or `user`.
    pub user: String,
}

/// A command started in the background through `/bin/sh -c`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandSpec {
    /// The command line.
    pub cmd: String,
    /// Working directory inside the sandbox.
    pub cwd: String,
    /// Variables for this command, over the sandbox's environment.
    pub env: Vec<(String, String)>,
    /// The account it runs as: `root` or `user`.
    pub user: String,
}

/// A background command as the agent knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandInfo {
    /// `cmd_…`.
    pub command_id: String,
    /// Its pid inside the sandbox (also its process group).
    pub pid: u32,
    /// The command line.
    pub cmd: String,
    /// `running`, `exited` or `killed`.
    pub status: String,
    /// Exit status once it exited normally.
    pub exit_code: Option<i32>,
    /// The signal that ended it, once one did.
    #[serde(default)]
    pub signal: Option<i32>,
    /// Start, ms since the epoch.
    pub started_at_ms: i64,
    /// End, ms since the epoch.
    pub ended_at_ms: Option<i64>,
}

/// A path inside the sandbox and the account that operates on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FsTarget {
    /// Absolute, or relative to `/home/user`.
    pub path: String,
    /// `user` or `root`: whose permissions apply and who owns what is written.
    pub user: String,
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

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirEntry {
    /// File name.
    pub name: String,
    /// Absolute path inside the sandbox.
    pub path: String,
    /// `file`, `dir`, `symlink` or `other`.
    pub kind: String,
    /// Size in bytes (of the link itself for a symlink).
    pub size_bytes: u64,
    /// Permission bits, e.g. 0o644.
    pub mode: u32,
    /// Last modification, ms since the epoch.
    pub modified_at_ms: i64,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchEvent {
    /// `create`, `modify`, `delete`, `rename` (path is the new name) or `overflow`.
    pub kind: String,
    /// Absolute path inside the sandbox.
    pub path: String,
    /// When it was seen, ms since the epoch.
    pub timestamp_ms: i64,
}

/// What kind of failure a request met, so the node can answer with the right status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailKind {
    /// The request makes no sense (bad path, unknown user, bad cwd).
    Invalid,
    /// The path or watch does not exist.
    NotFound,
    /// A directory where a file was expected, or a file where a directory was.
    WrongType,
    /// The account lacks the permission.
    PermissionDenied,
    /// The sandbox's disk is full.
    NoSpace,
    /// Over a size limit.
    TooLarge,
    /// A kernel limit (inotify watches, processes) was reached.
    Exhausted,
    /// Nothing listens on the port.
    Refused,
    /// Anything else.
    Other,
}

/// A part of a file, as one range of an HTTP `Range: bytes=…` header names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ByteRange {
    /// From `start` through `end` (inclusive), or through the end of the file.
    From {
        /// The first byte's offset.
        start: u64,
        /// The last byte's offset.
        end: Option<u64>,
    },
    /// The last bytes of the file, this many.
    Last(u64),
}

impl ByteRange {
    /// The offset and length of this range in a file of `size` bytes; `None` when no byte
    /// of it is in the file (416 Range Not Satisfiable).
    pub fn within(self, size: u64) -> Option<(u64, u64)> {
        match self {
            ByteRange::From { start, end } if start < size => {
                let last = end.map_or(size - 1, |end| end.min(size - 1));
                Some((start, last - start + 1))
            }
            ByteRange::Last(n) if n > 0 && size > 0 => {
                let n = n.min(size);
                Some((size - n, n))
            }
            _ => None,
        }
    }

    /// The offset and length of what an [`Request::FsRead`] of a file of `size` bytes
    /// sends: the part `range` names (nothing when it lies outside), or the whole file.
    pub fn part_of(range: Option<Self>, size: u64) -> (u64, u64) {
        match range {
            Some(range) => range.within(size).unwrap_or((0, 0)),
            None => (0, size),
        }
    }
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
    /// Answer to [`Request::Connect`]: the socket follows as one byte with `SCM_RIGHTS`.
    Connected,
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
    /// Some entries of a directory.
    Entries {
        /// The entries.
        entries: Vec<DirEntry>,
    },
    /// Answer to [`Request::FsRead`] once the file is open: its size, `None` when the kernel
    /// reports none (files of /proc), which are read to their end.
    Opened {
        /// Its size in bytes.
        size_bytes: Option<u64>,
    },
    /// A chunk of file contents, in the frame's data.
    Data,
    /// A file or directory request finished.
    Done {
        /// The absolute path it acted on.
        path: String,
        /// Bytes read or written.
        size_bytes: u64,
    },
    /// A watch was set up.
    WatchStarted {
        /// Its id, `wch_…`.
        watch_id: String,
    },
    /// Changes seen by a watch.
    WatchEvents {
        /// In the order they happened.
        events: Vec<WatchEvent>,
    },
    /// A background command was started.
    CommandStarted {
        /// Its id.
        command_id: String,
        /// Its pid inside the sandbox.
        pid: u32,
    },
    /// The background commands, oldest first.
    Commands {
        /// Their descriptions.
        commands: Vec<CommandInfo>,
    },
    /// A chunk of a followed command's output, in the frame's data.
    Output {
        /// Whether it is standard error (else standard output).
        stderr: bool,
        /// Offset of its first byte in its stream.
        offset: u64,
        /// When the agent read it, ms since the epoch.
        at_ms: i64,
    },
    /// The end of a logs answer: where the output continues and how the command is.
    CommandLogs {
        /// The command now.
        info: CommandInfo,
        /// Offset just past the standard output sent.
        stdout_offset: u64,
        /// Offset just past the standard error sent.
        stderr_offset: u64,
        /// Bytes before the requested offsets that the bounded buffers no longer hold.
        dropped_bytes: u64,
    },
    /// A result of a run; the frame's data is its MIME bundle as a JSON object.
    RunResult {
        /// Whether it is the value of the code's last expression.
        is_main_result: bool,
    },
    /// The run's code raised an error.
    RunError {
        /// Error class, e.g. `ZeroDivisionError`.
        name: String,
        /// Its message.
        value: String,
        /// The traceback, pointing at the user's lines.
        traceback: String,
    },
    /// A run finished; the last frame of a run.
    RunDone {
        /// The context it ran in.
        context_id: String,
        /// The context's count of runs.
        execution_count: u64,
        /// Wall time.
        duration_ms: f64,
        /// Exit status of the snippet (bash contexts).
        exit_code: Option<i32>,
    },
    /// A context.
    Context {
        /// Its description.
        info: ContextInfo,
    },
    /// The contexts.
    Contexts {
        /// Their descriptions.
        contexts: Vec<ContextInfo>,
    },
    /// A terminal was started.
    PtyStarted {
        /// Its id.
        pty_id: String,
        /// Its process.
        pid: u32,
    },
    /// A terminal's state, after its output.
    PtyStatus {
        /// Whether its program still runs or output is left.
        alive: bool,
        /// Its exit status once it exited.
        exit_code: Option<i32>,
    },
    /// Where the pointer is.
    Cursor {
        /// Its position.
        x: i32,
        /// Its position.
        y: i32,
    },
    /// The display's top-level windows, bottom to top.
    Windows {
        /// The windows.
        windows: Vec<WindowInfo>,
    },
    /// The request could not be carried out; the last frame.
    Failed {
        /// What kind of failure.
        kind: FailKind,
        /// One sentence for the user.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::ByteRange;

    #[test]
    fn ranges_resolve_within_the_file_or_not_at_all() {
        let from = |start, end| ByteRange::From { start, end };
        assert_eq!(from(0, Some(99)).within(10), Some((0, 10)));
        assert_eq!(from(3, Some(4)).within(10), Some((3, 2)));
        assert_eq!(from(9, None).within(10), Some((9, 1)));
        assert_eq!(from(10, None).within(10), None);
        assert_eq!(from(0, None).within(0), None);
        assert_eq!(ByteRange::Last(3).within(10), Some((7, 3)));
        assert_eq!(ByteRange::Last(30).within(10), Some((0, 10)));
        assert_eq!(ByteRange::Last(0).within(10), None);
        assert_eq!(ByteRange::Last(5).within(0), None);
        assert_eq!(ByteRange::part_of(None, 10), (0, 10));
        assert_eq!(ByteRange::part_of(Some(from(3, None)), 10), (3, 7));
        assert_eq!(ByteRange::part_of(Some(from(30, None)), 10), (0, 0));
    }
}

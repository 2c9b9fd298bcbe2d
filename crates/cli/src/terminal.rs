//! `ai2in shell SANDBOX`: an interactive terminal in a sandbox, over the terminal
//! WebSocket. The local terminal is put in raw mode (and restored however this ends), its
//! size follows SIGWINCH, and the session ends when the remote shell exits (Ctrl-D).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use ai2in_client::PtyRequest;
use anyhow::{Context, bail};
use nix::sys::termios::{self, SetArg, Termios};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

use crate::connect::Connection;

#[derive(clap::Args)]
pub struct ShellArgs {
    /// The sandbox
    sandbox: String,
    /// Run as `root` (default) or `user`
    #[arg(long)]
    user: Option<String>,
    #[command(flatten)]
    conn: Connection,
}

static RESIZED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_winch(_: libc::c_int) {
    RESIZED.store(true, Ordering::SeqCst);
}

/// The local terminal's size, or 80×24 when standard output is not a terminal.
fn terminal_size() -> (u16, u16) {
    // SAFETY: TIOCGWINSZ writes a winsize into our stack value.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    if ok && size.ws_col > 0 {
        (size.ws_col, size.ws_row)
    } else {
        (80, 24)
    }
}

/// Raw mode for as long as it lives; the old settings come back on drop.
struct RawMode(Option<Termios>);

impl RawMode {
    fn enter() -> Self {
        let stdin = std::io::stdin();
        let Ok(saved) = termios::tcgetattr(stdin.as_fd()) else {
            return RawMode(None);
        };
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        RawMode(Some(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, saved);
        }
    }
}

/// Runs `ai2in shell`: the terminal is created through the SDK, then attached over its
/// WebSocket with blocking I/O (this is the only task of the runtime meanwhile).
pub async fn shell(args: ShellArgs) -> anyhow::Result<std::process::ExitCode> {
    let (cols, rows) = terminal_size();
    let request = PtyRequest {
        cols: Some(cols),
        rows: Some(rows),
        user: args.user.clone(),
        ..Default::default()
    };
    let node = args.conn.resolve()?;
    let client = ai2in_client::Client::new(&node.base_url, &node.api_key)?;
    let started = client.sandbox(&args.sandbox).pty().create(request).await?;
    let url = format!(
        "{}/v1/sandboxes/{}/pty/{}/ws",
        client.base_url().replacen("http", "ws", 1),
        args.sandbox,
        started.pid
    );
    let mut request = url.as_str().into_client_request()?;
    request
        .headers_mut()
        .insert("Authorization", format!("Bearer {}", node.api_key).parse()?);
    let host = request
        .uri()
        .authority()
        .context("the node URL has no host")?
        .to_string();
    let stream = TcpStream::connect(&host).with_context(|| format!("connect to {host}"))?;
    let (mut ws, _) = tungstenite::client(request, stream)
        .map_err(|e| anyhow::anyhow!("WebSocket handshake: {e}"))?;
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_millis(20)))?;

    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { libc::signal(libc::SIGWINCH, on_winch as *const () as libc::sighandler_t) };
    let (keys, typed) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut stdin = std::io::stdin();
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 || keys.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let raw = RawMode::enter();
    let status = relay(&mut ws, &typed);
    drop(raw);
    let code = status?;
    Ok(std::process::ExitCode::from(code))
}

/// Moves bytes until the remote side closes; returns the remote program's exit status.
fn relay(ws: &mut WebSocket<TcpStream>, typed: &mpsc::Receiver<Vec<u8>>) -> anyhow::Result<u8> {
    let mut stdout = std::io::stdout();
    loop {
        if RESIZED.swap(false, Ordering::SeqCst) {
            let (cols, rows) = terminal_size();
            let frame = serde_json::json!({ "resize": { "cols": cols, "rows": rows } }).to_string();
            ws.send(Message::text(frame))?;
        }
        while let Ok(bytes) = typed.try_recv() {
            ws.send(Message::binary(bytes))?;
        }
        match ws.read() {
            Ok(Message::Binary(data)) => {
                stdout.write_all(&data)?;
                stdout.flush()?;
            }
            Ok(Message::Close(frame)) => {
                let reason = frame.map(|f| f.reason.to_string()).unwrap_or_default();
                let code = reason
                    .strip_prefix("exit ")
                    .and_then(|c| c.parse::<i32>().ok())
                    .unwrap_or(0);
                return Ok(code.clamp(0, 255) as u8);
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                return Ok(0);
            }
            Err(e) => bail!("the terminal connection broke: {e}"),
        }
    }
}

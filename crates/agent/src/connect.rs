//! Connections to the sandbox's own ports for the node's proxy. The agent, inside the
//! sandbox's network namespace, connects to the port on loopback and hands the connected
//! socket to the node, which then talks to it directly: no byte is copied through the agent,
//! and ports that listen on 127.0.0.1 only are reachable too.

use std::io::{self, IoSlice};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use ai2in_protocol::{Event, FailKind, FrameError, write_frame};
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use tokio::io::Interest;
use tokio::net::{TcpStream, UnixStream};

use crate::fs::FsError;

/// Connects to `port` on loopback (IPv4, then IPv6) and sends the socket over `conn`.
pub async fn connect(port: u16, conn: &mut UnixStream) -> Result<(), FrameError> {
    let stream = match TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await {
        Ok(stream) => stream,
        Err(v4) => match TcpStream::connect((Ipv6Addr::LOCALHOST, port)).await {
            Ok(stream) => stream,
            Err(_) => {
                let message = format!("nothing listens on port {port} in the sandbox ({v4})");
                return FsError(FailKind::Refused, message).send(conn).await;
            }
        },
    };
    write_frame(conn, &Event::Connected, &[]).await?;
    send_fd(conn, stream.as_fd()).await?;
    Ok(())
}

/// Sends `fd` as `SCM_RIGHTS` on one byte.
async fn send_fd(conn: &UnixStream, fd: BorrowedFd<'_>) -> io::Result<()> {
    send_with_fds(conn, b"F", &[fd]).await.map(drop)
}

/// Sends (a first part of) `data` with `fds` (`SCM_RIGHTS`) on its first byte: how many
/// bytes went.
pub(crate) async fn send_with_fds(
    conn: &UnixStream,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    conn.async_io(Interest::WRITABLE, || {
        let cmsg = [ControlMessage::ScmRights(&raw)];
        sendmsg::<()>(
            conn.as_raw_fd(),
            &[IoSlice::new(data)],
            &cmsg,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map_err(io::Error::from)
    })
    .await
}

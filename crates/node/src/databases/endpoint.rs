//! A database's endpoint: a TCP port of the node whose connections are joined, unparsed, to
//! the server's port inside its sandbox (connected there by the sandbox's agent). The
//! endpoint lives in the node: connections open through it end when the node stops; the
//! server keeps running and new connections work as soon as the node is back.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};

use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::error::NodeError;
use crate::node::Node;

/// The host's main address: the source of its default route (no packet is sent), else
/// loopback.
pub(crate) fn main_address() -> IpAddr {
    let probe = || -> std::io::Result<IpAddr> {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        // TEST-NET-1: routed like any address, never reached.
        socket.connect((Ipv4Addr::new(192, 0, 2, 1), 9))?;
        Ok(socket.local_addr()?.ip())
    };
    probe().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// Accepts on `listener` for the database whose server is service `service`, and joins
/// each connection to it, on `runtime` (the endpoints' own thread: a joined connection's
/// bytes never wait for a wake-up across threads, as on the proxy's fast path).
pub(crate) fn serve(
    node: &Node,
    runtime: &Handle,
    listener: std::net::TcpListener,
    service: &str,
) -> Result<JoinHandle<()>, NodeError> {
    listener
        .set_nonblocking(true)
        .map_err(|e| NodeError::Internal(format!("a database endpoint: {e}")))?;
    let (node, service) = (node.clone(), service.to_string());
    Ok(runtime.spawn(async move {
        let listener = match TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(e) => {
                tracing::error!(error = %e, "a database endpoint cannot listen");
                return;
            }
        };
        loop {
            let Ok((client, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            tokio::spawn(join(node.clone(), service.clone(), client));
        }
    }))
}

/// Joins `client` to the server of service `service`; a server that is not ready (it is
/// restarting) closes the connection, as a stopped server would.
async fn join(node: Node, service: String, mut client: TcpStream) {
    let _ = client.set_nodelay(true);
    let Ok((sandbox, port)) = node.services().upstream(&service) else {
        return;
    };
    let cut = node.connection_cutter(&sandbox);
    let cut = cut.notified();
    tokio::pin!(cut);
    cut.as_mut().enable();
    let Ok(mut server) = node.connect_in(&sandbox, port).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = cut => {}
    }
}

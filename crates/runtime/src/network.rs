//! The sandboxes' network. Each sandbox gets one routed point-to-point veth link (no bridge,
//! so no port limit): `eth0` inside with the odd address of a /31, the host end named
//! `ai2-{pool}-{slot}` with the even one, and a default route through it. The addresses come
//! from a /16 pool that this node claims on the host (a lock held while it runs), so several
//! nodes on one host never collide; the lower half serves sandboxes with egress, the upper
//! half those without. One nftables table per pool holds NAT to the uplink and the isolation
//! rules, enforced by the kernel whatever the sandbox does inside: no spoofed source, no IPv6,
//! nothing to the host itself (its API, its addresses, its services), nothing to
//! link-local/multicast (cloud metadata), no new connection into a sandbox (from another
//! sandbox or the outside), and no egress at all from the upper half. What a sandbox may not
//! send is refused at once (ICMP administratively prohibited) rather than left to time out.
//! Links die with their sandbox's network namespace.
//!
//! The node's database endpoints are the one way in: a TCP port of the host that the node
//! forwards to a port inside a sandbox ([`Network::forward_port`]) is rewritten by the kernel
//! (DNAT, from the host, other machines and sandboxes alike) and only such connections pass
//! into a sandbox; a port not forwarded (its server restarting) reaches the node's own
//! listener, as do all of them when the endpoints listen on loopback.

use std::fs::{self, File};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::fcntl::{Flock, FlockArg};

use crate::netlink::Netlink;

/// Pools are `10.{FIRST_POOL + i}.0.0/16` for `i < POOLS`: together 10.192.0.0/11.
const FIRST_POOL: u8 = 192;
const POOLS: u8 = 32;
/// Links per half pool (a /31 each).
pub const LINKS_PER_POOL: u32 = 16_384;
/// Where nodes hold their pool locks.
const LOCK_DIR: &str = "/run/ai2in/net";
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Why the network could not be set up; the node then runs sandboxes without it.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// A host tool or setting is missing.
    #[error("{0}")]
    Missing(String),
    /// A system call failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The failure.
        source: io::Error,
    },
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> NetworkError {
    let what = what.into();
    move |source| NetworkError::Io { what, source }
}

/// One sandbox's link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The host end's name.
    pub host_name: String,
    /// The host end's address: the sandbox's gateway.
    pub host_addr: Ipv4Addr,
    /// The sandbox's address.
    pub sandbox_addr: Ipv4Addr,
}

/// TCP ports of the host open to sandboxes (the node's database endpoints) and the address
/// they listen on.
#[derive(Debug, Clone, Copy)]
pub struct HostPorts {
    /// Where the endpoints listen (unspecified: every address of the host).
    pub listen: IpAddr,
    /// The first port.
    pub first: u16,
    /// The last port.
    pub last: u16,
}

impl HostPorts {
    /// What a connection to a forwarded port must be addressed to for the kernel to forward
    /// it: `None` when it cannot (loopback and IPv6 listeners: their connections stay with
    /// the node's listener).
    fn forwarded_match(&self) -> Option<String> {
        match self.listen {
            IpAddr::V4(a) if a.is_unspecified() => {
                Some("fib daddr type local ip daddr != 127.0.0.0/8".into())
            }
            IpAddr::V4(a) if !a.is_loopback() => Some(format!("ip daddr {a}")),
            _ => None,
        }
    }
}

/// This node's address pool and rules.
#[derive(Debug)]
pub struct Network {
    pool: u8,
    _lock: Flock<File>,
    /// Whether this node turned IPv4 forwarding on (and so turns it off when it is the last).
    set_forward: bool,
    /// Whether the kernel forwards the host ports (see [`Network::forward_port`]).
    forwards: bool,
}

impl Network {
    /// Claims an address pool (the one this state directory had, when free) and installs its
    /// rules and IPv4 forwarding. Sandboxes may reach the host on the TCP ports of
    /// `host_ports` (the node's database endpoints), and nowhere else on it.
    pub fn start(state_dir: &Path, host_ports: Option<HostPorts>) -> Result<Network, NetworkError> {
        let tool = Command::new("nft")
            .arg("--version")
            .stdout(Stdio::null())
            .status();
        if !tool.is_ok_and(|s| s.success()) {
            return Err(NetworkError::Missing(
                "the nft command (Debian package nftables) is not installed".into(),
            ));
        }
        fs::create_dir_all(LOCK_DIR).map_err(io_error(format!("create {LOCK_DIR}")))?;
        let remembered = state_dir.join("network-pool");
        let previous = fs::read_to_string(&remembered)
            .ok()
            .and_then(|s| s.trim().parse::<u8>().ok())
            .filter(|p| *p < POOLS);
        let order = previous
            .into_iter()
            .chain((0..POOLS).filter(|p| Some(*p) != previous));
        let (pool, lock) = order
            .filter_map(|p| try_lock(p).map(|lock| (p, lock)))
            .next()
            .ok_or_else(|| {
                NetworkError::Missing(format!("all {POOLS} address pools are held by other nodes"))
            })?;
        fs::write(&remembered, pool.to_string())
            .map_err(io_error(format!("write {}", remembered.display())))?;
        nft(&ruleset(pool, host_ports)).map_err(io_error("install the nftables rules"))?;
        let forward = fs::read_to_string(IP_FORWARD).map_err(io_error("read ip_forward"))?;
        let set_forward = forward.trim() == "0";
        if set_forward {
            fs::write(IP_FORWARD, "1").map_err(io_error("turn on IPv4 forwarding"))?;
        }
        Ok(Network {
            pool,
            _lock: lock,
            set_forward,
            forwards: host_ports.and_then(|h| h.forwarded_match()).is_some(),
        })
    }

    /// Has the kernel forward connections to host port `port` (one of the host ports) to
    /// `to`, an address of a sandbox's link; `false` when it cannot (see [`HostPorts`]).
    pub fn forward_port(&self, port: u16, to: SocketAddrV4) -> io::Result<bool> {
        if !self.forwards {
            return Ok(false);
        }
        // An element is replaced by deleting it first (an `add` of another value fails);
        // meanwhile connections reach the node's listener.
        self.unforward_port(port)?;
        let t = table(self.pool);
        nft(&format!(
            "add element inet {t} {FORWARDS} {{ {port} : {} . {} }}\n",
            to.ip(),
            to.port()
        ))?;
        Ok(true)
    }

    /// Stops forwarding host port `port`: its connections reach the node's listener again.
    pub fn unforward_port(&self, port: u16) -> io::Result<()> {
        if !self.forwards {
            return Ok(());
        }
        let t = table(self.pool);
        // Deleting a missing element fails: make sure there is one first.
        nft(&format!(
            "add element inet {t} {FORWARDS} {{ {port} : 0.0.0.0 . 0 }}\n\
             delete element inet {t} {FORWARDS} {{ {port} }}\n"
        ))
        .or_else(|_| {
            nft(&format!(
                "delete element inet {t} {FORWARDS} {{ {port} }}\n"
            ))
        })
    }

    /// The link of the sandbox in uid slot `slot`; `None` past the pool's size.
    pub fn link(&self, slot: u32, egress: bool) -> Option<Link> {
        if slot >= LINKS_PER_POOL {
            return None;
        }
        let offset = 2 * slot + if egress { 0 } else { 2 * LINKS_PER_POOL };
        let base = u32::from(pool_base(self.pool));
        Some(Link {
            host_name: link_name(self.pool, slot),
            host_addr: Ipv4Addr::from(base + offset),
            sandbox_addr: Ipv4Addr::from(base + offset + 1),
        })
    }

    /// The host end's name of slot `slot`'s link.
    pub fn link_name(&self, slot: u32) -> String {
        link_name(self.pool, slot)
    }

    /// Gives the network namespace of process `pid` its link: the veth pair, addresses, both
    /// ends up, and the default route inside. A stale link of the same name goes first.
    pub fn attach(&self, pid: u32, link: &Link) -> io::Result<()> {
        let netns = File::open(format!("/proc/{pid}/ns/net"))?;
        let mut host = Netlink::open()?;
        host.delete_link(&link.host_name)?;
        host.add_veth(&link.host_name, "eth0", netns.as_fd())?;
        let index = host.set_up(&link.host_name)?;
        host.add_address(index, link.host_addr, 31)?;
        let mut inside = Netlink::open_in(netns.as_fd())?;
        let index = inside.set_up("eth0")?;
        inside.add_address(index, link.sandbox_addr, 31)?;
        inside.add_default_route(link.host_addr)
    }

    /// Removes the host end of link `name` (and so the pair); a missing one is fine.
    pub fn detach(&self, name: &str) -> io::Result<()> {
        Netlink::open()?.delete_link(name)
    }

    /// Bytes (received, sent) by the sandbox over link `name`: the host end's counters,
    /// swapped.
    pub fn counters(&self, name: &str) -> (u64, u64) {
        let read = |what: &str| {
            fs::read_to_string(format!("/sys/class/net/{name}/statistics/{what}"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0)
        };
        (read("tx_bytes"), read("rx_bytes"))
    }

    /// Takes the rules down and gives back IPv4 forwarding, when no sandbox of this node
    /// needs them any more (`sandboxes_left` is false). Rules stay while sandboxes run: they
    /// outlive the node process by design.
    pub fn stop(&self, sandboxes_left: bool) {
        if sandboxes_left {
            tracing::info!(
                pool = self.pool,
                "network rules kept for the sandboxes still running"
            );
            return;
        }
        if let Err(e) = nft(&format!("delete table inet {}\n", table(self.pool))) {
            tracing::warn!(error = %e, "could not remove the network rules");
        }
        let others = (0..POOLS)
            .filter(|p| *p != self.pool)
            .any(|p| lock_path(p).exists() && try_lock(p).is_none());
        if self.set_forward && !others {
            let _ = fs::write(IP_FORWARD, "0");
        }
    }
}

/// Where systemd-resolved lists the servers its loopback stub (127.0.0.53) forwards to.
const RESOLVED_UPSTREAMS: &str = "/run/systemd/resolve/resolv.conf";

/// The `/etc/resolv.conf` of sandboxes: the host's name servers that a sandbox can reach.
/// Loopback ones are out of its reach (its loopback is its own); when the host lists only
/// those, as with systemd-resolved's stub, the stub's upstream servers stand in for them.
pub fn resolv_conf() -> String {
    let read = |path| fs::read_to_string(path).unwrap_or_default();
    sandbox_resolv_conf(&read("/etc/resolv.conf"), || read(RESOLVED_UPSTREAMS))
}

fn sandbox_resolv_conf(host: &str, upstreams: impl FnOnce() -> String) -> String {
    let mut servers = reachable_servers(host);
    if servers.is_empty() {
        servers = reachable_servers(&upstreams());
    }
    let mut out = String::from("# written by ai2in: the host's name servers\n");
    for addr in servers {
        out.push_str(&format!("nameserver {addr}\n"));
    }
    for line in host.lines() {
        if matches!(line.split_whitespace().next(), Some("search" | "options")) {
            out.push_str(line.trim());
            out.push('\n');
        }
    }
    out
}

/// The IPv4 name servers of a resolv.conf text that are not loopback.
fn reachable_servers(text: &str) -> Vec<Ipv4Addr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("nameserver"), Some(addr)) => addr.parse::<Ipv4Addr>().ok(),
                _ => None,
            }
        })
        .filter(|addr| !addr.is_loopback())
        .collect()
}

fn pool_base(pool: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, FIRST_POOL + pool, 0, 0)
}

fn link_name(pool: u8, slot: u32) -> String {
    format!("ai2-{pool}-{slot}")
}

/// The map of forwarded host ports: port → sandbox address . port.
const FORWARDS: &str = "forwards";

fn table(pool: u8) -> String {
    format!("ai2in-{pool}")
}

fn lock_path(pool: u8) -> PathBuf {
    PathBuf::from(LOCK_DIR).join(format!("pool-{pool}.lock"))
}

/// Pool `pool`'s lock, held until dropped; `None` when another node holds it.
fn try_lock(pool: u8) -> Option<Flock<File>> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path(pool))
        .ok()?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).ok()
}

/// The rules of pool `pool`, with TCP ports `host_ports` of the host open to sandboxes and,
/// when it can, the kernel forwarding them.
fn ruleset(pool: u8, host_ports: Option<HostPorts>) -> String {
    let base = pool_base(pool);
    let open = match host_ports {
        Some(HostPorts { first, last, .. }) => format!(
            "\x20   iifname \"ai2-{pool}-*\" tcp dport {first}-{last} fib daddr type local accept\n"
        ),
        None => String::new(),
    };
    // Forwarded connections (both ways) pass before any other rule of the links: only the
    // kernel's DNAT of a forwarded port marks a connection so.
    let (forwards, forwarded) = match host_ports.and_then(|h| Some((h, h.forwarded_match()?))) {
        Some((HostPorts { first, last, .. }, daddr)) => {
            let rule =
                format!("{daddr} tcp dport {first}-{last} dnat ip to tcp dport map @{FORWARDS}");
            (
                format!(
                    "\x20 map {FORWARDS} {{\n\
                     \x20   type inet_service : ipv4_addr . inet_service;\n\
                     \x20 }}\n\
                     \x20 chain dstnat {{\n\
                     \x20   type nat hook prerouting priority dstnat; policy accept;\n\
                     \x20   {rule}\n\
                     \x20 }}\n\
                     \x20 chain dstnat_local {{\n\
                     \x20   type nat hook output priority -100; policy accept;\n\
                     \x20   {rule}\n\
                     \x20 }}\n"
                ),
                format!(
                    "\x20   iifname \"ai2-{pool}-*\" ct status dnat accept\n\
                     \x20   oifname \"ai2-{pool}-*\" ct status dnat accept\n"
                ),
            )
        }
        None => (String::new(), String::new()),
    };
    let links = format!("ai2-{pool}-*");
    let deny = Ipv4Addr::from(u32::from(base) + 2 * LINKS_PER_POOL);
    let t = table(pool);
    format!(
        "table inet {t}\n\
         delete table inet {t}\n\
         table inet {t} {{\n\
         {forwards}\
         \x20 chain prerouting {{\n\
         \x20   type filter hook prerouting priority raw; policy accept;\n\
         \x20   iifname \"{links}\" meta nfproto ipv6 drop\n\
         \x20   iifname \"{links}\" fib saddr . iif oif missing drop\n\
         \x20 }}\n\
         \x20 chain input {{\n\
         \x20   type filter hook input priority filter; policy accept;\n\
         \x20   iifname \"{links}\" ct state established,related accept\n\
         {open}\
         \x20   iifname \"{links}\" reject with icmpx admin-prohibited\n\
         \x20 }}\n\
         \x20 chain forward {{\n\
         \x20   type filter hook forward priority filter; policy accept;\n\
         {forwarded}\
         \x20   iifname \"{links}\" ip saddr {deny}/17 reject with icmpx admin-prohibited\n\
         \x20   iifname \"{links}\" ip daddr {{ 169.254.0.0/16, 224.0.0.0/4, 255.255.255.255 }} reject with icmpx admin-prohibited\n\
         \x20   oifname \"{links}\" ct state established,related accept\n\
         \x20   oifname \"{links}\" drop\n\
         \x20 }}\n\
         \x20 chain postrouting {{\n\
         \x20   type nat hook postrouting priority srcnat; policy accept;\n\
         \x20   ip saddr {base}/16 oifname != \"ai2-*\" masquerade\n\
         \x20 }}\n\
         }}\n"
    )
}

/// Applies an nftables script atomically.
fn nft(script: &str) -> io::Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_servers_are_dropped_and_the_rest_kept_with_search_and_options() {
        let host = "nameserver 127.0.0.1\nnameserver 10.0.0.2\nsearch corp\noptions ndots:2\n";
        let out = sandbox_resolv_conf(host, || unreachable!("the host has a reachable server"));
        assert!(
            out.contains("nameserver 10.0.0.2\n") && !out.contains("127.0.0.1"),
            "{out}"
        );
        assert!(
            out.contains("search corp\n") && out.contains("options ndots:2\n"),
            "{out}"
        );
    }

    #[test]
    fn a_stub_resolver_on_loopback_gives_way_to_its_upstream_servers() {
        let host = "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n";
        let upstreams = || "nameserver 192.168.1.1\nnameserver 1.1.1.1\n".to_string();
        let out = sandbox_resolv_conf(host, upstreams);
        assert!(
            out.contains("nameserver 192.168.1.1\nnameserver 1.1.1.1\n"),
            "{out}"
        );
        assert!(
            out.contains("search lan\n") && !out.contains("127.0.0.53"),
            "{out}"
        );
    }
}

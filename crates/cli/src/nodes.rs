//! `ai2in nodes list|drain`: the nodes of a cluster (admin); a node on its own is a cluster of
//! one.

use ai2in_client::{NodeInfo, NodeResources, NodeStatus};

use crate::connect::Connection;
use crate::output::{self, Colour, Table};

#[derive(clap::Subcommand)]
pub enum NodesCommand {
    /// List the nodes: address, status, what is taken of their capacity, last report.
    #[command(
        visible_alias = "ls",
        after_help = "Examples:\n  \
        ai2in nodes ls\n  \
        ai2in nodes ls --json | jq -r '.nodes[] | select(.status == \"ready\") | .id'"
    )]
    List {
        #[command(flatten)]
        conn: Connection,
    },
    /// Drain a node: nothing new is placed on it; what it holds keeps running.
    #[command(after_help = "Examples:\n  \
        ai2in nodes drain node-2\n  \
        ai2in nodes drain node-2 --json | jq -r .status")]
    Drain {
        /// The node's id, as `ai2in nodes ls` shows it
        id: String,
        #[command(flatten)]
        conn: Connection,
    },
}

/// Runs `ai2in nodes …`.
pub async fn run(cmd: NodesCommand) -> anyhow::Result<()> {
    match cmd {
        NodesCommand::List { conn } => {
            let nodes = conn.client()?.nodes().list().await?;
            if conn.json {
                return output::print_json(&ai2in_client::api::NodeList { nodes });
            }
            let mut table = Table::new(&[
                "ID",
                "ADDRESS",
                "STATUS",
                "SANDBOXES",
                "MEMORY",
                "CPU",
                "LAST SEEN",
            ]);
            for n in &nodes {
                table.styled_row(vec![
                    (n.id.clone(), None),
                    (address(n), None),
                    status_name(n.status),
                    (sandboxes(&n.used, &n.capacity), None),
                    (memory(&n.used, &n.capacity), None),
                    (cpu(&n.used, &n.capacity), None),
                    (n.last_seen_at.clone(), None),
                ]);
            }
            table.print();
            Ok(())
        }
        NodesCommand::Drain { id, conn } => {
            print_info(&conn.client()?.nodes().drain(&id).await?, conn.json)
        }
    }
}

fn status_name(status: NodeStatus) -> (String, Option<Colour>) {
    let (name, colour) = match status {
        NodeStatus::Ready => ("ready", Colour::Green),
        NodeStatus::Draining => ("draining", Colour::Yellow),
        NodeStatus::Down => ("down", Colour::Red),
    };
    (name.to_string(), Some(colour))
}

/// Where the gateways reach the node; `-` for a node on its own that has not said.
fn address(n: &NodeInfo) -> String {
    if n.address.is_empty() {
        "-".into()
    } else {
        n.address.clone()
    }
}

/// `used/capacity` sandboxes.
fn sandboxes(used: &NodeResources, capacity: &NodeResources) -> String {
    format!("{}/{}", used.sandboxes, capacity.sandboxes)
}

/// `used/capacity` memory, in binary units.
fn memory(used: &NodeResources, capacity: &NodeResources) -> String {
    format!(
        "{}/{}",
        output::bytes(used.memory_bytes),
        output::bytes(capacity.memory_bytes)
    )
}

/// `used/capacity` CPU cores.
fn cpu(used: &NodeResources, capacity: &NodeResources) -> String {
    format!("{}/{}", used.cpu, capacity.cpu)
}

/// One node for people, a field a line.
fn print_info(n: &NodeInfo, json: bool) -> anyhow::Result<()> {
    if json {
        return output::print_json(n);
    }
    let colour = output::colours_on(&std::io::stdout());
    let status = output::painted(status_name(n.status), colour);
    println!("id:        {}", n.id);
    println!("address:   {}", address(n));
    println!("status:    {status}");
    println!("sandboxes: {}", sandboxes(&n.used, &n.capacity));
    println!("memory:    {}", memory(&n.used, &n.capacity));
    println!("cpu:       {}", cpu(&n.used, &n.capacity));
    println!("last seen: {}", n.last_seen_at);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_used_over_capacity() {
        let capacity = NodeResources {
            sandboxes: 1000,
            memory_bytes: 1 << 40,
            cpu: 128.0,
        };
        let used = NodeResources {
            sandboxes: 3,
            memory_bytes: 1536 << 20,
            cpu: 1.5,
        };
        assert_eq!(sandboxes(&used, &capacity), "3/1000");
        assert_eq!(memory(&used, &capacity), "1.5 GiB/1 TiB");
        assert_eq!(cpu(&used, &capacity), "1.5/128");
    }
}

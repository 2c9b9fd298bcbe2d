//! `ai2in sandbox …`: create, list, inspect, pause, resume, time out, snapshot and destroy
//! sandboxes.

use std::time::Duration;

use ai2in_client::{
    CreateSandbox, DesktopRequest, Egress, Network, Resources, SandboxFilter, SandboxInfo,
    SandboxStatus, ScreenRequest, VolumeAttachment,
};

use crate::args;
use crate::connect::Connection;
use crate::output::{self, Colour, Table};

#[derive(clap::Subcommand)]
pub enum SandboxCommand {
    /// Create a sandbox; prints it once it can run code.
    #[command(after_help = "Examples:\n  \
        ai2in sandbox create\n  \
        ai2in sandbox create --timeout 30m --cpu 2 --memory 1GiB --env API_URL=http://x --metadata job=ci\n  \
        ai2in sandbox create --image python:3.12-slim\n  \
        ai2in sandbox create --volume work:/data --volume refs:/refs:ro --disk 8GiB\n  \
        id=$(ai2in sandbox create --egress deny --json | jq -r .id)")]
    Create(CreateArgs),
    /// List your sandboxes.
    #[command(
        visible_alias = "list",
        after_help = "Examples:\n  \
        ai2in sandbox ls\n  \
        ai2in sandbox ls --status paused --metadata job=ci\n  \
        ai2in sandbox ls --json | jq -r '.sandboxes[].id'"
    )]
    Ls {
        /// Only sandboxes in this status
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
        /// Only sandboxes with this label (repeat: all must match)
        #[arg(long, value_name = "KEY=VALUE", value_parser = args::pair)]
        metadata: Vec<(String, String)>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Show a sandbox: status, lifetime, resources, labels.
    #[command(after_help = "Example:\n  ai2in sandbox info sbx_… --json | jq -r .end_at")]
    Info {
        /// The sandbox
        id: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Destroy sandboxes and everything in them.
    #[command(
        visible_alias = "kill",
        after_help = "Example:\n  ai2in sandbox rm sbx_a… sbx_b…"
    )]
    Rm {
        /// The sandboxes
        #[arg(required = true)]
        ids: Vec<String>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Freeze every process of a sandbox (idempotent); work is refused until resumed.
    #[command(after_help = "Example:\n  ai2in sandbox pause sbx_…")]
    Pause {
        id: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Thaw a paused sandbox (idempotent).
    #[command(after_help = "Example:\n  ai2in sandbox resume sbx_…")]
    Resume {
        id: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Give a sandbox a new lifetime from now (at most 24h; it may shorten it).
    #[command(after_help = "Example:\n  ai2in sandbox timeout sbx_… 2h")]
    Timeout {
        id: String,
        /// E.g. 90s, 10m, 2h
        #[arg(value_parser = args::duration)]
        lifetime: Duration,
        #[command(flatten)]
        conn: Connection,
    },
    /// Live CPU, memory, disk, task and network figures.
    #[command(after_help = "Example:\n  ai2in sandbox metrics sbx_… --json | jq .mem_used_bytes")]
    Metrics {
        id: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Snapshot a sandbox's files as a new image (it goes on running); create sandboxes from
    /// the image to fork it.
    #[command(after_help = "Examples:\n  \
        ai2in sandbox snapshot sbx_… --ref mywork:1\n  \
        img=$(ai2in sandbox snapshot sbx_… --json | jq -r .id)\n  \
        ai2in sandbox create --image mywork:1")]
    Snapshot {
        /// The sandbox
        id: String,
        /// The image's name, NAME:TAG [default: localhost/snapshots/SANDBOX:TIME]
        #[arg(long = "ref", value_name = "NAME:TAG")]
        reference: Option<String>,
        #[command(flatten)]
        conn: Connection,
    },
    /// A public URL for a port inside the sandbox (through the node's proxy).
    #[command(after_help = "Example:\n  ai2in sandbox expose sbx_… 8000")]
    Expose {
        id: String,
        /// The port inside the sandbox
        port: u16,
        #[command(flatten)]
        conn: Connection,
    },
}

/// Arguments of `ai2in sandbox create`.
#[derive(clap::Args)]
pub struct CreateArgs {
    /// Image to start from: a reference (pulled if need be) or an img_… id [default: the
    /// node's, `host`]
    #[arg(long)]
    image: Option<String>,
    /// Lifetime, e.g. 5m, 2h (at most 24h) [default: the node's, 5m]
    #[arg(long, value_parser = args::duration)]
    timeout: Option<Duration>,
    #[command(flatten)]
    resources: args::ResourceArgs,
    /// Environment variable of every process (repeat); never shown back
    #[arg(long, value_name = "KEY=VALUE", value_parser = args::pair)]
    env: Vec<(String, String)>,
    /// Label, usable as a filter of `ls` (repeat)
    #[arg(long, value_name = "KEY=VALUE", value_parser = args::pair)]
    metadata: Vec<(String, String)>,
    /// Whether the sandbox may open connections to the outside
    #[arg(long, value_enum)]
    egress: Option<EgressArg>,
    /// A graphical desktop (`ai2in desktop …` drives it)
    #[arg(long)]
    desktop: bool,
    /// The desktop's screen size, WIDTHxHEIGHT [default: 1280x800]
    #[arg(long, value_parser = args::screen, requires = "desktop")]
    screen: Option<(u16, u16)>,
    /// The desktop's dots per inch [default: 96]
    #[arg(long, requires = "desktop")]
    dpi: Option<u16>,
    #[command(flatten)]
    conn: Connection,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum EgressArg {
    Allow,
    Deny,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum StatusArg {
    Running,
    Paused,
    Starting,
    Stopping,
}

impl From<StatusArg> for SandboxStatus {
    fn from(status: StatusArg) -> Self {
        match status {
            StatusArg::Running => SandboxStatus::Running,
            StatusArg::Paused => SandboxStatus::Paused,
            StatusArg::Starting => SandboxStatus::Starting,
            StatusArg::Stopping => SandboxStatus::Stopping,
        }
    }
}

impl CreateArgs {
    fn request(self) -> CreateSandbox {
        CreateSandbox {
            image: self.image,
            env: args::map(self.env),
            timeout_ms: self
                .timeout
                .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
            metadata: args::map(self.metadata),
            cpu: self.resources.cpu,
            memory_bytes: self.resources.memory,
            disk_bytes: self.resources.disk,
            volumes: self.resources.volumes(),
            network: self.egress.map(|egress| Network {
                egress: match egress {
                    EgressArg::Allow => Egress::Allow,
                    EgressArg::Deny => Egress::Deny,
                },
            }),
            desktop: self
                .desktop
                .then_some(DesktopRequest::Screen(ScreenRequest {
                    width: self.screen.map(|s| s.0),
                    height: self.screen.map(|s| s.1),
                    dpi: self.dpi,
                })),
        }
    }
}

fn status_name(status: SandboxStatus) -> (String, Option<Colour>) {
    let (name, colour) = match status {
        SandboxStatus::Running => ("running", Colour::Green),
        SandboxStatus::Paused => ("paused", Colour::Yellow),
        SandboxStatus::Starting => ("starting", Colour::Dim),
        SandboxStatus::Stopping => ("stopping", Colour::Red),
    };
    (name.to_string(), Some(colour))
}

fn labels(info: &SandboxInfo) -> String {
    info.metadata
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// One sandbox for people, a field a line.
fn print_info(info: &SandboxInfo, json: bool) -> anyhow::Result<()> {
    if json {
        return output::print_json(info);
    }
    let colour = output::colours_on(&std::io::stdout());
    let status = output::painted(status_name(info.status), colour);
    let egress = match info.network.egress {
        Egress::Allow => "allow",
        Egress::Deny => "deny",
    };
    println!("id:        {}", info.id);
    println!("status:    {status}");
    println!("image:     {}", info.image);
    if let Some(digest) = &info.image_digest {
        println!("digest:    {digest}");
    }
    println!("created:   {}", info.created_at);
    println!("ends:      {}", info.end_at);
    println!("node:      {}", info.node_id);
    println!("egress:    {egress}");
    print_resources(&info.resources, &info.volumes);
    println!("metadata:  {}", labels(info));
    Ok(())
}

/// The `resources:` line and a `volume:` line a mount, of a sandbox's (or a service's) info.
pub(crate) fn print_resources(r: &Resources, volumes: &[VolumeAttachment]) {
    println!(
        "resources: {} cpu, {} memory, {} disk",
        r.cpu,
        output::bytes(r.memory_bytes),
        output::bytes(r.disk_bytes)
    );
    for v in volumes {
        let mode = if v.read_only { "ro" } else { "rw" };
        println!("volume:    {} at {} ({mode})", v.volume_id, v.path);
    }
}

fn print_list(list: Vec<SandboxInfo>, json: bool) -> anyhow::Result<()> {
    if json {
        return output::print_json(&ai2in_client::api::SandboxList { sandboxes: list });
    }
    let mut table = Table::new(&["ID", "STATUS", "IMAGE", "CPU", "MEMORY", "ENDS", "METADATA"]);
    for info in &list {
        table.styled_row(vec![
            (info.id.clone(), None),
            status_name(info.status),
            (info.image.clone(), None),
            (info.resources.cpu.to_string(), None),
            (output::bytes(info.resources.memory_bytes), None),
            (info.end_at.clone(), None),
            (labels(info), None),
        ]);
    }
    table.print();
    Ok(())
}

/// Runs `ai2in sandbox …`.
pub async fn run(cmd: SandboxCommand) -> anyhow::Result<()> {
    match cmd {
        SandboxCommand::Create(args) => {
            let (json, client) = (args.conn.json, args.conn.client()?);
            let spinner = output::spinner("creating a sandbox");
            let created = client.create_sandbox(args.request()).await;
            spinner.finish_and_clear();
            print_info(&created?.info().await?, json)
        }
        SandboxCommand::Ls {
            status,
            metadata,
            conn,
        } => {
            let filter = SandboxFilter {
                status: status.map(Into::into),
                metadata: metadata.into_iter().collect(),
            };
            print_list(conn.client()?.list_sandboxes(&filter).await?, conn.json)
        }
        SandboxCommand::Info { id, conn } => {
            print_info(&conn.client()?.sandbox(id).info().await?, conn.json)
        }
        SandboxCommand::Rm { ids, conn } => {
            let client = conn.client()?;
            output::remove_each(&ids, conn.json, |id| {
                let sandbox = client.sandbox(id);
                async move { sandbox.kill().await }
            })
            .await
        }
        SandboxCommand::Snapshot {
            id,
            reference,
            conn,
        } => {
            let sandbox = conn.client()?.sandbox(id);
            let spinner = output::spinner("taking a snapshot");
            let image = sandbox.snapshot(reference.as_deref()).await;
            spinner.finish_and_clear();
            crate::image::print_summary(&image?, conn.json)
        }
        SandboxCommand::Pause { id, conn } => {
            let sandbox = conn.client()?.sandbox(id);
            let spinner = output::spinner("pausing");
            let paused = sandbox.pause().await;
            spinner.finish_and_clear();
            print_info(&paused?, conn.json)
        }
        SandboxCommand::Resume { id, conn } => {
            print_info(&conn.client()?.sandbox(id).resume().await?, conn.json)
        }
        SandboxCommand::Timeout { id, lifetime, conn } => print_info(
            &conn.client()?.sandbox(id).set_timeout(lifetime).await?,
            conn.json,
        ),
        SandboxCommand::Metrics { id, conn } => {
            let m = conn.client()?.sandbox(id).metrics().await?;
            if conn.json {
                return output::print_json(&m);
            }
            println!("cpu:     {:.1}% of {} cpu", m.cpu_used_pct, m.cpu_count);
            println!(
                "memory:  {} of {}",
                output::bytes(m.mem_used_bytes),
                output::bytes(m.mem_limit_bytes)
            );
            println!(
                "disk:    {} of {}",
                output::bytes(m.disk_used_bytes),
                output::bytes(m.disk_limit_bytes)
            );
            println!("tasks:   {}", m.pids);
            println!(
                "network: {} in, {} out",
                output::bytes(m.net_rx_bytes),
                output::bytes(m.net_tx_bytes)
            );
            Ok(())
        }
        SandboxCommand::Expose { id, port, conn } => {
            let exposed = conn.client()?.sandbox(id).expose(port).await?;
            if conn.json {
                return output::print_json(&exposed);
            }
            println!("{}", exposed.url);
            Ok(())
        }
    }
}

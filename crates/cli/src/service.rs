//! `ai2in service …`: deploy services the node keeps running and serves at a URL, list and
//! inspect them, read and follow their logs, redeploy, stop, start and remove them.

use std::io::Write;
use std::time::Duration;

use ai2in_client::{
    DeployServiceRequest, LogLine, LogStream, RedeployServiceRequest, Service, ServiceStatus,
    Services,
};
use anyhow::bail;
use futures_util::StreamExt;

use crate::args;
use crate::connect::Connection;
use crate::output::{self, Colour, Table};

/// How often `deploy` asks whether the service runs yet.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// How many of its last log lines `deploy` shows when the service crashed.
const CRASH_LINES: u32 = 20;

#[derive(clap::Subcommand)]
pub enum ServiceCommand {
    /// Deploy a service: the node runs it, restarts it when it exits, and serves its port at
    /// a URL; waits until it runs, then prints the URL.
    #[command(after_help = "Examples:\n  \
        ai2in service deploy web --image host --cmd 'python3 -m http.server 8000' --port 8000\n  \
        ai2in service deploy api --image ghcr.io/org/api:1 --port 8080 --health /healthz \\\n    \
        --env LOG_LEVEL=info --volume api-data:/data --memory 1GiB\n  \
        id=$(ai2in service deploy worker --image python:3.12-slim --cmd 'python3 worker.py' --no-wait --json | jq -r .id)")]
    Deploy(Box<DeployArgs>),
    /// List your services.
    #[command(
        visible_alias = "list",
        after_help = "Examples:\n  \
        ai2in service ls\n  \
        ai2in service ls --json | jq -r '.services[] | \"\\(.name) \\(.status)\"'"
    )]
    Ls {
        #[command(flatten)]
        conn: Connection,
    },
    /// Show a service: status, URL, command, restarts, its last exit, resources.
    #[command(after_help = "Example:\n  ai2in service info web --json | jq -r .sandbox_id")]
    Info(Target),
    /// Print a service's log (its output and what the node did), kept across restarts.
    #[command(after_help = "Examples:\n  \
        ai2in service logs web --limit 20\n  \
        ai2in service logs web -f\n  \
        ai2in service logs web --json | jq -r 'select(.stream == \"stderr\") | .line'")]
    Logs {
        /// The service's id (svc_…) or name
        #[arg(value_name = "ID|NAME")]
        id: String,
        /// Then print new lines as they come, until Ctrl-C
        #[arg(long, short)]
        follow: bool,
        /// Only the lines after this one (a line's seq, as --json shows it)
        #[arg(long, value_name = "SEQ")]
        since: Option<u64>,
        /// At most this many lines (at most 1000) [default: 100]
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Replace a service's instance, with changes; the old one serves until the new one is
    /// ready, and goes on serving if it never is.
    #[command(after_help = "Examples:\n  \
        ai2in service redeploy web\n  \
        ai2in service redeploy api --image ghcr.io/org/api:2 --env LOG_LEVEL=debug")]
    Redeploy {
        /// The service's id (svc_…) or name
        #[arg(value_name = "ID|NAME")]
        id: String,
        /// A new image (the same one is pulled again anyway: a tag may have moved)
        #[arg(long)]
        image: Option<String>,
        #[command(flatten)]
        settings: SettingsArgs,
        #[command(flatten)]
        conn: Connection,
    },
    /// Stop a service (SIGTERM, then SIGKILL after a grace period) until `start`.
    #[command(after_help = "Example:\n  ai2in service stop web")]
    Stop(Target),
    /// Start a stopped service again.
    #[command(after_help = "Example:\n  ai2in service start web")]
    Start(Target),
    /// Remove services: their instances stop and their URLs answer no more.
    #[command(
        visible_alias = "delete",
        after_help = "Example:\n  ai2in service rm web svc_…"
    )]
    Rm {
        /// The services' ids (svc_…) or names
        #[arg(required = true, value_name = "ID|NAME")]
        ids: Vec<String>,
        #[command(flatten)]
        conn: Connection,
    },
}

/// The service a command acts on, and the connection.
#[derive(clap::Args)]
pub struct Target {
    /// The service's id (svc_…) or name
    #[arg(value_name = "ID|NAME")]
    id: String,
    #[command(flatten)]
    conn: Connection,
}

/// Arguments of `ai2in service deploy`.
#[derive(clap::Args)]
pub struct DeployArgs {
    /// Its name: 1 to 40 of a-z, 0-9 and -, unique among your services; part of its URL
    name: String,
    /// Image to run: `host`, a reference (pulled if need be) or an img_… id
    #[arg(long)]
    image: String,
    #[command(flatten)]
    settings: SettingsArgs,
    #[command(flatten)]
    resources: args::ResourceArgs,
    /// Answer as soon as its process started, without waiting for it to run
    #[arg(long)]
    no_wait: bool,
    #[command(flatten)]
    conn: Connection,
}

/// What `deploy` sets and `redeploy` changes, besides the image.
#[derive(clap::Args)]
pub struct SettingsArgs {
    /// The port it listens on inside; it has a URL only with one
    #[arg(long)]
    port: Option<u16>,
    /// Its command, run by /bin/sh -c [default: the image's entrypoint and cmd]
    #[arg(long, value_name = "CMD")]
    cmd: Option<String>,
    /// Environment variable (repeat); on redeploy, they replace the whole environment
    #[arg(long, value_name = "KEY=VALUE", value_parser = args::pair)]
    env: Vec<(String, String)>,
    /// A path that must answer 2xx or 3xx before it runs [default: the open port is enough]
    #[arg(long, value_name = "PATH")]
    health: Option<String>,
}

impl DeployArgs {
    fn request(self) -> DeployServiceRequest {
        let s = self.settings;
        DeployServiceRequest {
            name: self.name,
            image: self.image,
            internal_port: s.port,
            env: args::map(s.env),
            start_cmd: s.cmd,
            health_path: s.health,
            cpu: self.resources.cpu,
            memory_bytes: self.resources.memory,
            disk_bytes: self.resources.disk,
            volumes: self.resources.volumes(),
        }
    }
}

impl SettingsArgs {
    fn changes(self, image: Option<String>) -> RedeployServiceRequest {
        RedeployServiceRequest {
            image,
            env: args::map(self.env),
            start_cmd: self.cmd,
            internal_port: self.port,
            health_path: self.health,
        }
    }
}

/// Runs `ai2in service …`.
pub async fn run(cmd: ServiceCommand) -> anyhow::Result<()> {
    match cmd {
        ServiceCommand::Deploy(args) => {
            let (json, no_wait) = (args.conn.json, args.no_wait);
            let services = args.conn.client()?.services();
            let spinner = output::spinner(&format!("deploying {}", args.name));
            let deployed = services.deploy(args.request()).await;
            let service = match deployed {
                Ok(service) if !no_wait => wait_running(&services, service, &spinner).await,
                other => other.map_err(Into::into),
            };
            spinner.finish_and_clear();
            print_deployed(&service?, json)
        }
        ServiceCommand::Ls { conn } => {
            print_list(conn.client()?.services().list().await?, conn.json)
        }
        ServiceCommand::Info(Target { id, conn }) => {
            print_info(&conn.client()?.services().get(&id).await?, conn.json)
        }
        ServiceCommand::Logs {
            id,
            follow,
            since,
            limit,
            conn,
        } => {
            let services = conn.client()?.services();
            let logs = services.logs(&id, since, limit).await?;
            print_lines(&logs.logs, conn.json)?;
            if !follow {
                return Ok(());
            }
            let mut lines = services.follow_logs(&id, Some(logs.next_since)).await?;
            output::until_interrupted(async {
                while let Some(line) = lines.next().await {
                    print_lines(&[line?], conn.json)?;
                    std::io::stdout().flush()?;
                }
                Ok(())
            })
            .await
        }
        ServiceCommand::Redeploy {
            id,
            image,
            settings,
            conn,
        } => {
            let services = conn.client()?.services();
            let spinner = output::spinner(&format!("redeploying {id}"));
            let redeployed = services.redeploy(&id, settings.changes(image)).await;
            spinner.finish_and_clear();
            print_deployed(&redeployed?, conn.json)
        }
        ServiceCommand::Stop(Target { id, conn }) => {
            let services = conn.client()?.services();
            let spinner = output::spinner(&format!("stopping {id}"));
            let stopped = services.stop(&id).await;
            spinner.finish_and_clear();
            print_info(&stopped?, conn.json)
        }
        ServiceCommand::Start(Target { id, conn }) => {
            print_info(&conn.client()?.services().start(&id).await?, conn.json)
        }
        ServiceCommand::Rm { ids, conn } => {
            let services = conn.client()?.services();
            output::remove_each(&ids, conn.json, |id| {
                let services = services.clone();
                async move { services.delete(&id).await }
            })
            .await
        }
    }
}

/// Polls `service` until it runs; a crash (seen, or counted by a restart since) or a stop
/// by someone else is an error, after its last log lines on standard error.
async fn wait_running(
    services: &Services,
    mut service: Service,
    spinner: &indicatif::ProgressBar,
) -> anyhow::Result<Service> {
    spinner.set_message(format!("deploying {}: waiting for it to run", service.name));
    let what = loop {
        match service.status {
            ServiceStatus::Running => return Ok(service),
            ServiceStatus::Stopped => break "was stopped",
            ServiceStatus::Crashed => break "crashed",
            ServiceStatus::Deploying if service.restarts > 0 => break "crashed",
            ServiceStatus::Deploying => {}
        }
        tokio::time::sleep(POLL_INTERVAL).await;
        service = services.get(&service.id).await?;
    };
    let logs = services.logs(&service.id, None, Some(CRASH_LINES)).await?;
    spinner.finish_and_clear();
    let colour = output::colours_on(&std::io::stderr());
    for line in &logs.logs {
        eprintln!("{}", text_line(line, colour));
    }
    bail!(
        "service {} {what} before it ran (its last log lines are above)",
        service.name
    )
}

fn status_name(status: ServiceStatus) -> (String, Option<Colour>) {
    let (name, colour) = match status {
        ServiceStatus::Deploying => ("deploying", Colour::Dim),
        ServiceStatus::Running => ("running", Colour::Green),
        ServiceStatus::Crashed => ("crashed", Colour::Red),
        ServiceStatus::Stopped => ("stopped", Colour::Yellow),
    };
    (name.to_string(), Some(colour))
}

/// A log line for people: `TIMESTAMP STREAM LINE`.
fn text_line(line: &LogLine, colour: bool) -> String {
    let stream = match line.stream {
        LogStream::Stdout => "stdout".to_string(),
        LogStream::Stderr => output::paint("stderr", Colour::Red, colour),
        LogStream::System => output::paint("system", Colour::Dim, colour),
    };
    format!("{} {stream} {}", line.timestamp, line.line)
}

/// Log lines on standard output: text, or one JSON object a line.
fn print_lines(lines: &[LogLine], json: bool) -> anyhow::Result<()> {
    let colour = output::colours_on(&std::io::stdout());
    for line in lines {
        if json {
            println!("{}", serde_json::to_string(line)?);
        } else {
            println!("{}", text_line(line, colour));
        }
    }
    Ok(())
}

/// What a deploy or a redeploy printed: the URL (the service with --json).
fn print_deployed(service: &Service, json: bool) -> anyhow::Result<()> {
    if json {
        return output::print_json(service);
    }
    match &service.url {
        Some(url) => println!("{url}"),
        None => println!(
            "{} ({}) has no URL: it has no --port",
            service.name, service.id
        ),
    }
    Ok(())
}

/// One service for people, a field a line.
fn print_info(s: &Service, json: bool) -> anyhow::Result<()> {
    if json {
        return output::print_json(s);
    }
    let colour = output::colours_on(&std::io::stdout());
    let status = output::painted(status_name(s.status), colour);
    let or_dash = |value: Option<&str>| value.unwrap_or("-").to_string();
    println!("id:        {}", s.id);
    println!("name:      {}", s.name);
    println!("status:    {status}");
    println!("url:       {}", or_dash(s.url.as_deref()));
    println!("image:     {}", s.image);
    if let Some(digest) = &s.image_digest {
        println!("digest:    {digest}");
    }
    let port = s.internal_port.map(|p| p.to_string());
    println!("port:      {}", or_dash(port.as_deref()));
    println!("command:   {}", or_dash(s.start_cmd.as_deref()));
    println!("health:    {}", or_dash(s.health_path.as_deref()));
    println!("created:   {}", s.created_at);
    println!("deployed:  {}", or_dash(s.deployed_at.as_deref()));
    println!("restarts:  {}", s.restarts);
    if let Some(exit) = &s.last_exit {
        let how = match (exit.exit_code, exit.signal) {
            (_, Some(signal)) => format!("signal {signal}"),
            (Some(code), None) => format!("status {code}"),
            (None, None) => "unknown".to_string(),
        };
        println!("last exit: {how} at {}", exit.at);
    }
    if let Some(at) = &s.next_restart_at {
        println!("restart:   {at}");
    }
    println!("sandbox:   {}", or_dash(s.sandbox_id.as_deref()));
    crate::sandbox::print_resources(&s.resources, &s.volumes);
    Ok(())
}

fn print_list(services: Vec<Service>, json: bool) -> anyhow::Result<()> {
    if json {
        return output::print_json(&ai2in_client::api::ServiceList { services });
    }
    let mut table = Table::new(&["NAME", "ID", "STATUS", "RESTARTS", "URL"]);
    for s in &services {
        table.styled_row(vec![
            (s.name.clone(), None),
            (s.id.clone(), None),
            status_name(s.status),
            (s.restarts.to_string(), None),
            (s.url.clone().unwrap_or_else(|| "-".into()), None),
        ]);
    }
    table.print();
    Ok(())
}

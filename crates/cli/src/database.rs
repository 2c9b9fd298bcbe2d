//! `ai2in db …`: create managed databases (PostgreSQL, MySQL, Redis) the node runs and keeps
//! running, list and inspect them, list the engines the node serves, reset their password
//! and remove them.

use ai2in_client::{CreateDatabaseRequest, Database, DatabaseStatus};

use crate::args;
use crate::connect::Connection;
use crate::output::{self, Colour, Table};

#[derive(clap::Subcommand)]
pub enum DatabaseCommand {
    /// Create a database: the node runs its server and keeps it running; waits until it
    /// accepts connections, then prints its url (password included).
    #[command(
        disable_version_flag = true,
        after_help = "Examples:\n  \
        ai2in db create postgres\n  \
        url=$(ai2in db create postgres --name shop --memory 1GiB --disk 5GiB)\n  \
        id=$(ai2in db create redis --json | jq -r .id)\n  \
        ai2in db engines"
    )]
    Create(Box<CreateArgs>),
    /// List your databases.
    #[command(
        visible_alias = "list",
        after_help = "Examples:\n  \
        ai2in db ls\n  \
        ai2in db ls --json | jq -r '.databases[] | \"\\(.id) \\(.engine)\"'"
    )]
    Ls {
        #[command(flatten)]
        conn: Connection,
    },
    /// Show a database: engine, status, url (password included), address, user, resources.
    #[command(after_help = "Example:\n  ai2in db info db_… --json | jq -r .url")]
    Info(Target),
    /// List the engines this node serves, with their versions and where their servers come from.
    #[command(after_help = "Example:\n  ai2in db engines --json | jq -r '.engines[].engine'")]
    Engines {
        #[command(flatten)]
        conn: Connection,
    },
    /// Give a database's user a new password (the old one fails at once); prints the new url.
    #[command(after_help = "Example:\n  url=$(ai2in db reset-password db_…)")]
    ResetPassword(Target),
    /// Remove databases: their servers stop, and their data is gone.
    #[command(
        visible_alias = "delete",
        after_help = "Example:\n  ai2in db rm db_… db_…"
    )]
    Rm {
        /// The databases' ids (db_…)
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
        #[command(flatten)]
        conn: Connection,
    },
}

/// The database a command acts on, and the connection.
#[derive(clap::Args)]
pub struct Target {
    /// The database's id (db_…)
    #[arg(value_name = "ID")]
    id: String,
    #[command(flatten)]
    conn: Connection,
}

/// Arguments of `ai2in db create`.
#[derive(clap::Args)]
pub struct CreateArgs {
    /// Its engine: postgres, mysql or redis (`ai2in db engines` lists what the node serves)
    engine: String,
    /// A version the node serves [default: the engine's default]
    #[arg(long)]
    version: Option<String>,
    /// The database's name inside the server (a-z, 0-9, _; a letter first) [default: app]
    #[arg(long)]
    name: Option<String>,
    /// Memory of its server, e.g. 512MiB, 2GiB
    #[arg(long, value_parser = args::size)]
    memory: Option<u64>,
    /// Size of the volume holding its data, e.g. 10GiB
    #[arg(long, value_parser = args::size)]
    disk: Option<u64>,
    #[command(flatten)]
    conn: Connection,
}

impl CreateArgs {
    fn request(self) -> CreateDatabaseRequest {
        CreateDatabaseRequest {
            engine: self.engine,
            version: self.version,
            name: self.name,
            memory_bytes: self.memory,
            disk_bytes: self.disk,
        }
    }
}

/// Runs `ai2in db …`.
pub async fn run(cmd: DatabaseCommand) -> anyhow::Result<()> {
    match cmd {
        DatabaseCommand::Create(args) => {
            let json = args.conn.json;
            let databases = args.conn.client()?.databases();
            let spinner = output::spinner(&format!("creating a {} database", args.engine));
            let created = databases.create(args.request()).await;
            spinner.finish_and_clear();
            print_url(&created?, json)
        }
        DatabaseCommand::Ls { conn } => {
            print_list(conn.client()?.databases().list().await?, conn.json)
        }
        DatabaseCommand::Info(Target { id, conn }) => {
            print_info(&conn.client()?.databases().get(&id).await?, conn.json)
        }
        DatabaseCommand::Engines { conn } => {
            let engines = conn.client()?.databases().engines().await?;
            if conn.json {
                return output::print_json(&ai2in_client::api::EngineList { engines });
            }
            let mut table = Table::new(&["ENGINE", "VERSIONS", "DEFAULT", "FROM"]);
            for e in engines {
                let from = e.image.unwrap_or_else(|| "host packages".into());
                table.row([e.engine, e.versions.join(","), e.default, from]);
            }
            table.print();
            Ok(())
        }
        DatabaseCommand::ResetPassword(Target { id, conn }) => {
            let databases = conn.client()?.databases();
            print_url(&databases.reset_password(&id).await?, conn.json)
        }
        DatabaseCommand::Rm { ids, conn } => {
            let databases = conn.client()?.databases();
            output::remove_each(&ids, conn.json, |id| {
                let databases = databases.clone();
                async move { databases.delete(&id).await }
            })
            .await
        }
    }
}

fn status_name(status: DatabaseStatus) -> (String, Option<Colour>) {
    let (name, colour) = match status {
        DatabaseStatus::Creating => ("creating", Colour::Dim),
        DatabaseStatus::Available => ("available", Colour::Green),
        DatabaseStatus::Restarting => ("restarting", Colour::Yellow),
        DatabaseStatus::Failed => ("failed", Colour::Red),
    };
    (name.to_string(), Some(colour))
}

/// Where a database is reached: `HOST:PORT` (an IPv6 host in brackets).
fn address(d: &Database) -> String {
    if d.host.contains(':') {
        format!("[{}]:{}", d.host, d.port)
    } else {
        format!("{}:{}", d.host, d.port)
    }
}

/// What a create or a password reset printed: the url (the database with --json).
fn print_url(d: &Database, json: bool) -> anyhow::Result<()> {
    if json {
        return output::print_json(d);
    }
    println!("{}", d.url);
    Ok(())
}

/// One database for people, a field a line.
fn print_info(d: &Database, json: bool) -> anyhow::Result<()> {
    if json {
        return output::print_json(d);
    }
    let colour = output::colours_on(&std::io::stdout());
    let status = output::painted(status_name(d.status), colour);
    println!("id:        {}", d.id);
    println!("engine:    {}", d.engine);
    println!("version:   {}", d.version);
    println!("name:      {}", d.name);
    println!("status:    {status}");
    println!("url:       {}", d.url);
    println!("address:   {}", address(d));
    println!("username:  {}", d.username);
    println!("password:  {}", d.password);
    println!("created:   {}", d.created_at);
    println!(
        "resources: {} memory, {} disk",
        output::bytes(d.resources.memory_bytes),
        output::bytes(d.resources.disk_bytes)
    );
    Ok(())
}

fn print_list(databases: Vec<Database>, json: bool) -> anyhow::Result<()> {
    if json {
        return output::print_json(&ai2in_client::api::DatabaseList { databases });
    }
    let mut table = Table::new(&["ID", "ENGINE", "VERSION", "NAME", "STATUS", "ADDRESS"]);
    for d in &databases {
        table.styled_row(vec![
            (d.id.clone(), None),
            (d.engine.clone(), None),
            (d.version.clone(), None),
            (d.name.clone(), None),
            status_name(d.status),
            (address(d), None),
        ]);
    }
    table.print();
    Ok(())
}

//! `ai2in volume …`: create, list, inspect and remove the volumes sandboxes mount.

use ai2in_client::Volume;

use crate::args;
use crate::connect::Connection;
use crate::output::{self, Table};

#[derive(clap::Subcommand)]
pub enum VolumeCommand {
    /// Create an empty volume: a filesystem of its size that outlives sandboxes.
    #[command(after_help = "Examples:\n  \
        ai2in volume create --size 1GiB --name work\n  \
        vol=$(ai2in volume create --size 10GiB --json | jq -r .id)\n  \
        ai2in sandbox create --volume work:/data")]
    Create {
        /// Its size, e.g. 512MiB, 10GiB
        #[arg(long, value_parser = args::size)]
        size: u64,
        /// Its name (a-z, 0-9, -, _, .) [default: its id]
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        conn: Connection,
    },
    /// List your volumes.
    #[command(
        visible_alias = "list",
        after_help = "Examples:\n  \
        ai2in volume ls\n  \
        ai2in volume ls --json | jq -r '.volumes[].name'"
    )]
    Ls {
        #[command(flatten)]
        conn: Connection,
    },
    /// Show a volume: size, use, and the sandboxes that mount it.
    #[command(after_help = "Example:\n  ai2in volume info work --json | jq .used_bytes")]
    Info {
        /// The volume's id (vol_…) or name
        #[arg(value_name = "ID|NAME")]
        id: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Remove volumes and everything on them (refused while a sandbox mounts one).
    #[command(
        visible_alias = "delete",
        after_help = "Example:\n  ai2in volume rm work vol_…"
    )]
    Rm {
        /// The volumes' ids (vol_…) or names
        #[arg(required = true, value_name = "ID|NAME")]
        ids: Vec<String>,
        #[command(flatten)]
        conn: Connection,
    },
}

/// Runs `ai2in volume …`.
pub async fn run(cmd: VolumeCommand) -> anyhow::Result<()> {
    match cmd {
        VolumeCommand::Create { size, name, conn } => {
            let volumes = conn.client()?.volumes();
            let spinner = output::spinner("creating a volume");
            let created = volumes.create(size, name.as_deref()).await;
            spinner.finish_and_clear();
            print_info(&created?, conn.json)
        }
        VolumeCommand::Ls { conn } => {
            let volumes = conn.client()?.volumes().list().await?;
            if conn.json {
                return output::print_json(&ai2in_client::api::VolumeList { volumes });
            }
            let mut table = Table::new(&["ID", "NAME", "SIZE", "USED", "ATTACHED TO", "CREATED"]);
            for v in &volumes {
                table.row([
                    v.id.clone(),
                    v.name.clone(),
                    output::bytes(v.size_bytes),
                    output::bytes(v.used_bytes),
                    attached(v),
                    v.created_at.clone(),
                ]);
            }
            table.print();
            Ok(())
        }
        VolumeCommand::Info { id, conn } => {
            print_info(&conn.client()?.volumes().get(&id).await?, conn.json)
        }
        VolumeCommand::Rm { ids, conn } => {
            let volumes = conn.client()?.volumes();
            output::remove_each(&ids, conn.json, |id| {
                let volumes = volumes.clone();
                async move { volumes.delete(&id).await }
            })
            .await
        }
    }
}

fn attached(v: &Volume) -> String {
    if v.attached_to.is_empty() {
        "-".into()
    } else {
        v.attached_to.join(",")
    }
}

/// One volume for people, a field a line.
fn print_info(v: &Volume, json: bool) -> anyhow::Result<()> {
    if json {
        return output::print_json(v);
    }
    println!("id:        {}", v.id);
    println!("name:      {}", v.name);
    println!("size:      {}", output::bytes(v.size_bytes));
    println!("used:      {}", output::bytes(v.used_bytes));
    println!("attached:  {}", attached(v));
    println!("created:   {}", v.created_at);
    Ok(())
}

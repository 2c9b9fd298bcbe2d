//! `ai2in keys create|list|revoke`: API keys of a node (admin).

use ai2in_client::CreateKeyRequest;

use crate::connect::Connection;
use crate::output::{self, Table};

#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key; its secret is printed once.
    #[command(after_help = "Examples:\n  \
        ai2in keys create ci --scope sandboxes:write --tenant team-a\n  \
        key=$(ai2in keys create dashboard --scope sandboxes:read --json | jq -r .key)")]
    Create {
        /// A label for people
        name: String,
        /// Scopes (repeat): sandboxes:read, sandboxes:write, databases:read,
        /// databases:write, hosting:read, hosting:write, admin
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Tenant the key acts for (default: yours)
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        conn: Connection,
    },
    /// List the keys of your tenant.
    #[command(
        visible_alias = "ls",
        after_help = "Example:\n  ai2in keys list --json | jq -r '.keys[].name'"
    )]
    List {
        #[command(flatten)]
        conn: Connection,
    },
    /// Revoke a key at once.
    #[command(after_help = "Example:\n  ai2in keys revoke key_…")]
    Revoke {
        /// The key's id, key_…
        id: String,
        #[command(flatten)]
        conn: Connection,
    },
}

pub async fn run(cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Create {
            name,
            scopes,
            tenant,
            conn,
        } => {
            let request = CreateKeyRequest {
                name,
                scopes,
                tenant,
            };
            let created = conn.client()?.keys().create(request).await?;
            if conn.json {
                return output::print_json(&created);
            }
            println!(
                "id:      {}\ntenant:  {}\nscopes:  {}\nkey:     {}",
                created.info.id,
                created.info.tenant,
                created.info.scopes.join(" "),
                created.key
            );
            eprintln!("The key is shown only now: store it safely.");
        }
        KeysCommand::List { conn } => {
            let keys = conn.client()?.keys().list().await?;
            if conn.json {
                return output::print_json(&ai2in_client::api::KeyList { keys });
            }
            let mut table = Table::new(&["ID", "NAME", "TENANT", "CREATED", "SCOPES"]);
            for k in keys {
                table.row([k.id, k.name, k.tenant, k.created_at, k.scopes.join(" ")]);
            }
            table.print();
        }
        KeysCommand::Revoke { id, conn } => {
            conn.client()?.keys().revoke(&id).await?;
            if !conn.json {
                println!("revoked {id}");
            }
        }
    }
    Ok(())
}

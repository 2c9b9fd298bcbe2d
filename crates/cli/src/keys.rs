//! `ai2in keys create|list|revoke`: API keys of a node, through its API.

use ai2in_api::{CreateKeyRequest, CreatedKey, KeyList};

use crate::client::{Connection, send};

#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key; its secret is printed once.
    ///
    /// Example: `ai2in keys create ci --scope sandboxes:write --tenant team-a`
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
    List {
        #[command(flatten)]
        conn: Connection,
    },
    /// Revoke a key at once.
    Revoke {
        /// The key's id, key_…
        id: String,
        #[command(flatten)]
        conn: Connection,
    },
}

pub fn run(cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Create {
            name,
            scopes,
            tenant,
            conn,
        } => {
            let body = CreateKeyRequest {
                name,
                scopes,
                tenant,
            };
            let created: CreatedKey = conn.post("/v1/keys", &body)?;
            if conn.json {
                println!("{}", serde_json::to_string_pretty(&created)?);
            } else {
                println!(
                    "id:      {}\ntenant:  {}\nscopes:  {}\nkey:     {}",
                    created.info.id,
                    created.info.tenant,
                    created.info.scopes.join(" "),
                    created.key
                );
                eprintln!("The key is shown only now: store it safely.");
            }
        }
        KeysCommand::List { conn } => {
            let list: KeyList = send(conn.request(reqwest::Method::GET, "/v1/keys")?)?.json()?;
            if conn.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!(
                    "{:<26} {:<20} {:<16} {:<26} SCOPES",
                    "ID", "NAME", "TENANT", "CREATED"
                );
                for k in list.keys {
                    println!(
                        "{:<26} {:<20} {:<16} {:<26} {}",
                        k.id,
                        k.name,
                        k.tenant,
                        k.created_at,
                        k.scopes.join(" ")
                    );
                }
            }
        }
        KeysCommand::Revoke { id, conn } => {
            send(conn.request(reqwest::Method::DELETE, &format!("/v1/keys/{id}"))?)?;
            if !conn.json {
                println!("revoked {id}");
            }
        }
    }
    Ok(())
}

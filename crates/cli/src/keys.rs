//! `ai2in keys create|list|revoke`: API keys of a node, through its API.

use std::path::PathBuf;

use ai2in_api::{CreateKeyRequest, CreatedKey, ErrorBody, KeyList};
use anyhow::{Context, bail};
use reqwest::blocking::{Client, RequestBuilder};

use crate::config::{DEFAULT_LISTEN, DEFAULT_STATE_DIR};

/// Where and as whom to talk to a node.
#[derive(clap::Args)]
pub struct Connection {
    /// Base URL of the node
    #[arg(long, env = "AI2IN_BASE_URL", default_value_t = format!("http://{DEFAULT_LISTEN}"))]
    url: String,
    /// API key; by default the admin key of a local node's state directory
    #[arg(long, env = "AI2IN_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// State directory of a local node, to find its admin key
    #[arg(long, env = "AI2IN_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Print JSON instead of a table
    #[arg(long)]
    json: bool,
}

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

impl Connection {
    fn key(&self) -> anyhow::Result<String> {
        if let Some(key) = &self.api_key {
            return Ok(key.clone());
        }
        let path = self.state_dir.join("admin.key");
        std::fs::read_to_string(&path)
            .map(|k| k.trim().to_string())
            .with_context(|| {
                format!(
                    "no API key: set AI2IN_API_KEY or pass --api-key (could not read {})",
                    path.display()
                )
            })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> anyhow::Result<RequestBuilder> {
        Ok(Client::new()
            .request(method, format!("{}{path}", self.url.trim_end_matches('/')))
            .bearer_auth(self.key()?))
    }
}

/// Sends `req`; the body on success, else the node's error sentence.
fn send(req: RequestBuilder) -> anyhow::Result<reqwest::blocking::Response> {
    let response = req.send().context("could not reach the node")?;
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    let message = response
        .json::<ErrorBody>()
        .map(|b| b.error)
        .unwrap_or_else(|_| status.to_string());
    bail!("{message} ({status})")
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
            let created: CreatedKey =
                send(conn.request(reqwest::Method::POST, "/v1/keys")?.json(&body))?.json()?;
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

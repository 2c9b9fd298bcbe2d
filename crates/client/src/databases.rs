//! [`Databases`]: managed database servers of the caller's tenant (PostgreSQL, MySQL, Redis) that
//! the node runs, keeps running and serves at a connection url.

use ai2in_api::{CreateDatabaseRequest, Database, DatabaseList, EngineInfo, EngineList};

use crate::error::Result;
use crate::http::{Empty, Http};

/// The databases of the caller's tenant; from [`crate::Client::databases`]. A database is
/// named by its id (`db_…`): names need not be unique. [`Databases::create`] answers once
/// the server accepts connections, `available`, with its `url` (password included), which
/// works from the host, other machines and the tenant's sandboxes alike.
///
/// ```no_run
/// # async fn demo(client: ai2in_client::Client) -> ai2in_client::Result<()> {
/// use ai2in_client::CreateDatabaseRequest;
/// let databases = client.databases();
/// let db = databases
///     .create(CreateDatabaseRequest {
///         engine: "postgres".into(),
///         ..Default::default()
///     })
///     .await?;
/// println!("{} at {}:{}", db.url, db.host, db.port);
/// let db = databases.reset_password(&db.id).await?;
/// println!("the new url: {}", db.url);
/// databases.delete(&db.id).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Databases {
    http: Http,
}

impl Databases {
    pub(crate) fn new(http: Http) -> Self {
        Databases { http }
    }

    /// Creates a database (`engine` and, optionally, `version`, `name`, `memory_bytes`,
    /// `disk_bytes`) and answers it, `available`, once its server accepts connections. An
    /// engine or version the node does not serve, a bad name or size is
    /// [`crate::Error::BadRequest`] (its message lists what the node serves), past the
    /// tenant's quota of databases [`crate::Error::QuotaExceeded`], a full node or no free
    /// port [`crate::Error::AtCapacity`].
    pub async fn create(&self, request: CreateDatabaseRequest) -> Result<Database> {
        self.http.post("/v1/databases", &request).await
    }

    /// The tenant's databases, oldest first.
    pub async fn list(&self) -> Result<Vec<Database>> {
        let list: DatabaseList = self.http.get("/v1/databases").await?;
        Ok(list.databases)
    }

    /// A database by id (its `url` holds the password); [`crate::Error::NotFound`] when the
    /// tenant has none such.
    pub async fn get(&self, id: &str) -> Result<Database> {
        self.http.get(&database_path(id, "")).await
    }

    /// The engines this node serves, each with its versions and the default one.
    pub async fn engines(&self) -> Result<Vec<EngineInfo>> {
        let list: EngineList = self.http.get("/v1/databases/engines").await?;
        Ok(list.engines)
    }

    /// Gives a database's user a new password and answers the database with it in `url`;
    /// the old password fails at once.
    pub async fn reset_password(&self, id: &str) -> Result<Database> {
        self.http
            .post(&database_path(id, "/reset_password"), &Empty {})
            .await
    }

    /// Deletes a database: its server stops and its data and port are gone.
    pub async fn delete(&self, id: &str) -> Result<()> {
        self.http.delete(&database_path(id, "")).await
    }
}

/// The route of one database, then `route` (empty, or starting with `/`) below it.
fn database_path(id: &str, route: &str) -> String {
    crate::http::route("/v1/databases/", id) + route
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_name_a_database_by_id() {
        assert_eq!(database_path("db_abc", ""), "/v1/databases/db_abc");
        assert_eq!(
            database_path("db_abc", "/reset_password"),
            "/v1/databases/db_abc/reset_password"
        );
        assert_eq!(database_path("a/b", ""), "/v1/databases/a%2Fb");
    }
}

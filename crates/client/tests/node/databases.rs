//! Databases through the SDK: the engines, a PostgreSQL database created, reached with a real
//! client (`psql`) at its url, listed and got, its password reset, deleted, and the error
//! variants on the way.

use std::process::Command;
use std::sync::Arc;

use ai2in_client::{CreateDatabaseRequest, Database, DatabaseStatus, Error};

use crate::harness::{Ctx, TestResult};

/// A PostgreSQL database named `name` inside its server.
fn postgres(name: &str) -> CreateDatabaseRequest {
    CreateDatabaseRequest {
        engine: "postgres".into(),
        name: Some(name.into()),
        ..Default::default()
    }
}

/// `psql URL -c 'select 1'` on this machine: its output, or why it failed.
async fn select_one(url: &str) -> Result<String, String> {
    let url = url.to_string();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("psql")
            .args(["-X", "-t", "-A", &url, "-c", "select 1"])
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("run psql: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// `postgres://USER:PASSWORD@HOST:PORT/NAME`, of the database's own fields.
fn expected_url(db: &Database) -> String {
    let host = if db.host.contains(':') {
        format!("[{}]", db.host)
    } else {
        db.host.clone()
    };
    format!(
        "postgres://{}:{}@{host}:{}/{}",
        db.username, db.password, db.port, db.name
    )
}

pub async fn create_connect_reset_password_and_delete(ctx: Arc<Ctx>) -> TestResult {
    let databases = ctx.client.databases();
    let engines = databases.engines().await?;
    let engine = engines
        .iter()
        .find(|e| e.engine == "postgres")
        .ok_or_else(|| format!("postgres is not among the engines: {engines:?}"))?;
    assert!(engine.versions.contains(&engine.default), "{engine:?}");

    let db = databases.create(postgres("sdk_app")).await?;
    assert!(db.id.starts_with("db_"), "{}", db.id);
    assert_eq!(db.status, DatabaseStatus::Available);
    assert_eq!(
        (db.engine.as_str(), db.version.as_str(), db.name.as_str()),
        ("postgres", engine.default.as_str(), "sdk_app")
    );
    assert_eq!(db.url, expected_url(&db));
    let user = db.username.strip_prefix("u_").ok_or("a u_ user")?;
    assert!(
        user.len() == 12
            && user
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
        "{}",
        db.username
    );
    assert!(
        db.password.len() == 32 && db.password.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{}",
        db.password
    );
    assert!(db.resources.memory_bytes > 0 && db.resources.disk_bytes > 0);
    assert_eq!(select_one(&db.url).await?, "1");

    assert!(databases.list().await?.iter().any(|d| d.id == db.id));
    let got = databases.get(&db.id).await?;
    assert_eq!((&got.url, got.port), (&db.url, db.port));

    // A new password: the url changes with it, and the old one is refused at once.
    let reset = databases.reset_password(&db.id).await?;
    assert_ne!(reset.password, db.password);
    assert_eq!(
        (&reset.username, &reset.host, reset.port),
        (&db.username, &db.host, db.port)
    );
    assert_eq!(reset.url, expected_url(&reset));
    assert_eq!(select_one(&reset.url).await?, "1");
    let old = select_one(&db.url).await;
    assert!(old.is_err(), "the old password still works: {old:?}");
    assert_eq!(databases.get(&db.id).await?.url, reset.url);

    databases.delete(&db.id).await?;
    let gone = databases.get(&db.id).await;
    assert!(matches!(&gone, Err(Error::NotFound { .. })), "{gone:?}");
    assert!(!databases.list().await?.iter().any(|d| d.id == db.id));
    let again = databases.delete(&db.id).await;
    assert!(matches!(&again, Err(Error::NotFound { .. })), "{again:?}");
    Ok(())
}

pub async fn database_errors_have_their_variants(ctx: Arc<Ctx>) -> TestResult {
    let databases = ctx.client.databases();
    let unknown = databases
        .create(CreateDatabaseRequest {
            engine: "oracle".into(),
            ..Default::default()
        })
        .await;
    assert!(
        matches!(&unknown, Err(Error::BadRequest { message })
            if message.contains("oracle") && message.contains("postgres")),
        "{unknown:?}"
    );
    let version = databases
        .create(CreateDatabaseRequest {
            version: Some("1".into()),
            ..postgres("sdk_version")
        })
        .await;
    assert!(
        matches!(&version, Err(Error::BadRequest { .. })),
        "{version:?}"
    );
    let name = databases.create(postgres("Bad Name")).await;
    assert!(
        matches!(&name, Err(Error::BadRequest { message }) if message.contains("name")),
        "{name:?}"
    );
    let missing = "db_doesnotexist00000000";
    let got = databases.get(missing).await;
    assert!(matches!(&got, Err(Error::NotFound { .. })), "{got:?}");
    let reset = databases.reset_password(missing).await;
    assert!(matches!(&reset, Err(Error::NotFound { .. })), "{reset:?}");
    assert!(
        !databases
            .list()
            .await?
            .iter()
            .any(|d| d.name == "sdk_version")
    );
    Ok(())
}

//! Databases: the engines the node serves, a PostgreSQL database used at its url from a
//! sandbox, a new password, and its deletion.
use ai2in_client::{Client, CreateDatabaseRequest, CreateSandbox, Error};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::from_env()?;
    let databases = client.databases();
    for engine in databases.engines().await? {
        let versions = engine.versions.join(", ");
        println!("{}: {versions} (default {})", engine.engine, engine.default);
    }

    // It answers once the server accepts connections.
    let db = databases
        .create(CreateDatabaseRequest {
            engine: "postgres".into(),
            name: Some("shop".into()),
            ..Default::default()
        })
        .await?;
    println!("{} {:?} at {}:{}", db.id, db.status, db.host, db.port);

    // The url (password included) works from the tenant's sandboxes as from anywhere else.
    let psql = |url: &str, sql: &str| format!("psql -X -q -t -A '{url}' -c \"{sql}\"");
    let sandbox = client.create_sandbox(CreateSandbox::default()).await?;
    let sql = "create table items (name text); insert into items values ('pen')";
    let created = sandbox.shell(&psql(&db.url, sql)).await?;
    assert_eq!(created.exit_code, Some(0), "{}", created.stderr);

    // A new password: the old url is refused from now on, the new one sees the same data.
    let old_url = db.url.clone();
    let db = databases.reset_password(&db.id).await?;
    let refused = sandbox.shell(&psql(&old_url, "select 1")).await?;
    assert_ne!(refused.exit_code, Some(0));
    let items = sandbox
        .shell(&psql(&db.url, "select name from items"))
        .await?;
    assert_eq!(items.stdout.trim(), "pen", "{}", items.stderr);
    sandbox.kill().await?;

    // An engine the node does not serve: the message lists those it does.
    let oracle = CreateDatabaseRequest {
        engine: "oracle".into(),
        ..Default::default()
    };
    match databases.create(oracle).await {
        Err(Error::BadRequest { message }) => println!("as expected: {message}"),
        other => panic!("expected BadRequest, got {other:?}"),
    }

    databases.delete(&db.id).await?;
    Ok(())
}

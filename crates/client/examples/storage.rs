//! Storage: a volume that outlives sandboxes, mounted read-write then read-only, and a
//! snapshot that forks a sandbox's files.
use ai2in_client::{Client, CreateSandbox, Error, VolumeAttachment};

#[tokio::main]
async fn main() -> ai2in_client::Result<()> {
    let client = Client::from_env()?;
    let volume = client
        .volumes()
        .create(64 << 20, Some("example-work"))
        .await?;
    let mount = |read_only| VolumeAttachment {
        volume_id: volume.id.clone(),
        path: "/data".into(),
        read_only,
    };

    // A sandbox writes to the volume, then goes.
    let writer = client
        .create_sandbox(CreateSandbox {
            volumes: Some(vec![mount(false)]),
            disk_bytes: Some(1 << 30),
            ..Default::default()
        })
        .await?;
    writer.shell("echo kept > /data/note").await?;
    match client.volumes().delete(&volume.id).await {
        Err(Error::InUse { message }) => println!("as expected: {message}"),
        other => panic!("expected InUse, got {other:?}"),
    }
    writer.kill().await?;

    // The next one reads it, read-only.
    let reader = client
        .create_sandbox(CreateSandbox {
            volumes: Some(vec![mount(true)]),
            ..Default::default()
        })
        .await?;
    let note = reader.shell("cat /data/note").await?;
    assert_eq!(note.stdout.trim(), "kept");
    println!(
        "used: {} bytes",
        client.volumes().get("example-work").await?.used_bytes
    );

    // A snapshot of the reader's files, and a fork of it.
    reader.shell("echo forked > /home/user/state").await?;
    let image = reader.snapshot(Some("example-fork:1")).await?;
    let fork = client
        .create_sandbox(CreateSandbox {
            image: Some(image.id.clone()),
            ..Default::default()
        })
        .await?;
    assert_eq!(
        fork.shell("cat /home/user/state").await?.stdout.trim(),
        "forked"
    );

    for sandbox in [reader, fork] {
        sandbox.kill().await?;
    }
    client.images().delete(&image.id).await?;
    client.volumes().delete("example-work").await?;
    Ok(())
}

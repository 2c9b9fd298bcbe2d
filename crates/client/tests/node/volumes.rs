//! Volumes and snapshots through the SDK: create, list, get and delete volumes, mount them
//! in sandboxes, the error variants, and a snapshot forked into a new sandbox.

use std::sync::Arc;

use ai2in_client::{CreateSandbox, Error, ImageSource, VolumeAttachment};

use crate::harness::{Ctx, TestResult};

fn mount(volume_id: &str, path: &str, read_only: bool) -> VolumeAttachment {
    VolumeAttachment {
        volume_id: volume_id.into(),
        path: path.into(),
        read_only,
    }
}

pub async fn create_list_get_mount_and_delete(ctx: Arc<Ctx>) -> TestResult {
    let volumes = ctx.client.volumes();
    let volume = volumes.create(32 << 20, Some("sdk-volume")).await?;
    assert!(volume.id.starts_with("vol_"), "{}", volume.id);
    assert_eq!(
        (volume.name.as_str(), volume.size_bytes),
        ("sdk-volume", 32 << 20)
    );
    assert!(volume.attached_to.is_empty());
    assert!(volumes.list().await?.iter().any(|v| v.id == volume.id));

    let sandbox = ctx
        .client
        .create_sandbox(CreateSandbox {
            volumes: Some(vec![mount("sdk-volume", "/data", false)]),
            ..Default::default()
        })
        .await?;
    let info = sandbox.info().await?;
    assert_eq!(info.volumes, vec![mount(&volume.id, "/data", false)]);
    let written = sandbox
        .shell("head -c 4194304 /dev/urandom > /data/blob && stat -c %u:%g /data")
        .await?;
    assert_eq!(written.stdout.trim(), "0:0", "{written:?}");
    let got = volumes.get(&volume.id).await?;
    assert_eq!(got.attached_to, vec![sandbox.id().to_string()]);
    assert!(got.used_bytes >= 4 << 20, "{got:?}");
    sandbox.kill().await?;
    assert!(volumes.get("sdk-volume").await?.attached_to.is_empty());
    volumes.delete("sdk-volume").await?;
    assert!(matches!(
        volumes.get(&volume.id).await,
        Err(Error::NotFound { .. })
    ));
    Ok(())
}

pub async fn volume_errors_have_their_variants(ctx: Arc<Ctx>) -> TestResult {
    let volumes = ctx.client.volumes();
    volumes.create(16 << 20, Some("sdk-taken")).await?;
    assert!(matches!(
        volumes.create(16 << 20, Some("sdk-taken")).await,
        Err(Error::AlreadyExists { .. })
    ));
    assert!(matches!(
        volumes.create(1, None).await,
        Err(Error::BadRequest { message }) if message.contains("size_bytes")
    ));
    assert!(matches!(
        volumes.create(16 << 20, Some("Bad Name")).await,
        Err(Error::BadRequest { message }) if message.contains("name")
    ));
    let holder = ctx
        .client
        .create_sandbox(CreateSandbox {
            volumes: Some(vec![mount("sdk-taken", "/data", false)]),
            ..Default::default()
        })
        .await?;
    let second = ctx
        .client
        .create_sandbox(CreateSandbox {
            volumes: Some(vec![mount("sdk-taken", "/data", false)]),
            ..Default::default()
        })
        .await;
    assert!(
        matches!(&second, Err(Error::InUse { message }) if message.contains(holder.id())),
        "{second:?}"
    );
    assert!(matches!(
        volumes.delete("sdk-taken").await,
        Err(Error::InUse { .. })
    ));
    let bad_path = ctx
        .client
        .create_sandbox(CreateSandbox {
            volumes: Some(vec![mount("sdk-taken", "/proc/x", true)]),
            ..Default::default()
        })
        .await;
    assert!(matches!(bad_path, Err(Error::BadRequest { message }) if message.contains("path")));
    holder.kill().await?;
    volumes.delete("sdk-taken").await?;
    assert!(matches!(
        volumes.delete("sdk-taken").await,
        Err(Error::NotFound { .. })
    ));
    Ok(())
}

pub async fn snapshot_forks_a_sandbox(ctx: Arc<Ctx>) -> TestResult {
    let origin = ctx.client.create_sandbox(CreateSandbox::default()).await?;
    origin
        .shell("echo one > /home/user/f && mkdir -p /opt/app && echo two > /opt/app/g")
        .await?;
    let image = origin.snapshot(Some("sdk-snapshot:1")).await?;
    assert_eq!(image.source, ImageSource::Snapshot);
    assert!(image.r#ref.ends_with("sdk-snapshot:1"), "{}", image.r#ref);
    // The origin goes on.
    assert_eq!(origin.shell("cat /home/user/f").await?.stdout, "one\n");
    let fork = ctx
        .client
        .create_sandbox(CreateSandbox {
            image: Some("sdk-snapshot:1".into()),
            ..Default::default()
        })
        .await?;
    let read = fork.shell("cat /home/user/f /opt/app/g").await?;
    assert_eq!(read.stdout, "one\ntwo\n");
    assert!(matches!(
        ctx.client.images().delete(&image.id).await,
        Err(Error::InUse { .. })
    ));
    fork.kill().await?;
    origin.kill().await?;
    ctx.client.images().delete(&image.id).await?;
    Ok(())
}

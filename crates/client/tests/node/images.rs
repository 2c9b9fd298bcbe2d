//! Images through the SDK, against a real registry (`docker-registry`) holding an image built
//! by independent tools: pull at once and as a stream, list, get by id and by reference,
//! delete, a sandbox started from an image, imports of a `docker save` archive, and the
//! error variants.

use std::sync::Arc;

use ai2in_client::{CreateSandbox, Error, ImageSource, PullEvent};
use futures_util::StreamExt;

use crate::harness::{Ctx, TestResult};
use crate::registry::{self, Registry};

/// The registry, started on first use (a blocking start: a few seconds, once).
fn started_registry(ctx: &Ctx) -> Result<&Registry, String> {
    tokio::task::block_in_place(|| ctx.registry())
}

pub async fn pull_stream_reports_progress_then_done(ctx: Arc<Ctx>) -> TestResult {
    let registry = started_registry(&ctx)?;
    // A tag no other test pulls: the tenant does not have it yet, so the layers are reported.
    let reference = registry.reference("busybox:stream");
    let events: Vec<PullEvent> = ctx
        .client
        .images()
        .pull_stream(&reference)
        .await?
        .map(|e| e.expect("an event"))
        .collect()
        .await;
    let (last, progress) = events.split_last().ok_or("no events")?;
    assert!(!progress.is_empty(), "no progress event: {events:?}");
    for event in progress {
        let PullEvent::Progress {
            layer,
            done_bytes,
            total_bytes,
        } = event
        else {
            panic!("only progress before done: {events:?}");
        };
        assert!(layer.starts_with("sha256:"), "{layer}");
        assert!(done_bytes <= total_bytes && *total_bytes > 0, "{event:?}");
    }
    let PullEvent::Done { image } = last else {
        panic!("done last: {events:?}");
    };
    assert_eq!(
        (image.r#ref.as_str(), image.digest.as_str()),
        (reference.as_str(), registry.busybox_digest.as_str())
    );
    // Pulled again, the registry is asked but no layer is fetched: each is reported done
    // at once, and the image is the same.
    let again: Vec<_> = ctx
        .client
        .images()
        .pull_stream(&reference)
        .await?
        .collect()
        .await;
    let (last, progress) = again.split_last().ok_or("no events")?;
    assert!(
        progress.iter().all(|e| matches!(e,
            Ok(PullEvent::Progress { done_bytes, total_bytes, .. }) if done_bytes == total_bytes)),
        "{again:?}"
    );
    assert!(
        matches!(last, Ok(PullEvent::Done { image: i }) if i.id == image.id),
        "{again:?}"
    );
    ctx.client.images().delete(&image.id).await?;
    Ok(())
}

pub async fn pull_list_get_and_delete(ctx: Arc<Ctx>) -> TestResult {
    let registry = started_registry(&ctx)?;
    let images = ctx.client.images();
    let reference = registry.reference("busybox:1");
    let image = images.pull(&reference).await?;
    assert!(image.id.starts_with("img_"), "{}", image.id);
    assert_eq!(image.r#ref, reference);
    assert_eq!(image.digest, registry.busybox_digest);
    assert_eq!((image.layers, image.source), (1, ImageSource::Pull));
    assert!(image.size_bytes > 0);
    let config = &image.config;
    assert_eq!(
        config.env.get("AI2IN_TEST_IMAGE").map(String::as_str),
        Some("busybox")
    );
    assert_eq!(
        (
            config.workdir.as_deref(),
            &config.cmd[..],
            &config.exposed_ports[..]
        ),
        (Some("/work"), &["/bin/sh".to_string()][..], &[8080][..])
    );
    assert_eq!(
        images.pull(&reference).await?.id,
        image.id,
        "a second pull finds it"
    );

    let listed = images.list().await?;
    assert!(listed.iter().any(|i| i.id == image.id), "{listed:?}");
    assert_eq!(images.get(&image.id).await?.digest, image.digest);
    // A reference holds '/': it travels percent-encoded as one path segment.
    assert_eq!(images.get(&reference).await?.id, image.id);

    images.delete(&reference).await?;
    let gone = images.get(&image.id).await;
    assert!(matches!(gone, Err(Error::NotFound { .. })), "{gone:?}");
    assert!(!images.list().await?.iter().any(|i| i.id == image.id));
    let again = images.delete(&image.id).await;
    assert!(matches!(again, Err(Error::NotFound { .. })), "{again:?}");
    Ok(())
}

pub async fn sandbox_starts_from_a_pulled_image(ctx: Arc<Ctx>) -> TestResult {
    let registry = started_registry(&ctx)?;
    let images = ctx.client.images();
    let image = images.pull(&registry.reference("busybox:1")).await?;
    let sandbox = ctx
        .client
        .create_sandbox(CreateSandbox {
            image: Some(image.r#ref.clone()),
            ..Default::default()
        })
        .await?;
    let info = sandbox.info().await?;
    assert_eq!(info.image, image.r#ref);
    assert_eq!(info.image_digest.as_deref(), Some(image.digest.as_str()));
    let out = sandbox.shell("cat /etc/ai2in-test-image").await?;
    assert_eq!((out.stdout.as_str(), out.exit_code), ("busybox\n", Some(0)));

    let refused = images.delete(&image.id).await;
    match &refused {
        Err(e @ Error::InUse { message }) => {
            assert_eq!(e.status(), Some(409));
            assert!(message.contains(sandbox.id()), "{message}");
        }
        other => panic!("expected InUse, got {other:?}"),
    }
    sandbox.kill().await?;
    images.delete(&image.id).await?;
    Ok(())
}

pub async fn import_a_docker_save_archive(ctx: Arc<Ctx>) -> TestResult {
    let archive = started_registry(&ctx)?.scratch("import.tar");
    tokio::task::block_in_place(|| registry::docker_save_archive(&archive))?;
    let archive = archive.as_path();
    let images = ctx.client.images();

    // From a file, named by the caller.
    let named = images.import_file(archive, Some("sdk-import:1")).await?;
    assert_eq!(named.r#ref, "docker.io/library/sdk-import:1");
    assert_eq!((named.source, named.layers), (ImageSource::Import, 1));
    let sandbox = ctx
        .client
        .create_sandbox(CreateSandbox {
            image: Some(named.id.clone()),
            ..Default::default()
        })
        .await?;
    let out = sandbox.shell("cat /etc/ai2in-test-image").await?;
    assert_eq!(out.stdout, "busybox\n");
    sandbox.kill().await?;

    // From a reader, named by the archive itself.
    let file = tokio::fs::File::open(archive).await?;
    let own = images.import_reader(file, None).await?;
    assert_eq!(own.r#ref, "docker.io/library/app:1");
    assert_eq!(own.digest, named.digest, "the same content");

    // From bytes in memory: not an archive.
    let garbage = images
        .import(b"not a tar archive".to_vec(), Some("bad:1"))
        .await;
    assert!(
        matches!(garbage, Err(Error::BadRequest { .. })),
        "{garbage:?}"
    );
    let missing = images
        .import_file(archive.with_extension("missing"), None)
        .await;
    assert!(
        matches!(missing, Err(Error::File { .. }))
            && missing.as_ref().is_err_and(|e| e.status().is_none()),
        "{missing:?}"
    );

    images.delete(&named.id).await?;
    images.delete(&own.id).await?;
    Ok(())
}

pub async fn image_errors_have_their_variants(ctx: Arc<Ctx>) -> TestResult {
    let registry = started_registry(&ctx)?;
    let images = ctx.client.images();
    let bad = images.pull("Not A Reference!").await;
    assert!(matches!(bad, Err(Error::BadRequest { .. })), "{bad:?}");

    let missing_ref = registry.reference("nosuch:1");
    let missing = images.pull(&missing_ref).await.expect_err("no such image");
    assert!(matches!(missing, Error::NotFound { .. }), "{missing:?}");
    assert!(missing.to_string().contains("nosuch"), "{missing}");
    // Streamed, the same failure ends the stream with the same variant.
    let streamed: Vec<_> = images.pull_stream(&missing_ref).await?.collect().await;
    assert!(
        matches!(&streamed[..], [Err(Error::NotFound { .. })]),
        "{streamed:?}"
    );

    // Port 1 on loopback: nothing listens there.
    let unreachable = images
        .pull("127.0.0.1:1/app:1")
        .await
        .expect_err("no registry");
    assert!(
        matches!(unreachable, Error::Upstream { .. }),
        "{unreachable:?}"
    );
    assert_eq!(unreachable.status(), Some(502));

    let unknown = images.get("img_doesnotexist0000").await;
    assert!(
        matches!(unknown, Err(Error::NotFound { .. })),
        "{unknown:?}"
    );
    let create = ctx
        .client
        .create_sandbox(CreateSandbox {
            image: Some(missing_ref),
            ..Default::default()
        })
        .await;
    assert!(matches!(create, Err(Error::NotFound { .. })), "{create:?}");
    Ok(())
}

//! Images: pull one with its progress per layer, start a sandbox from it, see that it cannot
//! be deleted while the sandbox runs it, import an archive, and clean up.
//!
//!     cargo run --example images -- [REFERENCE [ARCHIVE]]
//!
//! REFERENCE defaults to `python:3.12-slim`; ARCHIVE, a `docker save` tar (or a tarred OCI
//! layout), is imported when given.
use ai2in_client::{Client, CreateSandbox, Error, ImageSource, PullEvent};
use futures_util::StreamExt;

#[tokio::main]
async fn main() -> ai2in_client::Result<()> {
    let mut args = std::env::args().skip(1);
    let reference = args.next().unwrap_or_else(|| "python:3.12-slim".into());
    let archive = args.next();
    let client = Client::from_env()?;
    let images = client.images();

    let mut events = images.pull_stream(&reference).await?;
    let mut image = None;
    while let Some(event) = events.next().await {
        match event? {
            PullEvent::Progress {
                layer,
                done_bytes,
                total_bytes,
            } => println!("{layer}: {done_bytes} of {total_bytes} bytes"),
            PullEvent::Done { image: done } => image = Some(*done),
            // A failed pull comes as the stream's Err, with the variant of its status.
            PullEvent::Error { .. } => {}
        }
    }
    let image = image.expect("a pull stream ends with its image");
    println!(
        "{} is {} ({} layers)",
        image.r#ref, image.digest, image.layers
    );
    // Pulling again asks the registry: unchanged, it is the same image.
    assert_eq!(images.pull(&reference).await?.id, image.id);

    let sandbox = client
        .create_sandbox(CreateSandbox {
            image: Some(image.r#ref.clone()),
            ..Default::default()
        })
        .await?;
    assert_eq!(
        sandbox.info().await?.image_digest.as_ref(),
        Some(&image.digest)
    );
    print!("{}", sandbox.shell("ls /").await?.stdout);
    match images.delete(&image.id).await {
        Err(Error::InUse { message }) => println!("as expected: {message}"),
        other => panic!("expected InUse, got {other:?}"),
    }
    sandbox.kill().await?;

    if let Some(archive) = archive {
        let imported = images
            .import_file(&archive, Some("example-import:1"))
            .await?;
        assert_eq!(imported.source, ImageSource::Import);
        println!("imported {} as {}", archive, imported.r#ref);
        images.delete(&imported.id).await?;
    }

    for listed in images.list().await? {
        println!("{} {} {} bytes", listed.id, listed.r#ref, listed.size_bytes);
    }
    images.delete(&image.r#ref).await?;
    assert!(matches!(
        images.get(&image.id).await,
        Err(Error::NotFound { .. })
    ));
    Ok(())
}

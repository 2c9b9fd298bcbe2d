//! Files through the SDK: text and bytes, listings, the error variants, and watches by
//! polling and by stream.

use std::sync::Arc;
use std::time::Duration;

use ai2in_client::{EntryType, Error, WatchEventType};
use futures_util::StreamExt;

use crate::harness::{Ctx, TestResult};

pub async fn text_and_bytes_round_trip_and_list(ctx: Arc<Ctx>) -> TestResult {
    let fs = ctx.shared.fs();
    let written = fs.write("sdk/files/a.txt", "héllo\n").await?;
    assert_eq!(
        (written.path.as_str(), written.size_bytes),
        ("/home/user/sdk/files/a.txt", 7)
    );
    assert_eq!(fs.read("/home/user/sdk/files/a.txt").await?, "héllo\n");
    let bytes: Vec<u8> = (0..=255).cycle().take(100_000).collect();
    fs.write_bytes("sdk/files/b.bin", &bytes).await?;
    assert_eq!(fs.read_bytes("sdk/files/b.bin").await?, bytes);
    let entries = fs.list("sdk").await?;
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (entries[0].name.as_str(), entries[0].entry_type),
        ("files", EntryType::Dir)
    );
    let names: Vec<_> = fs
        .list("sdk/files")
        .await?
        .into_iter()
        .map(|e| (e.name, e.size_bytes))
        .collect();
    assert_eq!(
        names,
        [("a.txt".to_string(), 7), ("b.bin".to_string(), 100_000)]
    );
    Ok(())
}

pub async fn file_errors_have_their_variants(ctx: Arc<Ctx>) -> TestResult {
    let fs = ctx.shared.fs();
    fs.write_bytes("sdk/errors/bin", &[0xff, 0xfe, 0]).await?;
    let not_text = fs.read("sdk/errors/bin").await;
    assert!(
        matches!(not_text, Err(Error::UnsupportedMediaType { .. })),
        "{not_text:?}"
    );
    assert!(matches!(
        fs.read("sdk/errors/missing").await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        fs.read("sdk/errors").await,
        Err(Error::BadRequest { .. })
    ));
    let too_big = vec![0u8; (32 << 20) + 1];
    let refused = fs.write_bytes("sdk/errors/big", &too_big).await;
    assert!(
        matches!(refused, Err(Error::PayloadTooLarge { .. })),
        "{refused:?}"
    );
    Ok(())
}

pub async fn watch_poll_and_event_stream(ctx: Arc<Ctx>) -> TestResult {
    let fs = ctx.shared.fs();
    fs.write("sdk/watched/.keep", "").await?;
    let watch = fs.watch("sdk/watched", true).await?;
    assert!(watch.id().starts_with("wch_"));
    fs.write("sdk/watched/polled.txt", "1").await?;
    let mut polled = Vec::new();
    for _ in 0..50 {
        polled.extend(watch.poll().await?);
        if polled.iter().any(|e| e.path.ends_with("polled.txt")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // An atomic write: a temporary file renamed into place.
    assert!(
        polled.iter().any(|e| e.event_type == WatchEventType::Rename
            && e.path == "/home/user/sdk/watched/polled.txt"),
        "{polled:?}"
    );

    let mut events = watch.events().await?;
    ctx.shared
        .shell("cd /home/user/sdk/watched && echo 2 > streamed.txt && rm streamed.txt")
        .await?;
    let mut seen = Vec::new();
    while !seen.contains(&(
        WatchEventType::Delete,
        "/home/user/sdk/watched/streamed.txt".to_string(),
    )) {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .map_err(|_| format!("no delete event within 10 s; saw {seen:?}"))?
            .ok_or("the stream ended")??;
        seen.push((event.event_type, event.path));
    }
    assert_eq!(
        seen[0],
        (
            WatchEventType::Create,
            "/home/user/sdk/watched/streamed.txt".to_string()
        ),
        "{seen:?}"
    );
    watch.stop().await?;
    assert!(matches!(watch.poll().await, Err(Error::NotFound { .. })));
    Ok(())
}

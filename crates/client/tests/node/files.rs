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
    let past_the_end = fs.read_range("sdk/errors/bin", 3, 10).await;
    assert!(
        matches!(past_the_end, Err(Error::Api { status: 416, .. })),
        "{past_the_end:?}"
    );
    Ok(())
}

pub async fn raw_transfers_of_any_size_stream_both_ways(ctx: Arc<Ctx>) -> TestResult {
    let fs = ctx.shared.fs();
    // Over the 32 MiB of the base64 routes.
    let big: Vec<u8> = (0..40u32 << 20).map(|i| (i % 251) as u8).collect();
    let written = fs.write_bytes("sdk/raw/big.bin", &big).await?;
    assert_eq!(written.size_bytes, big.len() as u64);
    assert!(fs.read_bytes("sdk/raw/big.bin").await? == big);
    assert_eq!(
        fs.read_range("sdk/raw/big.bin", 1000, 5).await?,
        &big[1000..1005]
    );

    let mut download = fs.download("sdk/raw/big.bin").await?;
    assert_eq!(download.size(), Some(big.len() as u64));
    let mut got = Vec::new();
    while let Some(piece) = download.next().await {
        got.extend_from_slice(&piece?);
    }
    assert!(got == big, "the download differs");

    // A reader of unknown length: sent chunked, written whole.
    let (mut tx, rx) = tokio::io::duplex(64 << 10);
    let sender = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        for i in 0..64u8 {
            tx.write_all(&[i; 100_000]).await?;
        }
        tx.shutdown().await
    });
    let streamed = fs.upload_reader("sdk/raw/streamed.bin", rx).await?;
    sender.await??;
    assert_eq!(streamed.size_bytes, 6_400_000);
    let mut copy = Vec::new();
    let size = fs.download_to("sdk/raw/streamed.bin", &mut copy).await?;
    assert_eq!(size, 6_400_000);
    assert!(
        copy.chunks(100_000)
            .enumerate()
            .all(|(i, c)| c == [i as u8; 100_000])
    );

    assert!(matches!(
        fs.download("sdk/raw/missing").await,
        Err(Error::NotFound { .. })
    ));
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

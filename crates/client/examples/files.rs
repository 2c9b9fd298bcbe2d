//! Write, read and list files, and watch a directory for changes.
use ai2in_client::{Client, CreateSandbox, Error, WatchEventType};
use futures_util::StreamExt;

#[tokio::main]
async fn main() -> ai2in_client::Result<()> {
    let client = Client::from_env()?;
    let sandbox = client.create_sandbox(CreateSandbox::default()).await?;
    let fs = sandbox.fs();

    fs.write("project/README.md", "# hello\n").await?; // parents are created
    assert_eq!(fs.read("project/README.md").await?, "# hello\n");

    let bytes: Vec<u8> = (0..=255).collect();
    fs.write_bytes("project/data.bin", &bytes).await?;
    assert_eq!(fs.read_bytes("project/data.bin").await?, bytes);
    // Text reads of binary files are refused: use read_bytes.
    assert!(matches!(
        fs.read("project/data.bin").await,
        Err(Error::UnsupportedMediaType { .. })
    ));

    // Any size streams both ways, never whole in memory: here this program's own binary.
    let exe = std::env::current_exe().expect("this program's path");
    let file = tokio::fs::File::open(&exe)
        .await
        .expect("this program's binary");
    let sent = fs.upload("project/example-binary", file).await?;
    let mut download = fs.download("project/example-binary").await?;
    let mut received = 0;
    while let Some(piece) = download.next().await {
        received += piece?.len() as u64; // write it to a file, a socket…
    }
    assert_eq!(Some(received), download.size());
    assert_eq!(received, sent.size_bytes);
    // A part of a file: 3 bytes from offset 1.
    assert_eq!(fs.read_range("project/example-binary", 1, 3).await?, b"ELF");

    for entry in fs.list("project").await? {
        println!(
            "{:?} {} {} bytes",
            entry.entry_type, entry.path, entry.size_bytes
        );
    }

    let watch = fs.watch("project", true).await?;
    let mut events = watch.events().await?;
    fs.write("project/new.txt", "x").await?;
    // Writes are atomic: a temporary file is created, written, then renamed into place.
    while let Some(event) = events.next().await {
        let event = event?;
        println!("{:?} {}", event.event_type, event.path);
        if event.event_type == WatchEventType::Rename && event.path.ends_with("/new.txt") {
            break;
        }
    }
    watch.stop().await?;

    sandbox.kill().await?;
    Ok(())
}

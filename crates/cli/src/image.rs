//! `ai2in image …`: pull (a progress bar per layer), import an archive (an upload bar), list,
//! inspect and remove the images sandboxes start from.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use ai2in_client::{Client, Image, ImageSource, PullEvent};
use anyhow::{Context, bail};
use futures_util::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::io::{AsyncRead, ReadBuf};

use crate::connect::Connection;
use crate::output::{self, Table};

#[derive(clap::Subcommand)]
pub enum ImageCommand {
    /// Pull an image from a registry (or find it), showing each layer's progress.
    #[command(after_help = "Examples:\n  \
        ai2in image pull python:3.12-slim\n  \
        ai2in image pull ghcr.io/org/app:1.2\n  \
        digest=$(ai2in image pull registry.local:5000/app:1 --json | jq -r .digest)\n  \
        ai2in sandbox create --image python:3.12-slim")]
    Pull {
        /// An OCI/Docker reference: python:3.12-slim, ghcr.io/org/app:1.2, host:5000/app@sha256:…
        #[arg(value_name = "REF")]
        reference: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Import a `docker save` archive or a tarred OCI image layout.
    #[command(after_help = "Examples:\n  \
        ai2in image import app.tar --ref app:1\n  \
        docker save app:1 | ai2in image import -\n  \
        ai2in image import oci-layout.tar --ref registry.local/app:2 --json | jq -r .id")]
    Import {
        /// The archive, or - for standard input
        #[arg(value_name = "FILE")]
        file: String,
        /// The name it gets, NAME:TAG [default: the archive's own, if it has exactly one]
        #[arg(long = "ref", value_name = "NAME:TAG")]
        reference: Option<String>,
        #[command(flatten)]
        conn: Connection,
    },
    /// List your images.
    #[command(
        visible_alias = "list",
        after_help = "Examples:\n  \
        ai2in image ls\n  \
        ai2in image ls --json | jq -r '.images[].ref'"
    )]
    Ls {
        #[command(flatten)]
        conn: Connection,
    },
    /// Show an image: reference, digest, size, layers, and how it runs.
    #[command(after_help = "Examples:\n  \
        ai2in image info python:3.12-slim\n  \
        ai2in image info img_… --json | jq .config.env")]
    Info {
        /// The image's id (img_…) or reference
        #[arg(value_name = "ID|REF")]
        id: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Remove images (refused while a sandbox runs one).
    #[command(
        visible_alias = "delete",
        after_help = "Example:\n  ai2in image rm img_… python:3.12-slim"
    )]
    Rm {
        /// The images' ids (img_…) or references
        #[arg(required = true, value_name = "ID|REF")]
        ids: Vec<String>,
        #[command(flatten)]
        conn: Connection,
    },
}

/// Runs `ai2in image …`.
pub async fn run(cmd: ImageCommand) -> anyhow::Result<()> {
    match cmd {
        ImageCommand::Pull { reference, conn } => {
            let image = pull(&conn.client()?, &reference).await?;
            print_summary(&image, conn.json)
        }
        ImageCommand::Import {
            file,
            reference,
            conn,
        } => {
            let image = import(&conn.client()?, &file, reference.as_deref()).await?;
            print_summary(&image, conn.json)
        }
        ImageCommand::Ls { conn } => {
            let images = conn.client()?.images().list().await?;
            print_list(images, conn.json)
        }
        ImageCommand::Info { id, conn } => {
            print_info(&conn.client()?.images().get(&id).await?, conn.json)
        }
        ImageCommand::Rm { ids, conn } => {
            let images = conn.client()?.images();
            output::remove_each(&ids, conn.json, |id| {
                let images = images.clone();
                async move { images.delete(&id).await }
            })
            .await
        }
    }
}

/// Pulls `reference` as a stream of events, with a bar per layer on a terminal.
async fn pull(client: &Client, reference: &str) -> anyhow::Result<Image> {
    let bars = LayerBars::new();
    let mut events = client.images().pull_stream(reference).await?;
    let mut pulled = None;
    while let Some(event) = events.next().await {
        match event {
            Ok(PullEvent::Progress {
                layer,
                done_bytes,
                total_bytes,
            }) => bars.update(&layer, done_bytes, total_bytes),
            Ok(PullEvent::Done { image }) => pulled = Some(*image),
            // The SDK ends the stream with the failure's own error instead.
            Ok(PullEvent::Error { .. }) => {}
            Err(e) => {
                bars.clear();
                return Err(e.into());
            }
        }
    }
    bars.clear();
    pulled.context("the pull's stream ended without its image")
}

/// One progress bar per layer, by digest, on standard error (hidden off a terminal).
struct LayerBars {
    multi: MultiProgress,
    bars: std::cell::RefCell<HashMap<String, ProgressBar>>,
}

impl LayerBars {
    fn new() -> Self {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        LayerBars {
            multi: MultiProgress::with_draw_target(target),
            bars: Default::default(),
        }
    }

    fn update(&self, layer: &str, done: u64, total: u64) {
        let mut bars = self.bars.borrow_mut();
        let bar = bars.entry(layer.to_string()).or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::new(total));
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_message(short_digest(layer).to_string());
            bar
        });
        bar.set_length(total);
        bar.set_position(done);
    }

    fn clear(&self) {
        for bar in self.bars.borrow().values() {
            bar.finish_and_clear();
        }
        let _ = self.multi.clear();
    }
}

/// Imports the archive `file` (`-`: standard input), with an upload bar on a terminal.
async fn import(client: &Client, file: &str, reference: Option<&str>) -> anyhow::Result<Image> {
    let images = client.images();
    let imported = if file == "-" {
        let bar = upload_bar(None);
        let result = images
            .import_reader(Counting::new(tokio::io::stdin(), bar.clone()), reference)
            .await;
        bar.finish_and_clear();
        result?
    } else {
        let archive = tokio::fs::File::open(file)
            .await
            .with_context(|| format!("open {file}"))?;
        let size = archive.metadata().await.with_context(|| file.to_string())?;
        if size.is_dir() {
            bail!("{file} is a directory: import takes a tar archive");
        }
        let bar = upload_bar(Some(size.len()));
        let result = images
            .import_reader(Counting::new(archive, bar.clone()), reference)
            .await;
        bar.finish_and_clear();
        result?
    };
    Ok(imported)
}

/// A bar of the bytes sent (of `total` when known), on a terminal only.
fn upload_bar(total: Option<u64>) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (bar, template) = match total {
        Some(total) => (
            ProgressBar::new(total),
            "uploading {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {msg}",
        ),
        None => (
            ProgressBar::no_length(),
            "{spinner} uploading {bytes} {bytes_per_sec} {msg}",
        ),
    };
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(100));
    bar
}

/// A reader that moves `bar` by the bytes read through it, and says when it reached the
/// end (the node then unpacks what it got).
struct Counting<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R> Counting<R> {
    fn new(inner: R, bar: ProgressBar) -> Self {
        Counting { inner, bar }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Counting<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            let read = buf.filled().len() - before;
            if read == 0 && buf.remaining() > 0 {
                self.bar.set_message("sent, unpacking");
            }
            self.bar.inc(read as u64);
        }
        poll
    }
}

/// `sha256:0123…` as its first 12 hex digits.
fn short_digest(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, hex)| hex);
    hex.get(..12).unwrap_or(hex)
}

fn source_name(source: ImageSource) -> &'static str {
    match source {
        ImageSource::Pull => "pull",
        ImageSource::Import => "import",
        ImageSource::Snapshot => "snapshot",
    }
}

/// What a pull, an import or a snapshot printed: the image's id, reference and digest.
pub(crate) fn print_summary(image: &Image, json: bool) -> anyhow::Result<()> {
    if json {
        return output::print_json(image);
    }
    println!("id:      {}", image.id);
    println!("ref:     {}", image.r#ref);
    println!("digest:  {}", image.digest);
    Ok(())
}

/// One image for people, a field a line.
fn print_info(image: &Image, json: bool) -> anyhow::Result<()> {
    if json {
        return output::print_json(image);
    }
    let c = &image.config;
    let list = |items: &[String]| items.join(" ");
    println!("id:          {}", image.id);
    println!("ref:         {}", image.r#ref);
    println!("digest:      {}", image.digest);
    println!("size:        {}", output::bytes(image.size_bytes));
    println!("layers:      {}", image.layers);
    println!("source:      {}", source_name(image.source));
    println!("created:     {}", image.created_at);
    println!("last used:   {}", image.last_used_at);
    println!("workdir:     {}", c.workdir.as_deref().unwrap_or("-"));
    println!("user:        {}", c.user.as_deref().unwrap_or("-"));
    println!("entrypoint:  {}", list(&c.entrypoint));
    println!("cmd:         {}", list(&c.cmd));
    let ports: Vec<String> = c.exposed_ports.iter().map(u16::to_string).collect();
    println!("ports:       {}", ports.join(" "));
    println!("env:");
    for (name, value) in &c.env {
        println!("  {name}={value}");
    }
    Ok(())
}

fn print_list(images: Vec<Image>, json: bool) -> anyhow::Result<()> {
    if json {
        return output::print_json(&ai2in_client::api::ImageList { images });
    }
    let mut table = Table::new(&["ID", "REF", "DIGEST", "SIZE", "LAYERS", "SOURCE", "CREATED"]);
    for image in &images {
        table.row([
            image.id.clone(),
            image.r#ref.clone(),
            short_digest(&image.digest).to_string(),
            output::bytes(image.size_bytes),
            image.layers.to_string(),
            source_name(image.source).to_string(),
            image.created_at.clone(),
        ]);
    }
    table.print();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_shorten_to_twelve_hex_digits() {
        assert_eq!(
            short_digest("sha256:0123456789abcdef0123456789abcdef"),
            "0123456789ab"
        );
        assert_eq!(short_digest("sha256:abc"), "abc");
        assert_eq!(short_digest("0123456789abcdef"), "0123456789ab");
    }
}

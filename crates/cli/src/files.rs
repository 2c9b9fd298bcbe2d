//! `ai2in cp` and `ai2in fs ls|cat|watch`: files of a sandbox from the command line.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use ai2in_client::api::FsListResponse;
use ai2in_client::{Download, EntryType, Sandbox, ShellOptions};
use anyhow::{Context, bail};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

use crate::connect::Connection;

/// Transfers at least this big show a progress bar (on a terminal).
const PROGRESS_FROM: u64 = 1 << 20;

#[derive(clap::Subcommand)]
pub enum FsCommand {
    /// List a directory.
    #[command(
        after_help = "Example:\n  ai2in fs ls sbx_… /home/user --json | jq -r '.entries[].name'"
    )]
    Ls {
        sandbox: String,
        #[arg(default_value = "/home/user")]
        path: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Print a file's bytes.
    #[command(after_help = "Example:\n  ai2in fs cat sbx_… /etc/os-release")]
    Cat {
        sandbox: String,
        path: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Print changes below a path as they happen, until Ctrl-C (or SIGTERM).
    #[command(after_help = "Example:\n  ai2in fs watch sbx_… /home/user --recursive")]
    Watch {
        sandbox: String,
        path: String,
        /// Also watch every directory below it
        #[arg(long, short)]
        recursive: bool,
        #[command(flatten)]
        conn: Connection,
    },
}

/// Arguments of `ai2in cp`.
#[derive(clap::Args)]
pub struct CpArgs {
    /// A local path, or SANDBOX:PATH
    src: String,
    /// A local path, or SANDBOX:PATH
    dst: String,
    #[command(flatten)]
    conn: Connection,
}

/// `sbx_…:path` split in two, or `None` for a local path.
fn remote(spec: &str) -> Option<(&str, &str)> {
    spec.split_once(':')
        .filter(|(id, _)| id.starts_with("sbx_"))
}

/// Whether `path` is a directory of the sandbox (false when it does not exist).
async fn is_dir(sbx: &Sandbox, path: &str) -> bool {
    sbx.fs().list(path).await.is_ok()
}

/// Creates the directory `path` (and its parents) as the sandbox's user.
async fn mkdir(sbx: &Sandbox, path: &str) -> anyhow::Result<()> {
    let quoted = format!("'{}'", path.replace('\'', r"'\''"));
    let out = sbx
        .shell_with(ShellOptions::new(format!("mkdir -p -- {quoted}")).user("user"))
        .await?;
    if out.exit_code != Some(0) {
        bail!("could not create {path}: {}", out.stderr.trim());
    }
    Ok(())
}

/// A progress bar for `total` bytes, on a terminal and for big transfers only.
fn progress(total: u64) -> ProgressBar {
    if total < PROGRESS_FROM || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn join(dir: &str, name: &str) -> String {
    format!("{}/{name}", dir.trim_end_matches('/'))
}

fn base_name(path: &str) -> &str {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path)
}

/// Runs `ai2in cp`.
pub async fn cp(args: CpArgs) -> anyhow::Result<()> {
    let client = args.conn.client()?;
    match (remote(&args.src), remote(&args.dst)) {
        (None, Some((id, dst))) => upload(&client.sandbox(id), Path::new(&args.src), dst).await,
        (Some((id, src)), None) => download(&client.sandbox(id), src, Path::new(&args.dst)).await,
        (Some(_), Some(_)) => {
            bail!("copy between sandboxes through a local directory: one side must be local")
        }
        (None, None) => bail!("one side must be SANDBOX:PATH, e.g. sbx_…:/home/user/file"),
    }
}

async fn upload(sbx: &Sandbox, src: &Path, dst: &str) -> anyhow::Result<()> {
    let meta = std::fs::metadata(src).with_context(|| format!("{}", src.display()))?;
    let name = src
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let target = if is_dir(sbx, dst).await {
        join(dst, &name)
    } else {
        dst.to_string()
    };
    if meta.is_file() {
        let bar = progress(meta.len());
        send(sbx, src, &target, &bar).await?;
        bar.finish_and_clear();
        return Ok(());
    }
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    walk_local(src, &target, &mut files, &mut dirs)?;
    let bar = progress(files.iter().map(|(_, _, size)| size).sum());
    for dir in dirs {
        mkdir(sbx, &dir).await?;
    }
    for (local, remote, _) in files {
        bar.set_message(remote.clone());
        send(sbx, &local, &remote, &bar).await?;
    }
    bar.finish_and_clear();
    Ok(())
}

/// Streams the local file `local` into the sandbox's `remote`, counting on `bar`.
async fn send(sbx: &Sandbox, local: &Path, remote: &str, bar: &ProgressBar) -> anyhow::Result<()> {
    let file = tokio::fs::File::open(local)
        .await
        .with_context(|| format!("read {}", local.display()))?;
    sbx.fs()
        .upload_reader(remote, bar.wrap_async_read(file))
        .await?;
    Ok(())
}

/// Streams `download` (the sandbox's file `remote`) into the local `local`, counting on
/// `bar`; a transfer that fails leaves no partial local file.
async fn fetch(
    download: Download,
    remote: &str,
    local: &Path,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let write = async {
        let file = tokio::fs::File::create(local).await?;
        download.write_to(local, bar.wrap_async_write(file)).await?;
        anyhow::Ok(())
    };
    write.await.map_err(|e| {
        let _ = std::fs::remove_file(local);
        e.context(format!("copy {remote} to {}", local.display()))
    })
}

type LocalFiles = Vec<(PathBuf, String, u64)>;

/// Files below `dir` (local path, remote path, size) and the directories to create.
fn walk_local(
    dir: &Path,
    remote: &str,
    files: &mut LocalFiles,
    dirs: &mut Vec<String>,
) -> anyhow::Result<()> {
    dirs.push(remote.to_string());
    for entry in std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        let target = join(remote, &entry.file_name().to_string_lossy());
        if meta.is_dir() {
            walk_local(&entry.path(), &target, files, dirs)?;
        } else if meta.is_file() {
            files.push((entry.path(), target, meta.len()));
        }
    }
    Ok(())
}

async fn download(sbx: &Sandbox, src: &str, dst: &Path) -> anyhow::Result<()> {
    let target = if dst.is_dir() {
        dst.join(base_name(src))
    } else {
        dst.to_path_buf()
    };
    if !is_dir(sbx, src).await {
        let download = sbx.fs().download(src).await?;
        let bar = progress(download.size().unwrap_or(0));
        fetch(download, src, &target, &bar).await?;
        bar.finish_and_clear();
        return Ok(());
    }
    let mut files = Vec::new();
    walk_remote(sbx, src, &target, &mut files).await?;
    let bar = progress(files.iter().map(|(_, _, size)| size).sum());
    for (remote, local, _) in files {
        bar.set_message(remote.clone());
        fetch(sbx.fs().download(&remote).await?, &remote, &local, &bar).await?;
    }
    bar.finish_and_clear();
    Ok(())
}

/// Creates the local directories of the remote tree `dir`; lists its files (remote path,
/// local path, size).
async fn walk_remote(
    sbx: &Sandbox,
    dir: &str,
    local: &Path,
    files: &mut Vec<(String, PathBuf, u64)>,
) -> anyhow::Result<()> {
    // A work list rather than recursion, which an async fn could only do boxed.
    let mut pending = vec![(dir.to_string(), local.to_path_buf())];
    while let Some((dir, local)) = pending.pop() {
        std::fs::create_dir_all(&local).with_context(|| format!("create {}", local.display()))?;
        for entry in sbx.fs().list(&dir).await? {
            let target = local.join(&entry.name);
            match entry.entry_type {
                EntryType::Dir => pending.push((entry.path, target)),
                EntryType::File => files.push((entry.path, target, entry.size_bytes)),
                EntryType::Symlink | EntryType::Other => {}
            }
        }
    }
    Ok(())
}

/// Runs `ai2in fs …`.
pub async fn fs(cmd: FsCommand) -> anyhow::Result<()> {
    match cmd {
        FsCommand::Ls {
            sandbox,
            path,
            conn,
        } => {
            let entries = conn.client()?.sandbox(sandbox).fs().list(&path).await?;
            if conn.json {
                return crate::output::print_json(&FsListResponse { entries });
            }
            for e in entries {
                let kind = match e.entry_type {
                    EntryType::Dir => 'd',
                    EntryType::Symlink => 'l',
                    EntryType::File => '-',
                    EntryType::Other => '?',
                };
                println!(
                    "{kind}{:04o} {:>12} {} {}",
                    e.mode, e.size_bytes, e.modified_at, e.name
                );
            }
        }
        FsCommand::Cat {
            sandbox,
            path,
            conn,
        } => {
            conn.client()?
                .sandbox(sandbox)
                .fs()
                .download_to(&path, tokio::io::stdout())
                .await?;
        }
        FsCommand::Watch {
            sandbox,
            path,
            recursive,
            conn,
        } => {
            let sandbox = conn.client()?.sandbox(sandbox);
            let watch = sandbox.fs().watch(&path, recursive).await?;
            let print = async {
                let mut events = watch.events().await?;
                while let Some(event) = events.next().await {
                    let e = event?;
                    if conn.json {
                        println!("{}", serde_json::to_string(&e)?);
                    } else {
                        println!("{} {:?} {}", e.timestamp, e.event_type, e.path);
                    }
                    std::io::stdout().flush()?;
                }
                anyhow::Ok(())
            };
            // Until Ctrl-C or SIGTERM, the stream's end, or an error; the watch is stopped in
            // every case.
            let result = crate::output::until_interrupted(print).await;
            let stopped = watch.stop().await;
            result?;
            stopped?;
        }
    }
    Ok(())
}

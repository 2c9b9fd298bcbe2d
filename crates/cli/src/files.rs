//! `ai2in cp` and `ai2in fs ls|cat|watch`: files of a sandbox from the command line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ai2in_api::{
    EntryType, FsEntry, FsListResponse, FsPathRequest, FsReadBytesResponse, FsWriteBytesRequest,
    FsWriteResponse, ShellRequest, ShellResponse, WatchEvents, WatchRequest, WatchStarted,
};
use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use indicatif::{ProgressBar, ProgressStyle};

use crate::client::Connection;

/// Transfers at least this big show a progress bar (on a terminal).
const PROGRESS_FROM: u64 = 1 << 20;

#[derive(clap::Subcommand)]
pub enum FsCommand {
    /// List a directory.
    ///
    /// Example: `ai2in fs ls sbx_… /home/user`
    Ls {
        sandbox: String,
        #[arg(default_value = "/home/user")]
        path: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Print a file's bytes.
    ///
    /// Example: `ai2in fs cat sbx_… /etc/os-release`
    Cat {
        sandbox: String,
        path: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Print changes below a path as they happen, until Ctrl-C.
    ///
    /// Example: `ai2in fs watch sbx_… /home/user --recursive`
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

struct Sandbox<'a> {
    conn: &'a Connection,
    id: &'a str,
}

impl Sandbox<'_> {
    fn route(&self, route: &str) -> String {
        format!("/v1/sandboxes/{}/{route}", self.id)
    }

    fn path_request(path: &str) -> FsPathRequest {
        FsPathRequest {
            path: path.to_string(),
            user: None,
        }
    }

    fn list(&self, path: &str) -> anyhow::Result<Vec<FsEntry>> {
        let r: FsListResponse = self
            .conn
            .post(&self.route("fs/list"), &Self::path_request(path))?;
        Ok(r.entries)
    }

    /// Whether `path` is a directory (false when it does not exist).
    fn is_dir(&self, path: &str) -> bool {
        self.list(path).is_ok()
    }

    fn read(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        let r: FsReadBytesResponse = self
            .conn
            .post(&self.route("fs/read_bytes"), &Self::path_request(path))?;
        STANDARD
            .decode(r.content_b64)
            .context("the node sent invalid base64")
    }

    fn write(&self, path: &str, data: &[u8]) -> anyhow::Result<()> {
        let body = FsWriteBytesRequest {
            path: path.to_string(),
            content_b64: STANDARD.encode(data),
            user: None,
        };
        let _: FsWriteResponse = self.conn.post(&self.route("fs/write_bytes"), &body)?;
        Ok(())
    }

    fn mkdir(&self, path: &str) -> anyhow::Result<()> {
        let quoted = format!("'{}'", path.replace('\'', r"'\''"));
        let body = ShellRequest {
            cmd: format!("mkdir -p -- {quoted}"),
            user: Some("user".into()),
            ..Default::default()
        };
        let r: ShellResponse = self.conn.post(&self.route("shell"), &body)?;
        if r.exit_code != Some(0) {
            bail!("could not create {path}: {}", r.stderr.trim());
        }
        Ok(())
    }
}

fn progress(total: u64) -> ProgressBar {
    if total < PROGRESS_FROM {
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
pub fn cp(args: CpArgs) -> anyhow::Result<()> {
    match (remote(&args.src), remote(&args.dst)) {
        (None, Some((id, dst))) => upload(
            &Sandbox {
                conn: &args.conn,
                id,
            },
            Path::new(&args.src),
            dst,
        ),
        (Some((id, src)), None) => download(
            &Sandbox {
                conn: &args.conn,
                id,
            },
            src,
            Path::new(&args.dst),
        ),
        (Some(_), Some(_)) => {
            bail!("copy between sandboxes through a local directory: one side must be local")
        }
        (None, None) => bail!("one side must be SANDBOX:PATH, e.g. sbx_…:/home/user/file"),
    }
}

fn upload(sbx: &Sandbox, src: &Path, dst: &str) -> anyhow::Result<()> {
    let meta = std::fs::metadata(src).with_context(|| format!("{}", src.display()))?;
    let name = src
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let target = if sbx.is_dir(dst) {
        join(dst, &name)
    } else {
        dst.to_string()
    };
    if meta.is_file() {
        let data = std::fs::read(src).with_context(|| format!("read {}", src.display()))?;
        let bar = progress(data.len() as u64);
        sbx.write(&target, &data)?;
        bar.finish_and_clear();
        return Ok(());
    }
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    walk_local(src, &target, &mut files, &mut dirs)?;
    let bar = progress(files.iter().map(|(_, _, size)| size).sum());
    for dir in dirs {
        sbx.mkdir(&dir)?;
    }
    for (local, remote, size) in files {
        bar.set_message(remote.clone());
        let data = std::fs::read(&local).with_context(|| format!("read {}", local.display()))?;
        sbx.write(&remote, &data)?;
        bar.inc(size);
    }
    bar.finish_and_clear();
    Ok(())
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

fn download(sbx: &Sandbox, src: &str, dst: &Path) -> anyhow::Result<()> {
    let target = if dst.is_dir() {
        dst.join(base_name(src))
    } else {
        dst.to_path_buf()
    };
    if !sbx.is_dir(src) {
        let data = sbx.read(src)?;
        return std::fs::write(&target, data)
            .with_context(|| format!("write {}", target.display()));
    }
    let mut files = Vec::new();
    walk_remote(sbx, src, &target, &mut files)?;
    let bar = progress(files.iter().map(|(_, _, size)| size).sum());
    for (remote, local, size) in files {
        bar.set_message(remote.clone());
        let data = sbx.read(&remote)?;
        std::fs::write(&local, data).with_context(|| format!("write {}", local.display()))?;
        bar.inc(size);
    }
    bar.finish_and_clear();
    Ok(())
}

/// Creates the local directories of the remote tree `dir`; lists its files.
fn walk_remote(
    sbx: &Sandbox,
    dir: &str,
    local: &Path,
    files: &mut Vec<(String, PathBuf, u64)>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(local).with_context(|| format!("create {}", local.display()))?;
    for entry in sbx.list(dir)? {
        let target = local.join(&entry.name);
        match entry.entry_type {
            EntryType::Dir => walk_remote(sbx, &entry.path, &target, files)?,
            EntryType::File => files.push((entry.path, target, entry.size_bytes)),
            EntryType::Symlink | EntryType::Other => {}
        }
    }
    Ok(())
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Runs `ai2in fs …`.
pub fn fs(cmd: FsCommand) -> anyhow::Result<()> {
    match cmd {
        FsCommand::Ls {
            sandbox,
            path,
            conn,
        } => {
            let entries = Sandbox {
                conn: &conn,
                id: &sandbox,
            }
            .list(&path)?;
            if conn.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&FsListResponse { entries })?
                );
            } else {
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
        }
        FsCommand::Cat {
            sandbox,
            path,
            conn,
        } => {
            let data = Sandbox {
                conn: &conn,
                id: &sandbox,
            }
            .read(&path)?;
            std::io::stdout().write_all(&data)?;
        }
        FsCommand::Watch {
            sandbox,
            path,
            recursive,
            conn,
        } => {
            let sbx = Sandbox {
                conn: &conn,
                id: &sandbox,
            };
            let started: WatchStarted = conn.post(
                &sbx.route("fs/watch"),
                &WatchRequest {
                    path,
                    recursive,
                    user: None,
                },
            )?;
            let watch = format!("fs/watch/{}", started.watch_id);
            // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
            unsafe {
                libc::signal(
                    libc::SIGINT,
                    on_interrupt as *const () as libc::sighandler_t,
                )
            };
            let result = (|| -> anyhow::Result<()> {
                while !INTERRUPTED.load(Ordering::SeqCst) {
                    let polled: WatchEvents =
                        conn.post(&sbx.route(&format!("{watch}/poll")), &serde_json::json!({}))?;
                    for e in polled.events {
                        if conn.json {
                            println!("{}", serde_json::to_string(&e)?);
                        } else {
                            println!("{} {:?} {}", e.timestamp, e.event_type, e.path);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Ok(())
            })();
            let stop = crate::client::send(
                conn.request(reqwest::Method::POST, &sbx.route(&format!("{watch}/stop")))?,
            );
            result.and(stop.map(|_| ()))?;
        }
    }
    Ok(())
}

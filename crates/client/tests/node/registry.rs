//! A real OCI registry for the image tests: Debian's `docker-registry` (distribution 2.8) on a
//! loopback port with throw-away storage, holding the busybox image that
//! `tests/e2e/image_fixtures.py` builds with independent tools (busybox-static, umoci) and
//! that skopeo pushes. Stopped, and its storage removed, when dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// The repository root, where `tests/e2e` lives.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `program args` to success; its standard output, or why it failed.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("start {program}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{program} {args:?} exited with {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// A call of `tests/e2e/image_fixtures.py` (which builds each image once and caches it).
fn image_fixtures(call: &str) -> Result<String, String> {
    let script = format!(
        "import sys; sys.path.insert(0, 'tests/e2e'); import image_fixtures as f; print({call})"
    );
    run("python3", &["-c", &script])
}

/// Writes busybox as a `docker save` archive (named `docker.io/library/app:1`) at `path`.
pub fn docker_save_archive(path: &Path) -> Result<(), String> {
    let path = path.to_str().ok_or("a UTF-8 temporary path")?;
    image_fixtures(&format!("f.docker_save_archive({path:?})")).map(drop)
}

pub struct Registry {
    child: Child,
    dir: PathBuf,
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// The manifest digest of busybox as pushed (the same under every tag).
    pub busybox_digest: String,
}

impl Registry {
    /// Starts the registry and pushes busybox as `busybox:1` and `busybox:stream`.
    pub fn start() -> Result<Registry, String> {
        if !Path::new(REGISTRY_BIN).is_file() {
            return Err(format!(
                "{REGISTRY_BIN} not found: install the Debian package docker-registry"
            ));
        }
        let dir = std::env::temp_dir().join(format!("ai2in-sdk-registry-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("storage")).map_err(|e| format!("{dir:?}: {e}"))?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("a free port: {e}"))?
            .port();
        let config = dir.join("config.yml");
        let yaml = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            dir.join("storage").display()
        );
        std::fs::write(&config, yaml).map_err(|e| format!("{config:?}: {e}"))?;
        let log = std::fs::File::create(dir.join("registry.log")).map_err(|e| e.to_string())?;
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start {REGISTRY_BIN}: {e}"))?;
        let mut registry = Registry {
            child,
            dir,
            host: format!("127.0.0.1:{port}"),
            busybox_digest: String::new(),
        };
        registry.wait_ready(port)?;
        let layout = image_fixtures("f.busybox().layout")?;
        for tag in ["1", "stream"] {
            registry.busybox_digest = registry.push(&layout, &format!("busybox:{tag}"))?;
        }
        Ok(registry)
    }

    /// `HOST/NAME:TAG` on this registry (as the node normalises it, too).
    pub fn reference(&self, name_tag: &str) -> String {
        format!("{}/{name_tag}", self.host)
    }

    /// A path in the registry's temporary directory, removed with it.
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn wait_ready(&mut self, port: u16) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "docker-registry exited with {status}{}",
                    self.log()
                ));
            }
            if answers_v2(port) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "docker-registry did not answer within 20 s{}",
            self.log()
        ))
    }

    /// Pushes the OCI layout's tag `1` as `name_tag`; answers the manifest digest.
    fn push(&self, layout: &str, name_tag: &str) -> Result<String, String> {
        let digest_file = self.dir.join("digest");
        let digest_path = digest_file.to_str().ok_or("a UTF-8 temporary path")?;
        run(
            "skopeo",
            &[
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                "--digestfile",
                digest_path,
                &format!("oci:{layout}:1"),
                &format!("docker://{}", self.reference(name_tag)),
            ],
        )?;
        std::fs::read_to_string(&digest_file)
            .map(|d| d.trim().to_string())
            .map_err(|e| format!("{digest_file:?}: {e}"))
    }

    fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default();
        format!("\n--- registry.log\n{text}")
    }
}

/// Whether `GET /v2/` answers 200 (the API is up).
fn answers_v2(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let request = "GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let mut answer = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

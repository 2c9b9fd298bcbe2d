//! One `ai2in serve` for the test run (and others for tests that change a node): a temporary
//! state directory and port, its output in `node.log` there, stopped with SIGTERM (SIGKILL
//! after 15 s).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct TestNode {
    child: Child,
    state_dir: PathBuf,
    pub url: String,
    pub admin_key: String,
}

/// `$AI2IN_BIN`, else the workspace's debug build (`scripts/test` builds it first).
fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("AI2IN_BIN") {
        return bin.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("x86_64-unknown-linux-gnu/debug/ai2in")
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

/// Whether `GET /healthz` answers 200.
fn healthy(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let request = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let mut answer = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
}

fn wait_for<T>(what: &str, seconds: u64, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what} within {seconds} s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl TestNode {
    /// The node of the run.
    pub fn start() -> TestNode {
        TestNode::start_in("ai2in-sdk-test")
    }

    /// Another node, for a test that changes what it is (a drain); its state directory is
    /// named after `name`.
    pub fn start_another(name: &str) -> TestNode {
        TestNode::start_in(&format!("ai2in-sdk-test-{name}"))
    }

    fn start_in(prefix: &str) -> TestNode {
        let binary = binary();
        assert!(
            binary.is_file(),
            "no ai2in binary at {}: build it (cargo build) or set AI2IN_BIN",
            binary.display()
        );
        let state_dir = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
        std::fs::create_dir_all(&state_dir).expect("a state directory");
        let log = std::fs::File::create(state_dir.join("node.log")).expect("node.log");
        let port = free_port();
        let child = Command::new(&binary)
            .arg("serve")
            .arg("--state-dir")
            .arg(&state_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("node.log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let mut node = TestNode {
            child,
            url: format!("http://127.0.0.1:{port}"),
            admin_key: String::new(),
            state_dir,
        };
        wait_for("the node answers /healthz", 20, || {
            healthy(port).then_some(())
        });
        let key_file = node.state_dir.join("admin.key");
        node.admin_key = wait_for("the admin key is written", 5, || {
            let key = std::fs::read_to_string(&key_file).ok()?;
            Some(key.trim().to_string()).filter(|k| !k.is_empty())
        });
        node
    }

    /// SIGTERM, wait, SIGKILL if need be; the state directory is removed unless `keep`.
    pub fn stop(mut self, keep: bool) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid");
        // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if keep {
            eprintln!("node state and log kept in {}", self.state_dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.state_dir);
        }
    }
}

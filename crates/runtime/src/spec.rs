use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Size of the uid (and gid) range mapped into each sandbox: inside ids `0..UID_RANGE`.
pub const UID_RANGE: u32 = 65_536;

/// Host directories bound read-only into every rootfs of the `host` image.
pub const ROOTFS_BINDS: &[&str] = &["/usr"];

/// Everything the sandbox's first process needs to build its world; sent by the node over
/// the control socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitSpec {
    /// Sandbox id; also the hostname.
    pub id: String,
    /// The sandbox's host directory; its writable layer is mounted on its `root`
    /// subdirectory.
    pub sandbox_dir: PathBuf,
    /// The image's read-only layers, bottom first: host directories the node opens and
    /// hands over as detached mounts (the sandbox never opens them by path).
    pub layers: Vec<PathBuf>,
    /// Host directories bound read-only at the same place inside, handed over likewise.
    pub binds: Vec<PathBuf>,
    /// Whether the image is the `host` skeleton, whose writable layer gets the usual
    /// top-level directories (an OCI image brings its own).
    pub skeleton: bool,
    /// Size of the writable layer.
    pub disk_bytes: u64,
    /// Whether the writable layer is on a disk of its own (handed over as a detached mount
    /// after the image's layers and binds) rather than a tmpfs.
    #[serde(default)]
    pub disk: bool,
    /// Volumes mounted in the root, handed over (after the disk) as detached mounts.
    #[serde(default)]
    pub volumes: Vec<VolumeMount>,
    /// Files written into the writable layer: path inside, content.
    pub files: Vec<(String, String)>,
    /// Where code contexts start unless told: the image's working directory.
    #[serde(default = "home")]
    pub workdir: String,
    /// Environment every process in the sandbox gets.
    pub env: Vec<(String, String)>,
    /// Descriptors (set by the runtime) of the `work` cgroup's `cgroup.procs` files: what the
    /// agent starts writes `0` to each to leave the agent's reserve alone.
    #[serde(default)]
    pub work_fds: Vec<i32>,
}

/// A volume of a sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VolumeMount {
    /// The volume's file on the host (opened by the node only).
    pub image: PathBuf,
    /// Where it is mounted inside: an absolute, normalized path.
    pub path: String,
    /// Whether it is mounted read-only.
    pub read_only: bool,
}

/// How a create's error begins when a volume's path cannot be made in the image.
pub const VOLUME_ERROR: &str = "volume path";

fn home() -> String {
    "/home/user".into()
}

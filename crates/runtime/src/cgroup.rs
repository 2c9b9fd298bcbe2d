//! Per-sandbox cgroups: limits, freezer, kill and removal, on cgroup v1 (hybrid) and v2.
//! Every sandbox gets one group named after its id under an `ai2in` parent; the node is the
//! only owner, and [`Cgroups::destroy`] leaves nothing behind.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const ROOT: &str = "/sys/fs/cgroup";
const PARENT: &str = "ai2in";
/// The subgroup of what the agent starts.
const WORK: &str = "work";
/// The subgroup of the agent itself (cgroup v2 only: v1 keeps it in the sandbox's group).
const AGENT: &str = "agent";
/// Tasks kept for the agent beyond what the workload may use.
pub const PIDS_RESERVE: u64 = 32;

/// Memory kept for the agent out of a sandbox's `limit`: a quarter, at most 32 MiB.
pub fn memory_reserve(limit: u64) -> u64 {
    (limit / 4).min(32 << 20)
}

/// v1 controllers a sandbox is placed in (cpuacct for CPU usage).
const V1_CONTROLLERS: [&str; 5] = ["memory", "cpu", "cpuacct", "pids", "freezer"];

/// Why a cgroup operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No usable cgroup hierarchy with the controllers a sandbox needs.
    #[error("no usable cgroup hierarchy: {0}")]
    Unsupported(String),
    /// Reading or writing a cgroup file failed.
    #[error("cgroup file {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// Processes were still in the group after they were killed.
    #[error("processes of cgroup {0} did not exit")]
    Busy(String),
}

/// Which cgroup hierarchy the host has; detected once at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// Separate v1 hierarchies per controller (memory, cpu, pids, freezer).
    V1,
    /// The unified v2 hierarchy with the memory, cpu and pids controllers.
    V2,
}

/// Resource limits written into a sandbox's cgroup.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// CPU quota in cores.
    pub cpu: f64,
    /// Memory limit, swap included (swap is off).
    pub memory_bytes: u64,
    /// Most tasks (processes and threads) at once.
    pub pids: u64,
}

/// What a group uses right now, from the kernel's accounting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time used since the group was made, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory charged (processes, page cache, tmpfs files).
    pub memory_bytes: u64,
    /// Tasks (processes and threads).
    pub pids: u64,
}

/// The cgroup hierarchy of this host.
#[derive(Debug, Clone, Copy)]
pub struct Cgroups {
    version: CgroupVersion,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(io_err(path))
}

fn read(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(io_err(path))
}

fn mkdir(path: &Path) -> Result<(), CgroupError> {
    match fs::create_dir(path) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(io_err(path)(e)),
        _ => Ok(()),
    }
}

impl Cgroups {
    /// Detects the hierarchy: v2 when `/sys/fs/cgroup` is cgroup2 with the needed
    /// controllers, else v1 when its controllers are mounted. Creates the `ai2in` parent.
    pub fn detect() -> Result<Self, CgroupError> {
        let controllers = Path::new(ROOT).join("cgroup.controllers");
        let version = if let Ok(list) = fs::read_to_string(&controllers) {
            for needed in ["memory", "cpu", "pids"] {
                if !list.split_whitespace().any(|c| c == needed) {
                    return Err(CgroupError::Unsupported(format!(
                        "cgroup v2 without the {needed} controller"
                    )));
                }
            }
            CgroupVersion::V2
        } else if V1_CONTROLLERS
            .iter()
            .all(|c| Path::new(ROOT).join(c).join("cgroup.procs").exists())
        {
            CgroupVersion::V1
        } else {
            return Err(CgroupError::Unsupported(format!(
                "{ROOT} has neither cgroup v2 nor the v1 controllers {V1_CONTROLLERS:?}"
            )));
        };
        let cgroups = Cgroups { version };
        cgroups.create_parent()?;
        Ok(cgroups)
    }

    /// The detected version.
    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    fn create_parent(&self) -> Result<(), CgroupError> {
        match self.version {
            CgroupVersion::V2 => {
                let parent = Path::new(ROOT).join(PARENT);
                mkdir(&parent)?;
                let enable = "+memory +cpu +pids";
                write(&Path::new(ROOT).join("cgroup.subtree_control"), enable)?;
                write(&parent.join("cgroup.subtree_control"), enable)
            }
            CgroupVersion::V1 => {
                for c in V1_CONTROLLERS {
                    let parent = Path::new(ROOT).join(c).join(PARENT);
                    mkdir(&parent)?;
                }
                Ok(())
            }
        }
    }

    /// The directories of one sandbox's group, one per hierarchy.
    fn dirs(&self, name: &str) -> Vec<PathBuf> {
        match self.version {
            CgroupVersion::V2 => vec![Path::new(ROOT).join(PARENT).join(name)],
            CgroupVersion::V1 => V1_CONTROLLERS
                .iter()
                .map(|c| Path::new(ROOT).join(c).join(PARENT).join(name))
                .collect(),
        }
    }

    fn controller_dir(&self, controller: &str, name: &str) -> PathBuf {
        match self.version {
            CgroupVersion::V2 => Path::new(ROOT).join(PARENT).join(name),
            CgroupVersion::V1 => Path::new(ROOT).join(controller).join(PARENT).join(name),
        }
    }

    /// Creates the group `name` with `limits`, and inside it the `work` group where the
    /// agent puts what it starts, with a little less memory and fewer tasks: the agent
    /// keeps [`memory_reserve`] and [`PIDS_RESERVE`] for itself, so a runaway workload meets
    /// its limit (and the OOM killer) in `work` while the agent still answers; the CPU quota
    /// applies to `work` alone, so the agent is never throttled with the workload. On cgroup v2
    /// the agent lives in an `agent` leaf (no processes in inner groups), and the sandbox's
    /// group is delegated to its root (`root_uid`) so the agent may move processes into
    /// `work`. On error the caller destroys it.
    pub fn create(&self, name: &str, limits: Limits, root_uid: u32) -> Result<(), CgroupError> {
        for dir in self.dirs(name) {
            mkdir(&dir)?;
        }
        let work_memory = limits.memory_bytes - memory_reserve(limits.memory_bytes);
        let work_pids = limits.pids.saturating_sub(PIDS_RESERVE).max(1);
        let period: u64 = 100_000;
        let quota = ((limits.cpu * period as f64).round() as u64).max(1000);
        match self.version {
            CgroupVersion::V2 => {
                let dir = self.controller_dir("", name);
                write(&dir.join("memory.max"), &limits.memory_bytes.to_string())?;
                write(&dir.join("memory.swap.max"), "0").or_else(ignore_missing)?;
                write(&dir.join("pids.max"), &limits.pids.to_string())?;
                write(&dir.join("cgroup.subtree_control"), "+memory +pids +cpu")?;
                for leaf in [AGENT, WORK] {
                    mkdir(&dir.join(leaf))?;
                }
                let work = dir.join(WORK);
                write(&work.join("cpu.max"), &format!("{quota} {period}"))?;
                write(&work.join("memory.max"), &work_memory.to_string())?;
                write(&work.join("pids.max"), &work_pids.to_string())?;
                // Delegation: moving a process needs write access to the common ancestor.
                for file in [dir.join("cgroup.procs"), work.join("cgroup.procs")] {
                    std::os::unix::fs::chown(&file, Some(root_uid), Some(root_uid))
                        .map_err(io_err(&file))?;
                }
                Ok(())
            }
            CgroupVersion::V1 => {
                let mem = self.controller_dir("memory", name);
                for (dir, bytes) in [
                    (mem.clone(), limits.memory_bytes),
                    (mem.join(WORK), work_memory),
                ] {
                    mkdir(&dir)?;
                    write(&dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
                    // Swap accounting is optional in v1; where it exists, memory+swap = memory.
                    write(&dir.join("memory.memsw.limit_in_bytes"), &bytes.to_string())
                        .or_else(ignore_missing)?;
                    write(&dir.join("memory.swappiness"), "0").or_else(ignore_missing)?;
                }
                // The CPU quota binds the workload only: an agent throttled along with a
                // fork bomb would answer seconds late.
                let cpu_work = self.controller_dir("cpu", name).join(WORK);
                mkdir(&cpu_work)?;
                write(&cpu_work.join("cpu.cfs_period_us"), &period.to_string())?;
                write(&cpu_work.join("cpu.cfs_quota_us"), &quota.to_string())?;
                let pids = self.controller_dir("pids", name);
                write(&pids.join("pids.max"), &limits.pids.to_string())?;
                mkdir(&pids.join(WORK))?;
                write(&pids.join(WORK).join("pids.max"), &work_pids.to_string())
            }
        }
    }

    /// Moves process `pid` (the agent) into the group `name`.
    pub fn add(&self, name: &str, pid: u32) -> Result<(), CgroupError> {
        let dirs = match self.version {
            CgroupVersion::V2 => vec![self.controller_dir("", name).join(AGENT)],
            CgroupVersion::V1 => self.dirs(name),
        };
        for dir in dirs {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// The `cgroup.procs` files of the `work` group, open for writing: a process that writes
    /// `0` to each moves itself there.
    pub fn open_work(&self, name: &str) -> Result<Vec<fs::File>, CgroupError> {
        let dirs = match self.version {
            CgroupVersion::V2 => vec![self.controller_dir("", name).join(WORK)],
            CgroupVersion::V1 => vec![
                self.controller_dir("memory", name).join(WORK),
                self.controller_dir("pids", name).join(WORK),
                self.controller_dir("cpu", name).join(WORK),
            ],
        };
        dirs.iter()
            .map(|d| {
                let procs = d.join("cgroup.procs");
                fs::OpenOptions::new()
                    .write(true)
                    .open(&procs)
                    .map_err(io_err(&procs))
            })
            .collect()
    }

    /// Freezes (`true`) or thaws (`false`) every process of the group, waiting until done.
    pub fn set_frozen(&self, name: &str, frozen: bool) -> Result<(), CgroupError> {
        let deadline = Instant::now() + Duration::from_secs(5);
        match self.version {
            CgroupVersion::V2 => {
                let dir = self.controller_dir("", name);
                write(&dir.join("cgroup.freeze"), if frozen { "1" } else { "0" })?;
                let want = if frozen { "frozen 1" } else { "frozen 0" };
                while !read(&dir.join("cgroup.events"))?.lines().any(|l| l == want) {
                    if Instant::now() > deadline {
                        return Err(CgroupError::Busy(name.to_string()));
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            CgroupVersion::V1 => {
                let state = self.controller_dir("freezer", name).join("freezer.state");
                let want = if frozen { "FROZEN" } else { "THAWED" };
                write(&state, want)?;
                while read(&state)?.trim() != want {
                    if Instant::now() > deadline {
                        return Err(CgroupError::Busy(name.to_string()));
                    }
                    write(&state, want)?;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        Ok(())
    }

    /// Whether the group exists.
    pub fn exists(&self, name: &str) -> bool {
        self.dirs(name).iter().any(|d| d.exists())
    }

    /// What the group (with its subgroups) uses right now.
    pub fn usage(&self, name: &str) -> Result<Usage, CgroupError> {
        let number = |path: PathBuf, key: Option<&str>| -> Result<u64, CgroupError> {
            let text = read(&path)?;
            let value = match key {
                // `cpu.stat`: lines of `key value`.
                Some(key) => text
                    .lines()
                    .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')),
                None => Some(text.trim()),
            };
            value
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| CgroupError::Io {
                    path,
                    source: io::Error::other("unexpected content"),
                })
        };
        let pids = number(self.controller_dir("pids", name).join("pids.current"), None)?;
        Ok(match self.version {
            CgroupVersion::V1 => Usage {
                cpu_ns: number(
                    self.controller_dir("cpuacct", name).join("cpuacct.usage"),
                    None,
                )?,
                memory_bytes: number(
                    self.controller_dir("memory", name)
                        .join("memory.usage_in_bytes"),
                    None,
                )?,
                pids,
            },
            CgroupVersion::V2 => {
                let dir = self.controller_dir("memory", name);
                Usage {
                    cpu_ns: number(dir.join("cpu.stat"), Some("usage_usec"))? * 1000,
                    memory_bytes: number(dir.join("memory.current"), None)?,
                    pids,
                }
            }
        })
    }

    /// The processes in the group and its subgroups.
    pub fn pids(&self, name: &str) -> Result<Vec<u32>, CgroupError> {
        let dir = self.controller_dir("pids", name);
        let mut pids = Vec::new();
        for d in [dir.clone(), dir.join(AGENT), dir.join(WORK)] {
            match read(&d.join("cgroup.procs")) {
                Ok(text) => pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok())),
                Err(CgroupError::Io { source, .. })
                    if source.kind() == io::ErrorKind::NotFound && d != dir => {}
                Err(e) => return Err(e),
            }
        }
        Ok(pids)
    }

    /// Kills every process of the group and removes it. Idempotent: a missing group is fine.
    pub fn destroy(&self, name: &str) -> Result<(), CgroupError> {
        if !self.exists(name) {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids = self.pids(name).or_else(|e| match e {
                CgroupError::Io { ref source, .. } if source.kind() == io::ErrorKind::NotFound => {
                    Ok(Vec::new())
                }
                e => Err(e),
            })?;
            if pids.is_empty() {
                break;
            }
            if self.version == CgroupVersion::V2 {
                let kill = self.controller_dir("", name).join("cgroup.kill");
                write(&kill, "1").or_else(ignore_missing)?;
            }
            for pid in &pids {
                // SAFETY: kill(2) with a pid read from the group's own process list.
                unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
            }
            // A frozen task dies only once thawed.
            if self.version == CgroupVersion::V1 {
                let state = self.controller_dir("freezer", name).join("freezer.state");
                write(&state, "THAWED").or_else(ignore_missing)?;
            }
            if Instant::now() > deadline {
                return Err(CgroupError::Busy(name.to_string()));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        for dir in self.dirs(name) {
            for leaf in [AGENT, WORK] {
                remove_dir_retrying(&dir.join(leaf), deadline)?;
            }
            remove_dir_retrying(&dir, deadline)?;
        }
        Ok(())
    }
}

fn ignore_missing(e: CgroupError) -> Result<(), CgroupError> {
    match e {
        CgroupError::Io { ref source, .. } if source.kind() == io::ErrorKind::NotFound => Ok(()),
        e => Err(e),
    }
}

/// Removes an empty cgroup directory; the kernel answers EBUSY for a short while after the
/// last task exits.
fn remove_dir_retrying(dir: &Path, deadline: Instant) -> Result<(), CgroupError> {
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(io_err(dir)(e)),
        }
    }
}

//! The node side of the native backend: starts a sandbox's first process, maps its user
//! namespace, places it in its cgroup, waits until it is ready, and destroys it.

use std::ffi::CStr;
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags, posix_spawn};
use nix::sys::signal::SigSet;
use nix::sys::stat::Mode;
use nix::unistd::Pid;

use crate::cgroup::{self, CgroupError, Cgroups};
use crate::disk::{Disk, Disks};
use crate::network::Network;
use crate::spec::{InitSpec, UID_RANGE};
use crate::sys::dup_above;

/// Host uid of root inside the sandbox in uid slot 0; slot `n` starts `n * UID_RANGE` above.
const UID_BASE: u32 = 1 << 28;
/// How long a sandbox may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// The descriptors the first process finds: the agent's listening socket and the control
/// socket. Kept in sync with [`crate::init`].
pub(crate) const LISTEN_FD: i32 = 3;
pub(crate) const CONTROL_FD: i32 = 4;
/// The first of the `work` cgroup descriptors.
const WORK_FD: i32 = 5;

/// Why a sandbox could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// Preparing the sandbox's host directory or socket failed.
    #[error("failed to prepare the sandbox directory")]
    Directory(#[source] io::Error),
    /// Setting up its cgroup failed.
    #[error("failed to set up the sandbox cgroup")]
    Cgroup(#[from] CgroupError),
    /// Starting the first process failed.
    #[error("failed to start the sandbox process")]
    Spawn(#[source] io::Error),
    /// Writing the user namespace's id maps failed.
    #[error("failed to map the sandbox user namespace")]
    IdMap(#[source] io::Error),
    /// The first process talked nonsense or went away.
    #[error("sandbox start-up handshake failed: {0}")]
    Handshake(String),
    /// The first process reported a failure while building the sandbox.
    #[error("sandbox set-up failed: {0}")]
    Init(String),
    /// Its image could not be mounted.
    #[error("failed to mount the image's layers")]
    Mounts(#[source] io::Error),
    /// Its network link could not be set up.
    #[error("failed to set up the sandbox network")]
    Network(#[source] io::Error),
    /// Its disk could not be made.
    #[error("failed to make the sandbox's disk")]
    Disk(#[source] io::Error),
    /// One of its volumes could not be mounted.
    #[error("failed to mount a volume")]
    Volume(#[source] io::Error),
}

/// A sandbox that is ready: the host pid of its agent and that process's start time
/// (pid + start time identify it across node restarts).
#[derive(Debug, Clone, Copy)]
pub struct Started {
    /// Host pid of the agent (PID 1 inside).
    pub pid: u32,
    /// Start time of that process in clock ticks since boot (`/proc/PID/stat` field 22).
    pub start_time: u64,
}

/// The file of a sandbox's directory that names its disk's loop device.
const DISK_FILE: &str = "disk";

/// What a sandbox is given at creation.
#[derive(Debug, Clone)]
pub struct Resources {
    /// CPU quota in cores.
    pub cpu: f64,
    /// Memory limit.
    pub memory_bytes: u64,
    /// Task limit.
    pub pids: u64,
    /// Whether it may open connections to the outside (when the node has a network).
    pub egress: bool,
}

/// The native runtime of one node.
#[derive(Debug, Clone)]
pub struct Runtime {
    cgroups: Cgroups,
    /// Whether image layers are idmapped to each sandbox's uid range (else they show as
    /// owned by `nobody` inside).
    idmap: bool,
    sandboxes_dir: PathBuf,
    agent_exe: PathBuf,
    network: Option<Arc<Network>>,
    disks: Option<Arc<Disks>>,
}

impl Runtime {
    /// A runtime keeping per-sandbox directories in `sandboxes_dir` and starting sandboxes
    /// with `agent_exe` (the static `ai2in` binary).
    pub fn new(sandboxes_dir: PathBuf, agent_exe: PathBuf) -> Result<Self, CgroupError> {
        let idmap = match crate::mounts::probe_idmap(&sandboxes_dir) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "this kernel gives no idmapped mounts: image files show as owned by nobody \
                     inside sandboxes (Linux 5.19 or later is needed)"
                );
                false
            }
        };
        Ok(Runtime {
            cgroups: Cgroups::detect()?,
            idmap,
            sandboxes_dir,
            agent_exe,
            network: None,
            disks: None,
        })
    }

    /// This runtime with sandboxes on `network`.
    pub fn with_network(mut self, network: Network) -> Self {
        self.network = Some(Arc::new(network));
        self
    }

    /// This runtime with sandboxes' disks and volumes made by `disks`.
    pub fn with_disks(mut self, disks: Arc<Disks>) -> Self {
        self.disks = Some(disks);
        self
    }

    /// The node's disks, when this host can make them.
    pub fn disks(&self) -> Option<&Arc<Disks>> {
        self.disks.as_ref()
    }

    /// The sandboxes' network, when the node has one.
    pub fn network(&self) -> Option<&Network> {
        self.network.as_deref()
    }

    /// Whether image layers are idmapped to each sandbox's uid range.
    pub fn idmapped(&self) -> bool {
        self.idmap
    }

    /// The cgroup hierarchy in use.
    pub fn cgroups(&self) -> &Cgroups {
        &self.cgroups
    }

    /// The host directory of sandbox `id`.
    pub fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.sandboxes_dir.join(id)
    }

    /// The agent's socket of sandbox `id`.
    pub fn agent_socket(&self, id: &str) -> PathBuf {
        self.sandbox_dir(id).join("agent.sock")
    }

    /// Ids that have a directory here, whether or not the node knows them. The directory
    /// is made before anything else of a sandbox and removed last, so it marks everything a
    /// crash may have left. (The cgroup parent is shared by every node of the host, so its
    /// entries are not evidence: they may be another node's.)
    pub fn leftovers(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(&self.sandboxes_dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect()
    }

    /// Creates and starts a sandbox. `uid_slot` picks its host uid range, which no other
    /// live sandbox may hold. On error nothing of it is left.
    pub fn create(
        &self,
        spec: &InitSpec,
        uid_slot: u32,
        resources: &Resources,
    ) -> Result<Started, CreateError> {
        let result = self.try_create(spec, uid_slot, resources);
        if result.is_err() {
            if let Err(e) = self.destroy(&spec.id) {
                tracing::warn!(sandbox = %spec.id, error = %e, "cleanup after a failed create");
            }
        }
        result
    }

    fn try_create(
        &self,
        spec: &InitSpec,
        uid_slot: u32,
        resources: &Resources,
    ) -> Result<Started, CreateError> {
        let dir = self.sandbox_dir(&spec.id);
        fs::DirBuilder::new()
            .mode(0o711)
            .create(&dir)
            .and_then(|_| fs::DirBuilder::new().mode(0o700).create(dir.join("root")))
            .map_err(CreateError::Directory)?;
        let listener =
            UnixListener::bind(self.agent_socket(&spec.id)).map_err(CreateError::Directory)?;
        fs::set_permissions(
            self.agent_socket(&spec.id),
            fs::Permissions::from_mode(0o600),
        )
        .map_err(CreateError::Directory)?;
        let (control, child_control) = UnixStream::pair().map_err(CreateError::Spawn)?;
        control
            .set_read_timeout(Some(READY_TIMEOUT))
            .map_err(CreateError::Spawn)?;

        let root_uid = UID_BASE + uid_slot * UID_RANGE;
        self.cgroups.create(
            &spec.id,
            cgroup::Limits {
                cpu: resources.cpu,
                memory_bytes: resources.memory_bytes,
                pids: resources.pids,
            },
            root_uid,
        )?;
        let work = self.cgroups.open_work(&spec.id)?;
        let work_src = work
            .iter()
            .map(|f| dup_above(f, 10).map(unsafe_owned))
            .collect::<io::Result<Vec<OwnedFd>>>()
            .map_err(CreateError::Spawn)?;
        let work_raw: Vec<i32> = work_src.iter().map(|f| f.as_raw_fd()).collect();
        let mut spec = spec.clone();
        spec.work_fds = (WORK_FD..).take(work_raw.len()).collect();

        // Numbered well above 4 so that the dup2 calls below never clobber each other.
        let listen_src = dup_above(&listener, 10).map_err(CreateError::Spawn)?;
        let control_src = dup_above(&child_control, 10).map_err(CreateError::Spawn)?;
        let (listen_src, control_src) = (unsafe_owned(listen_src), unsafe_owned(control_src));
        let mut moves = vec![
            (listen_src.as_raw_fd(), LISTEN_FD),
            (control_src.as_raw_fd(), CONTROL_FD),
        ];
        moves.extend(work_raw.iter().copied().zip(WORK_FD..));
        let child = self.spawn_first(&moves).map_err(CreateError::Spawn)?;
        drop((
            listen_src,
            control_src,
            child_control,
            listener,
            work_src,
            work,
        ));
        // The link is made while the sandbox builds its root.
        let link = self
            .network
            .as_ref()
            .and_then(|net| Some((net, net.link(uid_slot, resources.egress)?)));
        let attach = |pid: u32| match &link {
            Some((net, link)) => net.attach(pid, link).map_err(CreateError::Network),
            None => Ok(()),
        };
        // The disk and the volumes are mounted while the first process starts.
        let result = std::thread::scope(|scope| {
            let disks = (spec.disk || !spec.volumes.is_empty())
                .then(|| scope.spawn(|| self.disks_of(&spec, &dir)));
            let disks = move || match disks {
                Some(job) => job
                    .join()
                    .unwrap_or_else(|_| Err(CreateError::Handshake("disk thread panicked".into()))),
                None => Ok(Vec::new()),
            };
            self.handshake(
                &spec,
                root_uid,
                child.as_raw() as u32,
                control,
                disks,
                attach,
            )
        });
        // The first process exits once it has forked the sandbox's PID 1.
        let _ = nix::sys::wait::waitpid(child, None);
        let pid = result?;
        // Protect the agent from the OOM killer ahead of the workload; it resets the
        // score of every process it starts.
        let _ = fs::write(format!("/proc/{pid}/oom_score_adj"), "-998");
        let start_time = process_start_time(pid)
            .ok_or_else(|| CreateError::Handshake("the sandbox process vanished".into()))?;
        Ok(Started { pid, start_time })
    }

    /// Starts `ai2in agent`, the sandbox's first process, in a session of its own with an
    /// empty environment, /dev/null on 0, 1 and 2, no signal blocked nor handled, and each
    /// `(from, to)` of `moves` duplicated to `to` (the `from` descriptors are close-on-exec
    /// and numbered above every `to`). posix_spawn is a vfork: the node's address space is
    /// not copied, as a fork would (its page tables, then copy-on-write faults in the node),
    /// a cost that grows with the node. (The C library leaves its own two signals ignored in
    /// the agent; its spawner gives every process it starts all signals at their defaults.)
    fn spawn_first(&self, moves: &[(RawFd, RawFd)]) -> io::Result<Pid> {
        let mut actions = PosixSpawnFileActions::init()?;
        actions.add_open(0, c"/dev/null", OFlag::O_RDWR, Mode::empty())?;
        actions.add_dup2(0, 1)?;
        actions.add_dup2(0, 2)?;
        for &(from, to) in moves {
            actions.add_dup2(from, to)?;
        }
        let mut attr = PosixSpawnAttr::init()?;
        attr.set_sigmask(&SigSet::empty())?;
        attr.set_sigdefault(&SigSet::all())?;
        attr.set_flags(
            PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK
                | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF
                | PosixSpawnFlags::from_bits_retain(libc::POSIX_SPAWN_SETSID.into()),
        )?;
        let env: [&CStr; 0] = [];
        Ok(posix_spawn(
            self.agent_exe.as_path(),
            &actions,
            &attr,
            &[c"ai2in", c"agent"],
            &env,
        )?)
    }

    /// The scratch disk (its loop device noted in the sandbox's directory) and the volumes of
    /// `spec`, in that order.
    fn disks_of(&self, spec: &InitSpec, dir: &Path) -> Result<Vec<Disk>, CreateError> {
        let disks = self.disks.as_ref().ok_or_else(|| {
            CreateError::Disk(io::Error::new(
                io::ErrorKind::Unsupported,
                "this node cannot make disks",
            ))
        })?;
        let mut out = Vec::with_capacity(spec.volumes.len() + 1);
        if spec.disk {
            let disk = disks.scratch(spec.disk_bytes).map_err(CreateError::Disk)?;
            fs::write(dir.join(DISK_FILE), disk.device.to_line())
                .map_err(CreateError::Directory)?;
            out.push(disk);
        }
        for volume in &spec.volumes {
            out.push(
                disks
                    .mount_volume(&volume.image, volume.read_only)
                    .map_err(CreateError::Volume)?,
            );
        }
        Ok(out)
    }

    /// Drives the start-up of the first process `pid` over `control`; calls `on_pid` with the
    /// host pid of the sandbox's PID 1 as soon as it exists, and returns it once it reports ready.
    fn handshake(
        &self,
        spec: &InitSpec,
        base: u32,
        pid: u32,
        control: UnixStream,
        disks: impl FnOnce() -> Result<Vec<Disk>, CreateError>,
        on_pid: impl FnOnce(u32) -> Result<(), CreateError>,
    ) -> Result<u32, CreateError> {
        let mut writer = control.try_clone().map_err(CreateError::Spawn)?;
        let mut reader = BufReader::new(control);
        let mut line = String::new();
        let mut next_line = |line: &mut String| -> Result<(), CreateError> {
            line.clear();
            match reader.read_line(line) {
                Ok(0) => Err(CreateError::Handshake(
                    "the sandbox process exited early".into(),
                )),
                Ok(_) => Ok(()),
                Err(e) => Err(CreateError::Handshake(format!(
                    "no answer from the sandbox process: {e}"
                ))),
            }
        };
        let mut body =
            serde_json::to_vec(spec).map_err(|e| CreateError::Handshake(e.to_string()))?;
        body.push(b'\n');
        writer.write_all(&body).map_err(CreateError::Spawn)?;

        next_line(&mut line)?;
        expect(&line, "userns")?;
        let map = format!("0 {base} {UID_RANGE}\n");
        fs::write(format!("/proc/{pid}/uid_map"), &map).map_err(CreateError::IdMap)?;
        fs::write(format!("/proc/{pid}/gid_map"), &map).map_err(CreateError::IdMap)?;
        self.cgroups.add(&spec.id, pid)?;
        // The image's layers and binds, its disk and volumes, as detached mounts idmapped
        // through the sandbox's own user namespace, go with the answer.
        let userns = if self.idmap {
            Some(
                fs::File::open(format!("/proc/{pid}/ns/user"))
                    .map(OwnedFd::from)
                    .map_err(CreateError::IdMap)?,
            )
        } else {
            None
        };
        let mut trees = spec
            .layers
            .iter()
            .chain(&spec.binds)
            .map(|path| crate::mounts::detached(path, userns.as_ref()))
            .collect::<io::Result<Vec<OwnedFd>>>()
            .map_err(CreateError::Mounts)?;
        // The disk first, then the volumes, as the sandbox expects them.
        let read_only = std::iter::repeat_n(false, spec.disk as usize)
            .chain(spec.volumes.iter().map(|v| v.read_only));
        for (disk, read_only) in disks()?.into_iter().zip(read_only) {
            crate::mounts::set_attrs(&disk.mount, read_only, userns.as_ref())
                .map_err(CreateError::Mounts)?;
            trees.push(disk.mount);
        }
        crate::sys::send_with_fds(&writer, b"mapped\n", &trees).map_err(CreateError::Spawn)?;
        drop(trees);

        next_line(&mut line)?;
        let init_pid: u32 = line
            .trim()
            .strip_prefix("pid ")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| CreateError::Handshake(format!("expected the pid, got {line:?}")))?;
        if let Err(e) = on_pid(init_pid) {
            // PID 1 may have failed meanwhile, its namespaces gone with it: its own reason
            // comes first.
            if next_line(&mut line).is_ok()
                && let Some(message) = line.trim().strip_prefix("error ")
            {
                return Err(CreateError::Init(message.to_string()));
            }
            return Err(e);
        }
        next_line(&mut line)?;
        expect(&line, "ready")?;
        Ok(init_pid)
    }

    /// Runs `f` on the upper directory of sandbox `id`'s writable layer (as it is on its
    /// disk: ids unmapped, overlay whiteouts), with the sandbox frozen meanwhile and thawed
    /// after unless it was `paused`. `Unsupported` when its writable layer is not a disk.
    pub fn with_upper<T>(
        &self,
        id: &str,
        paused: bool,
        f: impl FnOnce(std::os::fd::BorrowedFd<'_>) -> T,
    ) -> io::Result<T> {
        use std::os::fd::AsFd;
        let line = match fs::read_to_string(self.sandbox_dir(id).join(DISK_FILE)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "its writable layer is a tmpfs",
                ));
            }
            other => other?,
        };
        let gone = || io::Error::new(io::ErrorKind::NotFound, "its disk is gone");
        let device = crate::disk::Device::from_line(&line).ok_or_else(gone)?;
        let disk = crate::disk::remount(&device)?.ok_or_else(gone)?;
        let upper = nix::fcntl::openat(
            &disk.mount,
            "upper",
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_NOFOLLOW
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        let _thaw = if paused {
            None
        } else {
            self.set_paused(id, true).map_err(io::Error::other)?;
            Some(Thaw { runtime: self, id })
        };
        Ok(f(upper.as_fd()))
    }

    /// Freezes or thaws every process of the sandbox.
    pub fn set_paused(&self, id: &str, paused: bool) -> Result<(), CgroupError> {
        self.cgroups.set_frozen(id, paused)
    }

    /// Kills every process of sandbox `id` and removes its cgroup and directory. Its mounts
    /// live in its own mount namespace and vanish with its last process. Idempotent.
    pub fn destroy(&self, id: &str) -> Result<(), CgroupError> {
        self.cgroups.destroy(id)?;
        let dir = self.sandbox_dir(id);
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(CgroupError::Io {
                path: dir,
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Whether the agent recorded as (`pid`, `start_time`) still runs in sandbox `id`.
    pub fn is_alive(&self, id: &str, pid: u32, start_time: u64) -> bool {
        process_start_time(pid) == Some(start_time)
            && self.cgroups.pids(id).is_ok_and(|pids| pids.contains(&pid))
    }
}

fn expect(line: &str, want: &str) -> Result<(), CreateError> {
    let line = line.trim();
    if line == want {
        Ok(())
    } else if let Some(message) = line.strip_prefix("error ") {
        Err(CreateError::Init(message.to_string()))
    } else {
        Err(CreateError::Handshake(format!(
            "expected {want:?}, got {line:?}"
        )))
    }
}

/// Thaws a sandbox frozen for a moment, whatever happened meanwhile.
struct Thaw<'a> {
    runtime: &'a Runtime,
    id: &'a str,
}

impl Drop for Thaw<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.runtime.set_paused(self.id, false) {
            tracing::error!(sandbox = %self.id, error = %e, "could not thaw the sandbox");
        }
    }
}

/// Takes ownership of a descriptor just returned by [`dup_above`].
fn unsafe_owned(fd: i32) -> OwnedFd {
    // SAFETY: `fd` was just created by dup_above and is owned by nothing else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Start time of process `pid` in clock ticks since boot, if it exists.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let after = &stat[stat.rfind(')')? + 2..];
    after.split(' ').nth(19)?.parse().ok()
}

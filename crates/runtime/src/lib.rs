//! The isolation boundary of ai2in: the native backend that turns a spec into a sandbox
//! (user, pid, mount, ipc, uts, net and cgroup namespaces; an overlay root whose writable layer
//! is a disk of its own or a size-limited tmpfs; volumes; a minimal /dev; a masked /proc; reduced capabilities; no_new_privs; seccomp;
//! cgroup limits) and takes it down again without leaving anything behind.
//!
//! The node side ([`Runtime`]) runs as host root; the sandbox side ([`init`], [`harden`])
//! runs in the sandbox's first process before any workload.
#![warn(missing_docs)]

pub mod cgroup;
pub mod disk;
pub mod harden;
pub mod image;
pub mod init;
pub mod mounts;
mod netlink;
pub mod network;
mod rootfs;
mod runtime;
mod spec;
mod sys;

pub use cgroup::{CgroupVersion, Cgroups, Usage};
pub use runtime::{CreateError, Resources, Runtime, Started, process_start_time};
pub use spec::{InitSpec, ROOTFS_BINDS, UID_RANGE, VOLUME_ERROR, VolumeMount};
pub use sys::recv_with_fds;

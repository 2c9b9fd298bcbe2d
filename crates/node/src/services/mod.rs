//! Hosting: long-running services from images, each supervised (restarts with backoff,
//! readiness, redeploys beside the running instance), logged, and served at a stable URL by
//! the proxy.

mod api;
mod instance;
mod logs;
mod registry;
mod spec;
mod supervisor;

pub use api::LogFollower;
pub(crate) use registry::Services;
pub(crate) use spec::ServiceSpec;

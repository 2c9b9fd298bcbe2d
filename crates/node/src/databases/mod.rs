//! Databases: real PostgreSQL, MySQL (MariaDB) and Redis servers on demand, each a service of the node's
//! supervisor (restarted when it dies, kept across node and host restarts) whose data lives
//! on a volume of its own, reached through a TCP endpoint of the node.

mod api;
mod endpoint;
mod engines;
mod forward;
mod registry;
mod sources;
mod tls;

pub(crate) use registry::{Databases, check_images};

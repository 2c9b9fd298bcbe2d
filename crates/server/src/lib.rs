//! The HTTP face of an ai2in node: the axum router of `API.md`, bearer-key authentication,
//! JSON bodies with clear errors, and the mapping of node errors to statuses. Handlers are
//! thin: they parse, call the node, and shape the answer.
#![warn(missing_docs)]

mod commands;
mod databases;
mod desktop;
mod error;
mod extract;
mod files;
mod forwarded;
mod gateway;
mod idle;
mod images;
mod keys;
mod nodes;
mod openapi;
mod proxy;
mod pty;
mod router;
mod run;
mod sandboxes;
mod services;
mod splice;
mod volumes;

pub use gateway::{ClusterQuotas, Gateway, GatewayConfig, gateway_router, serve_gateway};
pub use router::{router, serve};

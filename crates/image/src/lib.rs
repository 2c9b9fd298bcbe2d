//! OCI images for ai2in: references normalised as Docker does, a registry client (Registry
//! HTTP API v2 with anonymous, token and basic auth, mirrors), a content store of layers
//! unpacked once each into overlay form, and imports of `docker save` archives and OCI
//! layouts. Everything a registry or an archive sends is hostile input: digests are checked
//! while content streams, and unpacking never writes outside the layer's directory.
#![warn(missing_docs)]

mod error;
mod import;
mod layer;
mod locks;
pub mod manifest;
mod pull;
pub mod reference;
mod registry;
pub mod snapshot;
mod store;
pub mod unpack;

pub use error::ImageError;
pub use import::import_archive;
pub use locks::KeyedLocks;
pub use manifest::RunSettings;
pub use pull::{Progress, Puller};
pub use reference::Reference;
pub use registry::{Credentials, RegistryClient, RegistryConfig};
pub use snapshot::layer_from_upper;
pub use store::{ContentStore, LayerInfo, Pulled};

//! The OCI and Docker schema 2 documents a pull reads: indexes (manifest lists), manifests
//! and image configs. Only the fields the node uses are kept; unknown fields are ignored, as
//! the specs require.

use std::collections::BTreeMap;

use serde::Deserialize;

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// What a manifest request accepts, most specific first.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// Largest manifest or config document read (the distribution spec suggests 4 MiB).
pub const MAX_DOCUMENT: usize = 4 << 20;

/// A content descriptor.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// What the content is.
    #[serde(default)]
    pub media_type: String,
    /// Its digest.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its platform (in an index).
    #[serde(default)]
    pub platform: Option<Platform>,
}

/// The platform of an index entry.
#[derive(Debug, Clone, Deserialize)]
pub struct Platform {
    /// `amd64`, `arm64`, …
    pub architecture: String,
    /// `linux`, …
    pub os: String,
    /// `v8`, …
    #[serde(default)]
    pub variant: Option<String>,
}

/// A manifest or an index: which one is told by `mediaType` (or by the HTTP content type,
/// or by which of `manifests` and `layers` is present).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Document {
    /// Must be 2.
    #[serde(default)]
    pub schema_version: u32,
    /// The document's own type, when it states it.
    #[serde(default)]
    pub media_type: Option<String>,
    /// An index's entries.
    #[serde(default)]
    pub manifests: Option<Vec<Descriptor>>,
    /// A manifest's config.
    #[serde(default)]
    pub config: Option<Descriptor>,
    /// A manifest's layers, bottom first.
    #[serde(default)]
    pub layers: Option<Vec<Descriptor>>,
}

/// A manifest, checked: a config and its layers.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The config blob.
    pub config: Descriptor,
    /// The layers, bottom first.
    pub layers: Vec<Descriptor>,
}

/// What a document turned out to be.
#[derive(Debug, Clone)]
pub enum Parsed {
    /// An index: pick a platform's manifest.
    Index(Vec<Descriptor>),
    /// An image manifest.
    Manifest(Manifest),
}

/// Layer compression, from a layer's media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

impl Compression {
    /// The compression of a layer of `media_type`, or `None` when it is not a layer the node
    /// can unpack (foreign layers, non-tar artifacts).
    pub fn of(media_type: &str) -> Option<Compression> {
        Some(match media_type {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Compression::None,
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip" => Compression::Gzip,
            "application/vnd.oci.image.layer.v1.tar+zstd" => Compression::Zstd,
            _ => return None,
        })
    }
}

/// Parses a manifest or an index; `content_type` is the registry's answer header, if any.
pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<Parsed, String> {
    let doc: Document =
        serde_json::from_slice(body).map_err(|e| format!("the manifest is not valid JSON: {e}"))?;
    if doc.schema_version != 2 {
        return Err(format!(
            "manifest schema version {} is not supported (only schema 2 and OCI)",
            doc.schema_version
        ));
    }
    let kind = doc
        .media_type
        .clone()
        .or_else(|| content_type.map(|c| c.split(';').next().unwrap_or(c).trim().to_string()));
    let is_index = match kind.as_deref() {
        Some(OCI_INDEX | DOCKER_LIST) => true,
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
        _ => doc.manifests.is_some(),
    };
    if is_index {
        return doc
            .manifests
            .map(Parsed::Index)
            .ok_or_else(|| "the index has no manifests".to_string());
    }
    let (Some(config), Some(layers)) = (doc.config, doc.layers) else {
        return Err("the manifest lacks its config or layers".into());
    };
    for layer in &layers {
        if Compression::of(&layer.media_type).is_none() {
            return Err(format!(
                "layer {} has media type {:?}, which is not an image layer this node unpacks",
                layer.digest, layer.media_type
            ));
        }
    }
    Ok(Parsed::Manifest(Manifest { config, layers }))
}

/// The entry of an index for linux/amd64, the node's platform.
pub fn pick_platform(entries: &[Descriptor]) -> Option<&Descriptor> {
    entries.iter().find(|d| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
    })
}

/// An image config (only what the node reads).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImageConfigFile {
    /// `amd64`, …
    #[serde(default)]
    pub architecture: String,
    /// `linux`, …
    #[serde(default)]
    pub os: String,
    /// How to run it.
    #[serde(default)]
    pub config: Option<RunConfig>,
    /// The uncompressed layers' digests.
    pub rootfs: RootFs,
}

/// The `rootfs` of an image config.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RootFs {
    /// `layers`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Digests of the uncompressed layer tars, bottom first.
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// The `config` of an image config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    /// `NAME=value` lines.
    #[serde(default)]
    pub env: Option<Vec<String>>,
    /// Working directory.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// User.
    #[serde(default)]
    pub user: Option<String>,
    /// Entrypoint.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// Command.
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// `"8000/tcp": {}`.
    #[serde(default)]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
}

/// What the node keeps of a config: how to run the image.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, Deserialize)]
pub struct RunSettings {
    /// Environment, in the image's order.
    pub env: Vec<(String, String)>,
    /// Working directory, absolute.
    pub workdir: Option<String>,
    /// User.
    pub user: Option<String>,
    /// Entrypoint.
    pub entrypoint: Vec<String>,
    /// Command.
    pub cmd: Vec<String>,
    /// TCP ports.
    pub exposed_ports: Vec<u16>,
    /// Whether the layers lie over the `host` image (a snapshot of a sandbox of it): the
    /// sandbox gets the host's skeleton beneath them and its `/usr`.
    #[serde(default)]
    pub host: bool,
}

impl ImageConfigFile {
    /// Parses a config blob.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let config: ImageConfigFile = serde_json::from_slice(body)
            .map_err(|e| format!("the image config is not valid: {e}"))?;
        if !config.os.is_empty() && config.os != "linux" {
            return Err(format!("the image is for {}, not linux", config.os));
        }
        if !config.architecture.is_empty() && config.architecture != "amd64" {
            return Err(format!(
                "the image is for {}, not amd64 (this node's platform)",
                config.architecture
            ));
        }
        for id in &config.rootfs.diff_ids {
            crate::reference::check_digest(id)?;
        }
        Ok(config)
    }

    /// How to run the image, checked and simplified.
    pub fn settings(&self) -> RunSettings {
        let c = self.config.clone().unwrap_or_default();
        let env = c
            .env
            .unwrap_or_default()
            .into_iter()
            .filter_map(|line| {
                let (k, v) = line.split_once('=')?;
                (!k.is_empty() && !k.contains('\0') && !v.contains('\0'))
                    .then(|| (k.to_string(), v.to_string()))
            })
            .collect();
        let workdir = c
            .working_dir
            .filter(|w| w.starts_with('/') && !w.contains('\0'));
        let user = c.user.filter(|u| !u.is_empty() && !u.contains('\0'));
        let exposed_ports = c
            .exposed_ports
            .unwrap_or_default()
            .keys()
            .filter_map(|p| {
                let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                (proto == "tcp").then(|| port.parse().ok()).flatten()
            })
            .collect();
        RunSettings {
            env,
            workdir,
            user,
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            exposed_ports,
            host: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_and_manifest_are_told_apart() {
        let index = br#"{"schemaVersion":2,"manifests":[
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:a","size":1,
             "platform":{"architecture":"arm64","os":"linux"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:b","size":1,
             "platform":{"architecture":"amd64","os":"linux"}}]}"#;
        let Parsed::Index(entries) = parse(index, None).unwrap() else {
            panic!("not an index")
        };
        assert_eq!(pick_platform(&entries).unwrap().digest, "sha256:b");
        let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
            "config":{"mediaType":"x","digest":"sha256:c","size":2},
            "layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"sha256:d","size":3}]}"#;
        let Parsed::Manifest(m) = parse(manifest, None).unwrap() else {
            panic!("not a manifest")
        };
        assert_eq!(m.layers.len(), 1);
        assert!(parse(b"{\"schemaVersion\":1}", None).is_err());
        assert!(parse(b"nonsense", None).is_err());
    }

    #[test]
    fn settings_keep_what_runs_the_image() {
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},
            "config":{"Env":["PATH=/usr/bin","A=b=c","bad"],"WorkingDir":"/app","User":"1000:1000",
            "Cmd":["python3"],"ExposedPorts":{"8000/tcp":{},"53/udp":{}}}}"#;
        let s = ImageConfigFile::parse(config).unwrap().settings();
        assert_eq!(
            s.env,
            vec![
                ("PATH".into(), "/usr/bin".into()),
                ("A".into(), "b=c".into())
            ]
        );
        assert_eq!(s.workdir.as_deref(), Some("/app"));
        assert_eq!(s.user.as_deref(), Some("1000:1000"));
        assert_eq!(s.exposed_ports, vec![8000]);
        let arm = br#"{"architecture":"arm64","os":"linux","rootfs":{"diff_ids":[]}}"#;
        assert!(ImageConfigFile::parse(arm).is_err());
    }
}

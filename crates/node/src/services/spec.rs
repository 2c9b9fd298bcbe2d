//! What a service runs, checked: its name, image, command, port, health path, resources and
//! volumes. Stored as JSON in the service's record.

use std::collections::BTreeMap;

use ai2in_api::{CreateSandboxRequest, DeployServiceRequest, RedeployServiceRequest};
use ai2in_api::{Resources, VolumeAttachment};
use serde::{Deserialize, Serialize};

use crate::config::NodeConfig;
use crate::error::NodeError;
use crate::images::Content;
use crate::sandbox::admit;

/// Longest service name: with `-` and the id, a DNS label stays under 63 bytes.
const MAX_NAME: usize = 40;
/// Longest start command.
const MAX_CMD: usize = 64 * 1024;
/// Longest health path.
const MAX_PATH: usize = 1024;

/// What every instance of a service runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ServiceSpec {
    /// `host`, an image id or a reference, as given.
    pub image: String,
    pub internal_port: Option<u16>,
    pub env: BTreeMap<String, String>,
    pub start_cmd: Option<String>,
    pub health_path: Option<String>,
    pub cpu: f64,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
    pub volumes: Vec<VolumeAttachment>,
    /// Whether instances may not connect out (a database's server needs no egress).
    #[serde(default)]
    pub egress_denied: bool,
    /// A command (run as `user` in the instance) that must succeed, besides the open port,
    /// before the instance is ready: a database server may open its port before it serves.
    #[serde(default)]
    pub ready_cmd: Option<String>,
}

/// Checks a service name: 1 to 40 of `a-z 0-9 -`, not starting or ending with `-`.
pub(crate) fn check_name(name: &str) -> Result<(), NodeError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(NodeError::Invalid(format!(
            "name {name:?} is not a service name: use 1 to {MAX_NAME} of a-z, 0-9 and '-', \
             not starting or ending with '-'"
        )))
    }
}

impl ServiceSpec {
    /// The spec of a deploy request, checked against the node's limits.
    pub fn new(cfg: &NodeConfig, req: DeployServiceRequest) -> Result<Self, NodeError> {
        let spec = ServiceSpec {
            image: req.image,
            internal_port: req.internal_port,
            env: req.env.unwrap_or_default(),
            start_cmd: req.start_cmd,
            health_path: req.health_path,
            cpu: req.cpu.unwrap_or(cfg.defaults.cpu),
            memory_bytes: req.memory_bytes.unwrap_or(cfg.defaults.memory_bytes),
            disk_bytes: req.disk_bytes.unwrap_or(cfg.defaults.disk_bytes),
            volumes: req.volumes.unwrap_or_default(),
            egress_denied: false,
            ready_cmd: None,
        };
        spec.check(cfg)?;
        Ok(spec)
    }

    /// This spec with a redeploy's changes, checked.
    pub fn changed(
        &self,
        cfg: &NodeConfig,
        req: RedeployServiceRequest,
    ) -> Result<Self, NodeError> {
        let mut spec = self.clone();
        if let Some(image) = req.image {
            spec.image = image;
        }
        if let Some(env) = req.env {
            spec.env = env;
        }
        if let Some(cmd) = req.start_cmd {
            spec.start_cmd = Some(cmd);
        }
        if let Some(port) = req.internal_port {
            spec.internal_port = Some(port);
        }
        if let Some(path) = req.health_path {
            spec.health_path = Some(path);
        }
        spec.check(cfg)?;
        Ok(spec)
    }

    fn check(&self, cfg: &NodeConfig) -> Result<(), NodeError> {
        // The sandbox's own checks: image name, resources, env, volume paths.
        admit(cfg, self.sandbox_request())?;
        if self.internal_port == Some(0) {
            return Err(NodeError::Invalid(
                "internal_port must be between 1 and 65535".into(),
            ));
        }
        if let Some(cmd) = &self.start_cmd {
            if cmd.trim().is_empty() || cmd.len() > MAX_CMD || cmd.contains('\0') {
                return Err(NodeError::Invalid(format!(
                    "start_cmd must be 1 to {MAX_CMD} bytes without NUL; omit it to run the \
                     image's entrypoint and cmd"
                )));
            }
        }
        if let Some(path) = &self.health_path {
            let valid = path.starts_with('/')
                && path.len() <= MAX_PATH
                && path.bytes().all(|b| b.is_ascii_graphic());
            if !valid {
                return Err(NodeError::Invalid(format!(
                    "health_path {path:?} must be a path such as /healthz (up to {MAX_PATH} \
                     printable characters, no spaces)"
                )));
            }
            if self.internal_port.is_none() {
                return Err(NodeError::Invalid(
                    "health_path needs an internal_port to check".into(),
                ));
            }
        }
        Ok(())
    }

    /// The create request of an instance's sandbox.
    pub fn sandbox_request(&self) -> CreateSandboxRequest {
        CreateSandboxRequest {
            image: Some(self.image.clone()),
            cpu: Some(self.cpu),
            memory_bytes: Some(self.memory_bytes),
            disk_bytes: Some(self.disk_bytes),
            env: Some(self.env.clone()),
            volumes: Some(self.volumes.clone()),
            ..Default::default()
        }
    }

    /// Whether a volume is mounted read-write: then two instances cannot run at once, and a
    /// redeploy stops the old one before it starts the new one.
    pub fn exclusive(&self) -> bool {
        self.volumes.iter().any(|v| !v.read_only)
    }

    /// The process's command line for `/bin/sh -c`: the start command, or the image's
    /// entrypoint and cmd quoted.
    pub fn command_line(&self, content: &Content) -> Result<String, NodeError> {
        if let Some(cmd) = &self.start_cmd {
            return Ok(cmd.clone());
        }
        let settings = &content.settings;
        let argv: Vec<&String> = settings.entrypoint.iter().chain(&settings.cmd).collect();
        if argv.is_empty() {
            return Err(NodeError::Invalid(format!(
                "image {} has neither an entrypoint nor a cmd; give start_cmd",
                self.image
            )));
        }
        Ok(format!(
            "exec {}",
            argv.iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" ")
        ))
    }

    pub fn resources(&self) -> Resources {
        Resources {
            cpu: self.cpu,
            memory_bytes: self.memory_bytes,
            disk_bytes: self.disk_bytes,
        }
    }
}

/// `arg` as one word of `/bin/sh`.
fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_a_dns_label() {
        for good in ["web", "a", "my-app-2", &"x".repeat(40)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-web", "web-", "Web", "my_app", "a.b", &"x".repeat(41)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn entrypoint_and_cmd_are_quoted_for_the_shell() {
        assert_eq!(shell_quote("python3"), "python3");
        assert_eq!(shell_quote("it's here"), r"'it'\''s here'");
        assert_eq!(shell_quote(""), "''");
        let spec = ServiceSpec::new(
            &NodeConfig::default(),
            DeployServiceRequest {
                name: "web".into(),
                image: "host".into(),
                ..Default::default()
            },
        )
        .unwrap();
        let mut content = Content::host();
        assert!(spec.command_line(&content).is_err());
        content.settings.entrypoint = vec!["python3".into(), "-m".into()];
        content.settings.cmd = vec!["http.server".into(), "a b".into()];
        assert_eq!(
            spec.command_line(&content).unwrap(),
            "exec python3 -m http.server 'a b'"
        );
    }

    #[test]
    fn a_health_path_needs_a_port_and_a_slash() {
        let cfg = NodeConfig::default();
        let req = |port, path: &str| DeployServiceRequest {
            name: "web".into(),
            image: "host".into(),
            internal_port: port,
            health_path: Some(path.into()),
            ..Default::default()
        };
        assert!(ServiceSpec::new(&cfg, req(Some(80), "/healthz")).is_ok());
        assert!(ServiceSpec::new(&cfg, req(None, "/healthz")).is_err());
        assert!(ServiceSpec::new(&cfg, req(Some(80), "healthz")).is_err());
        assert!(ServiceSpec::new(&cfg, req(Some(80), "/a b")).is_err());
    }
}

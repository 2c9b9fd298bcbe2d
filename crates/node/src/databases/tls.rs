//! The certificate database servers present when clients ask for TLS: the operator's
//! (`[databases] tls_cert`, `tls_key`) or one the node makes once, self-signed, for the
//! address urls name (`STATE_DIR/tls/databases.crt`, which clients that verify the server
//! take as their root).

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use crate::config::DatabasesConfig;

/// A certificate and its key, PEM.
#[derive(Clone)]
pub(crate) struct Tls {
    pub cert: String,
    pub key: String,
}

/// The servers' certificate, or `None` when TLS is off or no certificate can be had (said
/// in the log).
pub(crate) fn load(cfg: &DatabasesConfig, state_dir: &Path, names: &[String]) -> Option<Tls> {
    if !cfg.tls {
        return None;
    }
    let (cert, key) = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone()),
        _ => {
            let dir = state_dir.join("tls");
            let (cert, key) = (dir.join("databases.crt"), dir.join("databases.key"));
            if !(cert.exists() && key.exists()) {
                if let Err(e) = make(&dir, &cert, &key, names) {
                    tracing::warn!(error = %e, "databases get no TLS: no certificate could be made");
                    return None;
                }
            }
            (cert, key)
        }
    };
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    match (read(&cert), read(&key)) {
        (Ok(cert), Ok(key)) => Some(Tls { cert, key }),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "databases get no TLS: the certificate cannot be read");
            None
        }
    }
}

/// Makes a self-signed certificate (P-256, ten years) for `names` (host names or addresses)
/// with openssl, the key readable by root only.
fn make(dir: &Path, cert: &Path, key: &Path, names: &[String]) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let san: Vec<String> = names
        .iter()
        .map(|n| match n.parse::<IpAddr>() {
            Ok(_) => format!("IP:{n}"),
            Err(_) => format!("DNS:{n}"),
        })
        .collect();
    let subject = format!("/CN={}", names.first().map_or("ai2in", String::as_str));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "3650", "-subj", &subject])
        .arg("-addext")
        .arg(format!("subjectAltName={}", san.join(",")))
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert)
        .output()
        .map_err(|e| format!("openssl (Debian package openssl): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "openssl: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    tracing::info!(cert = %cert.display(), "made the databases' TLS certificate");
    Ok(())
}

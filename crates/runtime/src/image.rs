//! Images a sandbox starts from. The `host` image needs no download: a small read-only
//! skeleton (directory links into /usr and the few /etc files the loader, TLS, name
//! resolution and shells need) beneath the writable layer, with the host's /usr bound
//! read-only. Nothing else of the host is copied: no keys, no /root, no state.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, symlink};
use std::path::{Path, PathBuf};

/// The name of the built-in image.
pub const HOST_IMAGE: &str = "host";

/// Entries of the host's /etc copied into the `host` image (when present). Never keys.
const HOST_ETC: &[&str] = &[
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "nsswitch.conf",
    "host.conf",
    "gai.conf",
    "protocols",
    "services",
    "ethers",
    "networks",
    "mime.types",
    "localtime",
    "timezone",
    "os-release",
    "debian_version",
    "issue",
    "profile",
    "profile.d",
    "bash.bashrc",
    "inputrc",
    "environment",
    "shells",
    "login.defs",
    "skel",
    "alternatives",
    "ca-certificates.conf",
    "ssl/certs",
    "ssl/openssl.cnf",
    "python3",
    "python3.11",
    "vim",
    "terminfo",
    "magic",
    "magic.mime",
    // Fontconfig's configuration, for desktop programs' fonts (its caches: `HOST_VAR`).
    "fonts",
];

/// What of the host's `/var` the `host` image carries: fontconfig's caches of the host's
/// fonts (in `/usr`, which sandboxes share), without which every desktop program's first
/// start in a sandbox scans every font (a second for openbox).
const HOST_VAR: &[&str] = &["cache/fontconfig"];

/// Top-level links of a merged-/usr system.
const USR_LINKS: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// Prepares the `host` image under `images_dir` once; returns its root. An existing image
/// is kept (running sandboxes use it as their lower layer).
pub fn prepare_host(images_dir: &Path) -> io::Result<PathBuf> {
    let image = images_dir.join(HOST_IMAGE);
    let (root, complete) = (image.join("rootfs"), image.join(".complete"));
    if complete.exists() {
        return Ok(root);
    }
    let staging = images_dir.join(format!(".{HOST_IMAGE}.{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(staging.join("etc"))?;
    for link in USR_LINKS {
        let host = Path::new("/").join(link);
        if let Ok(target) = fs::read_link(&host) {
            symlink(target, staging.join(link))?;
        }
    }
    for entry in HOST_ETC
        .iter()
        .map(|e| Path::new("etc").join(e))
        .chain(HOST_VAR.iter().map(|e| Path::new("var").join(e)))
    {
        let src = Path::new("/").join(&entry);
        if fs::symlink_metadata(&src).is_ok() {
            copy_tree(&src, &staging.join(&entry))?;
        }
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&image)?;
    let _ = fs::remove_dir_all(&root);
    fs::rename(&staging, &root)?;
    fs::write(complete, b"")?;
    Ok(root)
}

/// Copies a file, symlink or directory tree, keeping links as links and modes as modes.
fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    if let Some(parent) = dst.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)?;
    }
    let meta = fs::symlink_metadata(src)?;
    if meta.file_type().is_symlink() {
        symlink(fs::read_link(src)?, dst)
    } else if meta.is_dir() {
        fs::DirBuilder::new().mode(0o755).create(dst)?;
        for entry in fs::read_dir(src)? {
            let entry = entry?;
            copy_tree(&entry.path(), &dst.join(entry.file_name()))?;
        }
        Ok(())
    } else if meta.is_file() {
        fs::copy(src, dst).map(|_| ())
    } else {
        Ok(())
    }
}

/// The files each sandbox gets in its writable layer (owned by root inside, so they can be
/// edited): host name, hosts and name servers; for the `host` image (`skeleton`) also users
/// and groups (an OCI image brings its own).
pub fn sandbox_files(hostname: &str, skeleton: bool) -> Vec<(String, String)> {
    let mut files = vec![
        ("/etc/hostname".into(), format!("{hostname}\n")),
        (
            "/etc/hosts".into(),
            format!("127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\t{hostname}\n"),
        ),
        ("/etc/resolv.conf".into(), crate::network::resolv_conf()),
    ];
    if skeleton {
        files.extend(accounts());
    }
    files
}

fn accounts() -> Vec<(String, String)> {
    vec![
        (
            "/etc/passwd".into(),
            "root:x:0:0:root:/root:/bin/bash\n\
             user:x:1000:1000:user:/home/user:/bin/bash\n\
             nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
                .into(),
        ),
        (
            "/etc/group".into(),
            "root:x:0:\ntty:x:5:\nusers:x:100:user\nuser:x:1000:\nnogroup:x:65534:\n".into(),
        ),
    ]
}

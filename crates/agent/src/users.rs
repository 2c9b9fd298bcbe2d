//! The accounts of a sandbox: `root` and `user` (1000) always exist, whatever the image
//! holds; any other name, or a numeric `uid[:gid]` (as an image's `User` may say), is looked
//! up in the image's /etc/passwd and /etc/group.

use std::fs;

/// An account processes run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

fn builtin(name: &str) -> Option<User> {
    let (uid, home) = match name {
        "root" => (0, "/root"),
        "user" => (1000, "/home/user"),
        _ => return None,
    };
    Some(User {
        name: name.to_string(),
        uid,
        gid: uid,
        home: home.to_string(),
    })
}

/// `name:x:uid:gid:gecos:home:shell` lines of the sandbox's /etc/passwd.
fn passwd() -> Vec<User> {
    fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            Some(User {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f
                    .get(5)
                    .filter(|h| h.starts_with('/'))
                    .unwrap_or(&"/")
                    .to_string(),
            })
        })
        .collect()
}

/// The id of group `name` (a number, or a name in /etc/group).
fn group(name: &str) -> Option<u32> {
    if let Ok(gid) = name.parse() {
        return Some(gid);
    }
    fs::read_to_string("/etc/group")
        .ok()?
        .lines()
        .find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.first() == Some(&name)).then(|| f.get(2)?.parse().ok())?
        })
}

/// The account `spec` names: `root`, `user`, a name of /etc/passwd, or `uid[:gid]`, each
/// with an optional `:group`.
pub fn lookup(spec: &str) -> Option<User> {
    let (who, group_name) = match spec.split_once(':') {
        Some((who, g)) => (who, Some(g)),
        None => (spec, None),
    };
    let mut user = match builtin(who) {
        Some(u) => u,
        None => {
            let known = passwd();
            match who.parse::<u32>() {
                Ok(uid) => known.into_iter().find(|u| u.uid == uid).unwrap_or(User {
                    name: uid.to_string(),
                    uid,
                    gid: uid,
                    home: "/".into(),
                }),
                Err(_) => known.into_iter().find(|u| u.name == who)?,
            }
        }
    };
    if let Some(g) = group_name {
        user.gid = group(g)?;
    }
    Some(user)
}

/// The PATH of processes whose sandbox and request set none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The environment every process starts from, before the sandbox's and the request's.
pub fn base_env(user: &User) -> Vec<(String, String)> {
    [
        ("PATH", DEFAULT_PATH),
        ("HOME", user.home.as_str()),
        ("USER", user.name.as_str()),
        ("LOGNAME", user.name.as_str()),
        ("SHELL", "/bin/bash"),
        ("LANG", "C.UTF-8"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

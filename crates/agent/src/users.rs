//! The accounts of a sandbox, as the image's /etc/passwd defines them.

/// An account processes run as.
#[derive(Debug, Clone, Copy)]
pub struct User {
    pub name: &'static str,
    pub uid: u32,
    pub gid: u32,
    pub home: &'static str,
}

const USERS: &[User] = &[
    User {
        name: "root",
        uid: 0,
        gid: 0,
        home: "/root",
    },
    User {
        name: "user",
        uid: 1000,
        gid: 1000,
        home: "/home/user",
    },
];

/// The account called `name`.
pub fn lookup(name: &str) -> Option<User> {
    USERS.iter().copied().find(|u| u.name == name)
}

/// The environment every process starts from, before the sandbox's and the request's.
pub fn base_env(user: &User) -> Vec<(String, String)> {
    [
        (
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ),
        ("HOME", user.home),
        ("USER", user.name),
        ("LOGNAME", user.name),
        ("SHELL", "/bin/bash"),
        ("LANG", "C.UTF-8"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

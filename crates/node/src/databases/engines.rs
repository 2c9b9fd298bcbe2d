//! The engines a node serves, found at start from the host's packages (the `host` image
//! sees the host's `/usr`), and how each runs: the server's command line, its settings sized
//! to the database's memory, and what it needs the first time (a data directory from a
//! template, the database's user and database).

use std::path::Path;
use std::process::Command;

/// A database engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Engine {
    Postgres,
    Redis,
}

/// Where the servers' data lives inside their sandbox (the database's volume).
pub(crate) const DATA: &str = "/data";
/// Room kept free on a PostgreSQL volume while the server runs, and given back at each
/// start: a server whose disk filled up has the space its recovery needs to write.
const RESERVE_MB: u64 = 32;
/// Where a PostgreSQL template data directory lies in its template image.
const PG_TEMPLATE_DIR: &str = "/opt/ai2in/pgdata";

impl Engine {
    pub fn parse(name: &str) -> Option<Engine> {
        match name {
            "postgres" | "postgresql" => Some(Engine::Postgres),
            "redis" => Some(Engine::Redis),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::Redis => "redis",
        }
    }

    /// The smallest volume a server of the engine works on: a new PostgreSQL data
    /// directory takes ~40 MB, and its write-ahead log grows by 16 MB segments.
    pub fn min_disk_bytes(self) -> u64 {
        match self {
            Engine::Postgres => 128 << 20,
            Engine::Redis => 0,
        }
    }

    /// The port the server listens on inside its sandbox.
    pub fn port(self) -> u16 {
        match self {
            Engine::Postgres => 5432,
            Engine::Redis => 6379,
        }
    }

    /// The url of database `name` for `user` at `host:port`.
    pub fn url(self, user: &str, password: &str, host: &str, port: u16, name: &str) -> String {
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        match self {
            Engine::Postgres => format!("postgres://{user}:{password}@{host}:{port}/{name}"),
            Engine::Redis => format!("redis://{user}:{password}@{host}:{port}/0"),
        }
    }

    /// The server's start command (run as root in its sandbox, which drops to `user` for
    /// the server): the first start makes the data directory and the database's user from
    /// `DB_USER`, `DB_PASSWORD` and `DB_NAME`; later starts find them on the volume.
    pub fn start_cmd(self, version: &str, memory_bytes: u64, disk_bytes: u64) -> String {
        let drop = "setpriv --reuid=user --regid=user --init-groups";
        match self {
            Engine::Postgres => {
                let bin = format!("/usr/lib/postgresql/{version}/bin");
                // A quarter of the memory for shared buffers, as PostgreSQL advises.
                let buffers_kb = (memory_bytes / 4 / 1024).max(128 * 8);
                let connections = (memory_bytes >> 20).clamp(20, 200);
                // The write-ahead log stays a fraction of the volume.
                let wal_mb = (disk_bytes >> 20) / 4;
                format!(
                    "set -e\n\
                     chown user:user {DATA}\n\
                     if [ ! -f {DATA}/pg/PG_VERSION ]; then\n\
                     \x20 rm -rf {DATA}/pg.new\n\
                     \x20 {drop} cp -a {PG_TEMPLATE_DIR} {DATA}/pg.new\n\
                     \x20 printf 'CREATE ROLE \"%s\" LOGIN PASSWORD %s;\\nCREATE DATABASE \"%s\" OWNER \"%s\";\\n' \
                     \"$DB_USER\" \"'$DB_PASSWORD'\" \"$DB_NAME\" \"$DB_USER\" \
                     | {drop} {bin}/postgres --single -D {DATA}/pg.new postgres > /dev/null\n\
                     \x20 mv {DATA}/pg.new {DATA}/pg\n\
                     fi\n\
                     rm -f {DATA}/reserve\n\
                     (until {bin}/pg_isready -q -h /tmp -p 5432; do sleep 0.5; done; \
                     fallocate -l {RESERVE_MB}M {DATA}/reserve || rm -f {DATA}/reserve) \
                     > /dev/null 2>&1 &\n\
                     exec {drop} {bin}/postgres -D {DATA}/pg -c listen_addresses='*' -c port=5432 \
                     -c unix_socket_directories=/tmp -c shared_buffers={buffers_kb}kB \
                     -c max_connections={connections} -c max_wal_size={wal_mb}MB \
                     -c min_wal_size=32MB -c logging_collector=off"
                )
            }
            Engine::Redis => {
                let maxmemory = memory_bytes / 4 * 3;
                format!(
                    "set -e\n\
                     mkdir -p {DATA}/redis\n\
                     chown user:user {DATA} {DATA}/redis\n\
                     if [ ! -f {DATA}/redis/users.acl ]; then\n\
                     \x20 printf 'user default off\\nuser %s on >%s ~* &* +@all\\n' \"$DB_USER\" \"$DB_PASSWORD\" \
                     > {DATA}/redis/users.acl.new\n\
                     \x20 chown user:user {DATA}/redis/users.acl.new\n\
                     \x20 chmod 600 {DATA}/redis/users.acl.new\n\
                     \x20 mv {DATA}/redis/users.acl.new {DATA}/redis/users.acl\n\
                     fi\n\
                     exec {drop} redis-server --port 6379 --bind '* -::*' --protected-mode no \
                     --dir {DATA}/redis --aclfile {DATA}/redis/users.acl --appendonly yes \
                     --maxmemory {maxmemory} --maxmemory-policy noeviction --save ''"
                )
            }
        }
    }

    /// A command (as `user` in the server's sandbox) that succeeds once the server serves:
    /// PostgreSQL listens before it accepts sessions ("the database system is starting up"),
    /// Redis while it loads its append-only file (`-LOADING`; once loaded, an
    /// unauthenticated PING answers `NOAUTH`).
    pub fn ready_cmd(self, version: &str) -> Option<String> {
        match self {
            Engine::Postgres => Some(format!(
                "/usr/lib/postgresql/{version}/bin/pg_isready -q -h /tmp -p 5432"
            )),
            Engine::Redis => Some("redis-cli -p 6379 ping 2>&1 | grep -q -e NOAUTH -e PONG".into()),
        }
    }

    /// The shell command (run as `user` in the server's sandbox) that sets `user`'s
    /// password to `DB_PASSWORD`, in the server and where it keeps it.
    pub fn set_password_cmd(self, version: &str) -> String {
        match self {
            Engine::Postgres => format!(
                "printf 'ALTER ROLE \"%s\" PASSWORD %s;\\n' \"$DB_USER\" \"'$DB_PASSWORD'\" \
                 | /usr/lib/postgresql/{version}/bin/psql -X -q -v ON_ERROR_STOP=1 -h /tmp \
                 -U postgres -d postgres"
            ),
            // The ACL file is rewritten from the server's own ACL; the old password goes in
            // the environment, not on a command line.
            Engine::Redis => "printf 'ACL SETUSER %s resetpass >%s\\nACL SAVE\\n' \"$DB_USER\" \
                 \"$DB_PASSWORD\" | REDISCLI_AUTH=\"$DB_OLD_PASSWORD\" redis-cli -p 6379 \
                 --user \"$DB_USER\" > /tmp/acl.out && ! grep -v '^OK$' /tmp/acl.out"
                .into(),
        }
    }

    /// The shell command (as root, in a sandbox of the `host` image) that makes the template
    /// image's content, if the engine needs one.
    pub fn template_cmd(self, version: &str) -> Option<String> {
        match self {
            Engine::Postgres => Some(format!(
                "set -e\n\
                 mkdir -p {dir}\n\
                 chown user:user {dir}\n\
                 setpriv --reuid=user --regid=user --init-groups /usr/lib/postgresql/{version}/bin/initdb \
                 -D {dir} -U postgres --auth-local=trust --auth-host=scram-sha-256 -E UTF8 \
                 --locale=C.UTF-8 -N > /dev/null\n\
                 echo 'host all all all scram-sha-256' >> {dir}/pg_hba.conf",
                dir = PG_TEMPLATE_DIR
            )),
            Engine::Redis => None,
        }
    }
}

/// An engine and the versions of it this host has, newest first.
#[derive(Debug, Clone)]
pub(crate) struct Installed {
    pub engine: Engine,
    pub versions: Vec<String>,
}

/// The engines the host's packages provide.
pub(crate) fn detect() -> Vec<Installed> {
    let mut found = Vec::new();
    let mut postgres: Vec<String> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("bin/postgres").exists() && e.path().join("bin/initdb").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|v| v.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
        .collect();
    postgres.sort_by_key(|v| std::cmp::Reverse(v.parse::<u32>().unwrap_or(0)));
    if !postgres.is_empty() && Path::new("/usr/bin/setpriv").exists() {
        found.push(Installed {
            engine: Engine::Postgres,
            versions: postgres,
        });
    }
    if let Some(version) = redis_version() {
        found.push(Installed {
            engine: Engine::Redis,
            versions: vec![version],
        });
    }
    found
}

/// `7.0` of `Redis server v=7.0.15 sha=…`.
fn redis_version() -> Option<String> {
    let out = Command::new("redis-server")
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let full = text.split_whitespace().find_map(|w| w.strip_prefix("v="))?;
    let mut parts = full.split('.');
    Some(format!("{}.{}", parts.next()?, parts.next()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_the_engine_user_and_database() {
        assert_eq!(
            Engine::Postgres.url("u_a", "pw", "10.0.0.5", 21000, "app"),
            "postgres://u_a:pw@10.0.0.5:21000/app"
        );
        assert_eq!(
            Engine::Redis.url("u_a", "pw", "::1", 21001, "app"),
            "redis://u_a:pw@[::1]:21001/0"
        );
        assert_eq!(Engine::parse("postgresql"), Some(Engine::Postgres));
        assert_eq!(Engine::parse("mongodb"), None);
    }

    #[test]
    fn settings_follow_the_memory() {
        let cmd = Engine::Postgres.start_cmd("15", 512 << 20, 1 << 30);
        assert!(cmd.contains("max_wal_size=256MB"), "{cmd}");
        assert!(cmd.contains("shared_buffers=131072kB"), "{cmd}");
        assert!(cmd.contains("max_connections=200"), "{cmd}");
        let cmd = Engine::Redis.start_cmd("7.0", 128 << 20, 1 << 30);
        assert!(cmd.contains(&format!("--maxmemory {}", 96 << 20)), "{cmd}");
    }
}

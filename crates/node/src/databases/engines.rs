//! The engines a node serves and how each runs: what finds an engine's versions (a probe
//! run on the host, whose packages the `host` image sees, or in a sandbox of an engine
//! image), the server's command line, its settings sized to the database's memory, and what
//! it needs the first time (a data directory from a template, the database's user and
//! database).

use std::process::Command;
use std::sync::Arc;

use crate::images::Content;

/// A database engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Engine {
    Postgres,
    /// MySQL as MariaDB (what Debian packages): its versions say so (`10.11-MariaDB`).
    Mysql,
    Redis,
}

/// Where the servers' data lives inside their sandbox (the database's volume).
pub(crate) const DATA: &str = "/data";
/// Room kept free on a PostgreSQL volume while the server runs, and given back at each
/// start: a server whose disk filled up has the space its recovery needs to write.
const RESERVE_MB: u64 = 32;
/// Where a PostgreSQL template data directory lies in its template image.
const PG_TEMPLATE_DIR: &str = "/opt/ai2in/pgdata";
/// Where a MariaDB template data directory lies in its template image.
const MY_TEMPLATE_DIR: &str = "/opt/ai2in/mysqldata";
/// The size of MariaDB's redo log, in the template and at every start (a start with another
/// size would rewrite it).
const MY_LOG_MB: u64 = 16;
/// MariaDB's server (in sbin: not on every PATH).
const MARIADBD: &str = "/usr/sbin/mariadbd";
/// How MariaDB versions are named: the server's own suffix.
const MARIADB: &str = "-MariaDB";
/// Settings of every MariaDB server of the node (before any other: no option file is read).
const MY_BASE: &str = "--no-defaults --skip-name-resolve --performance-schema=0 --log-warnings=1 \
     --innodb-buffer-pool-load-at-startup=0 --innodb-buffer-pool-dump-at-shutdown=0";

/// What the servers and their helpers run as: uid 1000, named `user` (the account every
/// sandbox has; an engine image may lack it, or give the uid another name).
const ACCOUNT: &str = "grep -q '^user:' /etc/passwd || echo 'user:x:1000:1000::/home/user:/bin/sh' >> /etc/passwd\n\
     grep -q '^user:' /etc/group || echo 'user:x:1000:' >> /etc/group\n";

/// The start of every probe: `need TOOL…` prints `missing TOOL` and ends the probe when a
/// tool is not on the PATH.
const NEED: &str = "need() { for t; do command -v \"$t\" > /dev/null || { echo \"missing $t\"; exit 0; }; done; }\n";

impl Engine {
    /// Every engine, in the order lists show them.
    pub const ALL: [Engine; 3] = [Engine::Postgres, Engine::Mysql, Engine::Redis];

    /// A shell script that prints what [`Engine::versions`] reads: the engine's versions
    /// where it runs (on the host, or in a sandbox of an engine image), or `missing …`
    /// naming the first thing the node's commands need that is not there.
    pub fn probe(self) -> String {
        let needs = match self {
            Engine::Postgres => "need setpriv fallocate df\n\
                 for d in /usr/lib/postgresql/*/bin; do\n\
                 \x20 if [ -x \"$d/postgres\" ] && [ -x \"$d/initdb\" ] && [ -x \"$d/pg_isready\" ] && [ -x \"$d/psql\" ]; then\n\
                 \x20   v=${d%/bin}; echo \"version ${v##*/}\"\n\
                 \x20 fi\n\
                 done\n\
                 echo 'missing /usr/lib/postgresql/VERSION/bin/postgres'"
                .to_string(),
            Engine::Mysql => format!(
                "need setpriv fallocate df mariadb-install-db mariadb-admin mariadb\n\
                 [ -x {MARIADBD} ] || {{ echo 'missing {MARIADBD}'; exit 0; }}\n\
                 {MARIADBD} --version"
            ),
            Engine::Redis => "need setpriv redis-server redis-cli\nredis-server --version".into(),
        };
        format!("{NEED}{needs}")
    }

    /// The versions in [`Engine::probe`]'s output `out`, newest first, or what is missing.
    pub fn versions(self, out: &str) -> Result<Vec<String>, String> {
        let versions: Vec<String> = match self {
            Engine::Postgres => {
                let mut found: Vec<String> = out
                    .lines()
                    .filter_map(|l| l.strip_prefix("version "))
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
                    .map(str::to_string)
                    .collect();
                found.sort_by_key(|v| std::cmp::Reverse(v.parse::<u32>().unwrap_or(0)));
                found
            }
            Engine::Mysql => mariadb_version(out).into_iter().collect(),
            Engine::Redis => redis_version(out).into_iter().collect(),
        };
        if !versions.is_empty() {
            return Ok(versions);
        }
        Err(match out.lines().find_map(|l| l.strip_prefix("missing ")) {
            Some(what) => format!("no {what}"),
            None => format!("no version in {:?}", out.trim()),
        })
    }

    pub fn parse(name: &str) -> Option<Engine> {
        match name {
            "postgres" | "postgresql" => Some(Engine::Postgres),
            "mysql" | "mariadb" => Some(Engine::Mysql),
            "redis" => Some(Engine::Redis),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::Mysql => "mysql",
            Engine::Redis => "redis",
        }
    }

    /// Whether `asked` names version `have` (`10.11` names `10.11-MariaDB`).
    pub fn names_version(asked: &str, have: &str) -> bool {
        asked == have || have.strip_suffix(MARIADB) == Some(asked)
    }

    /// The smallest volume a server of the engine works on: a new PostgreSQL data
    /// directory takes ~40 MB, and its write-ahead log grows by 16 MB segments; a new
    /// MariaDB one ~50 MB (system tables, redo log, temporary tablespace).
    pub fn min_disk_bytes(self) -> u64 {
        match self {
            Engine::Postgres | Engine::Mysql => 128 << 20,
            Engine::Redis => 0,
        }
    }

    /// Whether its servers offer TLS on their port (Redis's would need a port of its own).
    pub fn offers_tls(self) -> bool {
        matches!(self, Engine::Postgres | Engine::Mysql)
    }

    /// The port the server listens on inside its sandbox.
    pub fn port(self) -> u16 {
        match self {
            Engine::Postgres => 5432,
            Engine::Mysql => 3306,
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
            Engine::Mysql => format!("mysql://{user}:{password}@{host}:{port}/{name}"),
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
                let keeper = reserve_keeper(&format!("{bin}/pg_isready -q -h /tmp -p 5432"), "");
                let tls = tls_files("-c ssl=on -c ssl_cert_file={cert} -c ssl_key_file={key}");
                format!(
                    "set -e\n\
                     {ACCOUNT}\
                     chown user:user {DATA}\n\
                     if [ ! -f {DATA}/pg/PG_VERSION ]; then\n\
                     \x20 rm -rf {DATA}/pg.new\n\
                     \x20 {drop} cp -a {PG_TEMPLATE_DIR} {DATA}/pg.new\n\
                     \x20 printf 'CREATE ROLE \"%s\" LOGIN PASSWORD %s;\\nCREATE DATABASE \"%s\" OWNER \"%s\";\\n' \
                     \"$DB_USER\" \"'$DB_PASSWORD'\" \"$DB_NAME\" \"$DB_USER\" \
                     | {drop} {bin}/postgres --single -D {DATA}/pg.new postgres > /dev/null\n\
                     \x20 mv {DATA}/pg.new {DATA}/pg\n\
                     fi\n\
                     {tls}\
                     {keeper}\
                     exec {drop} {bin}/postgres -D {DATA}/pg -c listen_addresses='*' -c port=5432 \
                     -c unix_socket_directories=/tmp -c shared_buffers={buffers_kb}kB \
                     -c max_connections={connections} -c max_wal_size={wal_mb}MB \
                     -c min_wal_size=32MB -c logging_collector=off $tls"
                )
            }
            Engine::Mysql => {
                // A quarter of the memory for InnoDB's buffer pool: connections, sorts and
                // the server itself take the rest.
                let pool_mb = (memory_bytes >> 20) / 4;
                let connections = (memory_bytes >> 20).clamp(20, 200);
                // Aria (the system tables' engine) and MyISAM keep caches of 128 MB by
                // default: a sixteenth of the memory, and nothing (no MyISAM table is used).
                let aria_mb = ((memory_bytes >> 20) / 16).clamp(8, 128);
                let keeper = reserve_keeper(
                    "mariadb-admin --socket=/tmp/mysqld.sock ping",
                    "rm -f /tmp/init.sql\n",
                );
                let tls = tls_files("--ssl-cert={cert} --ssl-key={key}");
                // The database's user and database, made by the server as it starts (every
                // time: they stay as they are once there); the file goes once it serves.
                format!(
                    "set -e\n\
                     {ACCOUNT}\
                     chown user:user {DATA}\n\
                     if [ ! -d {DATA}/mysql/mysql ]; then\n\
                     \x20 rm -rf {DATA}/mysql.new\n\
                     \x20 {drop} cp -a {MY_TEMPLATE_DIR} {DATA}/mysql.new\n\
                     \x20 mv {DATA}/mysql.new {DATA}/mysql\n\
                     fi\n\
                     (umask 077; printf \"CREATE DATABASE IF NOT EXISTS \\`%s\\`;\\n\
                     CREATE USER IF NOT EXISTS '%s'@'%%' IDENTIFIED BY '%s';\\n\
                     GRANT ALL ON \\`%s\\`.* TO '%s'@'%%';\\n\" \
                     \"$DB_NAME\" \"$DB_USER\" \"$DB_PASSWORD\" \"$DB_NAME\" \"$DB_USER\" > /tmp/init.sql)\n\
                     chown user:user /tmp/init.sql\n\
                     {tls}\
                     {keeper}\
                     exec {drop} {MARIADBD} {MY_BASE} --datadir={DATA}/mysql --port=3306 \
                     --bind-address='*' --socket=/tmp/mysqld.sock --pid-file=/tmp/mysqld.pid \
                     --tmpdir=/tmp --innodb-log-file-size={MY_LOG_MB}M \
                     --innodb-buffer-pool-size={pool_mb}M --max-connections={connections} \
                     --aria-pagecache-buffer-size={aria_mb}M --key-buffer-size=64K \
                     --innodb-log-buffer-size=2M --init-file=/tmp/init.sql $tls"
                )
            }
            Engine::Redis => {
                let maxmemory = memory_bytes / 4 * 3;
                format!(
                    "set -e\n\
                     {ACCOUNT}\
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
    /// unauthenticated PING answers `NOAUTH`). PostgreSQL and MariaDB have their volume's
    /// reserve by then (see [`reserve_keeper`]).
    pub fn ready_cmd(self) -> Option<String> {
        match self {
            Engine::Postgres | Engine::Mysql => Some(format!("test -f {RESERVED}")),
            Engine::Redis => Some("redis-cli -p 6379 ping 2>&1 | grep -q -e NOAUTH -e PONG".into()),
        }
    }

    /// Who runs [`Engine::set_password_cmd`] in the server's sandbox: MariaDB's `root`
    /// signs in by its socket's peer (the sandbox's root), the others as `user`.
    pub fn admin_user(self) -> &'static str {
        match self {
            Engine::Mysql => "root",
            Engine::Postgres | Engine::Redis => "user",
        }
    }

    /// The shell command (run as [`Engine::admin_user`] in the server's sandbox) that sets
    /// `user`'s password to `DB_PASSWORD`, in the server and where it keeps it.
    pub fn set_password_cmd(self, version: &str) -> String {
        match self {
            Engine::Postgres => format!(
                "printf 'ALTER ROLE \"%s\" PASSWORD %s;\\n' \"$DB_USER\" \"'$DB_PASSWORD'\" \
                 | /usr/lib/postgresql/{version}/bin/psql -X -q -v ON_ERROR_STOP=1 -h /tmp \
                 -U postgres -d postgres"
            ),
            Engine::Mysql => "printf \"ALTER USER '%s'@'%%' IDENTIFIED BY '%s';\\n\" \"$DB_USER\" \
                 \"$DB_PASSWORD\" | mariadb --no-defaults --socket=/tmp/mysqld.sock -u root"
                .into(),
            // The ACL file is rewritten from the server's own ACL; the old password goes in
            // the environment, not on a command line.
            Engine::Redis => "printf 'ACL SETUSER %s resetpass >%s\\nACL SAVE\\n' \"$DB_USER\" \
                 \"$DB_PASSWORD\" | REDISCLI_AUTH=\"$DB_OLD_PASSWORD\" redis-cli -p 6379 \
                 --user \"$DB_USER\" > /tmp/acl.out && ! grep -v '^OK$' /tmp/acl.out"
                .into(),
        }
    }

    /// The shell command (as root, in a sandbox of the engine's image) that makes the
    /// template image's content, if the engine needs one.
    pub fn template_cmd(self, version: &str) -> Option<String> {
        match self {
            Engine::Postgres => Some(format!(
                "set -e\n\
                 {ACCOUNT}\
                 mkdir -p {dir}\n\
                 chown user:user {dir}\n\
                 setpriv --reuid=user --regid=user --init-groups /usr/lib/postgresql/{version}/bin/initdb \
                 -D {dir} -U postgres --auth-local=trust --auth-host=scram-sha-256 -E UTF8 \
                 --locale=C.UTF-8 -N > /dev/null\n\
                 echo 'host all all all scram-sha-256' >> {dir}/pg_hba.conf",
                dir = PG_TEMPLATE_DIR
            )),
            // `root` signs in only by the socket, as the sandbox's root; no test database,
            // no anonymous user.
            Engine::Mysql => Some(format!(
                "set -e\n\
                 {ACCOUNT}\
                 mkdir -p {dir}\n\
                 chown user:user {dir}\n\
                 setpriv --reuid=user --regid=user --init-groups mariadb-install-db \
                 {MY_BASE} --datadir={dir} --auth-root-authentication-method=socket \
                 --skip-test-db --innodb-log-file-size={MY_LOG_MB}M > /dev/null",
                dir = MY_TEMPLATE_DIR
            )),
            Engine::Redis => None,
        }
    }
}

/// The part of a server's start that writes the node's certificate and key from
/// `DB_TLS_CERT` and `DB_TLS_KEY` (when the node gave them) for `user` only, sets `$tls`
/// to the server's options `options`, in which `{cert}` and `{key}` name the files, and
/// takes the key out of the environment the server and its helpers inherit.
fn tls_files(options: &str) -> String {
    let (cert, key) = ("/tmp/tls/server.crt", "/tmp/tls/server.key");
    let options = options.replace("{cert}", cert).replace("{key}", key);
    format!(
        "tls=''\n\
         if [ -n \"${{DB_TLS_CERT:-}}\" ]; then\n\
         \x20 mkdir -p /tmp/tls\n\
         \x20 (umask 077; printf '%s\\n' \"$DB_TLS_CERT\" > {cert}; printf '%s\\n' \"$DB_TLS_KEY\" > {key})\n\
         \x20 chown -R user:user /tmp/tls\n\
         \x20 tls='{options}'\n\
         fi\n\
         unset DB_TLS_CERT DB_TLS_KEY\n"
    )
}

/// Made by [`reserve_keeper`] once the server serves and its reserve is set aside.
const RESERVED: &str = "/tmp/ai2in-reserved";

/// The part of a server's start (in its shell, before the server's `exec`) that keeps
/// [`RESERVE_MB`] of its volume free for what the server must write to recover or to clean
/// up when the volume is full (PostgreSQL's write-ahead log, MariaDB's DDL log and Aria
/// recovery): the reserve is given back as the server starts, set aside again once `ready`
/// succeeds if the volume has room for it (twice its size: not after a restart on a full
/// volume, which it would fill again at once), then `after_ready` runs and [`RESERVED`] is
/// made, which the ready command waits for; it is given back when the volume has stayed
/// full for two seconds (the write that filled it has failed: the server can now drop what
/// filled it), and set aside again once there is room. It ends with the server (the shell's pid, which the server's `exec` takes).
fn reserve_keeper(ready: &str, after_ready: &str) -> String {
    let room_kb = 2 * RESERVE_MB * 1024;
    let reserve =
        format!("fallocate -l {RESERVE_MB}M {DATA}/reserve 2> /dev/null || rm -f {DATA}/reserve");
    let free = format!("free=$(df -k --output=avail {DATA} | tail -n 1)");
    // The keeper is a shell of its own (exec'd: a forked one would show the start's
    // environment, secrets included, in /proc), given the server's pid.
    let script = format!(
        "until {ready} > /dev/null 2>&1; do sleep 0.01; done\n\
         {after_ready}\
         {free}\n\
         if [ \"$free\" -gt {room_kb} ]; then {reserve}; fi\n\
         touch {RESERVED}\n\
         full=0\n\
         while sleep 1 && kill -0 $1 2> /dev/null; do\n\
         \x20 {free}\n\
         \x20 if [ \"$free\" -lt 1024 ]; then full=$((full + 1)); else full=0; fi\n\
         \x20 if [ $full -ge 2 ] && [ -f {DATA}/reserve ]; then\n\
         \x20   rm -f {DATA}/reserve\n\
         \x20   echo \"ai2in: the volume is full: its reserve of {RESERVE_MB} MB is free for the server to clean up until space is freed\" >&2\n\
         \x20 elif [ ! -f {DATA}/reserve ] && [ \"$free\" -gt {room_kb} ]; then\n\
         \x20   {reserve}\n\
         \x20 fi\n\
         done"
    );
    debug_assert!(
        !script.contains('\''),
        "the keeper's script is quoted in single quotes"
    );
    format!(
        "rm -f {DATA}/reserve {RESERVED}\n\
         (exec env -u DB_PASSWORD -u DB_TLS_CERT -u DB_TLS_KEY /bin/sh -c '{script}' keeper $$) \
         > /dev/null &\n"
    )
}

/// An engine, the versions of it a node serves (newest first) and what its servers start
/// from.
#[derive(Debug, Clone)]
pub(crate) struct Installed {
    pub engine: Engine,
    pub versions: Vec<String>,
    /// The engine image, as configured; `None`: the host's packages.
    pub image: Option<String>,
    /// The `host` image or the engine image's content.
    pub content: Arc<Content>,
    /// What the node's own sandboxes of it are created from: `host`, or the engine image's
    /// `img_…` id in the node's own tenant (fixed content, as the content is).
    pub base: String,
}

/// The engines the host's packages provide, among `engines`.
pub(crate) fn detect(engines: impl Iterator<Item = Engine>) -> Vec<Installed> {
    engines
        .filter_map(|engine| {
            let out = Command::new("/bin/sh")
                .arg("-c")
                .arg(engine.probe())
                .output()
                .ok()?;
            match engine.versions(&String::from_utf8_lossy(&out.stdout)) {
                Ok(versions) => Some(Installed {
                    engine,
                    versions,
                    image: None,
                    content: Arc::new(Content::host()),
                    base: ai2in_runtime::image::HOST_IMAGE.into(),
                }),
                Err(why) => {
                    tracing::debug!(engine = engine.as_str(), why, "not on the host");
                    None
                }
            }
        })
        .collect()
}

/// `10.11-MariaDB` of `mariadbd  Ver 10.11.6-MariaDB-0+deb12u1 for debian-linux-gnu …`.
fn mariadb_version(text: &str) -> Option<String> {
    let full = text.split_whitespace().skip_while(|w| *w != "Ver").nth(1)?;
    let (number, rest) = full.split_once('-')?;
    if !rest.starts_with("MariaDB") {
        return None;
    }
    let (major, minor) = major_minor(number)?;
    Some(format!("{major}.{minor}{MARIADB}"))
}

/// `7.0` of `Redis server v=7.0.15 sha=…`.
fn redis_version(text: &str) -> Option<String> {
    let full = text.split_whitespace().find_map(|w| w.strip_prefix("v="))?;
    let (major, minor) = major_minor(full)?;
    Some(format!("{major}.{minor}"))
}

/// The numbers of `MAJOR.MINOR[.…]` (what an image prints is not trusted: a version is
/// numbers only).
fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
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
        assert_eq!(
            Engine::Mysql.url("u_a", "pw", "10.0.0.5", 21002, "app"),
            "mysql://u_a:pw@10.0.0.5:21002/app"
        );
        assert!(Engine::names_version("10.11", "10.11-MariaDB"));
        assert!(Engine::names_version("10.11-MariaDB", "10.11-MariaDB"));
        assert!(!Engine::names_version("10", "10.11-MariaDB"));
    }

    #[test]
    fn probes_name_versions_or_what_is_missing() {
        assert_eq!(
            Engine::Postgres.versions(
                "version 15\nversion 17\nmissing /usr/lib/postgresql/VERSION/bin/postgres\n"
            ),
            Ok(vec!["17".to_string(), "15".to_string()])
        );
        assert_eq!(
            Engine::Postgres.versions("missing setpriv\n"),
            Err("no setpriv".to_string())
        );
        assert_eq!(
            Engine::Mysql.versions("/usr/sbin/mariadbd  Ver 11.8.3-MariaDB-0+deb13u1 from Debian -- for debian-linux-gnu on x86_64\n"),
            Ok(vec!["11.8-MariaDB".to_string()])
        );
        assert_eq!(
            Engine::Redis
                .versions("Redis server v=8.0.2 sha=00000000:1 malloc=jemalloc-5.3.0 bits=64\n"),
            Ok(vec!["8.0".to_string()])
        );
        assert!(Engine::Redis.versions("").is_err());
        // An image's probe prints what it likes: only numbers make a version.
        for hostile in [
            "Redis server v=7.0;reboot sha=0",
            "Redis server v=../../x.1 sha=0",
            "Redis server v=7.0a.1 sha=0",
        ] {
            assert!(Engine::Redis.versions(hostile).is_err(), "{hostile}");
        }
        assert!(
            Engine::Mysql
                .versions("mariadbd Ver 11.8'x-MariaDB for x")
                .is_err()
        );
        assert!(
            Engine::Postgres
                .versions("version 17/../../x\nversion $(id)\nversion \n")
                .is_err()
        );
    }

    #[test]
    fn settings_follow_the_memory() {
        let cmd = Engine::Postgres.start_cmd("15", 512 << 20, 1 << 30);
        assert!(cmd.contains("max_wal_size=256MB"), "{cmd}");
        assert!(cmd.contains("shared_buffers=131072kB"), "{cmd}");
        assert!(cmd.contains("max_connections=200"), "{cmd}");
        let cmd = Engine::Redis.start_cmd("7.0", 128 << 20, 1 << 30);
        assert!(cmd.contains(&format!("--maxmemory {}", 96 << 20)), "{cmd}");
        let cmd = Engine::Mysql.start_cmd("10.11-MariaDB", 256 << 20, 1 << 30);
        assert!(cmd.contains("--innodb-buffer-pool-size=64M"), "{cmd}");
        assert!(cmd.contains("--max-connections=200"), "{cmd}");
    }
}

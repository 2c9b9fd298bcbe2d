//! `Sandbox::shell`: a command line run by `/bin/sh -c` to completion.

use std::collections::BTreeMap;
use std::time::Duration;

use ai2in_api::{ShellRequest, ShellResponse};

use crate::error::Result;
use crate::sandbox::{Sandbox, millis};

/// A shell command and how to run it, for [`Sandbox::shell_with`].
///
/// ```no_run
/// # async fn demo(sandbox: ai2in_client::Sandbox) -> ai2in_client::Result<()> {
/// use ai2in_client::ShellOptions;
/// use std::time::Duration;
/// let out = sandbox
///     .shell_with(
///         ShellOptions::new("wc -c")
///             .stdin("hello")
///             .cwd("/tmp")
///             .env("LC_ALL", "C")
///             .timeout(Duration::from_secs(5)),
///     )
///     .await?;
/// assert_eq!(out.stdout.trim(), "5");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ShellOptions(ShellRequest);

impl ShellOptions {
    /// `cmd`, given to `/bin/sh -c`.
    pub fn new(cmd: impl Into<String>) -> Self {
        ShellOptions(ShellRequest {
            cmd: cmd.into(),
            ..Default::default()
        })
    }

    /// Working directory (default `/home/user`).
    pub fn cwd(mut self, cwd: impl Into<String>) -> Self {
        self.0.cwd = Some(cwd.into());
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.0
            .env
            .get_or_insert_with(BTreeMap::new)
            .insert(name.into(), value.into());
        self
    }

    /// Kills the command's process group after `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.0.timeout_ms = Some(millis(timeout));
        self
    }

    /// Text fed to standard input.
    pub fn stdin(mut self, stdin: impl Into<String>) -> Self {
        self.0.stdin = Some(stdin.into());
        self
    }

    /// `root` (default) or `user`.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.0.user = Some(user.into());
        self
    }
}

impl From<&str> for ShellOptions {
    fn from(cmd: &str) -> Self {
        ShellOptions::new(cmd)
    }
}

impl From<String> for ShellOptions {
    fn from(cmd: String) -> Self {
        ShellOptions::new(cmd)
    }
}

impl Sandbox {
    /// Runs `cmd` with `/bin/sh -c` as root in `/home/user` and answers its output and exit
    /// code (a failing command is not an error).
    ///
    /// ```no_run
    /// # async fn demo(sandbox: ai2in_client::Sandbox) -> ai2in_client::Result<()> {
    /// let out = sandbox.shell("uname -s").await?;
    /// assert_eq!((out.stdout.as_str(), out.exit_code), ("Linux\n", Some(0)));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn shell(&self, cmd: &str) -> Result<ShellResponse> {
        self.shell_with(ShellOptions::new(cmd)).await
    }

    /// Runs a shell command with options.
    pub async fn shell_with(&self, options: impl Into<ShellOptions>) -> Result<ShellResponse> {
        self.http()
            .post(&self.path("shell"), &options.into().0)
            .await
    }
}

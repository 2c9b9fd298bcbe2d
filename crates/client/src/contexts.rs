//! [`Contexts`]: code contexts, each an interpreter whose variables, imports and working
//! directory persist between runs.

use ai2in_api::{ContextInfo, ContextList, ContextRequest};

use crate::error::Result;
use crate::http::Empty;
use crate::run::Language;
use crate::sandbox::Sandbox;

/// The code contexts of a sandbox; from [`Sandbox::contexts`].
///
/// ```no_run
/// # async fn demo(sandbox: ai2in_client::Sandbox) -> ai2in_client::Result<()> {
/// use ai2in_client::{Language, RunOptions};
/// let ctx = sandbox.contexts().create(Language::Python, Some("/tmp")).await?;
/// sandbox.run_with(RunOptions::new("import os; os.getcwd()").context(&ctx.context_id)).await?;
/// sandbox.contexts().delete(&ctx.context_id).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Contexts<'a> {
    sandbox: &'a Sandbox,
}

impl<'a> Contexts<'a> {
    pub(crate) fn new(sandbox: &'a Sandbox) -> Self {
        Contexts { sandbox }
    }

    fn path(&self, route: &str) -> String {
        self.sandbox.path(&format!("contexts{route}"))
    }

    /// A new context for `language`, starting in `cwd` (default `/home/user`).
    pub async fn create(&self, language: Language, cwd: Option<&str>) -> Result<ContextInfo> {
        let body = ContextRequest {
            language: language.as_str().into(),
            cwd: cwd.map(str::to_string),
        };
        self.sandbox.http().post(&self.path(""), &body).await
    }

    /// The sandbox's contexts.
    pub async fn list(&self) -> Result<Vec<ContextInfo>> {
        let list: ContextList = self.sandbox.http().get(&self.path("")).await?;
        Ok(list.contexts)
    }

    /// Restarts the context's interpreter: its state is cleared, its id kept.
    pub async fn restart(&self, context_id: &str) -> Result<ContextInfo> {
        self.sandbox
            .http()
            .post(&self.path(&format!("/{context_id}/restart")), &Empty {})
            .await
    }

    /// Deletes the context and stops its interpreter.
    pub async fn delete(&self, context_id: &str) -> Result<()> {
        self.sandbox
            .http()
            .delete(&self.path(&format!("/{context_id}")))
            .await
    }
}

//! [`Desktop`]: the display of a desktop sandbox (created with `desktop`): screenshots,
//! mouse, keyboard, windows, programs and a live view.

use ai2in_api::{
    CommandRequest, CommandStarted, Cursor, DesktopInfo, KeyboardRequest, MouseAction, MouseButton,
    MouseRequest, ScrollDirection, Stream, StreamRequest, Window, WindowList,
};
use reqwest::Method;

use crate::error::Result;
use crate::sandbox::Sandbox;

/// The display of a desktop sandbox; from [`Sandbox::desktop`].
///
/// ```no_run
/// # async fn demo(client: ai2in_client::Client) -> ai2in_client::Result<()> {
/// use ai2in_client::{CreateSandbox, api::DesktopRequest};
/// let sandbox = client
///     .create_sandbox(CreateSandbox {
///         desktop: Some(DesktopRequest::Enabled(true)),
///         ..Default::default()
///     })
///     .await?;
/// let desktop = sandbox.desktop();
/// desktop.launch("xterm").await?;
/// desktop.type_text("echo hello > /tmp/hello").await?;
/// desktop.press(&["Return"]).await?;
/// let png = desktop.screenshot().await?;
/// assert!(png.starts_with(b"\x89PNG"));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Desktop<'a> {
    sandbox: &'a Sandbox,
}

impl<'a> Desktop<'a> {
    pub(crate) fn new(sandbox: &'a Sandbox) -> Self {
        Desktop { sandbox }
    }

    fn path(&self, route: &str) -> String {
        self.sandbox.path(&format!("desktop{route}"))
    }

    /// The display, its screen and its live view.
    pub async fn info(&self) -> Result<DesktopInfo> {
        self.sandbox.http().get(&self.path("")).await
    }

    /// The screen as a PNG.
    pub async fn screenshot(&self) -> Result<Vec<u8>> {
        let http = self.sandbox.http();
        let response = http
            .send(http.request(Method::GET, &self.path("/screenshot")))
            .await?;
        Ok(response.bytes().await?.to_vec())
    }

    /// Sends a mouse request as it is (see [`MouseRequest`]).
    pub async fn mouse(&self, request: MouseRequest) -> Result<()> {
        self.sandbox
            .http()
            .post_unit(&self.path("/mouse"), &request)
            .await
    }

    async fn pointer(
        &self,
        action: MouseAction,
        at: Option<(u32, u32)>,
        button: Option<MouseButton>,
    ) -> Result<()> {
        self.mouse(MouseRequest {
            action,
            x: at.map(|p| p.0),
            y: at.map(|p| p.1),
            button,
            to_x: None,
            to_y: None,
            direction: None,
            amount: None,
        })
        .await
    }

    /// Moves the pointer to (`x`, `y`).
    pub async fn move_to(&self, x: u32, y: u32) -> Result<()> {
        self.pointer(MouseAction::Move, Some((x, y)), None).await
    }

    /// Clicks `button` at (`x`, `y`), or where the pointer is.
    pub async fn click(&self, at: Option<(u32, u32)>, button: MouseButton) -> Result<()> {
        self.pointer(MouseAction::Click, at, Some(button)).await
    }

    /// Double-clicks the left button at (`x`, `y`), or where the pointer is.
    pub async fn double_click(&self, at: Option<(u32, u32)>) -> Result<()> {
        self.pointer(MouseAction::DoubleClick, at, None).await
    }

    /// Presses `button` where the pointer is.
    pub async fn mouse_down(&self, button: MouseButton) -> Result<()> {
        self.pointer(MouseAction::Down, None, Some(button)).await
    }

    /// Releases `button` where the pointer is.
    pub async fn mouse_up(&self, button: MouseButton) -> Result<()> {
        self.pointer(MouseAction::Up, None, Some(button)).await
    }

    /// Presses the left button at `from`, moves to `to` and releases it there.
    pub async fn drag(&self, from: (u32, u32), to: (u32, u32)) -> Result<()> {
        self.mouse(MouseRequest {
            action: MouseAction::Drag,
            x: Some(from.0),
            y: Some(from.1),
            button: None,
            to_x: Some(to.0),
            to_y: Some(to.1),
            direction: None,
            amount: None,
        })
        .await
    }

    /// Turns the wheel `amount` clicks in `direction`, at (`x`, `y`) or where the pointer is.
    pub async fn scroll(
        &self,
        direction: ScrollDirection,
        amount: u32,
        at: Option<(u32, u32)>,
    ) -> Result<()> {
        self.mouse(MouseRequest {
            action: MouseAction::Scroll,
            x: at.map(|p| p.0),
            y: at.map(|p| p.1),
            button: None,
            to_x: None,
            to_y: None,
            direction: Some(direction),
            amount: Some(amount),
        })
        .await
    }

    /// Where the pointer is.
    pub async fn cursor(&self) -> Result<Cursor> {
        self.sandbox.http().get(&self.path("/cursor")).await
    }

    /// Types `text` (any Unicode).
    pub async fn type_text(&self, text: &str) -> Result<()> {
        let request = KeyboardRequest {
            text: Some(text.into()),
            keys: None,
        };
        self.sandbox
            .http()
            .post_unit(&self.path("/keyboard"), &request)
            .await
    }

    /// Presses key combinations in turn (`["ctrl+l", "Return"]`).
    pub async fn press(&self, keys: &[&str]) -> Result<()> {
        let request = KeyboardRequest {
            text: None,
            keys: Some(keys.iter().map(|k| k.to_string()).collect()),
        };
        self.sandbox
            .http()
            .post_unit(&self.path("/keyboard"), &request)
            .await
    }

    /// Starts `cmd` on the display, as a background command ([`Sandbox::commands`] sees it).
    pub async fn launch(&self, cmd: &str) -> Result<CommandStarted> {
        let request = CommandRequest {
            cmd: cmd.into(),
            ..Default::default()
        };
        self.sandbox
            .http()
            .post(&self.path("/launch"), &request)
            .await
    }

    /// The top-level windows, bottom to top.
    pub async fn windows(&self) -> Result<Vec<Window>> {
        let list: WindowList = self.sandbox.http().get(&self.path("/windows")).await?;
        Ok(list.windows)
    }

    /// Starts the live view (a noVNC page); `view_only` viewers cannot send input.
    pub async fn stream(&self, view_only: bool) -> Result<Stream> {
        let request = StreamRequest {
            view_only: Some(view_only),
        };
        self.sandbox
            .http()
            .post(&self.path("/stream"), &request)
            .await
    }

    /// Stops the live view; its viewers are cut.
    pub async fn stop_stream(&self) -> Result<()> {
        self.sandbox.http().delete(&self.path("/stream")).await
    }
}

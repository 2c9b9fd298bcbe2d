//! The node's desktop calls: the display's start at create, and each route's checks and its
//! request to the sandbox's agent.

use ai2in_api::{
    CommandRequest, Cursor, DesktopInfo, KeyboardRequest, MouseAction, MouseButton, MouseRequest,
    ScrollDirection, Window, WindowList,
};
use ai2in_protocol::{DesktopAction, DisplaySpec, Event, Request};
use ai2in_store::Screen;

use super::keys;
use crate::auth::{Principal, Scope};
use crate::error::NodeError;
use crate::node::Node;

/// Longest text one keyboard call types.
const MAX_TEXT: usize = 10_000;
/// Most key combinations one keyboard call presses.
const MAX_KEYS: usize = 100;
/// Most wheel clicks one scroll turns.
const MAX_SCROLL: u32 = 100;

impl Node {
    /// Starts the display of sandbox `id` (just created or claimed) at `screen`; a missing
    /// program is the create's error (400).
    pub(crate) async fn start_display(&self, id: &str, screen: Screen) -> Result<(), NodeError> {
        let spec = DisplaySpec {
            width: screen.width,
            height: screen.height,
            dpi: screen.dpi,
        };
        let mut call = self
            .send_to_agent(id, &Request::DesktopStart(spec), &[])
            .await?;
        match call.next().await {
            Ok((Event::Done { .. }, _)) => {}
            Ok((other, _)) => return Err(call.unexpected(format_args!("answered {other:?}"))),
            Err(NodeError::NotFound(missing)) => {
                return Err(NodeError::Invalid(format!("desktop: {missing}")));
            }
            Err(e) => return Err(e),
        }
        self.store().set_desktop(id, screen)?;
        Ok(())
    }

    /// The screen of the caller's sandbox `id`, which must have a desktop (and be running
    /// when `running`).
    pub(super) fn screen_of(
        &self,
        caller: &Principal,
        id: &str,
        running: bool,
    ) -> Result<Screen, NodeError> {
        let record = if running {
            self.running_record(caller, id)?
        } else {
            self.live_record(caller, id)?
        };
        record.desktop.ok_or_else(|| {
            NodeError::Invalid(format!(
                "sandbox {id} has no desktop: create it with desktop: true"
            ))
        })
    }

    /// Sends `action` to the display of sandbox `id`; the call gives its answer.
    async fn display_call(
        &self,
        id: &str,
        action: DesktopAction,
    ) -> Result<crate::agent_client::AgentCall, NodeError> {
        self.send_to_agent(id, &Request::Desktop(action), &[]).await
    }

    async fn display_done(&self, id: &str, action: DesktopAction) -> Result<(), NodeError> {
        let mut call = self.display_call(id, action).await?;
        match call.next().await? {
            (Event::Done { .. }, _) => Ok(()),
            (other, _) => Err(call.unexpected(format_args!("answered {other:?}"))),
        }
    }

    /// `GET …/desktop`.
    pub fn desktop_info(&self, caller: &Principal, id: &str) -> Result<DesktopInfo, NodeError> {
        caller.require(Scope::SandboxesRead)?;
        let screen = self.screen_of(caller, id, false)?;
        Ok(DesktopInfo {
            display: ":0".into(),
            width: screen.width,
            height: screen.height,
            dpi: screen.dpi,
            stream: self.streams().info(id),
        })
    }

    /// `GET …/desktop/screenshot`: the screen as a PNG.
    pub async fn screenshot(&self, caller: &Principal, id: &str) -> Result<Vec<u8>, NodeError> {
        caller.require(Scope::SandboxesRead)?;
        self.screen_of(caller, id, true)?;
        let mut call = self.display_call(id, DesktopAction::Screenshot).await?;
        let mut png = Vec::new();
        loop {
            match call.next().await? {
                (Event::Data, piece) => png.extend_from_slice(&piece),
                (Event::Done { .. }, _) => return Ok(png),
                (other, _) => return Err(call.unexpected(format_args!("answered {other:?}"))),
            }
        }
    }

    /// `GET …/desktop/cursor`.
    pub async fn cursor(&self, caller: &Principal, id: &str) -> Result<Cursor, NodeError> {
        caller.require(Scope::SandboxesRead)?;
        self.screen_of(caller, id, true)?;
        let mut call = self.display_call(id, DesktopAction::Cursor).await?;
        match call.next().await? {
            (Event::Cursor { x, y }, _) => Ok(Cursor { x, y }),
            (other, _) => Err(call.unexpected(format_args!("answered {other:?}"))),
        }
    }

    /// `GET …/desktop/windows`.
    pub async fn windows(&self, caller: &Principal, id: &str) -> Result<WindowList, NodeError> {
        caller.require(Scope::SandboxesRead)?;
        self.screen_of(caller, id, true)?;
        let mut call = self.display_call(id, DesktopAction::Windows).await?;
        match call.next().await? {
            (Event::Windows { windows }, _) => Ok(WindowList {
                windows: windows
                    .into_iter()
                    .map(|w| Window {
                        id: w.id,
                        title: w.title,
                        class: w.class,
                        x: w.x,
                        y: w.y,
                        width: w.width,
                        height: w.height,
                        focused: w.focused,
                    })
                    .collect(),
            }),
            (other, _) => Err(call.unexpected(format_args!("answered {other:?}"))),
        }
    }

    /// `POST …/desktop/mouse`.
    pub async fn mouse(
        &self,
        caller: &Principal,
        id: &str,
        req: MouseRequest,
    ) -> Result<(), NodeError> {
        caller.require(Scope::SandboxesWrite)?;
        let screen = self.screen_of(caller, id, true)?;
        let action = pointer_action(screen, req)?;
        self.display_done(id, action).await
    }

    /// `POST …/desktop/keyboard`.
    pub async fn keyboard(
        &self,
        caller: &Principal,
        id: &str,
        req: KeyboardRequest,
    ) -> Result<(), NodeError> {
        caller.require(Scope::SandboxesWrite)?;
        self.screen_of(caller, id, true)?;
        let action = match (req.text, req.keys) {
            (Some(text), None) => {
                if text.chars().count() > MAX_TEXT {
                    return Err(NodeError::Invalid(format!(
                        "text is longer than {MAX_TEXT} characters: type it in parts"
                    )));
                }
                DesktopAction::Type { text }
            }
            (None, Some(keys)) => {
                if keys.is_empty() || keys.len() > MAX_KEYS {
                    return Err(NodeError::Invalid(format!(
                        "keys must hold 1 to {MAX_KEYS} key combinations"
                    )));
                }
                let combos = keys
                    .iter()
                    .enumerate()
                    .map(|(i, k)| keys::combo(k).map_err(|e| format!("keys[{i}]: {e}")))
                    .collect::<Result<_, _>>()
                    .map_err(NodeError::Invalid)?;
                DesktopAction::Keys { combos }
            }
            _ => {
                return Err(NodeError::Invalid(
                    "give either text (to type) or keys (to press), not both nor neither".into(),
                ));
            }
        };
        self.display_done(id, action).await
    }

    /// `POST …/desktop/launch`: a background command with the display.
    pub async fn launch(
        &self,
        caller: &Principal,
        id: &str,
        req: CommandRequest,
    ) -> Result<(String, u32), NodeError> {
        caller.require(Scope::SandboxesWrite)?;
        self.screen_of(caller, id, true)?;
        self.start_command(caller, id, req).await
    }
}

/// The agent's pointer action for `req` on `screen`, or the field that is wrong.
fn pointer_action(screen: Screen, req: MouseRequest) -> Result<DesktopAction, NodeError> {
    let MouseRequest {
        action,
        x,
        y,
        button,
        to_x,
        to_y,
        direction,
        amount,
    } = req;
    let name = serde_json::to_value(action)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let not_for = |field: &str| {
        NodeError::Invalid(format!("{field} does not apply to a {name}: leave it out"))
    };
    if action != MouseAction::Drag && (to_x.is_some() || to_y.is_some()) {
        return Err(not_for(if to_x.is_some() { "to_x" } else { "to_y" }));
    }
    if action != MouseAction::Scroll && (direction.is_some() || amount.is_some()) {
        return Err(not_for(if direction.is_some() {
            "direction"
        } else {
            "amount"
        }));
    }
    if matches!(action, MouseAction::Move | MouseAction::Scroll) && button.is_some() {
        return Err(not_for("button"));
    }
    let at = point(screen, x, y, "x", "y")?;
    let button = match button.unwrap_or_default() {
        MouseButton::Left => 1,
        MouseButton::Middle => 2,
        MouseButton::Right => 3,
    };
    let click = [(button, true), (button, false)];
    let required = |p: Option<(u16, u16)>, what: &str| {
        p.ok_or_else(|| NodeError::Invalid(format!("a {name} needs {what}")))
    };
    let (to, buttons, then, finally) = match action {
        MouseAction::Move => (Some(required(at, "x and y")?), vec![], None, vec![]),
        MouseAction::Click => (at, click.to_vec(), None, vec![]),
        MouseAction::DoubleClick => (at, [click, click].concat(), None, vec![]),
        MouseAction::Down => (at, vec![(button, true)], None, vec![]),
        MouseAction::Up => (at, vec![(button, false)], None, vec![]),
        MouseAction::Drag => {
            let end = point(screen, to_x, to_y, "to_x", "to_y")?;
            (
                Some(required(at, "x and y")?),
                vec![(button, true)],
                Some(required(end, "to_x and to_y")?),
                vec![(button, false)],
            )
        }
        MouseAction::Scroll => {
            let amount = amount.unwrap_or(1);
            if !(1..=MAX_SCROLL).contains(&amount) {
                return Err(NodeError::Invalid(format!(
                    "amount {amount} is out of range: give 1 to {MAX_SCROLL} wheel clicks"
                )));
            }
            let wheel = match direction.unwrap_or_default() {
                ScrollDirection::Up => 4,
                ScrollDirection::Down => 5,
            };
            let turns = (0..amount).flat_map(|_| [(wheel, true), (wheel, false)]);
            (at, turns.collect(), None, vec![])
        }
    };
    Ok(DesktopAction::Pointer {
        to,
        buttons,
        then,
        finally,
    })
}

/// The point (`x`, `y`) on `screen`: both or neither, inside it.
fn point(
    screen: Screen,
    x: Option<u32>,
    y: Option<u32>,
    x_name: &str,
    y_name: &str,
) -> Result<Option<(u16, u16)>, NodeError> {
    let inside = |v: u32, name: &str, size: u16| {
        if v < u32::from(size) {
            Ok(v as u16)
        } else {
            Err(NodeError::Invalid(format!(
                "{name} {v} is outside the screen (0 to {})",
                size - 1
            )))
        }
    };
    match (x, y) {
        (None, None) => Ok(None),
        (Some(x), Some(y)) => Ok(Some((
            inside(x, x_name, screen.width)?,
            inside(y, y_name, screen.height)?,
        ))),
        _ => Err(NodeError::Invalid(format!(
            "give both {x_name} and {y_name}, or neither"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCREEN: Screen = Screen {
        width: 1280,
        height: 800,
        dpi: 96,
    };

    fn mouse(action: MouseAction) -> MouseRequest {
        MouseRequest {
            action,
            x: None,
            y: None,
            button: None,
            to_x: None,
            to_y: None,
            direction: None,
            amount: None,
        }
    }

    #[test]
    fn clicks_drags_and_scrolls_become_pointer_events() {
        let click = MouseRequest {
            x: Some(10),
            y: Some(20),
            button: Some(MouseButton::Right),
            ..mouse(MouseAction::Click)
        };
        assert_eq!(
            pointer_action(SCREEN, click).unwrap(),
            DesktopAction::Pointer {
                to: Some((10, 20)),
                buttons: vec![(3, true), (3, false)],
                then: None,
                finally: vec![],
            }
        );
        let scroll = MouseRequest {
            direction: Some(ScrollDirection::Up),
            amount: Some(2),
            ..mouse(MouseAction::Scroll)
        };
        let DesktopAction::Pointer { buttons, .. } = pointer_action(SCREEN, scroll).unwrap() else {
            panic!("not a pointer action");
        };
        assert_eq!(buttons, vec![(4, true), (4, false), (4, true), (4, false)]);
    }

    #[test]
    fn bad_points_and_fields_are_named() {
        let outside = MouseRequest {
            x: Some(1280),
            y: Some(0),
            ..mouse(MouseAction::Click)
        };
        let err = pointer_action(SCREEN, outside).unwrap_err().to_string();
        assert!(
            err.contains("x 1280 is outside the screen (0 to 1279)"),
            "{err}"
        );
        let half = MouseRequest {
            y: Some(3),
            ..mouse(MouseAction::Move)
        };
        assert!(
            pointer_action(SCREEN, half)
                .unwrap_err()
                .to_string()
                .contains("both x and y")
        );
        let err = pointer_action(SCREEN, mouse(MouseAction::Drag))
            .unwrap_err()
            .to_string();
        assert!(err.contains("a drag needs x and y"), "{err}");
        let stray = MouseRequest {
            direction: Some(ScrollDirection::Up),
            ..mouse(MouseAction::Click)
        };
        let err = pointer_action(SCREEN, stray).unwrap_err().to_string();
        assert!(err.contains("direction does not apply to a click"), "{err}");
    }
}

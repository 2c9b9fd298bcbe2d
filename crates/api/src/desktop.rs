use serde::{Deserialize, Serialize};

/// The defaults of a desktop's screen.
pub const DEFAULT_WIDTH: u16 = 1280;
/// The defaults of a desktop's screen.
pub const DEFAULT_HEIGHT: u16 = 800;
/// The defaults of a desktop's screen.
pub const DEFAULT_DPI: u16 = 96;

/// A create's `desktop`: `true`, or the screen it wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum DesktopRequest {
    /// `true`: a desktop of the default size (1280×800, 96 dpi); `false`: none.
    Enabled(bool),
    /// A desktop of this size.
    Screen(ScreenRequest),
}

// By hand rather than untagged, so that a wrong field inside the object is named.
impl<'de> Deserialize<'de> for DesktopRequest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = DesktopRequest;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("true, false or an object { width, height, dpi }")
            }

            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(DesktopRequest::Enabled(v))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                let screen =
                    ScreenRequest::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(DesktopRequest::Screen(screen))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// The screen a desktop create asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ScreenRequest {
    /// Width in pixels, 320 to 3840 (default 1280).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u16>,
    /// Height in pixels, 240 to 2160 (default 800).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u16>,
    /// Dots per inch, 48 to 384 (default 96).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpi: Option<u16>,
}

/// `GET /v1/sandboxes/:id/desktop`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DesktopInfo {
    /// The X display, `:0` (`DISPLAY` of every process of the sandbox).
    pub display: String,
    /// Width in pixels.
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
    /// Dots per inch.
    pub dpi: u16,
    /// The live view, while one runs.
    pub stream: Option<StreamInfo>,
}

/// A running live view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StreamInfo {
    /// The noVNC page.
    pub url: String,
    /// Whether viewers can only watch.
    pub view_only: bool,
}

/// What `POST /v1/sandboxes/:id/desktop/mouse` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MouseAction {
    /// Move the pointer to `x`, `y`.
    Move,
    /// Press and release `button` (at `x`, `y` when given).
    Click,
    /// Click twice.
    DoubleClick,
    /// Press `button`.
    Down,
    /// Release `button`.
    Up,
    /// Press at `x`, `y`, move to `to_x`, `to_y`, release.
    Drag,
    /// Turn the wheel `amount` clicks in `direction` (at `x`, `y` when given).
    Scroll,
}

/// A mouse button.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MouseButton {
    /// The left button (default).
    #[default]
    Left,
    /// The middle button.
    Middle,
    /// The right button.
    Right,
}

/// Which way the wheel turns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ScrollDirection {
    /// Away from the user: content moves down, earlier lines show.
    Up,
    /// Towards the user (default).
    #[default]
    Down,
}

/// `POST /v1/sandboxes/:id/desktop/mouse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MouseRequest {
    /// What to do.
    pub action: MouseAction,
    /// Where (0 ≤ x < width): required by `move` and `drag`, optional elsewhere (with `y`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<u32>,
    /// Where (0 ≤ y < height).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<u32>,
    /// The button (default `left`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub button: Option<MouseButton>,
    /// Where a `drag` ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_x: Option<u32>,
    /// Where a `drag` ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_y: Option<u32>,
    /// A `scroll`'s direction (default `down`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<ScrollDirection>,
    /// A `scroll`'s wheel clicks, 1 to 100 (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<u32>,
}

/// `POST /v1/sandboxes/:id/desktop/keyboard`: `text` or `keys`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct KeyboardRequest {
    /// Text to type, any Unicode (up to 10,000 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Key combinations to press in turn: X keysym names joined by `+` with modifiers
    /// (`ctrl`, `shift`, `alt`, `super`), e.g. `["ctrl+l", "Return"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<String>>,
}

/// `GET /v1/sandboxes/:id/desktop/cursor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Cursor {
    /// Where the pointer is.
    pub x: i32,
    /// Where the pointer is.
    pub y: i32,
}

/// A top-level window of the desktop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Window {
    /// Its X window id.
    pub id: u32,
    /// Its title.
    pub title: String,
    /// Its class (`XTerm`, `Chromium`…).
    pub class: String,
    /// Its position on the screen.
    pub x: i32,
    /// Its position on the screen.
    pub y: i32,
    /// Its size.
    pub width: u32,
    /// Its size.
    pub height: u32,
    /// Whether it has the keyboard focus.
    pub focused: bool,
}

/// `GET /v1/sandboxes/:id/desktop/windows`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WindowList {
    /// Bottom to top.
    pub windows: Vec<Window>,
}

/// `POST /v1/sandboxes/:id/desktop/stream`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StreamRequest {
    /// Viewers can watch but not send input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view_only: Option<bool>,
}

/// A live view just started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Stream {
    /// The noVNC page, through the node's proxy.
    pub url: String,
    /// The VNC password the page asks for (also accepted as `&password=` in the url).
    pub password: String,
    /// Whether viewers can only watch.
    pub view_only: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desktop_is_a_flag_or_a_screen_whose_wrong_fields_are_named() {
        let parse = |json: &str| serde_json::from_str::<DesktopRequest>(json);
        assert_eq!(parse("true").unwrap(), DesktopRequest::Enabled(true));
        let screen = parse(r#"{"width": 800}"#).unwrap();
        assert_eq!(
            screen,
            DesktopRequest::Screen(ScreenRequest {
                width: Some(800),
                ..Default::default()
            })
        );
        let err = parse(r#"{"width": 800, "depth": 3}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("depth"), "{err}");
        assert!(
            parse("3")
                .unwrap_err()
                .to_string()
                .contains("true, false or an object")
        );
    }
}

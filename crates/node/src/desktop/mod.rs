//! Desktop sandboxes: a display (Xvfb and openbox, started by the sandbox's agent after the
//! sandbox is up, so pooled sandboxes serve desktop creates too), what agents do on it
//! (screenshots, pointer, keys, windows, programs) and a live view for people (x11vnc and
//! noVNC through the node's proxy). The checks of what a request asks live here; the X11
//! work is the agent's.

mod api;
mod keys;
mod keysyms;
mod stream;

use std::path::Path;

use ai2in_api::{DEFAULT_DPI, DEFAULT_HEIGHT, DEFAULT_WIDTH, DesktopRequest, ScreenRequest};
use ai2in_store::Screen;

use crate::error::NodeError;

pub(crate) use stream::Streams;

/// What a desktop needs from the `host` image, and the Debian package of each.
const PROGRAMS: [(&str, &str); 2] = [("Xvfb", "xvfb"), ("openbox", "openbox")];

/// Why this host's `host` image cannot run desktops (a program missing), if it cannot.
pub(crate) fn host_support() -> Option<String> {
    let missing: Vec<String> = PROGRAMS
        .iter()
        .filter(|(program, _)| !Path::new("/usr/bin").join(program).exists())
        .map(|(program, package)| format!("{program} (Debian package {package})"))
        .collect();
    if missing.is_empty() {
        None
    } else {
        Some(format!(
            "this node cannot run desktops on the host image: install {}",
            missing.join(" and ")
        ))
    }
}

/// The screen a create's `desktop` asks for, checked; `None` without a desktop.
pub(crate) fn screen(desktop: Option<DesktopRequest>) -> Result<Option<Screen>, NodeError> {
    let asked = match desktop {
        None | Some(DesktopRequest::Enabled(false)) => return Ok(None),
        Some(DesktopRequest::Enabled(true)) => ScreenRequest::default(),
        Some(DesktopRequest::Screen(asked)) => asked,
    };
    let field = |name: &str, value: Option<u16>, default: u16, low: u16, high: u16| {
        let value = value.unwrap_or(default);
        if (low..=high).contains(&value) {
            Ok(value)
        } else {
            Err(NodeError::Invalid(format!(
                "desktop.{name} {value} is out of range: give {low} to {high}"
            )))
        }
    };
    Ok(Some(Screen {
        width: field("width", asked.width, DEFAULT_WIDTH, 320, 3840)?,
        height: field("height", asked.height, DEFAULT_HEIGHT, 240, 2160)?,
        dpi: field("dpi", asked.dpi, DEFAULT_DPI, 48, 384)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn screens_default_and_are_bounded() {
        assert_eq!(screen(None).unwrap(), None);
        assert_eq!(screen(Some(DesktopRequest::Enabled(false))).unwrap(), None);
        let default = screen(Some(DesktopRequest::Enabled(true)))
            .unwrap()
            .unwrap();
        assert_eq!(
            (default.width, default.height, default.dpi),
            (1280, 800, 96)
        );
        let small = ScreenRequest {
            width: Some(100),
            ..Default::default()
        };
        let err = screen(Some(DesktopRequest::Screen(small))).unwrap_err();
        assert!(err.to_string().contains("desktop.width"), "{err}");
    }
}

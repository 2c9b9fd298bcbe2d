//! The agent's X11 client: screenshots by GetImage, input by XTEST, windows from the
//! window manager's EWMH properties, on one connection kept for the display's life.

use std::collections::HashMap;

use ai2in_protocol::{DesktopAction, Event, WindowInfo, char_keysym};
use x11rb::connection::{Connection, RequestConnection};
use x11rb::protocol::xproto::{
    Atom, AtomEnum, BUTTON_PRESS_EVENT, BUTTON_RELEASE_EVENT, ConnectionExt as _, ImageFormat,
    KEY_PRESS_EVENT, KEY_RELEASE_EVENT, MOTION_NOTIFY_EVENT, Window,
};
use x11rb::protocol::xtest::ConnectionExt as _;
use x11rb::rust_connection::RustConnection;

use super::Answer;

/// Why an X request failed.
pub type XError = Box<dyn std::error::Error + Send + Sync>;

/// The steps of a drag's motion, and the pause after each.
const GLIDE_STEPS: i32 = 10;
const GLIDE_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

/// `Shift_L`: pressed around a keysym found at the second level of its keycode.
const SHIFT_L: u32 = 0xffe1;

/// The atoms the window list reads.
struct Atoms {
    client_list_stacking: Atom,
    client_list: Atom,
    active_window: Atom,
    wm_name: Atom,
    utf8_string: Atom,
}

/// One connection to the display.
pub struct X {
    conn: RustConnection,
    root: Window,
    width: u16,
    height: u16,
    atoms: Atoms,
    keys: Keys,
}

impl X {
    /// Connects to `display`.
    pub fn connect(display: &str) -> Result<X, XError> {
        let (conn, screen) = RustConnection::connect(Some(display))?;
        let (root, width, height) = {
            let s = &conn.setup().roots[screen];
            (s.root, s.width_in_pixels, s.height_in_pixels)
        };
        if conn
            .extension_information(x11rb::protocol::xtest::X11_EXTENSION_NAME)?
            .is_none()
        {
            return Err("the X server has no XTEST extension".into());
        }
        let intern = |name: &[u8]| -> Result<Atom, XError> {
            Ok(conn.intern_atom(false, name)?.reply()?.atom)
        };
        let atoms = Atoms {
            client_list_stacking: intern(b"_NET_CLIENT_LIST_STACKING")?,
            client_list: intern(b"_NET_CLIENT_LIST")?,
            active_window: intern(b"_NET_ACTIVE_WINDOW")?,
            wm_name: intern(b"_NET_WM_NAME")?,
            utf8_string: intern(b"UTF8_STRING")?,
        };
        let keys = Keys::read(&conn)?;
        Ok(X {
            conn,
            root,
            width,
            height,
            atoms,
            keys,
        })
    }

    /// Carries out `action`.
    pub fn act(&mut self, action: DesktopAction) -> Result<Answer, XError> {
        let answer = match action {
            DesktopAction::Screenshot => Answer::Png(self.screenshot()?),
            DesktopAction::Cursor => {
                let p = self.conn.query_pointer(self.root)?.reply()?;
                Answer::Event(Event::Cursor {
                    x: p.root_x.into(),
                    y: p.root_y.into(),
                })
            }
            DesktopAction::Windows => Answer::Event(Event::Windows {
                windows: self.windows()?,
            }),
            DesktopAction::Pointer {
                to,
                buttons,
                then,
                finally,
            } => {
                if let Some((x, y)) = to {
                    self.motion(x, y)?;
                }
                self.buttons(&buttons)?;
                if let Some(end) = then {
                    self.glide(to, end)?;
                }
                self.buttons(&finally)?;
                self.sync()?;
                Answer::Done
            }
            DesktopAction::Type { text } => {
                for c in text.chars() {
                    let keysym = char_keysym(c);
                    self.press(&[keysym])?;
                }
                self.sync()?;
                Answer::Done
            }
            DesktopAction::Keys { combos } => {
                for combo in &combos {
                    self.press(combo)?;
                }
                self.sync()?;
                Answer::Done
            }
        };
        self.discard_events();
        Ok(answer)
    }

    /// Events the server sends every client (keyboard mapping changes): nobody reads them.
    fn discard_events(&self) {
        while let Ok(Some(_)) = self.conn.poll_for_event() {}
    }

    /// A round trip: the server has processed everything sent before.
    fn sync(&self) -> Result<(), XError> {
        self.conn.get_input_focus()?.reply()?;
        Ok(())
    }

    fn motion(&self, x: u16, y: u16) -> Result<(), XError> {
        let (x, y) = (x.min(self.width - 1) as i16, y.min(self.height - 1) as i16);
        self.conn
            .xtest_fake_input(MOTION_NOTIFY_EVENT, 0, 0, self.root, x, y, 0)?;
        Ok(())
    }

    /// Moves the pointer from `from` (or where it is) to `to` in steps, each processed by the
    /// server and given a moment: window managers start a window's move on the first motion
    /// with a button held and follow the later ones, which a single jump does not give them.
    fn glide(&self, from: Option<(u16, u16)>, to: (u16, u16)) -> Result<(), XError> {
        let (x0, y0) = match from {
            Some((x, y)) => (i32::from(x), i32::from(y)),
            None => {
                let p = self.conn.query_pointer(self.root)?.reply()?;
                (p.root_x.into(), p.root_y.into())
            }
        };
        let (x1, y1) = (i32::from(to.0), i32::from(to.1));
        for step in 1..=GLIDE_STEPS {
            let x = x0 + (x1 - x0) * step / GLIDE_STEPS;
            let y = y0 + (y1 - y0) * step / GLIDE_STEPS;
            self.motion(x as u16, y as u16)?;
            self.sync()?;
            std::thread::sleep(GLIDE_PAUSE);
        }
        Ok(())
    }

    fn buttons(&self, buttons: &[(u8, bool)]) -> Result<(), XError> {
        for &(button, pressed) in buttons {
            let kind = if pressed {
                BUTTON_PRESS_EVENT
            } else {
                BUTTON_RELEASE_EVENT
            };
            self.conn
                .xtest_fake_input(kind, button, 0, self.root, 0, 0, 0)?;
        }
        Ok(())
    }

    /// Presses `keysyms` in order and releases them in reverse.
    fn press(&mut self, keysyms: &[u32]) -> Result<(), XError> {
        let mut codes = Vec::with_capacity(keysyms.len() + 1);
        for &keysym in keysyms {
            let (code, shifted) = self.keys.code(&self.conn, keysym)?;
            if shifted && !codes.contains(&self.keys.shift) {
                codes.push(self.keys.shift);
            }
            codes.push(code);
        }
        for &code in &codes {
            self.conn
                .xtest_fake_input(KEY_PRESS_EVENT, code, 0, self.root, 0, 0, 0)?;
        }
        for &code in codes.iter().rev() {
            self.conn
                .xtest_fake_input(KEY_RELEASE_EVENT, code, 0, self.root, 0, 0, 0)?;
        }
        Ok(())
    }

    /// The screen as a PNG (RGB, 8 bits).
    fn screenshot(&self) -> Result<Vec<u8>, XError> {
        let image = self
            .conn
            .get_image(
                ImageFormat::Z_PIXMAP,
                self.root,
                0,
                0,
                self.width,
                self.height,
                !0,
            )?
            .reply()?;
        let pixels = usize::from(self.width) * usize::from(self.height);
        // A 24-bit screen comes as 32 bits per pixel, blue first (Xvfb's only layout).
        if image.data.len() != pixels * 4 {
            return Err(format!(
                "the screen is not 32 bits per pixel (depth {}, {} bytes)",
                image.depth,
                image.data.len()
            )
            .into());
        }
        let mut rgb = Vec::with_capacity(pixels * 3);
        for px in image.data.chunks_exact(4) {
            rgb.extend_from_slice(&[px[2], px[1], px[0]]);
        }
        let mut png = Vec::with_capacity(pixels / 4);
        let mut encoder = png::Encoder::new(&mut png, self.width.into(), self.height.into());
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Fast);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&rgb)?;
        writer.finish()?;
        Ok(png)
    }

    /// The 32-bit values of `property` of `window` (empty when it has none).
    fn window_property(&self, window: Window, property: Atom) -> Result<Vec<u32>, XError> {
        let reply = self
            .conn
            .get_property(false, window, property, AtomEnum::ANY, 0, 1 << 16)?
            .reply()?;
        Ok(reply.value32().map(|v| v.collect()).unwrap_or_default())
    }

    fn text_property(&self, window: Window, property: Atom, kind: Atom) -> Result<Vec<u8>, XError> {
        let reply = self
            .conn
            .get_property(false, window, property, kind, 0, 1 << 14)?
            .reply()?;
        Ok(reply.value)
    }

    /// The window manager's client windows, bottom to top.
    fn windows(&self) -> Result<Vec<WindowInfo>, XError> {
        let mut ids = self.window_property(self.root, self.atoms.client_list_stacking)?;
        if ids.is_empty() {
            ids = self.window_property(self.root, self.atoms.client_list)?;
        }
        let active = self
            .window_property(self.root, self.atoms.active_window)?
            .first()
            .copied();
        let mut windows = Vec::with_capacity(ids.len());
        for id in ids {
            // A window may go while it is read: it is then left out.
            let Ok(geometry) = self.conn.get_geometry(id)?.reply() else {
                continue;
            };
            let Ok(at) = self
                .conn
                .translate_coordinates(id, self.root, 0, 0)?
                .reply()
            else {
                continue;
            };
            let mut title = self.text_property(id, self.atoms.wm_name, self.atoms.utf8_string)?;
            if title.is_empty() {
                title =
                    self.text_property(id, AtomEnum::WM_NAME.into(), AtomEnum::STRING.into())?;
            }
            let class =
                self.text_property(id, AtomEnum::WM_CLASS.into(), AtomEnum::STRING.into())?;
            // WM_CLASS is "instance\0Class\0".
            let class = class.split(|b| *b == 0).nth(1).unwrap_or_default();
            windows.push(WindowInfo {
                id,
                title: String::from_utf8_lossy(&title).into_owned(),
                class: String::from_utf8_lossy(class).into_owned(),
                x: at.dst_x.into(),
                y: at.dst_y.into(),
                width: geometry.width.into(),
                height: geometry.height.into(),
                focused: active == Some(id),
            });
        }
        Ok(windows)
    }
}

/// The keyboard map: which keycode types which keysym, and keycodes free to take keysyms
/// the map lacks (kept for the display's life, so a character typed once keeps its key).
struct Keys {
    first: u8,
    per: usize,
    syms: Vec<u32>,
    shift: u8,
    spare: Vec<u8>,
    lent: HashMap<u32, u8>,
    /// Keysyms given a spare keycode, oldest first (the first to give it back).
    order: Vec<u32>,
}

impl Keys {
    fn read(conn: &RustConnection) -> Result<Keys, XError> {
        let (first, last) = (conn.setup().min_keycode, conn.setup().max_keycode);
        let map = conn
            .get_keyboard_mapping(first, last - first + 1)?
            .reply()?;
        let per = usize::from(map.keysyms_per_keycode);
        let mut keys = Keys {
            first,
            per,
            syms: map.keysyms,
            shift: 0,
            spare: Vec::new(),
            lent: HashMap::new(),
            order: Vec::new(),
        };
        keys.shift = keys
            .find(SHIFT_L)
            .map(|(code, _)| code)
            .ok_or("the keyboard map has no Shift key")?;
        // Spare keycodes: those with no keysym, from the top (the bottom ones are real keys).
        keys.spare = (0..keys.syms.len() / per)
            .rev()
            .filter(|i| keys.syms[i * per..(i + 1) * per].iter().all(|s| *s == 0))
            .map(|i| first + i as u8)
            .collect();
        if keys.spare.is_empty() {
            return Err("the keyboard map has no free keycode".into());
        }
        Ok(keys)
    }

    /// The keycode of `keysym` in the map and whether Shift gives it (its second level).
    fn find(&self, keysym: u32) -> Option<(u8, bool)> {
        for level in 0..self.per.min(2) {
            for (i, syms) in self.syms.chunks_exact(self.per).enumerate() {
                if syms[level] == keysym {
                    return Some((self.first + i as u8, level == 1));
                }
            }
        }
        None
    }

    /// The keycode that types `keysym`, giving it a spare keycode when the map lacks it.
    fn code(&mut self, conn: &RustConnection, keysym: u32) -> Result<(u8, bool), XError> {
        if let Some(found) = self.find(keysym) {
            return Ok(found);
        }
        if let Some(code) = self.lent.get(&keysym) {
            return Ok((*code, false));
        }
        let code = match self.spare.pop() {
            Some(code) => code,
            None => {
                // Every spare keycode is taken: the oldest keysym gives its back.
                let oldest = self.order.remove(0);
                self.lent.remove(&oldest).ok_or("spare keycodes are lost")?
            }
        };
        let mut syms = vec![0u32; self.per];
        syms[0] = keysym;
        if self.per > 1 {
            syms[1] = keysym;
        }
        conn.change_keyboard_mapping(1, code, self.per as u8, &syms)?;
        // The mapping changes before any key that uses it is pressed.
        conn.get_input_focus()?.reply()?;
        self.lent.insert(keysym, code);
        self.order.push(keysym);
        Ok((code, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_have_their_keysyms() {
        assert_eq!(char_keysym('a'), 0x61);
        assert_eq!(char_keysym('é'), 0xe9);
        assert_eq!(char_keysym('✓'), 0x0100_2713);
        assert_eq!(char_keysym('\n'), 0xff0d);
    }
}

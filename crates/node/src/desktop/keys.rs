//! Key combinations (`ctrl+shift+t`, `Return`, `é`, `U+2713`) to keysyms.

use ai2in_protocol::char_keysym;

use super::keysyms::KEYSYMS;

/// Modifier names and the keysyms they press (the left-hand keys).
const MODIFIERS: [(&str, u32); 6] = [
    ("ctrl", 0xffe3),
    ("control", 0xffe3),
    ("shift", 0xffe1),
    ("alt", 0xffe9),
    ("super", 0xffeb),
    ("meta", 0xffeb),
];

/// The keysym of key name `name`: an X keysym name, a modifier's, one character, or a code
/// point (`U+2713`, `U2713`).
fn keysym(name: &str) -> Option<u32> {
    if let Ok(i) = KEYSYMS.binary_search_by(|(n, _)| n.cmp(&name)) {
        return Some(KEYSYMS[i].1);
    }
    let lower = name.to_ascii_lowercase();
    if let Some((_, sym)) = MODIFIERS.iter().find(|(m, _)| *m == lower) {
        return Some(*sym);
    }
    // Common spellings of the keysym names.
    let alias = match lower.as_str() {
        "enter" => Some("Return"),
        "esc" => Some("Escape"),
        "del" => Some("Delete"),
        "backspace" => Some("BackSpace"),
        "pageup" | "page_up" => Some("Prior"),
        "pagedown" | "page_down" => Some("Next"),
        "tab" => Some("Tab"),
        "space" => Some("space"),
        "home" => Some("Home"),
        "end" => Some("End"),
        "left" => Some("Left"),
        "right" => Some("Right"),
        "up" => Some("Up"),
        "down" => Some("Down"),
        "insert" => Some("Insert"),
        _ => None,
    };
    if let Some(alias) = alias {
        return keysym(alias);
    }
    let mut chars = name.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        return Some(char_keysym(c));
    }
    let hex = name.strip_prefix("U+").or_else(|| name.strip_prefix('U'))?;
    let c = char::from_u32(u32::from_str_radix(hex, 16).ok()?)?;
    Some(char_keysym(c))
}

/// The keysyms of combination `combo` (`ctrl+l`: Control_L then l), or why it is not one.
pub(super) fn combo(combo: &str) -> Result<Vec<u32>, String> {
    // A `+` alone, or at the end (`ctrl++`), is the plus key; `U+2713` is one name.
    let mut names: Vec<String> = Vec::new();
    let mut parts = combo.split('+').peekable();
    while let Some(part) = parts.next() {
        let hex = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_hexdigit());
        match parts.peek() {
            Some(next) if part == "U" && hex(next) => {
                names.push(format!("U+{next}"));
                parts.next();
            }
            _ => names.push(part.to_string()),
        }
    }
    if combo.ends_with("++") || combo == "+" {
        names.retain(|n| !n.is_empty());
        names.push("plus".into());
    }
    if names.iter().any(|n| n.is_empty()) {
        return Err(format!("{combo:?} has an empty key name"));
    }
    names
        .iter()
        .map(|name| {
            keysym(name).ok_or_else(|| {
                format!(
                    "{name:?} is not an X keysym name (such as Return, Tab, BackSpace, F5, a, \
                     ctrl+l, alt+F4)"
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_modifiers_characters_and_code_points() {
        assert_eq!(combo("Return").unwrap(), vec![0xff0d]);
        assert_eq!(combo("ctrl+l").unwrap(), vec![0xffe3, 0x6c]);
        assert_eq!(combo("ctrl+shift+T").unwrap(), vec![0xffe3, 0xffe1, 0x54]);
        assert_eq!(combo("alt+F4").unwrap(), vec![0xffe9, 0xffc1]);
        assert_eq!(combo("é").unwrap(), vec![0xe9]);
        assert_eq!(combo("U+2713").unwrap(), vec![0x0100_2713]);
        assert_eq!(combo("ctrl++").unwrap(), vec![0xffe3, 0x2b]);
        assert_eq!(combo("enter").unwrap(), vec![0xff0d]);
        assert!(combo("Foo").unwrap_err().contains("\"Foo\""));
        assert!(combo("ctrl+").is_err());
    }
}

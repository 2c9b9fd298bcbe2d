//! Parsers of command-line values: sizes (`512MiB`), durations (`5m`), `KEY=VALUE` pairs,
//! volume mounts (`work:/data:ro`).

use std::collections::BTreeMap;
use std::time::Duration;

/// A size: a number with an optional unit, decimal (`k`, `MB`) or binary (`KiB`, `Gi`).
pub fn size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 512MiB, 2GiB or 1000000"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        other => {
            return Err(format!(
                "unknown size unit {other:?}: use B, KiB, MiB, GiB, kB, MB or GB"
            ));
        }
    };
    Ok((number * factor as f64).round() as u64)
}

/// A duration such as `90s`, `5m`, `1h 30m` (humantime).
pub fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration such as 30s, 5m or 2h: {e}"))
}

/// `KEY=VALUE`.
/// `1280x800` → (1280, 800).
pub fn screen(text: &str) -> Result<(u16, u16), String> {
    let parsed = text
        .split_once(['x', 'X'])
        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)));
    parsed.ok_or_else(|| format!("{text:?} is not a screen size: give WIDTHxHEIGHT, e.g. 1280x800"))
}

pub fn pair(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}

/// A volume mount: `VOLUME:PATH`, `VOLUME:PATH:ro` or `VOLUME:PATH:rw`.
pub fn volume(text: &str) -> Result<ai2in_client::VolumeAttachment, String> {
    let bad = || format!("{text:?} is not VOLUME:PATH or VOLUME:PATH:ro (e.g. work:/data)");
    let (volume, rest) = text.split_once(':').ok_or_else(bad)?;
    let (path, read_only) = match rest.rsplit_once(':') {
        Some((path, "ro")) => (path, true),
        Some((path, "rw")) => (path, false),
        _ => (rest, false),
    };
    if volume.is_empty() || path.is_empty() {
        return Err(bad());
    }
    Ok(ai2in_client::VolumeAttachment {
        volume_id: volume.to_string(),
        path: path.to_string(),
        read_only,
    })
}

/// Pairs as a map, or `None` when there are none.
pub fn map(pairs: Vec<(String, String)>) -> Option<BTreeMap<String, String>> {
    (!pairs.is_empty()).then(|| pairs.into_iter().collect())
}

/// The resources and volumes of a sandbox: `sandbox create`'s, and those of each instance of
/// `service deploy`.
#[derive(clap::Args)]
pub struct ResourceArgs {
    /// CPU cores, e.g. 0.5 or 2
    #[arg(long)]
    pub cpu: Option<f64>,
    /// Memory limit, e.g. 512MiB, 2GiB
    #[arg(long, value_parser = size)]
    pub memory: Option<u64>,
    /// Size of its own disk (its writable layer), e.g. 8GiB
    #[arg(long, value_parser = size)]
    pub disk: Option<u64>,
    /// Mount a volume (by id or name) at PATH, read-only with :ro (repeat)
    #[arg(long, value_name = "VOLUME:PATH[:ro]", value_parser = volume)]
    pub volume: Vec<ai2in_client::VolumeAttachment>,
}

impl ResourceArgs {
    /// The volumes to mount, or `None` when there are none.
    pub fn volumes(&self) -> Option<Vec<ai2in_client::VolumeAttachment>> {
        (!self.volume.is_empty()).then(|| self.volume.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_are_name_path_and_an_optional_mode() {
        let v = volume("work:/data").unwrap();
        assert_eq!(
            (v.volume_id.as_str(), v.path.as_str(), v.read_only),
            ("work", "/data", false)
        );
        let v = volume("vol_1:/a/b:ro").unwrap();
        assert_eq!(
            (v.volume_id.as_str(), v.path.as_str(), v.read_only),
            ("vol_1", "/a/b", true)
        );
        assert!(!volume("w:/d:rw").unwrap().read_only);
        for bad in ["work", ":/data", "work:", "work::ro"] {
            assert!(volume(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_take_decimal_and_binary_units() {
        assert_eq!(size("512MiB"), Ok(512 << 20));
        assert_eq!(size("1.5 GiB"), Ok(3 << 29));
        assert_eq!(size("2G"), Ok(2_000_000_000));
        assert_eq!(size("4096"), Ok(4096));
        assert!(size("lots").is_err() && size("5 parsecs").is_err());
    }

    #[test]
    fn durations_and_pairs() {
        assert_eq!(duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(pair("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert!(pair("=x").is_err() && pair("novalue").is_err());
    }
}

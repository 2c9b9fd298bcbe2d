//! The programs of `crates/client/examples/` (the guide's code), run as they are: cargo
//! builds them with the tests, next to the test binary's own directory.

use std::path::PathBuf;
use std::process::Command;

/// The built example `name`: `<profile dir>/examples/name`, the test binary being
/// `<profile dir>/deps/node-…`.
fn binary(name: &str) -> PathBuf {
    let test = std::env::current_exe().expect("the test binary's path");
    let profile = test
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the profile directory");
    profile.join("examples").join(name)
}

/// Runs example `name` with `args` against the node (the harness set `AI2IN_BASE_URL` and
/// `AI2IN_API_KEY`); its output is shown when it fails.
pub fn run(name: &str, args: &[String]) -> Result<(), String> {
    let binary = binary(name);
    if !binary.is_file() {
        return Err(format!(
            "{} is not built: run the tests with `cargo test -p ai2in-client` (which builds the examples)",
            binary.display()
        ));
    }
    let output = Command::new(&binary)
        .args(args)
        .output()
        .map_err(|e| format!("run {}: {e}", binary.display()))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{name} exited with {}\n--- stdout\n{}--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

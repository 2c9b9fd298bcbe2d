//! Exit statuses, so that scripts can tell failures apart without parsing messages (the
//! table is in `ai2in --help`).

use std::process::ExitCode;

use crate::connect::NoApiKey;

/// An error already shown to the user; only its exit status is left to give.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Reported(pub ai2in_client::Error);

/// The exit status for `error`.
pub fn code(error: &anyhow::Error) -> u8 {
    if error.chain().any(|e| e.is::<NoApiKey>()) {
        return 3;
    }
    let sdk = error.chain().find_map(|e| {
        e.downcast_ref::<ai2in_client::Error>()
            .or_else(|| e.downcast_ref::<Reported>().map(|r| &r.0))
    });
    match sdk {
        Some(ai2in_client::Error::Transport(e)) if e.is_connect() || e.is_timeout() => 7,
        Some(e) => match e.status() {
            Some(401 | 403) => 3,
            Some(404 | 410) => 4,
            Some(409) => 5,
            Some(429 | 503) => 6,
            _ => 1,
        },
        None => 1,
    }
}

/// Shows `error` (unless already shown) and answers its exit status.
pub fn report(error: &anyhow::Error) -> ExitCode {
    if !error.is::<Reported>() {
        let on = crate::output::colours_on(&std::io::stderr());
        eprintln!(
            "{} {error:#}",
            crate::output::paint("error:", crate::output::Colour::Red, on)
        );
    }
    ExitCode::from(code(error))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ai2in_client::Error;

    #[test]
    fn statuses_give_their_exit_codes() {
        let code_of = |e: Error| code(&anyhow::Error::from(e));
        let message = || "why".to_string();
        assert_eq!(code_of(Error::NotFound { message: message() }), 4);
        assert_eq!(code_of(Error::Paused { message: message() }), 5);
        assert_eq!(code_of(Error::InUse { message: message() }), 5);
        assert_eq!(code_of(Error::Upstream { message: message() }), 1);
        assert_eq!(code_of(Error::AtCapacity { message: message() }), 6);
        let shown = anyhow::Error::from(Reported(Error::InUse { message: message() }));
        assert_eq!(code(&shown), 5);
    }
}

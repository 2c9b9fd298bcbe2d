//! What people see: aligned tables, colour (only on a terminal, never with `NO_COLOR`), a
//! spinner on standard error while waiting, and JSON for scripts on standard output.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio::signal::unix::{SignalKind, signal};

/// A colour for a table cell or a message.
#[derive(Debug, Clone, Copy)]
pub enum Colour {
    Red,
    Green,
    Yellow,
    Dim,
}

impl Colour {
    fn code(self) -> &'static str {
        match self {
            Colour::Red => "31",
            Colour::Green => "32",
            Colour::Yellow => "33",
            Colour::Dim => "2",
        }
    }
}

/// Whether `stream` gets colours: a terminal, and `NO_COLOR` unset or empty.
pub fn colours_on(stream: &impl IsTerminal) -> bool {
    stream.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// `text` in `colour` when `on`.
pub fn paint(text: &str, colour: Colour, on: bool) -> String {
    if on {
        format!("\x1b[{}m{text}\x1b[0m", colour.code())
    } else {
        text.to_string()
    }
}

/// A cell as [`Table::styled_row`] takes it (such as a status), painted in its colour, if
/// it has one, when `on`.
pub fn painted((text, style): (String, Option<Colour>), on: bool) -> String {
    match style {
        Some(colour) => paint(&text, colour, on),
        None => text,
    }
}

/// Prints `value` as pretty JSON on standard output.
pub fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A table for people: columns as wide as their widest cell, a header, colours that do not
/// upset the alignment.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<(String, Option<Colour>)>>,
}

impl Table {
    pub fn new(header: &[&'static str]) -> Self {
        Table {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row of plain cells.
    pub fn row(&mut self, cells: impl IntoIterator<Item = String>) {
        self.rows
            .push(cells.into_iter().map(|c| (c, None)).collect());
    }

    /// Adds a row whose cells may be coloured.
    pub fn styled_row(&mut self, cells: Vec<(String, Option<Colour>)>) {
        self.rows.push(cells);
    }

    pub fn print(&self) {
        let colour = colours_on(&std::io::stdout());
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, (cell, _)) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let line = |cells: Vec<(String, Option<Colour>)>| {
            let last = cells.len().saturating_sub(1);
            let text: Vec<String> = cells
                .into_iter()
                .enumerate()
                .map(|(i, cell)| {
                    let pad = if i == last {
                        0
                    } else {
                        widths[i] - cell.0.chars().count()
                    };
                    format!("{}{}", painted(cell, colour), " ".repeat(pad))
                })
                .collect();
            println!("{}", text.join("  ").trim_end());
        };
        line(
            self.header
                .iter()
                .map(|h| (h.to_string(), Some(Colour::Dim)))
                .collect(),
        );
        for row in &self.rows {
            line(row.clone());
        }
    }
}

/// Deletes each of `ids` with `delete`, printing `removed ID` (unless `json`); goes on past
/// failures and answers the first.
pub async fn remove_each<F, Fut>(ids: &[String], json: bool, delete: F) -> anyhow::Result<()>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = ai2in_client::Result<()>>,
{
    let mut first_error = None;
    for id in ids {
        match delete(id.clone()).await {
            Ok(()) if !json => println!("removed {id}"),
            Ok(()) => {}
            Err(e) => {
                eprintln!("error: {id}: {e}");
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), |e| Err(crate::exit::Reported(e).into()))
}

/// Runs `work` (such as printing a stream that never ends by itself) until it ends, or until
/// Ctrl-C or SIGTERM, which end it quietly.
pub async fn until_interrupted(
    work: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        result = work => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = terminate.recv() => Ok(()),
    }
}

/// A spinner with `message` on standard error while a wait lasts (only on a terminal).
pub fn spinner(message: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner().with_message(message.to_string());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(80));
    bar
}

/// A byte count for people: `512 MiB`, `1.5 GiB`, `100 B`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

//! `ai2in desktop …`: the display of a desktop sandbox (`ai2in sandbox create --desktop`):
//! screenshots, mouse, keyboard, programs, windows and a live view in a browser.

use std::io::Write;
use std::path::PathBuf;

use ai2in_client::api::{MouseButton, ScrollDirection};

use crate::connect::Connection;
use crate::output::{self, Table};

#[derive(clap::Subcommand)]
pub enum DesktopCommand {
    /// Show the display: its size and its live view.
    #[command(after_help = "Example:\n  ai2in desktop info sbx_… --json")]
    Info(Target),
    /// Save the screen as a PNG.
    #[command(after_help = "Examples:\n  \
        ai2in desktop screenshot sbx_… -o screen.png\n  \
        ai2in desktop screenshot sbx_… -o - | display")]
    Screenshot {
        #[command(flatten)]
        target: Target,
        /// Where to write it (`-`: standard output)
        #[arg(short, long, default_value = "screenshot.png")]
        output: PathBuf,
    },
    /// Click at X Y (the left button, unless --button).
    #[command(after_help = "Examples:\n  \
        ai2in desktop click sbx_… 200 150\n  \
        ai2in desktop click sbx_… 200 150 --button right --double")]
    Click {
        #[command(flatten)]
        target: Target,
        x: u32,
        y: u32,
        #[arg(long, value_enum, default_value = "left")]
        button: ButtonArg,
        /// Click twice
        #[arg(long)]
        double: bool,
    },
    /// Move the pointer to X Y.
    #[command(after_help = "Example:\n  ai2in desktop move sbx_… 640 400")]
    Move {
        #[command(flatten)]
        target: Target,
        x: u32,
        y: u32,
    },
    /// Press the left button at X Y, move to TO_X TO_Y, release it there.
    #[command(after_help = "Example:\n  ai2in desktop drag sbx_… 500 240 300 100")]
    Drag {
        #[command(flatten)]
        target: Target,
        x: u32,
        y: u32,
        to_x: u32,
        to_y: u32,
    },
    /// Turn the mouse wheel (down, unless --up).
    #[command(after_help = "Example:\n  ai2in desktop scroll sbx_… --up --amount 5 --at 640 400")]
    Scroll {
        #[command(flatten)]
        target: Target,
        /// Away from you: earlier content shows
        #[arg(long)]
        up: bool,
        /// Wheel clicks (1 to 100)
        #[arg(long, default_value_t = 1)]
        amount: u32,
        /// Where to scroll [default: where the pointer is]
        #[arg(long, num_args = 2, value_names = ["X", "Y"])]
        at: Option<Vec<u32>>,
    },
    /// Press a mouse button where the pointer is (and keep it pressed).
    MouseDown {
        #[command(flatten)]
        target: Target,
        #[arg(long, value_enum, default_value = "left")]
        button: ButtonArg,
    },
    /// Release a mouse button.
    MouseUp {
        #[command(flatten)]
        target: Target,
        #[arg(long, value_enum, default_value = "left")]
        button: ButtonArg,
    },
    /// Where the pointer is.
    Cursor(Target),
    /// Type text (any Unicode).
    #[command(after_help = "Example:\n  ai2in desktop type sbx_… 'echo hello'")]
    Type {
        #[command(flatten)]
        target: Target,
        text: String,
    },
    /// Press keys in turn: X keysym names, with modifiers joined by `+`.
    #[command(after_help = "Examples:\n  \
        ai2in desktop key sbx_… Return\n  \
        ai2in desktop key sbx_… ctrl+l ctrl+shift+t alt+F4")]
    Key {
        #[command(flatten)]
        target: Target,
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
    },
    /// Start a program on the display (a background command: `ai2in commands` sees it).
    #[command(after_help = "Example:\n  ai2in desktop launch sbx_… -- xterm -fa Monospace -fs 14")]
    Launch {
        #[command(flatten)]
        target: Target,
        /// The program and its arguments
        #[arg(required = true, last = true, value_name = "CMD")]
        cmd: Vec<String>,
    },
    /// List the windows, bottom to top.
    #[command(
        after_help = "Example:\n  ai2in desktop windows sbx_… --json | jq '.windows[].title'"
    )]
    Windows(Target),
    /// Start a live view (prints a noVNC url and its password), or --stop it.
    #[command(after_help = "Examples:\n  \
        ai2in desktop stream sbx_…\n  \
        ai2in desktop stream sbx_… --view-only\n  \
        ai2in desktop stream sbx_… --stop")]
    Stream {
        #[command(flatten)]
        target: Target,
        /// Viewers can watch but not send input
        #[arg(long, conflicts_with = "stop")]
        view_only: bool,
        /// Stop the live view (viewers are cut)
        #[arg(long)]
        stop: bool,
    },
}

/// The sandbox a command acts on, and the connection.
#[derive(clap::Args)]
pub struct Target {
    /// The sandbox's id (sbx_…)
    #[arg(value_name = "ID")]
    id: String,
    #[command(flatten)]
    conn: Connection,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ButtonArg {
    Left,
    Middle,
    Right,
}

impl From<ButtonArg> for MouseButton {
    fn from(b: ButtonArg) -> Self {
        match b {
            ButtonArg::Left => MouseButton::Left,
            ButtonArg::Middle => MouseButton::Middle,
            ButtonArg::Right => MouseButton::Right,
        }
    }
}

/// Runs `ai2in desktop …`.
pub async fn run(cmd: DesktopCommand) -> anyhow::Result<()> {
    match cmd {
        DesktopCommand::Info(Target { id, conn }) => {
            let info = conn.client()?.sandbox(id).desktop().info().await?;
            if conn.json {
                return output::print_json(&info);
            }
            println!("display: {}", info.display);
            println!(
                "screen:  {}x{} at {} dpi",
                info.width, info.height, info.dpi
            );
            match info.stream {
                Some(s) => println!(
                    "stream:  {}{}",
                    s.url,
                    if s.view_only { " (view only)" } else { "" }
                ),
                None => println!("stream:  none"),
            }
            Ok(())
        }
        DesktopCommand::Screenshot { target, output } => {
            let png = target.sandbox()?.desktop().screenshot().await?;
            if output.as_os_str() == "-" {
                std::io::stdout().write_all(&png)?;
            } else {
                std::fs::write(&output, &png)?;
                if !target.conn.json {
                    eprintln!("{} ({})", output.display(), output::bytes(png.len() as u64));
                }
            }
            Ok(())
        }
        DesktopCommand::Click {
            target,
            x,
            y,
            button,
            double,
        } => {
            let sandbox = target.sandbox()?;
            let desktop = sandbox.desktop();
            if double {
                desktop
                    .mouse(ai2in_client::api::MouseRequest {
                        action: ai2in_client::api::MouseAction::DoubleClick,
                        x: Some(x),
                        y: Some(y),
                        button: Some(button.into()),
                        to_x: None,
                        to_y: None,
                        direction: None,
                        amount: None,
                    })
                    .await?;
            } else {
                desktop.click(Some((x, y)), button.into()).await?;
            }
            Ok(())
        }
        DesktopCommand::Move { target, x, y } => {
            Ok(target.sandbox()?.desktop().move_to(x, y).await?)
        }
        DesktopCommand::Drag {
            target,
            x,
            y,
            to_x,
            to_y,
        } => Ok(target
            .sandbox()?
            .desktop()
            .drag((x, y), (to_x, to_y))
            .await?),
        DesktopCommand::Scroll {
            target,
            up,
            amount,
            at,
        } => {
            let direction = if up {
                ScrollDirection::Up
            } else {
                ScrollDirection::Down
            };
            let at = at.map(|p| (p[0], p[1]));
            Ok(target
                .sandbox()?
                .desktop()
                .scroll(direction, amount, at)
                .await?)
        }
        DesktopCommand::MouseDown { target, button } => Ok(target
            .sandbox()?
            .desktop()
            .mouse_down(button.into())
            .await?),
        DesktopCommand::MouseUp { target, button } => {
            Ok(target.sandbox()?.desktop().mouse_up(button.into()).await?)
        }
        DesktopCommand::Cursor(Target { id, conn }) => {
            let cursor = conn.client()?.sandbox(id).desktop().cursor().await?;
            if conn.json {
                return output::print_json(&cursor);
            }
            println!("{} {}", cursor.x, cursor.y);
            Ok(())
        }
        DesktopCommand::Type { target, text } => {
            Ok(target.sandbox()?.desktop().type_text(&text).await?)
        }
        DesktopCommand::Key { target, keys } => {
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            Ok(target.sandbox()?.desktop().press(&keys).await?)
        }
        DesktopCommand::Launch { target, cmd } => {
            let line = crate::exec::shell_quote(&cmd);
            let started = target.sandbox()?.desktop().launch(&line).await?;
            if target.conn.json {
                return output::print_json(&started);
            }
            println!("{} (pid {})", started.command_id, started.pid);
            Ok(())
        }
        DesktopCommand::Windows(Target { id, conn }) => {
            let windows = conn.client()?.sandbox(id).desktop().windows().await?;
            if conn.json {
                return output::print_json(&ai2in_client::api::WindowList { windows });
            }
            let mut table = Table::new(&[
                "ID", "TITLE", "CLASS", "X", "Y", "WIDTH", "HEIGHT", "FOCUSED",
            ]);
            for w in windows {
                table.row([
                    w.id.to_string(),
                    w.title,
                    w.class,
                    w.x.to_string(),
                    w.y.to_string(),
                    w.width.to_string(),
                    w.height.to_string(),
                    if w.focused { "yes" } else { "" }.to_string(),
                ]);
            }
            table.print();
            Ok(())
        }
        DesktopCommand::Stream {
            target,
            view_only,
            stop,
        } => {
            let sandbox = target.sandbox()?;
            if stop {
                return Ok(sandbox.desktop().stop_stream().await?);
            }
            let spinner = output::spinner("starting the live view");
            let stream = sandbox.desktop().stream(view_only).await;
            spinner.finish_and_clear();
            let stream = stream?;
            if target.conn.json {
                return output::print_json(&stream);
            }
            println!("url:      {}", stream.url);
            println!("password: {}", stream.password);
            Ok(())
        }
    }
}

impl Target {
    fn sandbox(&self) -> anyhow::Result<ai2in_client::Sandbox> {
        Ok(self.conn.client()?.sandbox(self.id.clone()))
    }
}

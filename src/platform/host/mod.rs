//! The machine the relay runs on: its canonical name, its DNS server,
//! where things go by default, and the terminal.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;

/// The width `--help` wraps to: `$COLUMNS` if set (as E-MailRelay 2.6.1
/// reads it), else the width of the terminal on standard output, else 80.
pub fn help_columns() -> usize {
    if let Some(columns) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
    {
        return columns;
    }
    terminal_columns().unwrap_or(80)
}

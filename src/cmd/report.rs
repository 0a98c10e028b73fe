//! `memtrace report TRACE`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use memtrace_analyze::report::{self, Report, TextOptions};

/// Output formats.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// Readable text.
    Text,
    /// JSON (schema `memtrace-report/1`).
    Json,
}

/// Arguments of `memtrace report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The trace file.
    pub trace: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Sites listed per table.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Frames printed per stack.
    #[arg(long, default_value_t = 8)]
    pub frames: usize,
    /// Report the process and every traced process it started (the traces
    /// beside TRACE whose parent is in the family, and those an `exec`
    /// continued): one line of totals each.
    #[arg(long)]
    pub family: bool,
}

/// Reads a trace and builds its heap report.
pub fn load_report(path: &Path) -> Result<Report> {
    report::from_file(path).with_context(|| format!("{}", path.display()))
}

/// Runs `memtrace report`.
pub fn report(args: ReportArgs) -> Result<ExitCode> {
    if args.family {
        let members = crate::cmd::family::family(&args.trace)?;
        match args.format {
            Format::Text => print!("{}", crate::cmd::family::render_text(&members)),
            Format::Json => println!(
                "{}",
                serde_json::to_string_pretty(&crate::cmd::family::to_json(&members)?)?
            ),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let r = load_report(&args.trace)?;
    match args.format {
        Format::Text => print!(
            "{}",
            report::render_text(
                &r,
                TextOptions {
                    top: args.top,
                    frames: args.frames
                }
            )
        ),
        Format::Json => println!("{}", serde_json::to_string_pretty(&r)?),
    }
    Ok(ExitCode::SUCCESS)
}

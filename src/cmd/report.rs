//! `memtrace report TRACE`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use memtrace_analyze::report::{self, Report, TextOptions};
use memtrace_format::{Extent, Named};

use crate::cmd::extent::FollowArg;
use crate::progress::{self, QuietArg};

/// Output formats.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// Readable text.
    Text,
    /// JSON, of the schema the command's --help names.
    Json,
}

/// Arguments of `memtrace report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The trace file.
    pub trace: PathBuf,
    /// Output format (JSON schema `memtrace-report/1`, with --family
    /// `memtrace-family/1`).
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
    /// How much of a trace still being written to read.
    #[command(flatten)]
    pub follow: FollowArg,
    /// Whether reading shows progress.
    #[command(flatten)]
    pub quiet: QuietArg,
}

/// Reads a trace within `extent` and builds its heap report.
pub fn load_report_within(path: &Path, extent: Extent) -> Result<Report> {
    load_named_report(path, extent, Named::ByUser)
}

/// Reads a trace that memtrace found, not the user (see [`Named`]), as
/// long as it is now, and builds its heap report.
pub fn load_found_report(path: &Path) -> Result<Report> {
    load_named_report(path, Extent::AsOpened, Named::Found)
}

fn load_named_report(path: &Path, extent: Extent, named: Named) -> Result<Report> {
    let context = || format!("{}", path.display());
    let reader = progress::open(path, extent, named).with_context(context)?;
    report::from_reader(reader).with_context(context)
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
    let r = load_report_within(&args.trace, args.follow.extent())?;
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

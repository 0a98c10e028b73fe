//! `memtrace latency TRACE`: time spent inside the allocator, its stalls,
//! the sites that cost the most, and advice.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use memtrace_analyze::latency::{self, Config};
use memtrace_format::Named;

use crate::cmd::extent::FollowArg;
use crate::cmd::report::Format;
use crate::progress::{self, QuietArg};

/// Arguments of `memtrace latency`.
#[derive(Args, Debug)]
pub struct LatencyArgs {
    /// The trace file.
    pub trace: PathBuf,
    /// Calls that take at least this many microseconds are stalls.
    #[arg(long, default_value_t = 10)]
    pub stall_us: u64,
    /// Sites listed per table.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Frames printed per stall stack.
    #[arg(long, default_value_t = 8)]
    pub frames: usize,
    /// Output format (JSON schema `memtrace-latency/2`).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// How much of a trace still being written to read.
    #[command(flatten)]
    pub follow: FollowArg,
    /// Whether reading shows progress.
    #[command(flatten)]
    pub quiet: QuietArg,
}

/// Runs `memtrace latency`.
pub fn latency(args: LatencyArgs) -> Result<ExitCode> {
    let config = Config {
        stall_ns: args.stall_us.saturating_mul(1000),
        top: args.top,
    };
    let context = || format!("{}", args.trace.display());
    let mut reader =
        progress::open(&args.trace, args.follow.extent(), Named::ByUser).with_context(context)?;
    let r = latency::from_reader(&mut reader, config).with_context(context)?;
    match args.format {
        Format::Text => print!("{}", latency::render_text(&r, args.frames)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&r)?),
    }
    Ok(ExitCode::SUCCESS)
}

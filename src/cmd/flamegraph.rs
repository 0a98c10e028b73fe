//! `memtrace flamegraph TRACE --by MEASURE [-o OUT] [--collapsed]`.
//!
//! Without `-o` the folded stacks go to stdout; with `-o OUT` an SVG flame
//! graph drawn by inferno goes to `OUT`, or the folded stacks with
//! `--collapsed`. [`memtrace_analyze::flame`] folds the stacks.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use memtrace_analyze::flame::{self, Folded, Measure};
use memtrace_format::{Extent, Named};

use crate::cmd::extent::FollowArg;
use crate::progress::{self, QuietArg};

/// What the widths of the flame graph measure.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum By {
    /// Bytes allocated.
    Bytes,
    /// Allocation calls.
    Calls,
    /// Bytes live at the heap peak.
    Peak,
    /// Bytes unfreed at exit.
    Leaked,
    /// Nanoseconds spent in the allocator by allocation calls.
    Latency,
}

impl From<By> for Measure {
    fn from(by: By) -> Measure {
        match by {
            By::Bytes => Measure::Bytes,
            By::Calls => Measure::Calls,
            By::Peak => Measure::Peak,
            By::Leaked => Measure::Leaked,
            By::Latency => Measure::Latency,
        }
    }
}

/// Arguments of `memtrace flamegraph`.
#[derive(Args, Debug)]
pub struct FlamegraphArgs {
    /// The trace file.
    pub trace: PathBuf,
    /// What the widths measure.
    #[arg(long, value_enum, default_value_t = By::Bytes)]
    pub by: By,
    /// Write an SVG flame graph here (the folded stacks with --collapsed);
    /// without it the folded stacks go to stdout.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Write folded stacks (`root;...;leaf VALUE` lines) instead of an SVG.
    #[arg(long)]
    pub collapsed: bool,
    /// How much of a trace still being written to read.
    #[command(flatten)]
    pub follow: FollowArg,
    /// Whether reading shows progress.
    #[command(flatten)]
    pub quiet: QuietArg,
}

/// Reads a trace within `extent` and folds its stacks by `measure`;
/// symbolization warnings go to stderr.
pub fn fold(path: &Path, extent: Extent, measure: Measure) -> Result<Folded> {
    let mut reader = progress::open(path, extent, Named::ByUser)
        .with_context(|| format!("{}", path.display()))?;
    let folded =
        flame::from_reader(&mut reader, measure).with_context(|| format!("{}", path.display()))?;
    warn(&folded);
    Ok(folded)
}

/// Prints the symbolization warnings of `folded` on stderr.
pub fn warn(folded: &Folded) {
    for w in &folded.warnings {
        eprintln!("memtrace: warning: {w}");
    }
}

/// The flame graph's width in pixels: that of `memtrace-plot`'s charts.
const FLAME_WIDTH: usize = 960;
/// Its frames' font size in pixels (inferno's default is 12).
const FLAME_FONT_SIZE: usize = 13;

/// Draws folded stacks as an inferno flame graph (they must not be empty).
pub fn svg(folded: &Folded, measure: Measure, out: &mut impl Write) -> Result<()> {
    if measure == Measure::Latency && !folded.latency_measured {
        eprintln!("memtrace: warning: this trace has no allocator latencies");
    }
    let mut options = inferno::flamegraph::Options::default();
    // As wide as memtrace's other charts, so that its text reads at the
    // size of theirs on a page that shows them side by side.
    options.image_width = Some(FLAME_WIDTH);
    options.font_size = FLAME_FONT_SIZE;
    options.title = format!(
        "memtrace: {} by stack ({})",
        measure.description(),
        folded.program
    );
    options.count_name = measure.unit().to_string();
    options.subtitle = folded.subtitle.clone();
    inferno::flamegraph::from_lines(&mut options, folded.text.lines(), out)?;
    Ok(())
}

/// Runs `memtrace flamegraph`.
pub fn flamegraph(args: FlamegraphArgs) -> Result<ExitCode> {
    let measure = Measure::from(args.by);
    // A planted link or directory at the output is refused before any work.
    let output = args
        .output
        .as_deref()
        .map(memtrace_safe_write::OutFile::new)
        .transpose()?;
    let folded = fold(&args.trace, args.follow.extent(), measure)?;
    let Some(output) = output else {
        io::stdout().write_all(folded.text.as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    };
    if folded.empty && !args.collapsed {
        // inferno cannot draw an empty graph; this is an answer, not an error.
        eprintln!(
            "memtrace: no stack has any {}: no flame graph written",
            measure.description()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if args.collapsed {
        output.write(folded.text.as_bytes())?;
    } else {
        let mut svg_bytes = Vec::new();
        svg(&folded, measure, &mut svg_bytes)
            .with_context(|| format!("{}", output.path().display()))?;
        output.write(&svg_bytes)?;
    }
    Ok(ExitCode::SUCCESS)
}

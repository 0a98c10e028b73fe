//! `memtrace flamegraph TRACE --by MEASURE [-o OUT] [--collapsed]`.
//!
//! Without `-o` the folded stacks go to stdout; with `-o OUT` an SVG flame
//! graph drawn by inferno goes to `OUT`, or the folded stacks with
//! `--collapsed`. See [`memtrace_analyze::flame`] for how stacks are folded.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use memtrace_analyze::flame::{self, Measure};
use memtrace_analyze::replay::HeapReplay;
use memtrace_analyze::symbols::Symbols;
use memtrace_format::Completeness;

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
}

/// Runs `memtrace flamegraph`.
pub fn flamegraph(args: FlamegraphArgs) -> Result<ExitCode> {
    let measure = Measure::from(args.by);
    let path = &args.trace;
    let mut reader = memtrace_analyze::open(path).with_context(|| format!("{}", path.display()))?;
    let replay =
        HeapReplay::from_reader(&mut reader, 0).with_context(|| format!("{}", path.display()))?;
    let mut symbols = Symbols::new(reader.modules());
    let stacks = flame::folded_stacks(
        &replay,
        reader.stacks(),
        &mut symbols,
        reader.clock(),
        measure,
    );
    for w in symbols.warnings() {
        eprintln!("memtrace: warning: {w}");
    }
    let folded = flame::render_folded(&stacks);

    let Some(output) = &args.output else {
        io::stdout().write_all(folded.as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    };
    if stacks.is_empty() && !args.collapsed {
        // inferno cannot draw an empty graph; this is an answer, not an error.
        eprintln!(
            "memtrace: no stack has any {}: no flame graph written",
            measure.description()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let context = || format!("{}", output.display());
    let mut out = BufWriter::new(File::create(output).with_context(context)?);
    if args.collapsed {
        out.write_all(folded.as_bytes()).with_context(context)?;
    } else {
        if measure == Measure::Latency && !reader.header().latency_measured {
            eprintln!("memtrace: warning: this trace has no allocator latencies");
        }
        let program = Path::new(&reader.header().exe).file_name().map_or_else(
            || reader.header().exe.clone(),
            |n| n.to_string_lossy().into(),
        );
        let mut options = inferno::flamegraph::Options::default();
        options.title = format!("memtrace: {} by stack ({program})", measure.description());
        options.count_name = measure.unit().to_string();
        options.subtitle = match reader.completeness() {
            Completeness::Complete(_) => None,
            Completeness::Truncated(at) => Some(format!("trace cut at byte {at}")),
            Completeness::NoTrailer | Completeness::Reading => {
                Some("trace without trailer: recording did not end cleanly".to_string())
            }
        };
        inferno::flamegraph::from_lines(&mut options, folded.lines(), &mut out)
            .with_context(context)?;
    }
    out.flush().with_context(context)?;
    Ok(ExitCode::SUCCESS)
}

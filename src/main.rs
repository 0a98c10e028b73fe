//! `memtrace`: where a program's memory goes and what it costs.
//!
//! A thin command line over the library crates in `crates/`. Exit codes:
//! `memtrace run` exits with the program's status (128+N for signal N);
//! other commands exit 0 on success, 2 on an error (one line on stderr,
//! bad options included);
//! `memtrace leaks` and `run --check-leaks` also 1 (`--error-exitcode`)
//! for leaks and 3 for an incomplete scan. Every subcommand's `--help`
//! ends with its exit codes and the schemas of its JSON.

mod charts;
mod cmd;
mod inspect;
mod preload_lib;
mod private_dir;
mod progress;
mod trace_list;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};
use memtrace_analyze::latency::LATENCY_SCHEMA;
use memtrace_analyze::leaks::SCHEMA as LEAKS_SCHEMA;
use memtrace_analyze::report::REPORT_SCHEMA;
use memtrace_swap::timeline::JSON_SCHEMA as SWAP_SCHEMA;
use nix::sys::signal::{signal, SigHandler, Signal};

/// Where a program's memory goes and what it costs.
#[derive(Parser)]
#[command(name = "memtrace", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The exit codes of the commands that read a trace and print what they find.
const EXIT_0_2: &str = "Exit status: 0, or 2 on an error, with one line on stderr (a missing, \
                        unreadable or corrupt trace, a bad option).";

#[derive(Subcommand)]
enum Command {
    /// Run a program under the recorder and write a trace.
    #[command(
        after_help = "Exit status: the program's (128+N when signal N ended it), or 2 when \
        memtrace cannot run or trace it, with one line on stderr. With --check-leaks, when the \
        program succeeded: --error-exitcode (default 1) when leaks of a --fail-on class remain, \
        3 when the leak scan was incomplete."
    )]
    Run(cmd::run::RunArgs),
    /// Heap profile of a trace: totals, peak, top sites, sizes.
    #[command(after_help = format!(
        "JSON schema: {REPORT_SCHEMA}; with --family: {}.\n\n{EXIT_0_2}",
        cmd::family::SCHEMA
    ))]
    Report(cmd::report::ReportArgs),
    /// Fragmentation: the program's requests replayed through allocator
    /// models, or the kernel's buddy and slab state (--system).
    #[command(after_help = format!(
        "JSON schema: {}; with --system: {}.\n\n{EXIT_0_2}",
        cmd::frag::SCHEMA,
        cmd::frag::SYSTEM_SCHEMA
    ))]
    Frag(cmd::frag::FragArgs),
    /// Flame graph of allocation stacks (SVG, or folded stacks).
    #[command(after_help = EXIT_0_2)]
    Flamegraph(cmd::flamegraph::FlamegraphArgs),
    /// Time inside the allocator: latency per function, stalls, costly sites.
    #[command(after_help = format!("JSON schema: {LATENCY_SCHEMA}.\n\n{EXIT_0_2}"))]
    Latency(cmd::latency::LatencyArgs),
    /// Leaks found by the exit-time reachability scan, for people and CI.
    #[command(after_help = format!(
        "JSON schema: {LEAKS_SCHEMA} (docs/leaks-json.md); SARIF: 2.1.0.\n\n\
         Exit status: 0 when no block of a --fail-on class remains, --error-exitcode (default 1) \
         when one does, 2 on an error (an unreadable trace, one without a scan, a bad option), 3 \
         when the scan was incomplete (it ran out of time, a thread could not be stopped, ...: \
         the report says why), whatever it found."
    ))]
    Leaks(cmd::leaks::LeaksArgs),
    /// Charts of a trace as SVG files and an index.html: heap over time,
    /// sizes, latency, real-heap fragmentation, policies, flame graph, leaks.
    #[command(after_help = EXIT_0_2)]
    Plot(cmd::plot::PlotArgs),
    /// Swap and thrash monitor: a live verdict (ok, reclaiming, swapping,
    /// thrashing) for a program or a running process, and a summary.
    #[command(after_help = format!(
        "Timeline JSON schema (-o FILE.json): {SWAP_SCHEMA}.\n\n\
         Exit status: with a PROGRAM, the program's (128+N when signal N ended it); with --pid, 0 \
         when the process ends or monitoring is interrupted; 2 on an error, with one line on \
         stderr."
    ))]
    Swap(cmd::swap::SwapArgs),
    /// Cache locality: hardware counters (or simulated misses without a
    /// PMU), per-phase counts and allocation scatter.
    #[command(after_help = format!(
        "JSON schema: memtrace-cache/1.\n\n\
         Exit status: with a PROGRAM, the program's (128+N when signal N ended it); with \
         --trace, 0; 2 on an error, with one line on stderr."
    ))]
    Cache(cmd::cache::CacheArgs),
    /// Print every event of a trace, one per line (for debugging).
    #[command(hide = true, after_help = EXIT_0_2)]
    Dump(cmd::dump::DumpArgs),
}

impl Command {
    /// Whether the user asked for quiet (`-q`): no progress bar.
    fn quiet(&self) -> bool {
        match self {
            Command::Run(a) => a.quiet,
            Command::Report(a) => a.quiet.quiet,
            Command::Frag(a) => a.quiet.quiet,
            Command::Flamegraph(a) => a.quiet.quiet,
            Command::Latency(a) => a.quiet.quiet,
            Command::Leaks(a) => a.quiet.quiet,
            Command::Plot(a) => a.quiet.quiet,
            Command::Swap(a) => a.quiet,
            Command::Cache(a) => a.quiet.quiet,
            Command::Dump(a) => a.quiet.quiet,
        }
    }
}

/// Parses the command line. Help and version go to stdout (exit 0); a
/// usage error is one line `memtrace: ...` on stderr and exit 2, like every
/// other error.
fn parse() -> Result<Cli, ExitCode> {
    match Cli::try_parse() {
        Ok(cli) => Ok(cli),
        Err(e)
            if !e.use_stderr()
                || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            e.exit()
        }
        Err(e) => {
            eprintln!("memtrace: {}", one_line(&e.render().to_string()));
            Err(ExitCode::from(2))
        }
    }
}

/// clap's error text as one line: its paragraphs (message, possible
/// values, tip, usage) joined with "; ", without "error: " and the pointer
/// to `--help`.
fn one_line(text: &str) -> String {
    let text = text.strip_prefix("error: ").unwrap_or(text);
    text.split("\n\n")
        .map(|p| p.lines().map(str::trim).collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty() && !p.starts_with("For more information"))
        .map(|p| match p.strip_prefix("Usage: ") {
            Some(usage) => format!("usage: {usage}"),
            None => p,
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`memtrace report T | head`), as Unix tools do.
    // SAFETY: restores the default disposition; no handler of ours runs.
    unsafe {
        let _ = signal(Signal::SIGPIPE, SigHandler::SigDfl);
    }
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    progress::init(cli.command.quiet());
    let result = match cli.command {
        Command::Run(args) => cmd::run::run(args),
        Command::Report(args) => cmd::report::report(args),
        Command::Dump(args) => cmd::dump::dump(args),
        Command::Frag(args) => cmd::frag::frag(args),
        Command::Flamegraph(args) => cmd::flamegraph::flamegraph(args),
        Command::Latency(args) => cmd::latency::latency(args),
        Command::Leaks(args) => cmd::leaks::leaks(args),
        Command::Plot(args) => cmd::plot::plot(args),
        Command::Swap(args) => cmd::swap::swap(args),
        Command::Cache(args) => cmd::cache::cache(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("memtrace: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clap_error_becomes_one_line() {
        let text = "error: invalid value 'x' for '--fail-on <CLASSES>'\n  \
                    [possible values: definite, all]\n\n  tip: a similar value exists: 'all'\n\n\
                    For more information, try '--help'.\n";
        assert_eq!(
            one_line(text),
            "invalid value 'x' for '--fail-on <CLASSES>' [possible values: definite, all]; \
             tip: a similar value exists: 'all'"
        );
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}

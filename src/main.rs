//! `memtrace`: where a program's memory goes and what it costs.
//!
//! A thin command line over the library crates in `crates/`. Exit codes:
//! `memtrace run` exits with the program's status (128+N for signal N);
//! other commands exit 0 on success, 2 on an error (one line on stderr);
//! `memtrace leaks` and `run --check-leaks` also 1 (`--error-exitcode`)
//! for leaks and 3 for an incomplete scan.

mod charts;
mod cmd;
mod inspect;
mod preload_lib;
mod private_dir;
mod trace_list;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nix::sys::signal::{signal, SigHandler, Signal};

/// Where a program's memory goes and what it costs.
#[derive(Parser)]
#[command(name = "memtrace", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a program under the recorder and write a trace.
    Run(cmd::run::RunArgs),
    /// Heap profile of a trace: totals, peak, top sites, sizes.
    Report(cmd::report::ReportArgs),
    /// Fragmentation: the program's requests replayed through allocator
    /// models, or the kernel's buddy and slab state (--system).
    Frag(cmd::frag::FragArgs),
    /// Flame graph of allocation stacks (SVG, or folded stacks).
    Flamegraph(cmd::flamegraph::FlamegraphArgs),
    /// Time inside the allocator: latency per function, stalls, costly sites.
    Latency(cmd::latency::LatencyArgs),
    /// Leaks found by the exit-time reachability scan, for people and CI.
    ///
    /// Exit status: 0 when no block of a --fail-on class remains,
    /// --error-exitcode (default 1) when one does, 2 on an error (an
    /// unreadable trace, one without a scan, a bad option), 3 when the scan
    /// was incomplete (it ran out of time, a thread could not be stopped,
    /// ...: the report says why), whatever it found.
    Leaks(cmd::leaks::LeaksArgs),
    /// Charts of a trace as SVG files and an index.html: heap over time,
    /// sizes, latency, real-heap fragmentation, policies, flame graph.
    Plot(cmd::plot::PlotArgs),
    /// Swap and thrash monitor: a live verdict (ok, reclaiming, swapping,
    /// thrashing) for a program or a running process, and a summary.
    Swap(cmd::swap::SwapArgs),
    /// Cache locality: hardware counters (or simulated misses without a
    /// PMU), per-phase counts and allocation scatter.
    Cache(cmd::cache::CacheArgs),
    /// Print every event of a trace, one per line (for debugging).
    #[command(hide = true)]
    Dump(cmd::dump::DumpArgs),
}

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`memtrace report T | head`), as Unix tools do.
    // SAFETY: restores the default disposition; no handler of ours runs.
    unsafe {
        let _ = signal(Signal::SIGPIPE, SigHandler::SigDfl);
    }
    let cli = Cli::parse();
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

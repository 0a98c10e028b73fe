//! `cargo xtask`: project automation for memtrace.
//!
//! * `cargo xtask report` builds memtrace, records every bundled fixture and
//!   writes their reports, SVG charts, `target/memtrace-report/index.html`
//!   and `summary.md`: the main job, to run first.
//! * `cargo xtask bench` measures the recorder against native runs, heaptrack
//!   and valgrind on `fixtures/c/bench_alloc.c` and writes
//!   `target/memtrace-report/bench.md`, then times thread_scale.c (2,000
//!   detached threads, 10,000 in sequence, 1,000 live) and measures the
//!   RSS memtrace adds per thread (`--threads-only` for that part alone).
//! * `cargo xtask accuracy` runs sqlite3, jq, python3, git and gcc under
//!   memtrace, heaptrack and valgrind memcheck and writes their figures
//!   (calls, peak, unfreed, leak classes, top sites) side by side into
//!   `target/memtrace-report/accuracy.md`.
//! * `cargo xtask heaptrack-check` compares memtrace's totals with heaptrack's
//!   on the deterministic fixtures.
//! * `cargo xtask stress` runs the threads stress fixture at full size (16
//!   threads x 1M operations, 20 runs, a time limit per run) and checks
//!   every trace call for call.
//! * `cargo xtask fuzz [--secs N]` builds and runs every fuzz target of
//!   `fuzz/` for N seconds each and prints executions and crashes.
//! * `cargo xtask bigtrace` records a 100-million-event trace and measures
//!   the peak RSS and wall time of `report`, `leaks` and `frag` on it.
//!
//! This file only parses the command line; the work is in the modules.

mod accuracy;
mod bench;
mod bigtrace;
mod browser;
mod cache_pairs;
mod charts;
mod constrained;
mod floor;
mod fuzz;
mod heaptrack;
mod report;
mod share;
mod stress;
mod threads;
mod util;
mod valgrind;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// memtrace project tasks.
#[derive(Parser)]
#[command(name = "cargo xtask", about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Record every bundled fixture; write reports, charts, index.html, summary.md.
    Report,
    /// Recorder overhead vs native, heaptrack and valgrind; analysis times.
    Bench(bench::BenchArgs),
    /// Compare memtrace's totals with heaptrack's on the fixtures.
    HeaptrackCheck,
    /// sqlite3, jq, python3, git, gcc under memtrace, heaptrack and memcheck, side by side.
    Accuracy,
    /// Threads stress: many runs at full size, every trace checked exactly.
    Stress(stress::StressArgs),
    /// Run every fuzz target for a while; print executions and crashes.
    Fuzz(fuzz::FuzzArgs),
    /// Peak RSS and wall time of report, leaks and frag on a 100M-event trace.
    Bigtrace(bigtrace::BigtraceArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => bench::run(&args),
        Command::HeaptrackCheck => heaptrack::run(),
        Command::Accuracy => accuracy::run(),
        Command::Fuzz(args) => fuzz::run(&args),
        Command::Bigtrace(args) => bigtrace::run(&args),
        Command::Report => report::run(),
        Command::Stress(args) => stress::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

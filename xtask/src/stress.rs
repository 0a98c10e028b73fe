//! `cargo xtask stress`: the threads stress fixture at full size, run after
//! run under `memtrace run`, each trace checked call for call against the
//! fixture's generator (the same check `tests/stress_threads.rs` makes at
//! CI size). A run that does not end within its time limit is reported as
//! a deadlock or hang, not waited for.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;

use crate::util::{self, Paths};

#[path = "../../tests/common/stress.rs"]
mod model;

/// Options of `cargo xtask stress`.
#[derive(Args)]
pub struct StressArgs {
    /// Worker threads per run.
    #[arg(long, default_value_t = 16)]
    threads: u32,
    /// Heap operations per worker thread.
    #[arg(long, default_value_t = 1_000_000)]
    ops: u64,
    /// Rounds of 4 short-lived threads (64 blocks each) per run.
    #[arg(long, default_value_t = 50)]
    churn_rounds: u64,
    /// Consecutive runs.
    #[arg(long, default_value_t = 20)]
    runs: u32,
    /// Seconds a run may take before it counts as a deadlock.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Use this memtrace binary, this compiled fixture and this directory
    /// for the traces (all three: nothing is built, cargo is not needed; for
    /// a machine that has no toolchain).
    #[arg(long, num_args = 3, value_names = ["MEMTRACE", "FIXTURE", "DIR"])]
    prebuilt: Option<Vec<PathBuf>>,
}

/// How one run ended.
enum Outcome {
    Ok(model::Checked),
    Hung,
    Failed(String),
}

pub fn run(args: &StressArgs) -> Result<ExitCode> {
    let (memtrace, exe, dir) = match args.prebuilt.as_deref() {
        Some([memtrace, exe, dir]) => (memtrace.clone(), exe.clone(), dir.clone()),
        _ => {
            let paths = Paths::locate()?;
            util::build_memtrace(&paths)?;
            let exe = util::compile(
                &paths,
                "cc",
                &["-O2", "-g", "-pthread"],
                "c/stress_threads.c",
                "stress_threads",
            )?;
            (paths.memtrace, exe, paths.traces.join("stress"))
        }
    };
    let config = model::StressConfig {
        threads: args.threads,
        ops: args.ops,
        churn_rounds: args.churn_rounds,
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let limit = Duration::from_secs(args.timeout);
    let expected = config.expected_calls();
    eprintln!(
        "xtask: stress: {} runs of {} threads x {} operations, {} short-lived threads \
         per run ({expected} heap calls to find in each trace), {}s limit per run, {} CPUs",
        args.runs,
        args.threads,
        args.ops,
        args.churn_rounds * model::CHURN_THREADS_PER_ROUND,
        args.timeout,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let (mut n_ok, mut n_hung, mut n_failed) = (0u32, 0u32, 0u32);
    let mut calls_checked = 0u64;
    let mut reorders = 0u64;
    let started = Instant::now();
    for run in 1..=args.runs {
        let trace = dir.join(format!("run-{run}.trace"));
        util::remove_file(&trace)?;
        let mut cmd = Command::new(&memtrace);
        cmd.args(["run", "-q", "-o"])
            .arg(&trace)
            .arg("--")
            .arg(&exe)
            .args(config.args());
        let t0 = Instant::now();
        let outcome = match util::measure_within(&mut cmd, Some(limit))? {
            None => Outcome::Hung,
            Some(m) if !m.status.success() => {
                Outcome::Failed(format!("exited with {}: {}", m.status, m.stderr.trim()))
            }
            Some(m) if !m.stderr.is_empty() => {
                Outcome::Failed(format!("stderr: {}", m.stderr.trim()))
            }
            Some(m) => match model::check(&config, &m.stdout, &trace) {
                Ok(checked) => Outcome::Ok(checked),
                Err(e) => Outcome::Failed(e),
            },
        };
        let secs = t0.elapsed().as_secs_f64();
        match outcome {
            Outcome::Ok(checked) => {
                n_ok += 1;
                calls_checked += checked.fixture_calls;
                reorders += checked.realloc_reorders;
                println!(
                    "run {run}/{}: ok, {} heap calls of the fixture matched ({} events in \
                     the trace, {} blocks received by a slow realloc sorted before their \
                     release), {secs:.1} s",
                    args.runs, checked.fixture_calls, checked.events, checked.realloc_reorders
                );
                util::remove_file(&trace)?;
            }
            Outcome::Hung => {
                n_hung += 1;
                println!(
                    "run {run}/{}: DEADLOCK OR HANG: no exit within {} s, killed",
                    args.runs, args.timeout
                );
            }
            Outcome::Failed(why) => {
                n_failed += 1;
                println!(
                    "run {run}/{}: FAILED: {why} (trace kept: {})",
                    args.runs,
                    trace.display()
                );
            }
        }
    }
    let operations = u64::from(args.runs) * u64::from(args.threads) * args.ops;
    println!(
        "stress: {} runs, {operations} worker operations, {calls_checked} heap calls checked, \
         {} short-lived threads; {n_ok} ok, {} failures ({n_hung} deadlocks or hangs, \
         {n_failed} wrong or crashed); {reorders} realloc reorderings; {:.0} s",
        args.runs,
        u64::from(args.runs) * args.churn_rounds * model::CHURN_THREADS_PER_ROUND,
        n_hung + n_failed,
        started.elapsed().as_secs_f64()
    );
    Ok(if n_hung + n_failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

//! The threads part of `cargo xtask bench`: `fixtures/c/thread_scale.c`
//! natively and under `memtrace run -q` (no summary, so the time is the
//! program's and the recorder's), for issue #17's goals. Each traced run
//! has a time limit, so a hang is reported instead of waited for.
//!
//! * Time: the traced run within 3x the native run + 1 s, for 2,000
//!   detached threads, 10,000 threads created and joined in sequence, and
//!   1,000 live threads of 100,000 calls each.
//! * Memory: the peak RSS memtrace adds per thread, from the program's own
//!   `VmHWM` (the fixture prints it, so memtrace's analyses never count):
//!   under 64 KiB per idle thread (1,000 threads alive at once after one
//!   malloc and one free each) and under 2 MiB per busy thread (100 threads
//!   of 20,000 calls, and the 1,000 live threads). The added RSS is
//!   (traced - native) / threads, so the writer's fixed memory (its zstd
//!   context and block buffers) is shared out over the threads.
//!
//! Nothing is asserted: the goals print PASS or FAIL, as the bench's others.

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::util::{self, fmt_bytes, fmt_secs, Paths, Table};

/// One program of the table.
struct Scenario {
    mode: &'static str,
    threads: u64,
    calls: u64,
    /// Which goal this run measures.
    goal: Goal,
}

#[derive(Clone, Copy, PartialEq)]
enum Goal {
    Time,
    IdleRss,
    BusyRss,
    TimeAndBusyRss,
}

/// What one run gave.
struct Run {
    wall: Duration,
    peak_rss_kib: u64,
}

/// The measured table and the goals' lines (`PASS: ...` or `FAIL: ...`).
pub struct ThreadsBench {
    pub table: Table,
    pub goals: Vec<(bool, String)>,
    pub commands: Vec<String>,
}

/// Seconds a traced run may take before it counts as a hang.
const LIMIT: Duration = Duration::from_secs(600);

/// Runs every scenario once natively and once traced. `quick` makes the
/// 1,000 live threads make 1,000 calls each instead of 100,000.
pub fn measure(paths: &Paths, quick: bool) -> Result<ThreadsBench> {
    let exe = util::compile(
        paths,
        "cc",
        &["-O2", "-g", "-pthread"],
        "c/thread_scale.c",
        "thread_scale",
    )?;
    let live_calls = if quick { 1_000 } else { 100_000 };
    let scenarios = [
        Scenario {
            mode: "detached",
            threads: 2000,
            calls: 20,
            goal: Goal::Time,
        },
        Scenario {
            mode: "sequence",
            threads: 2000,
            calls: 20,
            goal: Goal::Time,
        },
        Scenario {
            mode: "sequence",
            threads: 10_000,
            calls: 20,
            goal: Goal::Time,
        },
        Scenario {
            mode: "idle",
            threads: 1000,
            calls: 2,
            goal: Goal::IdleRss,
        },
        Scenario {
            mode: "live",
            threads: 100,
            calls: 20_000,
            goal: Goal::BusyRss,
        },
        Scenario {
            mode: "live",
            threads: 1000,
            calls: live_calls,
            goal: Goal::TimeAndBusyRss,
        },
    ];
    let mut table = Table::new(&[
        "program (thread_scale MODE THREADS CALLS)",
        "native",
        "memtrace run",
        "goal: 3x native + 1 s",
        "peak RSS native",
        "peak RSS traced",
        "added per thread",
    ]);
    let mut goals = Vec::new();
    let mut commands = Vec::new();
    for s in &scenarios {
        let args = [
            s.mode.to_string(),
            s.threads.to_string(),
            s.calls.to_string(),
        ];
        let mut native = Command::new(&exe);
        native.args(&args);
        let n = run(&mut native, s)?;
        let trace = paths.traces.join("thread_scale.trace");
        util::remove_file(&trace)?;
        let mut traced = Command::new(&paths.memtrace);
        traced
            .args(["run", "-q", "-o"])
            .arg(&trace)
            .arg("--")
            .arg(&exe)
            .args(&args);
        let t = run(&mut traced, s)?;
        util::remove_file(&trace)?;
        commands.push(util::show(&native));
        commands.push(util::show(&traced));

        let limit = 3.0 * n.wall.as_secs_f64() + 1.0;
        let added_kib = t.peak_rss_kib.saturating_sub(n.peak_rss_kib) as f64 / s.threads as f64;
        let label = format!("{} {} {}", s.mode, s.threads, s.calls);
        table.row(vec![
            label.clone(),
            fmt_secs(n.wall.as_secs_f64()),
            fmt_secs(t.wall.as_secs_f64()),
            fmt_secs(limit),
            fmt_bytes(n.peak_rss_kib * 1024),
            fmt_bytes(t.peak_rss_kib * 1024),
            format!("{added_kib:.1} KiB"),
        ]);
        if matches!(s.goal, Goal::Time | Goal::TimeAndBusyRss) {
            let secs = t.wall.as_secs_f64();
            goals.push((
                secs <= limit,
                format!(
                    "{label}: traced time <= 3x native + 1 s: {} vs {}",
                    fmt_secs(secs),
                    fmt_secs(limit)
                ),
            ));
        }
        let rss_goal = match s.goal {
            Goal::IdleRss => Some(("idle", 64.0)),
            Goal::BusyRss | Goal::TimeAndBusyRss => Some(("busy", 2048.0)),
            Goal::Time => None,
        };
        if let Some((kind, max_kib)) = rss_goal {
            goals.push((
                added_kib < max_kib,
                format!(
                    "{label}: peak RSS added per {kind} thread < {max_kib:.0} KiB: {added_kib:.1} KiB \
                     (VmHWM {} traced - {} native, over {} threads)",
                    fmt_bytes(t.peak_rss_kib * 1024),
                    fmt_bytes(n.peak_rss_kib * 1024),
                    s.threads
                ),
            ));
        }
    }
    Ok(ThreadsBench {
        table,
        goals,
        commands,
    })
}

/// Runs `cmd` (the fixture, directly or under memtrace) within [`LIMIT`]
/// and reads the peak RSS the fixture prints.
fn run(cmd: &mut Command, s: &Scenario) -> Result<Run> {
    eprintln!("xtask: {}", util::show(cmd));
    let Some(measured) = util::measure_within(cmd, Some(LIMIT))? else {
        bail!(
            "`{}` did not finish within {LIMIT:?}: a hang",
            util::show(cmd)
        );
    };
    let measured = measured.ok(cmd)?;
    let peak_rss_kib = peak_rss(&measured.stdout, s)
        .with_context(|| format!("`{}` printed {:?}", util::show(cmd), measured.stdout))?;
    Ok(Run {
        wall: measured.wall,
        peak_rss_kib,
    })
}

/// The `peak_rss_kib` of the fixture's line, checked against its arguments.
fn peak_rss(stdout: &str, s: &Scenario) -> Option<u64> {
    let prefix = format!(
        "thread_scale {} threads {} calls {} peak_rss_kib ",
        s.mode, s.threads, s.calls
    );
    stdout.trim_end().strip_prefix(&prefix)?.parse().ok()
}

/// Writes the section of `bench.md` (or `bench-threads.md`).
pub fn markdown(bench: &ThreadsBench, quick: bool) -> String {
    let mut md = String::from("## Threads at scale\n\n");
    md.push_str(&format!(
        "fixtures/c/thread_scale.c (gcc -O2 -g -pthread), one run each{}; `memtrace run -q` \
         (no summary). Peak RSS is the program's VmHWM as it prints it; added per thread = \
         (traced - native) / threads.\n\n",
        if quick {
            ", --quick: the 1,000 live threads make 1,000 calls each"
        } else {
            ""
        }
    ));
    md.push_str(&bench.table.markdown());
    md.push('\n');
    for (pass, text) in &bench.goals {
        md.push_str(&format!(
            "- {}: {text}\n",
            if *pass { "PASS" } else { "FAIL" }
        ));
    }
    md.push_str("\n```sh\n");
    for c in &bench.commands {
        md.push_str(c);
        md.push('\n');
    }
    md.push_str("```\n");
    md
}

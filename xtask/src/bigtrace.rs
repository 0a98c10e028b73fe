//! `cargo xtask bigtrace`: do the analyses stay in bounded memory on a
//! trace of 100 million events?
//!
//! Records `fixtures/c/bench_alloc.c` with as many operations as events are
//! asked for (one heap call per operation), then runs `memtrace report`,
//! `memtrace leaks` and `memtrace frag` on the trace, one at a time, and
//! measures each one's wall time and peak RSS (`wait4`'s `ru_maxrss`). With
//! several sizes (`--events 10000000,100000000`) the table shows whether
//! memory grows with the trace. The traces are deleted afterwards unless
//! `--keep`.

use std::process::{Command, ExitCode};

use anyhow::{Context, Result};
use clap::Args;

use crate::bench::count;
use crate::util::{self, fmt_bytes, fmt_secs, Paths, Table};

/// Arguments of `cargo xtask bigtrace`.
#[derive(Args, Debug)]
pub struct BigtraceArgs {
    /// Heap events per trace, comma separated: one trace per value.
    #[arg(long, value_delimiter = ',', default_value = "100000000")]
    pub events: Vec<u64>,
    /// Keep the traces (in target/memtrace-report/traces).
    #[arg(long)]
    pub keep: bool,
}

/// The analyses measured, as `memtrace` arguments (`{trace}` is replaced).
const ANALYSES: &[(&str, &[&str])] = &[
    ("report", &["report", "--format", "json", "{trace}"]),
    ("leaks", &["leaks", "{trace}"]),
    ("frag", &["frag", "{trace}"]),
];

/// Runs `cargo xtask bigtrace`.
pub fn run(args: &BigtraceArgs) -> Result<ExitCode> {
    let paths = Paths::locate()?;
    util::build_memtrace(&paths)?;
    let bench = util::compile_bench_alloc(&paths)?;
    let mut table = Table::new(&[
        "trace",
        "heap events",
        "size",
        "analysis",
        "wall",
        "peak RSS",
        "RSS B/event",
    ]);
    table.align_left(&[0, 3]);
    for &ops in &args.events {
        let expected = count(&bench, ops, 1)?;
        let trace = paths.traces.join(format!("bigtrace.{ops}ops.trace"));
        util::remove_file(&trace)?;
        let mut record = Command::new(&paths.memtrace);
        record
            .args(["run", "-q", "-o"])
            .arg(&trace)
            .arg("--")
            .arg(&bench)
            .arg(ops.to_string());
        eprintln!("xtask: {}", util::show(&record));
        let rec = util::measure(&mut record)?.ok(&record)?;
        let size = util::file_size(&trace)?;
        eprintln!(
            "xtask: recorded {} in {} (peak RSS {})",
            fmt_bytes(size),
            fmt_secs(rec.wall.as_secs_f64()),
            fmt_bytes(rec.max_rss_kib * 1024)
        );
        let mut events = expected.mallocs + expected.frees;
        for (name, template) in ANALYSES {
            let mut cmd = Command::new(&paths.memtrace);
            for a in *template {
                if *a == "{trace}" {
                    cmd.arg(&trace);
                } else {
                    cmd.arg(a);
                }
            }
            eprintln!("xtask: {}", util::show(&cmd));
            let m = util::measure(&mut cmd)?;
            // `memtrace leaks` exits 1 when it finds leaks: still a result.
            let m = if *name == "leaks" && m.status.code() == Some(1) {
                m
            } else {
                m.ok(&cmd)?
            };
            if *name == "report" {
                let r: serde_json::Value =
                    serde_json::from_str(&m.stdout).context("memtrace report printed bad JSON")?;
                events = r["totals"]["events"]
                    .as_u64()
                    .context("the report has no totals.events")?;
            }
            let rss = m.max_rss_kib * 1024;
            table.row(vec![
                format!("{ops} ops"),
                events.to_string(),
                fmt_bytes(size),
                name.to_string(),
                fmt_secs(m.wall.as_secs_f64()),
                fmt_bytes(rss),
                format!("{:.3}", rss as f64 / events.max(1) as f64),
            ]);
        }
        if !args.keep {
            util::remove_file(&trace)?;
        }
    }
    println!("{}", table.text());
    Ok(ExitCode::SUCCESS)
}

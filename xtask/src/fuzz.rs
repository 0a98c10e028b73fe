//! `cargo xtask fuzz`: every fuzz target of `fuzz/` for a while each.
//!
//! Builds the targets (`cargo +nightly fuzz build`: optimized, with debug
//! assertions and overflow checks, AddressSanitizer), then runs each one for
//! `--secs` seconds under `nice -n 19`, `--jobs` at a time, on a scratch
//! corpus in `target/fuzz/corpus/TARGET` seeded from the committed
//! `fuzz/corpus/TARGET` (which libFuzzer only reads). libFuzzer runs in fork
//! mode and goes on after a failure: every crash, hang (`-timeout`) or
//! allocation past `-rss_limit_mb` leaves its input in
//! `target/fuzz/artifacts/TARGET/`. Prints executions and failures per
//! target; exits 1 when any target failed.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::util::{self, Paths, Table};

/// The targets, as named in `fuzz/Cargo.toml`.
pub const TARGETS: &[&str] = &[
    "decode",
    "report",
    "leaks",
    "frag",
    "latency",
    "flamegraph",
    "cache",
];

/// Arguments of `cargo xtask fuzz`.
#[derive(Args, Debug)]
pub struct FuzzArgs {
    /// Seconds per target.
    #[arg(long, default_value_t = 60)]
    pub secs: u64,
    /// Targets run at the same time.
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Only these targets, comma separated [default: all].
    #[arg(long, value_delimiter = ',')]
    pub targets: Vec<String>,
}

/// What one target's run gave.
struct Outcome {
    target: String,
    executions: Option<u64>,
    corpus: Option<u64>,
    crashed: Option<String>,
}

/// Runs `cargo xtask fuzz`.
pub fn run(args: &FuzzArgs) -> Result<ExitCode> {
    let paths = Paths::locate()?;
    let targets: Vec<String> = if args.targets.is_empty() {
        TARGETS.iter().map(|t| t.to_string()).collect()
    } else {
        for t in &args.targets {
            if !TARGETS.contains(&t.as_str()) {
                bail!("unknown fuzz target `{t}` (known: {})", TARGETS.join(", "));
            }
        }
        args.targets.clone()
    };
    let fuzz_dir = paths.root.join("fuzz");
    let work = paths.report.parent().context("no target dir")?.join("fuzz");
    let mut build = Command::new("cargo");
    build
        .args(["+nightly", "fuzz", "build", "--fuzz-dir"])
        .arg(&fuzz_dir)
        .current_dir(&paths.root);
    eprintln!("xtask: {}", util::show(&build));
    let status = build
        .status()
        .context("cannot run cargo +nightly fuzz (install it: cargo install cargo-fuzz)")?;
    if !status.success() {
        bail!("{} failed ({status})", util::show(&build));
    }

    let mut outcomes = Vec::new();
    for batch in targets.chunks(args.jobs.max(1)) {
        let running: Vec<_> = batch
            .iter()
            .map(|t| start(&paths.root, &fuzz_dir, &work, t, args.secs))
            .collect::<Result<_>>()?;
        for (target, child, log) in running {
            let out = child
                .wait_with_output()
                .with_context(|| format!("waiting for fuzz target {target}"))?;
            let text = String::from_utf8_lossy(&out.stderr).into_owned();
            std::fs::write(&log, &text)
                .with_context(|| format!("cannot write {}", log.display()))?;
            outcomes.push(outcome(&target, &text, &work));
        }
    }

    let mut table = Table::new(&["target", "executions", "exec/s", "corpus", "failures"]);
    table.align_left(&[0, 4]);
    for o in &outcomes {
        table.row(vec![
            o.target.clone(),
            o.executions.map_or("?".into(), |n| n.to_string()),
            o.executions
                .map_or("?".into(), |n| (n / args.secs.max(1)).to_string()),
            o.corpus.map_or("?".into(), |n| n.to_string()),
            o.crashed.clone().unwrap_or_else(|| "0".into()),
        ]);
    }
    println!("{}", table.text());
    println!("logs: {}", work.join("logs").display());
    Ok(if outcomes.iter().any(|o| o.crashed.is_some()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Starts one target in the background; returns it and its log's path.
fn start(
    root: &Path,
    fuzz_dir: &Path,
    work: &Path,
    target: &str,
    secs: u64,
) -> Result<(String, std::process::Child, PathBuf)> {
    let corpus = work.join("corpus").join(target);
    let artifacts = work.join("artifacts").join(target);
    let logs = work.join("logs");
    // Failures of an earlier run are not this run's.
    let _ = std::fs::remove_dir_all(&artifacts);
    for dir in [&corpus, &artifacts, &logs] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut cmd = Command::new("nice");
    cmd.args(["-n", "19", "cargo", "+nightly", "fuzz", "run", "--fuzz-dir"])
        .arg(fuzz_dir)
        .arg(target)
        .arg(&corpus)
        .arg(fuzz_dir.join("corpus").join(target))
        .arg("--")
        .arg(format!("-max_total_time={secs}"))
        .args([
            "-fork=1",
            "-ignore_crashes=1",
            "-ignore_timeouts=1",
            "-ignore_ooms=1",
        ])
        .arg("-timeout=10")
        .arg("-rss_limit_mb=2048")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    eprintln!("xtask: {}", util::show(&cmd));
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start fuzz target {target}"))?;
    Ok((
        target.to_string(),
        child,
        logs.join(format!("{target}.log")),
    ))
}

/// Reads the executions from libFuzzer's last status line
/// (`#N: cov: ... oom/timeout/crash: A/B/C ...` in fork mode) and counts the
/// inputs left in the artifacts directory.
fn outcome(target: &str, log: &str, work: &Path) -> Outcome {
    let last = log
        .lines()
        .rev()
        .find(|l| l.starts_with('#') && l.contains("cov:"));
    let executions = last
        .and_then(|l| l[1..].split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok());
    let count = |dir: PathBuf| std::fs::read_dir(dir).ok().map(|d| d.count() as u64);
    let corpus = count(work.join("corpus").join(target));
    let failures = count(work.join("artifacts").join(target)).unwrap_or(0);
    let crashed = (failures > 0).then(|| {
        format!(
            "{failures} in {}",
            work.join("artifacts").join(target).display()
        )
    });
    Outcome {
        target: target.to_string(),
        executions,
        corpus,
        crashed,
    }
}

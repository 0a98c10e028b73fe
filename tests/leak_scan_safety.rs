//! The exit-time leak scan cannot hurt the program (issue 19, item 5), with
//! `fixtures/c/scan_churn.c`: threads that free, unmap and map in a loop
//! while `main` returns never make the program crash and always get the
//! same verdict; a thread asleep in a system call is stopped and its stack
//! scanned; a scan that cannot vouch for its result says so and exits 3,
//! never "no leaks".
//!
//! Before the reader of `crates/recorder/src/scan/read.rs`, 30 runs of 40
//! of `scan_churn churn` under memtrace died of SIGSEGV at exit.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use common::{memtrace, output_within, scratch, tag_line};
use memtrace_format::{Extent, LeakScan, Module, StackTable};
use memtrace_leaks::{classify, totals, LeakClass};
use serde_json::Value;

const SOURCE: &str = "fixtures/c/scan_churn.c";

/// Runs of the churning program; each takes about 30 ms.
const RUNS: usize = 100;

/// A hang is reported, not waited for.
const LIMIT: Duration = Duration::from_secs(60);

/// The fixture, built once.
fn fixture() -> &'static Path {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        let dir = scratch("scan-safety");
        common::compile("cc", SOURCE, &["-O2", "-g", "-pthread"], &dir)
    })
}

fn native(mode: &str) -> Output {
    output_within(Command::new(fixture()).arg(mode), LIMIT)
}

/// `memtrace run -q -o TRACE -- scan_churn MODE` in a fresh directory.
fn record(mode: &str, env: &[(&str, &str)]) -> (Output, PathBuf) {
    let dir = scratch(&format!("scan-{mode}"));
    let trace = dir.join("t.trace");
    let mut cmd = memtrace();
    cmd.args(["run", "-q", "-o"])
        .arg(&trace)
        .arg("--")
        .arg(fixture())
        .arg(mode)
        .envs(env.iter().copied());
    (output_within(&mut cmd, LIMIT), trace)
}

fn scan_of(trace: &Path) -> (LeakScan, Vec<Module>, StackTable) {
    let mut r = memtrace_analyze::open(trace, Extent::AsOpened).expect("open the trace");
    r.skip_to_end().expect("read the trace");
    let scan = r.leak_scan().expect("a leak scan").clone();
    (scan, r.modules().to_vec(), r.stacks().clone())
}

/// A stack as module paths and offsets: the same in every run, whatever
/// the addresses (ASLR) and stack ids (the threads intern in any order).
fn stack_key(modules: &[Module], stacks: &StackTable, id: u32) -> Vec<(String, u64)> {
    stacks
        .frames(id)
        .map(|addr| match modules.iter().find(|m| m.contains(addr)) {
            Some(m) => (m.path.clone(), addr - m.load_bias),
            None => (String::new(), addr),
        })
        .collect()
}

/// What a run's scan says, suppressions aside: blocks and bytes per lost
/// class, whether complete, and the stacks of the definitely lost blocks.
#[derive(Debug, PartialEq, Eq)]
struct Verdict {
    definite: (u64, u64),
    indirect: (u64, u64),
    possible: (u64, u64),
    complete: bool,
    lost_stacks: Vec<Vec<(String, u64)>>,
}

fn verdict(trace: &Path) -> Verdict {
    let (scan, modules, stacks) = scan_of(trace);
    let classes = classify(&scan);
    let t = totals(&scan, &classes, &|_| true);
    let mut lost_stacks: Vec<_> = scan
        .blocks
        .iter()
        .zip(&classes)
        .filter(|(_, &c)| c == LeakClass::Definite)
        .map(|(b, _)| stack_key(&modules, &stacks, b.stack))
        .collect();
    lost_stacks.sort();
    lost_stacks.dedup();
    Verdict {
        definite: t.of(LeakClass::Definite),
        indirect: t.of(LeakClass::Indirect),
        possible: t.of(LeakClass::Possible),
        complete: scan.is_complete(),
        lost_stacks,
    }
}

/// `memtrace leaks --format json TRACE`: its exit status and report.
fn leaks_json(trace: &Path) -> (i32, Value, String) {
    let out = output_within(
        memtrace().args(["leaks", "--format", "json"]).arg(trace),
        LIMIT,
    );
    let json = serde_json::from_slice(&out.stdout).expect("JSON report");
    (
        out.status.code().expect("exited"),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn pair(report: &Value, class: &str) -> (u64, u64) {
    let t = &report["totals"][class];
    (t["bytes"].as_u64().unwrap(), t["blocks"].as_u64().unwrap())
}

#[test]
fn threads_that_free_unmap_and_map_while_main_returns_never_crash_and_get_one_verdict() {
    let native = native("churn");
    assert_eq!(native.status.code(), Some(0));
    assert_eq!(native.stdout, b"churn: 3 threads\n");

    // The first run, symbolized: 5 blocks of 40 bytes at `@site lost`,
    // nothing else lost once the built-in suppressions are applied.
    let (out, trace) = record("churn", &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, native.stdout);
    let (code, report, _) = leaks_json(&trace);
    assert_eq!(code, 1, "definitely lost blocks fail the check");
    assert_eq!(report["scan"]["complete"], true);
    assert_eq!(pair(&report, "definite"), (200, 5));
    assert_eq!(pair(&report, "indirect"), (0, 0));
    assert_eq!(pair(&report, "possible"), (0, 0));
    let lost: Vec<(u64, u64, u64)> = report["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["class"] == "definite" && r["suppressed_by"].is_null())
        .map(|r| {
            (
                r["blocks"].as_u64().unwrap(),
                r["bytes"].as_u64().unwrap(),
                r["site"]["line"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(lost, vec![(5, 200, tag_line(SOURCE, "@site lost"))]);
    let first = verdict(&trace);
    assert_eq!(first.definite, (200, 5));
    assert_eq!(first.lost_stacks.len(), 1);

    // Every other run: the program's own status and output, and the same
    // scan (the threads' own blocks are still reachable, in numbers that
    // vary; glibc's thread blocks, possibly lost and suppressed by name,
    // are counted here without suppressions).
    for run in 1..RUNS {
        let (out, trace) = record("churn", &[]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "run {run}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, native.stdout, "run {run}");
        assert_eq!(verdict(&trace), first, "run {run}");
        let _ = std::fs::remove_dir_all(trace.parent().unwrap());
    }
}

#[test]
fn a_thread_asleep_in_read_is_stopped_and_its_stack_scanned() {
    let native = native("blocked");
    let (out, trace) = record("blocked", &[]);
    assert_eq!(out.status.code(), native.status.code());
    assert_eq!(out.stdout, native.stdout);
    assert_eq!(out.stdout, b"blocked: reading\n");
    let (code, report, _) = leaks_json(&trace);
    assert_eq!(code, 0);
    assert_eq!(report["scan"]["complete"], true);
    assert_eq!(report["scan"]["threads_unscanned"], 0);
    // The only pointer to the block is in the sleeping thread's frame.
    assert_eq!(pair(&report, "reachable"), (24, 1));
    assert_eq!(pair(&report, "definite"), (0, 0));
    let held: Vec<(String, u64)> = report["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["class"] == "reachable" && r["suppressed_by"].is_null())
        .map(|r| {
            let file = r["site"]["file"].as_str().unwrap_or("");
            let base = file.rsplit('/').next().unwrap_or("");
            (base.to_string(), r["site"]["line"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(
        held,
        vec![("scan_churn.c".to_string(), tag_line(SOURCE, "@site held"))]
    );
}

/// `memtrace run --check-leaks [ARGS] -- scan_churn MODE` with `env`.
fn check(mode: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = scratch(&format!("scan-check-{mode}"));
    let mut cmd = memtrace();
    cmd.current_dir(&dir)
        .args(["run", "--check-leaks", "-q"])
        .args(args)
        .arg("--")
        .arg(fixture())
        .arg(mode)
        .envs(env.iter().copied());
    output_within(&mut cmd, LIMIT)
}

#[test]
fn a_thread_that_blocks_the_signal_and_runs_makes_the_scan_incomplete() {
    let native = native("busy");
    let out = check("busy", &[], &[]);
    assert_eq!(out.stdout, native.stdout);
    assert_eq!(out.stdout, b"busy: spinning\n");
    assert_eq!(out.status.code(), Some(3), "incomplete, not a verdict");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.lines().any(|l| l
            == "leak scan incomplete: 1 thread could not be stopped \
                (blocking the scan's signal while running)"),
        "{stderr}"
    );
    let (_, trace) = record("busy", &[]);
    let (code, report, stderr) = leaks_json(&trace);
    assert_eq!(code, 3);
    assert_eq!(report["scan"]["complete"], false);
    assert_eq!(
        report["scan"]["incomplete"],
        serde_json::json!(["thread-not-stopped"])
    );
    assert_eq!(report["scan"]["threads_unscanned"], 1);
    assert_eq!(
        stderr,
        "memtrace: leak scan incomplete: 1 thread could not be stopped \
         (blocking the scan's signal while running)\n"
    );
}

#[test]
fn a_scan_out_of_time_is_incomplete_in_every_format_never_no_leaks() {
    // Nothing is lost here: a complete scan would exit 0.
    let budget = [("MEMTRACE_LEAK_SCAN_BUDGET_MS", "0")];
    let why = "the scan ran out of its time budget (MEMTRACE_LEAK_SCAN_BUDGET_MS)";
    let out = check("blocked", &[], &budget);
    assert_eq!(out.stdout, b"blocked: reading\n");
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l == format!("leak scan incomplete: {why}")),
        "{stderr}"
    );

    let (_, trace) = record("blocked", &budget);
    let (code, report, _) = leaks_json(&trace);
    assert_eq!(code, 3);
    assert_eq!(
        report["scan"]["incomplete"],
        serde_json::json!(["time-budget"])
    );
    for (format, expected) in [
        ("sarif", "\"executionSuccessful\": false"),
        (
            "github",
            "::error title=memtrace%3A leak scan incomplete::leak scan incomplete: ",
        ),
    ] {
        let out = output_within(
            memtrace().args(["leaks", "--format", format]).arg(&trace),
            LIMIT,
        );
        assert_eq!(out.status.code(), Some(3), "{format}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(expected), "{format}: {text}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!("memtrace: leak scan incomplete: {why}\n")
        );
    }
}

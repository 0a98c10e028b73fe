//! The trace file exists, its header written, before the program's `main`
//! runs (issue #17): a program that leaves itself no free descriptor as its
//! first act still gets a complete trace, and one that kills itself at once
//! still leaves a trace that reads. In both, `memtrace run` keeps the
//! program's stdout and exit status.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{compile, memtrace, num, report_json, scratch, tag_line};
use serde_json::Value;

/// Compiles `source` into a fresh directory: (directory, executable).
fn build(name: &str, source: &str) -> (PathBuf, PathBuf) {
    let dir = scratch(name);
    let exe = compile("cc", source, &["-O0", "-g"], &dir);
    (dir, exe)
}

/// `memtrace run [-q] -o TRACE -- exe args` in `dir`.
fn run(dir: &Path, quiet: bool, trace: &str, exe: &Path, args: &[&str]) -> Output {
    let mut cmd = memtrace();
    cmd.current_dir(dir).arg("run");
    if quiet {
        cmd.arg("-q");
    }
    cmd.args(["-o", trace, "--"])
        .arg(exe)
        .args(args)
        .output()
        .expect("run memtrace")
}

/// The program's stdout and exit status as `memtrace run` gives them for an
/// untraced run (128 + N for signal N).
fn untraced(exe: &Path, args: &[&str]) -> (Vec<u8>, Option<i32>) {
    use std::os::unix::process::ExitStatusExt;
    let out = Command::new(exe)
        .args(args)
        .output()
        .expect("run the fixture");
    let code = out
        .status
        .code()
        .or_else(|| out.status.signal().map(|s| 128 + s));
    (out.stdout, code)
}

/// The lines of `stderr` that memtrace wrote.
fn memtrace_lines(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| l.starts_with("memtrace:"))
        .map(str::to_string)
        .collect()
}

const LOW_FD: &str = "fixtures/c/low_fd_limit.c";

#[test]
fn no_free_descriptor_from_the_first_line_of_main_still_gives_a_complete_trace() {
    let (dir, exe) = build("low-fd", LOW_FD);
    let out = run(&dir, true, "l.trace", &exe, &[]);
    assert_eq!(
        (out.stdout.clone(), out.status.code()),
        untraced(&exe, &[]),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"open after the limit: refused\ndone\n");
    assert_eq!(out.status.code(), Some(5));

    let report = report_json(&dir.join("l.trace"));
    assert_eq!(report["trace"]["status"], "complete");
    let totals = &report["totals"];
    assert_eq!(num(totals, "allocations"), 300);
    assert_eq!(num(totals, "frees"), 100);
    assert_eq!(num(totals, "bytes_allocated"), 60_000);
    assert_eq!(num(totals, "unfreed_blocks"), 200);
    assert_eq!(num(totals, "unfreed_bytes"), 40_000);
    let sites = report["sites"].as_array().expect("sites");
    assert_eq!(sites.len(), 1, "{sites:?}");
    assert_eq!(
        num(&sites[0], "line"),
        tag_line(LOW_FD, "@site limited_block")
    );

    // The exit-time leak scan needs /proc/self/maps, which cannot be opened:
    // it is left out, said once on stderr and in the trace, rather than
    // made without roots (which would call every live block lost).
    let why = "no leak scan: cannot read /proc/self/maps: Too many open files (os error 24)";
    assert_eq!(memtrace_lines(&out.stderr), [format!("memtrace: {why}")]);
    assert_eq!(report["trace"]["notes"], serde_json::json!([why]));
    let leaks = memtrace()
        .args(["leaks"])
        .arg(dir.join("l.trace"))
        .output()
        .expect("run memtrace leaks");
    assert_eq!(leaks.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&leaks.stderr);
    assert!(
        stderr.contains("the trace has no leak scan: cannot read /proc/self/maps"),
        "{stderr}"
    );
}

const CRASH: &str = "fixtures/c/crash.c";

/// The events that reached a killed program's trace are a prefix of what
/// it did: 1000 x malloc(64) at `crash_kept`, then 500 x (malloc(32), free).
fn check_prefix(report: &Value) {
    let totals = &report["totals"];
    let allocations = num(totals, "allocations");
    let frees = num(totals, "frees");
    assert!(allocations <= 1500, "{totals}");
    let line_of = |s: &Value| num(s, "line");
    let kept_line = tag_line(CRASH, "@site crash_kept");
    let freed_line = tag_line(CRASH, "@site crash_freed");
    let at = |line: u64| {
        report["sites"]
            .as_array()
            .expect("sites")
            .iter()
            .find(|s| line_of(s) == line)
            .map_or(0, |s| num(s, "allocations"))
    };
    assert_eq!(at(kept_line), allocations.min(1000), "{totals}");
    assert_eq!(at(freed_line), allocations.saturating_sub(1000), "{totals}");
    let freed = allocations.saturating_sub(1000);
    assert!(frees == freed || frees + 1 == freed, "{totals}");
}

#[test]
fn a_program_killed_at_once_leaves_a_readable_trace() {
    let (dir, exe) = build("kill-at-once", CRASH);
    let out = run(&dir, false, "k.trace", &exe, &["kill"]);
    assert_eq!(
        (out.stdout.clone(), out.status.code()),
        untraced(&exe, &["kill"])
    );
    assert_eq!(out.status.code(), Some(128 + 9));
    let lines = memtrace_lines(&out.stderr);
    assert!(
        lines.iter().any(|l| l
            == "memtrace: trace incomplete: no trailer (the program was killed, or is still running)"),
        "{lines:?}"
    );

    let report = report_json(&dir.join("k.trace"));
    assert_eq!(report["trace"]["complete"], false);
    // The header was written before main.
    let cmdline = report["program"]["cmdline"].as_array().expect("cmdline");
    assert_eq!(cmdline.last().and_then(Value::as_str), Some("kill"));
    assert_eq!(
        report["program"]["exe"],
        std::fs::canonicalize(&exe).unwrap().to_str().unwrap()
    );
    check_prefix(&report);

    // The text report says how many calls the trace kept.
    let text = memtrace()
        .arg("report")
        .arg(dir.join("k.trace"))
        .output()
        .expect("run memtrace report");
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    let calls = num(&report["totals"], "events");
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("calls: {calls}"))),
        "{text}"
    );
}

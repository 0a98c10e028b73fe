//! A program killed by a signal keeps its trace: after SIGSEGV and abort()
//! nothing recorded before the signal is lost and the program dies the same
//! way (same exit status); after SIGKILL, which cannot be caught, what the
//! writer had written (every 10 ms, sealed every 250 ms) is there: the test
//! kills the program once the trace holds its events.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use common::{compile, memtrace, num, record, report_json, scratch, tag_line, wait_until};

const SOURCE: &str = "fixtures/c/crash.c";

fn check_counts(report: &serde_json::Value) {
    let totals = &report["totals"];
    assert_eq!(num(totals, "allocations"), 1500);
    assert_eq!(num(totals, "frees"), 500);
    let lines: Vec<u64> = report["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| num(s, "line"))
        .collect();
    assert!(lines.contains(&tag_line(SOURCE, "@site crash_kept")));
    assert!(lines.contains(&tag_line(SOURCE, "@site crash_freed")));
}

/// Whether the trace, read as it is now, holds the 1500 allocations and 500
/// frees that `crash wait` makes before "ready".
fn trace_holds_every_event(trace: &std::path::Path) -> bool {
    let Ok(out) = memtrace()
        .args(["report", "--format", "json"])
        .arg(trace)
        .output()
    else {
        return false;
    };
    let Ok(report) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
        return false;
    };
    let totals = &report["totals"];
    totals["allocations"] == 1500 && totals["frees"] == 500
}

fn dies_by(mode: &str, status: i32, signal_name: &str) {
    let dir = scratch(&format!("crash-{mode}"));
    let exe = compile("cc", SOURCE, &["-O0", "-g"], &dir);
    let out = record(&dir, "c.trace", &[exe.to_str().unwrap(), mode]);
    assert_eq!(out.status.code(), Some(status), "exit status of {mode}");
    let report = report_json(&dir.join("c.trace"));
    assert_eq!(report["trace"]["complete"], true);
    let notes = report["trace"]["notes"].as_array().unwrap();
    assert!(
        notes.iter().any(|n| n
            .as_str()
            .unwrap()
            .contains(&format!("killed by {signal_name}"))),
        "{notes:?}"
    );
    check_counts(&report);
}

#[test]
fn sigsegv_keeps_every_event_and_the_exit_status() {
    dies_by("segv", 128 + 11, "SIGSEGV");
}

#[test]
fn abort_keeps_every_event_and_the_exit_status() {
    dies_by("abort", 128 + 6, "SIGABRT");
}

#[test]
fn sigkill_loses_only_what_was_not_written_yet() {
    let dir = scratch("crash-kill");
    let exe = compile("cc", SOURCE, &["-O0", "-g"], &dir);
    let mut child = memtrace()
        .current_dir(&dir)
        .args(["run", "-q", "-o", "c.trace", "--"])
        .arg(&exe)
        .arg("wait")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    // The readiness signal is the trace itself: killed once every event
    // before "ready" is in a sealed block of it.
    let trace = dir.join("c.trace");
    wait_until(
        "the trace holds the events made before \"ready\"",
        Duration::from_secs(60),
        || trace_holds_every_event(&trace),
    );
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id())).unwrap();
    let pid: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    // SAFETY: kill sends a signal to the traced program, our grandchild.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + 9));
    let report = report_json(&dir.join("c.trace"));
    assert_eq!(report["trace"]["complete"], false);
    check_counts(&report);
}

/// SIGTERM from outside (and SIGPIPE, SIGHUP, SIGXCPU, SIGXFSZ, handled
/// alike) ends the program with the same status, and the trace is complete:
/// the handler drains every ring first. The signal is sent to the process,
/// so any thread may take it: never the writer, which blocks it.
#[test]
fn sigterm_keeps_every_event_and_the_exit_status() {
    let dir = scratch("crash-term");
    let exe = compile("cc", SOURCE, &["-O0", "-g"], &dir);
    let mut child = memtrace()
        .current_dir(&dir)
        .args(["run", "-q", "-o", "c.trace", "--"])
        .arg(&exe)
        .arg("wait")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id())).unwrap();
    let pid: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    // SAFETY: kill sends a signal to the traced program, our grandchild.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + 15));
    let report = report_json(&dir.join("c.trace"));
    assert_eq!(report["trace"]["complete"], true, "{}", report["trace"]);
    let notes = report["trace"]["notes"].as_array().unwrap();
    assert!(
        notes.iter().any(|n| n
            .as_str()
            .unwrap()
            .contains("killed by SIGTERM (signal 15)")),
        "{notes:?}"
    );
    check_counts(&report);
}

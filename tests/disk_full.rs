//! A full disk while the trace is written: recording ends with one message,
//! the program runs on to its own end (output and exit status unchanged,
//! no recorder thread spinning), and the trace written so far is readable.
//!
//! Needs root, to mount a 4 MiB tmpfs; otherwise the test says why it skips
//! (a failure with `MEMTRACE_TEST_STRICT=1`).

mod common;

use std::path::Path;
use std::time::Duration;

use common::stress::{expected_worker, parse_output, StressConfig};
use common::{compile, memtrace, memtrace_json, num, output_within, scratch, site, Mount};

const SOURCE: &str = "fixtures/c/disk_full.c";
const N: u64 = 600_000;

/// A 4 MiB tmpfs in `dir`, or `None` after saying on stderr why the test
/// skips (not root, or no permission to mount).
fn small_tmpfs(dir: &Path, test: &str) -> Option<Mount> {
    if !common::is_root() {
        common::skip(test, "mounting a small tmpfs needs root");
        return None;
    }
    match Mount::tmpfs(&dir.join("small"), "4m") {
        Ok(m) => Some(m),
        Err(why) => {
            common::skip(test, &format!("cannot mount a tmpfs: {why}"));
            None
        }
    }
}

/// The one line the recorder prints when the disk is full, up to the byte count.
/// `memtrace run -o TRACE -- EXE ARGS` with uncompressed blocks (they fill
/// a small disk quickly), within a minute.
fn record_uncompressed(
    dir: &Path,
    trace: &Path,
    exe: &Path,
    args: &[String],
) -> std::process::Output {
    output_within(
        memtrace()
            .current_dir(dir)
            .env("MEMTRACE_COMPRESSION", "0")
            .args(["run", "-q", "-o"])
            .arg(trace)
            .arg("--")
            .arg(exe)
            .args(args),
        Duration::from_secs(60),
    )
}

fn disk_full_message(trace: &Path) -> String {
    format!(
        "memtrace: writing the trace failed: No space left on device (os error 28); \
         recording stopped, the program continues; the trace {} is incomplete \
         (readable up to byte ",
        trace.display()
    )
}

#[test]
fn a_full_disk_ends_recording_with_one_message_and_the_program_runs_on() {
    let dir = scratch("disk-full");
    let Some(small) = small_tmpfs(&dir, "a_full_disk_ends_recording") else {
        return;
    };
    let exe = compile("cc", SOURCE, &["-O0", "-g"], &dir);
    let trace = small.0.join("t.trace");
    // Uncompressed blocks (up to 1 MiB each) fill the 4 MiB quickly: the
    // 1.2 million calls take about 10 MB.
    let out = record_uncompressed(&dir, &trace, &exe, &[N.to_string()]);
    assert_eq!(out.status.code(), Some(7), "the program's own exit status");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("allocated {N}\nidle: yes\n")
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let readable: u64 = stderr
        .strip_prefix(&disk_full_message(&trace))
        .and_then(|rest| rest.strip_suffix(")\n"))
        .unwrap_or_else(|| panic!("unexpected message: {stderr}"))
        .parse()
        .unwrap();
    let size = std::fs::metadata(&trace).unwrap().len();
    assert!(readable > 0 && readable <= size, "{readable} of {size}");

    // What was written before the disk filled up reads back, marked as cut.
    let report = memtrace_json(
        &dir,
        &["report", "--format", "json", trace.to_str().unwrap()],
    );
    assert_eq!(report["trace"]["complete"], false);
    if size > readable {
        assert_eq!(num(&report["trace"], "truncated_at"), readable);
    } else {
        assert_eq!(report["trace"]["truncated_at"], serde_json::Value::Null);
    }
    let fill = site(&report, "fill_site");
    let recorded = num(fill, "allocations");
    assert!(
        recorded > 0 && recorded < N,
        "{recorded} of {N} allocations"
    );
    // Each recorded allocation is the fixture's i-th, i = 0, 1, ...: sizes
    // 16 + i % 1000, so the bytes follow from the count.
    let expected_bytes: u64 = (0..recorded).map(|i| 16 + i % 1000).sum();
    assert_eq!(num(fill, "bytes_allocated"), expected_bytes);
    drop(small);
}

#[test]
fn threads_waiting_on_a_full_ring_run_on_when_the_disk_fills() {
    // Eight threads outpace the writer, so some wait for room in their
    // rings when the write fails: they must go on, unrecorded.
    let dir = scratch("disk-full-threads");
    let Some(small) = small_tmpfs(&dir, "threads_waiting_on_a_full_ring_run_on") else {
        return;
    };
    let exe = compile(
        "cc",
        "fixtures/c/stress_threads.c",
        &["-O2", "-g", "-pthread"],
        &dir,
    );
    let config = StressConfig {
        threads: 8,
        ops: 150_000,
        churn_rounds: 5,
    };
    let trace = small.0.join("t.trace");
    let out = record_uncompressed(&dir, &trace, &exe, &config.args());
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with(&disk_full_message(&trace)), "{stderr}");
    // The program computed what it computes without memtrace.
    let printed = parse_output(&String::from_utf8(out.stdout).unwrap()).unwrap();
    assert_eq!(printed.workers.len(), 8);
    for (w, (_, counts)) in printed.workers.iter().enumerate() {
        assert_eq!(*counts, expected_worker(w as u32, config.ops), "worker {w}");
    }
    assert_eq!(printed.churn, (20, 20 * 64, 20 * 4064));
    // The trace reads as cut (with eight threads few 1 MiB blocks may fit
    // before the disk is full; if none did, it holds the header and modules).
    let report = memtrace_json(
        &dir,
        &["report", "--format", "json", trace.to_str().unwrap()],
    );
    assert_eq!(report["trace"]["complete"], false);
    assert!(num(&report["totals"], "events") < config.expected_calls());
    drop(small);
}

//! Many threads under `memtrace run` (`fixtures/c/thread_scale.c`): detached
//! threads, threads created and joined one after another, and threads all
//! alive at once, busy or idle. Every run must finish (within a limit far
//! above its normal time, so that only a hang or a livelock reaches it) and
//! its trace must hold exactly the fixture's calls and threads.
//!
//! Times and memory are measured, not asserted: `cargo xtask bench` prints
//! them against the native runs (`xtask/src/threads.rs`).

mod common;

use std::path::Path;
use std::time::Duration;

use common::{compile, memtrace, num, output_within, report_json, scratch, site, tag_line};

const SOURCE: &str = "fixtures/c/thread_scale.c";
/// Bytes of each of the fixture's allocations.
const BLOCK: u64 = 32;

/// Runs `thread_scale MODE THREADS CALLS` under memtrace and checks its
/// trace: THREADS * CALLS / 2 mallocs of 32 bytes at the site, as many
/// frees, nothing unfreed there, THREADS + 1 threads, no free of a block
/// the trace never saw, a complete trace.
fn check_run(mode: &str, threads: u64, calls: u64, limit: Duration) {
    let dir = scratch(&format!("thread-scale-{mode}"));
    let exe = compile("cc", SOURCE, &["-O2", "-g", "-pthread"], &dir);
    let out = output_within(
        memtrace()
            .current_dir(&dir)
            .args(["run", "-q", "-o", "t.trace", "--"])
            .arg(&exe)
            .args([mode, &threads.to_string(), &calls.to_string()]),
        limit,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{mode}: {stderr}");
    assert_eq!(stderr, "", "{mode}");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    let prefix = format!("thread_scale {mode} threads {threads} calls {calls} peak_rss_kib ");
    assert!(stdout.starts_with(&prefix), "{mode}: {stdout}");

    let report = report_json(&dir.join("t.trace"));
    assert_eq!(report["trace"]["complete"], true, "{mode}");
    let totals = &report["totals"];
    assert_eq!(
        num(totals, "threads"),
        threads + 1,
        "{mode}: main + workers"
    );
    assert_eq!(num(totals, "unmatched_frees"), 0, "{mode}");
    let pairs = threads * calls / 2;
    let s = site(&report, "scale_worker");
    assert_eq!(num(s, "allocations"), pairs, "{mode} allocations");
    assert_eq!(num(s, "bytes_allocated"), pairs * BLOCK, "{mode} bytes");
    assert_eq!(num(s, "frees"), pairs, "{mode} frees");
    assert_eq!(num(s, "unfreed_blocks"), 0, "{mode} unfreed");
    assert_eq!(
        num(s, "line"),
        tag_line(SOURCE, "@site scale_worker"),
        "{mode} line"
    );
    assert_eq!(
        totals["calls_by_function"]["malloc"].as_u64(),
        Some(pairs),
        "{mode}: the fixture's mallocs are the only ones"
    );
    cleanup(&dir);
}

fn cleanup(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

/// 2,000 detached threads started one after another, 20 calls each. The
/// threads end on their own, and while ending glibc frees the TLS blocks of
/// cached stacks after memtrace's exit hook has run: those frees are
/// recorded without counting a thread twice. (Before: 83 s, 8.5 GB peak,
/// 3,749 threads in the trace.)
#[test]
fn detached_threads_are_all_recorded() {
    check_run("detached", 2000, 20, Duration::from_secs(120));
}

/// 10,000 threads, each created and joined before the next, 20 calls each.
#[test]
fn ten_thousand_threads_in_sequence_are_all_recorded() {
    check_run("sequence", 10_000, 20, Duration::from_secs(240));
}

/// 1,000 threads alive at once, released together by a barrier, 1,000
/// calls each (`cargo xtask bench` runs 100,000 each).
#[test]
fn a_thousand_live_threads_allocating_at_once_are_all_recorded() {
    check_run("live", 1000, 1000, Duration::from_secs(240));
}

/// 1,000 threads alive at once that make one malloc and one free each,
/// then wait for the others.
#[test]
fn a_thousand_idle_threads_are_all_recorded() {
    check_run("idle", 1000, 2, Duration::from_secs(120));
}

//! A program that runs out of memory under memtrace behaves as it does
//! without it: it gets NULL from malloc (not an abort from the recorder),
//! prints what it prints, exits as it exits; and the trace holds what was
//! recorded, with the count of heap events the recorder had to drop.
//!
//! The limit is an address-space limit (`RLIMIT_AS`, 300,000 KiB as in
//! `ulimit -v 300000`) set on the program, and on `memtrace`, which passes
//! it on. See `fixtures/c/oom.c` and `fixtures/README.md`.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{compile, memtrace, memtrace_json, memtrace_stdout, num, output_within, scratch};

const SOURCE: &str = "fixtures/c/oom.c";
const LIMIT: u64 = 300_000 * 1024;

/// `cmd` with the address-space limit set in the child, within a minute.
fn run_limited(cmd: &mut Command) -> Output {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and only
    // calls setrlimit, which is async-signal-safe and allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: LIMIT,
                rlim_max: LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        })
    };
    output_within(cmd, Duration::from_secs(120))
}

/// The fixture's `oom MODE`, natively and under `memtrace run -o TRACE`,
/// each with the limit.
fn both_ways(dir: &Path, exe: &Path, mode: &str, trace: &Path) -> (Output, Output) {
    let native = run_limited(Command::new(exe).arg(mode));
    let traced = run_limited(
        memtrace()
            .current_dir(dir)
            .args(["run", "-q", "-o"])
            .arg(trace)
            .arg("--")
            .arg(exe)
            .arg(mode),
    );
    (native, traced)
}

/// The number after `prefix` on the line of `stdout` that starts with it.
fn number(stdout: &[u8], prefix: &str) -> u64 {
    let text = String::from_utf8_lossy(stdout);
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `{prefix}N` in the output: {text}"))
}

fn site_allocations(report: &serde_json::Value, function: &str) -> Option<u64> {
    report["sites"]
        .as_array()
        .expect("sites")
        .iter()
        .find(|s| s["function"] == function)
        .map(|s| num(s, "allocations"))
}

#[test]
fn a_program_out_of_memory_gets_null_and_its_trace_counts_what_was_dropped() {
    let dir = scratch("oom-big");
    let exe = compile("cc", SOURCE, &["-O0", "-g", "-pthread"], &dir);
    let trace = dir.join("big.trace");
    let (native, traced) = both_ways(&dir, &exe, "big", &trace);

    // Same exit status and output, the figure within 5 %: the recorder
    // takes about 7 MiB of address space (its buffers, reserve, rings and
    // the writer's stack), so the program gets 282 MB of 289.
    assert_eq!(native.status.code(), Some(0), "{native:?}");
    assert_eq!(traced.status.code(), Some(0), "{traced:?}");
    let (n_native, n_traced) = (
        number(&native.stdout, "got "),
        number(&traced.stdout, "got "),
    );
    assert!(
        n_native.abs_diff(n_traced) * 20 <= n_native,
        "got {n_traced} MB under memtrace, {n_native} MB without"
    );
    for out in [&native, &traced] {
        let n = number(&out.stdout, "got ");
        let expected = format!(
            "got {n} MB before NULL\nthread: 10 blocks\ncalls {}\n",
            n + 23
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    }
    // The thread that started after memory ran out (the fixture leaves
    // under 64 KiB) has no state (its unwinder memo takes about 100 KiB):
    // its 20 heap calls are dropped, and said so once. (glibc's own calls
    // for the thread, its calloc and free, are made by the main thread.)
    assert_eq!(
        String::from_utf8_lossy(&traced.stderr),
        "memtrace: out of memory: 20 heap events could not be recorded\n"
    );

    // The trace is complete: every block before the NULL, and the count.
    let report = memtrace_json(
        &dir,
        &["report", "--format", "json", trace.to_str().unwrap()],
    );
    assert_eq!(report["trace"]["complete"], true);
    assert_eq!(num(&report["trace"], "dropped_events"), 20);
    // The exit scan takes its tables before it stops the other threads
    // (it must not allocate while they are stopped), including room for
    // 65,536 late calls: with under 64 KiB left it gives up, and says so.
    assert_eq!(
        report["trace"]["notes"],
        serde_json::json!([
            "out of memory: no leak scan",
            "out of memory: 20 heap events could not be recorded"
        ])
    );
    assert_eq!(site_allocations(&report, "big_site"), Some(n_traced));
    assert_eq!(num(&report["totals"], "failed"), 1);
    assert_eq!(site_allocations(&report, "thread_site"), None);
    let text = memtrace_stdout(&dir, &["report", trace.to_str().unwrap()]);
    assert!(
        text.contains("\ndropped: 20 heap events the recorder could not record (out of memory)\n"),
        "{text}"
    );
}

#[test]
fn a_program_out_of_memory_while_the_recorder_is_busy_runs_to_its_end() {
    let dir = scratch("oom-small");
    let exe = compile("cc", SOURCE, &["-O0", "-g", "-pthread"], &dir);
    let trace = dir.join("small.trace");
    let (native, traced) = both_ways(&dir, &exe, "small", &trace);

    assert_eq!(native.status.code(), Some(0), "{native:?}");
    assert_eq!(traced.status.code(), Some(0), "{traced:?}");
    // Millions of small blocks: the recorder's table of live blocks (for
    // the leak scan, about 40 bytes a block) competes with the program for
    // the address space. Measured: 801,609 blocks traced, 967,199 without
    // (916,209 with MEMTRACE_LEAK_SCAN=0).
    let (n_native, n_traced) = (
        number(&native.stdout, "got "),
        number(&traced.stdout, "got "),
    );
    assert!(
        n_traced > 0 && n_traced <= n_native && n_traced * 10 >= n_native * 7,
        "got {n_traced} blocks under memtrace, {n_native} without"
    );
    for out in [&native, &traced] {
        let n = number(&out.stdout, "got ");
        // Per block: its malloc, a temporary malloc and free, its free;
        // and the malloc that returned NULL.
        let expected = format!("got {n} blocks before NULL\ncalls {}\n", 4 * n + 1);
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    }

    // Every heap call is either in the trace or counted as dropped: the
    // fixture prints with write(2), so libc makes no heap call of its own.
    let report = memtrace_json(
        &dir,
        &["report", "--format", "json", trace.to_str().unwrap()],
    );
    assert_eq!(report["trace"]["complete"], true);
    let dropped = num(&report["trace"], "dropped_events");
    let recorded = num(&report["totals"], "events");
    assert_eq!(
        recorded + dropped,
        4 * n_traced + 1,
        "{recorded} + {dropped}"
    );
    if dropped == 0 {
        assert_eq!(site_allocations(&report, "small_site"), Some(n_traced));
        assert_eq!(site_allocations(&report, "temp_site"), Some(n_traced));
        assert_eq!(num(&report["totals"], "failed"), 1);
    }
}

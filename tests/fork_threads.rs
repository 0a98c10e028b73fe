//! fork without exec while other threads allocate: no child deadlocks, and
//! each process's trace is complete and its own, with exact counts.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{compile, memtrace, num, output_within, report_json, scratch, site, tag_line};

const SOURCE: &str = "fixtures/c/fork_threads.c";
const THREADS: u64 = 4;
const FORKS: usize = 6;

#[test]
fn fork_while_threads_allocate_gives_each_child_its_own_trace() {
    let dir = scratch("fork-threads");
    let exe = compile("cc", SOURCE, &["-O0", "-g", "-pthread"], &dir);
    let out = output_within(
        memtrace()
            .current_dir(&dir)
            .args(["run", "-q", "-o", "parent.trace", "--"])
            .arg(&exe)
            .args([THREADS.to_string(), FORKS.to_string()]),
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "exit 3 means a child deadlocked; stdout {stdout} stderr {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");

    // The program's own account: child pids and their exit statuses, and
    // how many times each worker allocated.
    let mut child_pids = BTreeSet::new();
    let mut iterations = 0u64;
    let mut n_workers = 0;
    for line in stdout.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w[..] {
            ["child", pid, "status", status] => {
                assert_eq!(status, "0", "{line}");
                child_pids.insert(pid.parse::<u32>().unwrap());
            }
            ["worker", _, "iterations", n] => {
                let n: u64 = n.parse().unwrap();
                assert!(n >= 1000, "{line}");
                iterations += n;
                n_workers += 1;
            }
            _ => panic!("unexpected line {line}"),
        }
    }
    assert_eq!(child_pids.len(), FORKS);
    assert_eq!(n_workers, THREADS);

    let parent = report_json(&dir.join("parent.trace"));
    assert_eq!(parent["trace"]["complete"], true);
    let worker = site(&parent, "worker_site");
    assert_eq!(num(worker, "allocations"), iterations);
    assert_eq!(num(worker, "frees"), iterations);
    assert_eq!(num(worker, "unfreed_bytes"), 0);
    assert_eq!(num(worker, "line"), tag_line(SOURCE, "@site worker_site"));
    assert!(parent["sites"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["function"] != "child_site"));

    // One trace per child, named by its pid, beside the parent's.
    let mut traced = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if let Some(pid) = name
            .strip_prefix("memtrace.fork_threads.")
            .and_then(|r| r.strip_suffix(".trace"))
        {
            traced.insert(pid.parse::<u32>().unwrap());
        }
    }
    assert_eq!(traced, child_pids);
    let parent_pid = num(&parent["program"], "pid");
    for pid in &child_pids {
        let child = report_json(&dir.join(format!("memtrace.fork_threads.{pid}.trace")));
        assert_eq!(child["trace"]["complete"], true, "child {pid}");
        assert_eq!(num(&child["program"], "pid"), u64::from(*pid));
        assert_eq!(num(&child["program"], "ppid"), parent_pid);
        let s = site(&child, "child_site");
        assert_eq!(num(s, "allocations"), 10);
        assert_eq!(num(s, "bytes_allocated"), 10 * 321);
        assert_eq!(num(s, "frees"), 4);
        assert_eq!(num(s, "unfreed_bytes"), 6 * 321);
        assert_eq!(num(s, "line"), tag_line(SOURCE, "@site child_site"));
        // The workers do not exist in the child, and what they did before
        // the fork is the parent's.
        assert!(
            child["sites"]
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s["function"] != "worker_site"),
            "child {pid}"
        );
    }
}

//! Issue #5, acceptance 1: the allocator share that `memtrace latency`
//! reports for fixtures/c/alloc_heavy.c agrees with one measured without
//! memtrace. A file of its own, so that no other test of the same binary
//! runs (and records) while this one times programs: cargo runs test
//! binaries one after another.

mod common;
use common::*;

use std::path::Path;

use serde_json::Value;

const ALLOC_HEAVY: &str = "fixtures/c/alloc_heavy.c";

fn latency_json(dir: &Path, trace: &str) -> Value {
    memtrace_json(dir, &["latency", "--format", "json", trace])
}

/// The independent share is `1 - t_pool / t_malloc`: the same program run
/// natively with its allocations (`alloc_heavy N malloc`) and with them
/// replaced by a buffer allocated once (`alloc_heavy N pool`), medians of
/// five interleaved runs each, so that machine load hits both modes alike.
///
/// The traced share is `allocator_ns / wall_ns` of the trace, the median of
/// three recordings. Both of its terms come from the same run, under the
/// same load and the same cache effects, which is why it, and not
/// `allocator_ns / t_malloc`, is compared: on this 2-core machine a traced
/// run's allocator time varied between 0.55 and 0.80 s while native malloc
/// runs took 0.61 to 0.91 s, so a ratio across runs ranged from 0.8 to 1.2.
/// The recorder's own work (unwinding, bookkeeping, the writer thread) falls
/// outside the allocator and only lengthens the traced wall time, so the
/// traced share reads low: measured 0.61 to 0.74 against an independent
/// 0.74 to 0.77 (20000 rounds, the machine loaded by parallel builds).
/// Hence the tolerance of 15 percentage points: the bias (5 to 10 points)
/// plus the spread of medians under load. The ordering checks say what
/// holds however noisy the machine: the pool run is the faster one, and the
/// allocator is the larger share in both measurements.
#[test]
fn the_allocator_share_agrees_with_a_run_without_allocations() {
    const ROUNDS: &str = "20000";
    const TOLERANCE: f64 = 0.15;
    let dir = scratch("latency-pool");
    let exe = compile("cc", ALLOC_HEAVY, &["-O0", "-g"], &dir);
    let exe = exe.to_str().unwrap();
    let run = |mode: &str| {
        let t = std::time::Instant::now();
        let out = std::process::Command::new(exe)
            .args([ROUNDS, mode])
            .output()
            .unwrap();
        let wall = t.elapsed().as_secs_f64();
        assert!(out.status.success(), "{exe} {mode} failed");
        assert_eq!(out.stdout, b"alloc_heavy done\n");
        wall
    };
    let (mut t_malloc, mut t_pool) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        t_malloc.push(run("malloc"));
        t_pool.push(run("pool"));
    }
    let (t_malloc, t_pool) = (median(t_malloc), median(t_pool));
    assert!(t_pool < t_malloc, "pool {t_pool} s, malloc {t_malloc} s");
    let independent = 1.0 - t_pool / t_malloc;

    let mut traced = Vec::new();
    for i in 0..3 {
        let trace = format!("heavy{i}.trace");
        let out = record(&dir, &trace, &[exe, ROUNDS, "malloc"]);
        assert!(out.status.success());
        let r = latency_json(&dir, &trace);
        // Every round's four calls are in the trace.
        let calls: u64 = r["functions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| num(f, "calls"))
            .sum();
        assert_eq!(calls, 4 * 20_000, "{r}");
        let share = r["allocator_share"].as_f64().unwrap();
        assert_eq!(
            share,
            num(&r, "allocator_ns") as f64 / num(&r, "wall_ns") as f64
        );
        traced.push(share);
    }
    let traced = median(traced);
    eprintln!(
        "alloc_heavy {ROUNDS}: malloc {t_malloc:.3} s, pool {t_pool:.3} s, \
         independent share {independent:.3}, traced share {traced:.3}"
    );
    assert!(
        independent > 0.5 && traced > 0.5,
        "the allocator dominates: independent {independent:.3}, traced {traced:.3}"
    );
    assert!(
        (traced - independent).abs() <= TOLERANCE,
        "traced share {traced:.3} vs independent {independent:.3} \
         (malloc {t_malloc:.3} s, pool {t_pool:.3} s)"
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

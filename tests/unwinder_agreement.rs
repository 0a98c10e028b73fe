//! The recorder's memoized framehop stacks equal libgcc's `_Unwind_Backtrace`
//! stacks, event by event, on the fixtures (the slow exact path is kept as
//! `MEMTRACE_UNWIND=libgcc` for this check).

mod common;
use common::*;

use std::collections::BTreeMap;
use std::path::Path;

use memtrace_format::{Event, Op};

/// A frame as `(module path, offset in module)`: comparable across runs
/// whatever the load addresses.
type Frame = (String, u64);

/// Per thread, the stack of every allocation in order; threads sorted.
fn stacks_by_thread(trace: &Path) -> Vec<Vec<Vec<Frame>>> {
    let mut reader = memtrace_analyze::open(trace, memtrace_format::Extent::AsOpened).unwrap();
    let mut per_thread: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    while let Some(event) = reader.next_event().unwrap() {
        if let Event::Heap { tid, event } = event {
            if event.func().is_some_and(|f| f.op() != Op::Free) {
                per_thread.entry(tid).or_default().push(event.stack);
            }
        }
    }
    let modules = reader.modules().to_vec();
    let locate = |addr: u64| -> Frame {
        match modules.iter().find(|m| m.contains(addr)) {
            Some(m) => (m.path.clone(), addr - m.load_bias),
            None => ("?".into(), addr),
        }
    };
    let mut threads: Vec<Vec<Vec<Frame>>> = per_thread
        .into_values()
        .map(|ids| {
            ids.into_iter()
                .map(|id| reader.stacks().frames(id).map(locate).collect())
                .collect()
        })
        .collect();
    threads.sort();
    threads
}

fn compare(name: &str, program: &[&str], dir: &Path) {
    let run = |trace: &str, unwinder: &str| {
        let out = memtrace()
            .current_dir(dir)
            .env("MEMTRACE_UNWIND", unwinder)
            .args(["run", "-q", "-o", trace, "--"])
            .args(program)
            .output()
            .unwrap();
        assert!(out.status.success(), "{name} under {unwinder}");
        stacks_by_thread(&dir.join(trace))
    };
    let reference = run(&format!("{name}-libgcc.trace"), "libgcc");
    let memo = run(&format!("{name}-memo.trace"), "memo");
    let n_stacks: usize = reference.iter().map(Vec::len).sum();
    assert!(n_stacks > 0);
    assert_eq!(reference.len(), memo.len(), "{name}: threads");
    for (t, (a, b)) in reference.iter().zip(&memo).enumerate() {
        assert_eq!(a.len(), b.len(), "{name}: allocations of thread {t}");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert_eq!(x, y, "{name}: thread {t}, allocation {i}");
        }
    }
}

#[test]
fn memoized_stacks_equal_libgcc_stacks_on_the_fixtures() {
    let dir = scratch("unwinders");
    let sites = compile("cc", "fixtures/c/sites.c", &["-O0", "-g", "-pthread"], &dir);
    let vector = compile(
        "g++",
        "fixtures/cpp/vector.cpp",
        &["-O0", "-g", "-pthread"],
        &dir,
    );
    let bench = compile(
        "gcc",
        "fixtures/c/bench_alloc.c",
        &["-O2", "-g", "-pthread"],
        &dir,
    );
    compare("sites", &[sites.to_str().unwrap()], &dir);
    compare("vector", &[vector.to_str().unwrap()], &dir);
    // 20000 operations: ~10000 stacks 1-8 recursion levels deep, memo hits and misses.
    compare("bench", &[bench.to_str().unwrap(), "20000", "1"], &dir);
}

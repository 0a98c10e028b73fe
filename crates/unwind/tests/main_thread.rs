//! The comparisons on the process's main thread (no libtest threads): stack bounds come from
//! /proc/self/maps there, and the walk ends at `_start`.

mod common;

fn main() {
    common::check_recursion_depths();
    common::check_skip_and_truncation();
    let pair = common::capture(0);
    pair.assert_same();
    assert_eq!(memtrace_unwind::fallback_count(), 0);
    println!("main_thread: ok ({} frames to _start)", pair.fast.len());
}

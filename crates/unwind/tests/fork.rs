//! In a `fork()` child, where the parent's other threads vanished mid-unwind, the fast path
//! still works and agrees with libgcc.
//!
//! Own test binary: the module list is built before forking and no other thread of this
//! process is inside `dl_iterate_phdr` (or `dlopen`) at fork time. Threads that are are a
//! hazard for anything that takes the loader lock in the child (a lazy first build or
//! `modules_changed()` there), but not for the fast path itself.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};

use memtrace_unwind::{backtrace_fast, backtrace_libgcc, fallback_count, modules_changed};

#[inline(never)]
fn child_compare() -> bool {
    let mut a = [0u64; 64];
    let mut b = [0u64; 64];
    let na = backtrace_libgcc(0, &mut a);
    let nb = backtrace_fast(0, &mut b);
    black_box((&a, &b));
    na >= 2 && a[..na] == b[..nb]
}

#[inline(never)]
fn hammer(stop: &AtomicBool) {
    let mut out = [0u64; 64];
    while !stop.load(Ordering::Relaxed) {
        black_box(backtrace_fast(0, &mut out));
    }
}

#[test]
fn after_fork_in_child_while_other_threads_unwind() {
    modules_changed();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| hammer(&stop));
        }
        for _ in 0..20 {
            // SAFETY: the child only unwinds, compares fixed-size arrays and _exits.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0);
            if pid == 0 {
                let before = fallback_count();
                let ok = child_compare() && fallback_count() == before;
                // SAFETY: leave the child without running the parent's exit handlers.
                unsafe { libc::_exit(if ok { 0 } else { 1 }) };
            }
            let mut status = 0;
            // SAFETY: waiting for our own child.
            assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
            assert!(libc::WIFEXITED(status), "child status {status:#x}");
            assert_eq!(libc::WEXITSTATUS(status), 0, "child saw different stacks");
        }
        stop.store(true, Ordering::Relaxed);
    });
}

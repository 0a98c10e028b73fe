//! After the first call on a thread, `backtrace_fast` must not allocate.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

#[inline(never)]
fn deep(n: usize, out: &mut [u64]) -> usize {
    let r = if n == 0 {
        memtrace_unwind::backtrace_fast(0, out)
    } else {
        deep(n - 1, out)
    };
    std::hint::black_box(r)
}

fn check_thread() {
    let mut out = [0u64; 64];
    // First call on this thread: may allocate (cache, stack bounds, TLS destructor).
    assert!(deep(10, &mut out) > 10);
    let before = allocs();
    for depth in 0..30 {
        for _ in 0..100 {
            assert!(deep(depth, &mut out) > depth);
        }
    }
    assert_eq!(allocs() - before, 0, "backtrace_fast allocated");
}

#[test]
fn no_allocation_after_first_call() {
    check_thread();
    std::thread::spawn(check_thread).join().unwrap();
}

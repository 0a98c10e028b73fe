//! `Tracking` inside another global allocator counts as installed: the
//! checks see every allocation that reaches it.

use std::alloc::{GlobalAlloc, Layout, System};

use memtrace_recorder::{assert_no_leaks, heap_stats, is_installed, Tracking};

/// A global allocator of the program's own that forwards to `Tracking`.
struct Outer(Tracking<System>);

// SAFETY: every method forwards to the wrapped allocator with the caller's
// arguments unchanged and returns its result.
unsafe impl GlobalAlloc for Outer {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds GlobalAlloc::alloc's contract.
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds GlobalAlloc::dealloc's contract.
        unsafe { self.0.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Outer = Outer(Tracking::untraced(System));

#[test]
fn tracking_inside_the_global_allocator_is_installed_and_counts() {
    assert!(is_installed());
    let (_, stats) = heap_stats(|| vec![0u8; 100].len());
    assert_eq!((stats.blocks_allocated, stats.bytes_allocated), (1, 100));
    assert_eq!(assert_no_leaks(|| Box::new(5u32).to_string().len()), 1);
    let message = std::panic::catch_unwind(|| assert_no_leaks(|| std::mem::forget(vec![0u8; 7])))
        .expect_err("the scope leaked");
    let message = message.downcast::<String>().expect("a formatted message");
    assert!(
        message.starts_with("7 bytes in 1 block allocated in the scope were not freed"),
        "{message}"
    );
}

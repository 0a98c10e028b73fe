//! The checks in a binary whose global allocator is not `Tracking` (this
//! test binary keeps the default one): each panics with the fix, before
//! running the code it checks, instead of passing having seen nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use memtrace_recorder::{assert_no_leaks, heap_stats, is_installed, stats, LeakScope, Tracking};

/// The panic message of `f`, which must panic.
fn panic_message(f: impl FnOnce()) -> String {
    let payload = catch_unwind(AssertUnwindSafe(f)).expect_err("expected a panic");
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => payload
            .downcast::<&str>()
            .map_or_else(|_| "<not a string>".into(), |s| s.to_string()),
    }
}

/// Checks the message: what panicked, why, and how to install the allocator.
fn assert_explains(message: &str, what: &str) {
    let expected = format!(
        "memtrace_recorder::{what} counts what `Tracking` sees, and `Tracking` is not the \
         global allocator of this binary"
    );
    assert!(message.starts_with(&expected), "{message}");
    assert!(
        message.contains("#[global_allocator] static ALLOC"),
        "{message}"
    );
}

#[test]
fn is_installed_says_no() {
    assert!(!is_installed());
}

#[test]
fn assert_no_leaks_panics_without_running_the_leaky_code() {
    let ran = Cell::new(false);
    let message = panic_message(|| {
        assert_no_leaks(|| {
            ran.set(true);
            std::mem::forget(vec![0u8; 100]);
        })
    });
    assert_explains(&message, "assert_no_leaks");
    assert!(!ran.get());
}

#[test]
fn heap_stats_panics() {
    let message = panic_message(|| {
        heap_stats(|| vec![0u8; 100].len());
    });
    assert_explains(&message, "heap_stats");
}

#[test]
fn a_leak_scope_panics_when_opened() {
    let message = panic_message(|| drop(LeakScope::new()));
    assert_explains(&message, "LeakScope");
}

#[test]
fn stats_panics() {
    let message = panic_message(|| {
        stats();
    });
    assert_explains(&message, "stats");
}

/// A `Tracking` that is not the global allocator.
static DIRECT: Tracking<System> = Tracking::untraced(System);

#[test]
fn a_tracking_that_is_called_directly_is_not_installed() {
    let layout = Layout::new::<[u64; 4]>();
    // SAFETY: the layout has a nonzero size, and the block is freed once,
    // with the same layout, by the allocator that allocated it.
    unsafe {
        let p = DIRECT.alloc(layout);
        assert!(!p.is_null());
        DIRECT.dealloc(p, layout);
    }
    assert!(!is_installed());
    assert_explains(
        &panic_message(|| {
            assert_no_leaks(|| ());
        }),
        "assert_no_leaks",
    );
}

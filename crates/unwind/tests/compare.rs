//! `backtrace_fast` must return exactly what libgcc's `_Unwind_Backtrace` returns.

mod common;

use std::cell::RefCell;
use std::ffi::{c_int, c_void, CStr};

use common::{capture, check_recursion_depths, check_skip_and_truncation, object_of, Pair};
use memtrace_unwind::modules_changed;

#[test]
fn recursion_depths_1_to_20() {
    check_recursion_depths();
}

#[test]
fn skip_and_truncation() {
    check_skip_and_truncation();
}

#[test]
fn many_threads_at_once() {
    let threads: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(|| {
                for _ in 0..50 {
                    check_recursion_depths();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Only calls racing with the lazy first build of the module list may fall back.
    assert!(memtrace_unwind::fallback_count() < 64);
}

#[test]
fn through_libstd_sort_comparator() {
    let captured = RefCell::new(Vec::<Pair>::new());
    let mut v: Vec<u32> = (0..64).rev().map(|i| i * 7919 % 101).collect();
    v.sort_by(|a, b| {
        if captured.borrow().len() < 16 {
            captured.borrow_mut().push(capture(0));
        }
        a.cmp(b)
    });
    assert!(v.windows(2).all(|w| w[0] <= w[1]));
    let captured = captured.into_inner();
    assert_eq!(captured.len(), 16);
    for pair in &captured {
        pair.assert_same();
    }
}

thread_local! {
    static QSORT_CAPTURES: RefCell<Vec<Pair>> = const { RefCell::new(Vec::new()) };
}

extern "C" fn qsort_compare(a: *const c_void, b: *const c_void) -> c_int {
    let pair = capture(0);
    QSORT_CAPTURES.with(|c| c.borrow_mut().push(pair));
    // SAFETY: qsort passes pointers to two elements of the u64 array being sorted.
    let (a, b) = unsafe { (*a.cast::<u64>(), *b.cast::<u64>()) };
    a.cmp(&b) as c_int
}

#[test]
fn through_libc_qsort() {
    let mut v: Vec<u64> = (0..40).map(|i| (i * 7919) % 97).collect();
    // SAFETY: `v` holds `v.len()` u64 elements and `qsort_compare` compares two of them.
    unsafe {
        libc::qsort(
            v.as_mut_ptr().cast(),
            v.len(),
            std::mem::size_of::<u64>(),
            Some(qsort_compare),
        );
    }
    assert!(v.windows(2).all(|w| w[0] <= w[1]));
    let captures = QSORT_CAPTURES.with(|c| c.take());
    assert!(!captures.is_empty());
    for pair in &captures {
        pair.assert_same();
        // out[0] is in capture's caller qsort_compare, out[1] in libc's sort code.
        let obj = object_of(pair.fast[1]);
        assert!(obj.contains("libc.so"), "{:#x} in {obj:?}", pair.fast[1]);
    }
}

/// `dlopen`s `name` (RTLD_NOW | RTLD_LOCAL); null if missing.
fn dlopen(name: &CStr) -> *mut c_void {
    // SAFETY: plain dlopen of a system library.
    unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) }
}

thread_local! {
    static GOMP_CAPTURE: RefCell<Option<Pair>> = const { RefCell::new(None) };
}

extern "C" fn gomp_body(_data: *mut c_void) {
    let pair = capture(0);
    GOMP_CAPTURE.with(|c| *c.borrow_mut() = Some(pair));
}

type GompParallel = unsafe extern "C" fn(extern "C" fn(*mut c_void), *mut c_void, u32, u32);

#[test]
fn dlopen_then_modules_changed_unwinds_through_new_module() {
    let handle = dlopen(c"libgomp.so.1");
    if handle.is_null() {
        // gcc depends on libgomp1, and `.ci/run` installs gcc: there this
        // degraded check must not stand in for the real one.
        assert!(
            std::env::var_os("MEMTRACE_TEST_STRICT").is_none_or(|v| v != "1"),
            "libgomp.so.1 not installed, and MEMTRACE_TEST_STRICT=1 forbids skipping"
        );
        eprintln!(
            "dlopen_then_modules_changed_unwinds_through_new_module: SKIPPED in part: \
             libgomp.so.1 not installed: only checking that dlopen + rebuild is harmless"
        );
        let z = dlopen(c"libz.so.1");
        modules_changed();
        check_recursion_depths();
        if !z.is_null() {
            // SAFETY: handle from dlopen above, nothing of it is in use.
            unsafe { libc::dlclose(z) };
            modules_changed();
        }
        check_recursion_depths();
        return;
    }
    modules_changed();
    // SAFETY: GOMP_parallel's C signature; with one thread it runs the body on this thread.
    let gomp_parallel: GompParallel = unsafe {
        let sym = libc::dlsym(handle, c"GOMP_parallel".as_ptr());
        assert!(!sym.is_null());
        std::mem::transmute::<*mut c_void, GompParallel>(sym)
    };
    // SAFETY: valid body function and unused data pointer; 1 thread, no flags.
    unsafe { gomp_parallel(gomp_body, std::ptr::null_mut(), 1, 0) };
    let pair = GOMP_CAPTURE
        .with(|c| c.take())
        .expect("body ran on this thread");
    pair.assert_same();
    // out[0] is in gomp_body, out[1] in GOMP_parallel.
    let obj = object_of(pair.fast[1]);
    assert!(obj.contains("libgomp"), "{:#x} in {obj:?}", pair.fast[1]);
    check_recursion_depths();
}

#[test]
fn dlopen_dlclose_cycles() {
    for _ in 0..20 {
        let z = dlopen(c"libz.so.1");
        modules_changed();
        check_recursion_depths();
        if !z.is_null() {
            // SAFETY: handle from dlopen above, nothing of it is in use.
            unsafe { libc::dlclose(z) };
        }
        modules_changed();
        check_recursion_depths();
    }
}

#[test]
fn modules_changed_concurrently_with_unwinding() {
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    check_recursion_depths();
                }
            });
        }
        for _ in 0..200 {
            modules_changed();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
}

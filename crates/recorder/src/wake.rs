//! Waking the writer thread, and starting it small.
//!
//! A futex word rather than std's `park`/`unpark`: those need the thread's
//! `Thread` handle, which std allocates with the C allocator on first use.
//! In the writer thread that first `malloc` made glibc reserve a 64 MiB
//! arena of address space for it (measured: a traced program's `VmSize`
//! went from 2.4 to 92 MiB), which a program under an address-space limit
//! then lacks. Nothing here allocates.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// 1 when a wake-up is pending, 0 otherwise.
static WORD: AtomicU32 = AtomicU32::new(0);

/// Wakes the writer, or makes its next wait return at once. A system call
/// only when no wake-up was pending already.
pub(crate) fn wake() {
    if WORD.swap(1, Ordering::Release) == 0 {
        // SAFETY: FUTEX_WAKE on a static word of ours; no memory is written.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                WORD.as_ptr(),
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                1,
            )
        };
    }
}

/// Waits until woken or `timeout` has passed (or a signal interrupts).
pub(crate) fn wait(timeout: Duration) {
    if WORD.swap(0, Ordering::Acquire) == 1 {
        return;
    }
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: FUTEX_WAIT on a static word of ours, which returns at once
    // unless it still holds 0; the timeout is a timespec on our stack that
    // outlives the call.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            WORD.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            0,
            &ts as *const libc::timespec,
        )
    };
    WORD.store(0, Ordering::Relaxed);
}

/// Waits while `word` holds `expected`, at most `timeout` (or until a
/// signal interrupts): returns at once if it holds anything else.
pub(crate) fn wait_while(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: FUTEX_WAIT on an atomic word that outlives the call (the
    // caller's), which only reads it; the timeout is a timespec on our
    // stack that outlives the call.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            &ts as *const libc::timespec,
        )
    };
}

/// Wakes one thread waiting on `word` in [`wait_while`].
pub(crate) fn wake_one(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE on an atomic word of the caller's; no memory is
    // written.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        )
    };
}

/// The writer's stack. The thread drains rings, encodes and compresses
/// (zstd's deepest frames take a few KiB); glibc's default, the stack
/// limit (8 MiB), would be address space taken from the program.
const WRITER_STACK: usize = 512 << 10;

/// Starts `main` on a new, detached thread with a small stack, or with
/// glibc's default one when the small one is refused (a program with
/// much static thread-local storage needs more). False when no thread
/// could be started.
pub(crate) fn spawn(main: extern "C" fn(*mut libc::c_void) -> *mut libc::c_void) -> bool {
    let mut handle: libc::pthread_t = 0;
    // SAFETY: pthread_attr_t is plain data that pthread_attr_init sets up.
    let mut attr: libc::pthread_attr_t = unsafe { std::mem::zeroed() };
    // SAFETY: `attr` is ours; it is destroyed below once used.
    let initialised = unsafe { libc::pthread_attr_init(&mut attr) == 0 };
    // SAFETY: `attr` was initialised.
    let small =
        initialised && unsafe { libc::pthread_attr_setstacksize(&mut attr, WRITER_STACK) == 0 };
    // SAFETY: starts `main`, which takes no argument, with attributes that
    // are initialised (or the defaults, NULL).
    let started = unsafe {
        (small && libc::pthread_create(&mut handle, &attr, main, std::ptr::null_mut()) == 0)
            || libc::pthread_create(&mut handle, std::ptr::null(), main, std::ptr::null_mut()) == 0
    };
    if initialised {
        // SAFETY: initialised above, no longer used.
        unsafe { libc::pthread_attr_destroy(&mut attr) };
    }
    if started {
        // SAFETY: the thread runs detached; nobody joins it.
        unsafe { libc::pthread_detach(handle) };
    }
    started
}

//! Fast in-process stack unwinding for memtrace's malloc hooks (Linux x86_64 only).
//!
//! Two unwinders with the same contract:
//!
//! * [`backtrace_fast`]: [framehop] over the in-memory `.eh_frame_hdr` / `.eh_frame` of every
//!   loaded module (including the vdso). It does not allocate and takes no locks on the common
//!   path; the per-thread framehop rule cache makes a typical 12-frame stack cost well under
//!   100 ns.
//! * [`backtrace_libgcc`]: libgcc's `_Unwind_Backtrace`, slow (~1 µs) but exact. It is the
//!   reference the fast path is tested against, and the fallback when the fast path cannot run.
//!
//! Both fill `out` with return addresses, innermost first. `out[0]` is the return address
//! into the *caller of the function that called the unwinder* (for a malloc hook: the address
//! in the function that called `malloc`), after skipping `skip` further frames.
//!
//! # Contexts this must survive
//!
//! The code runs inside malloc hooks of arbitrary programs, so:
//!
//! * **No allocation per call.** Allocation happens only once per thread (the framehop cache,
//!   the thread's stack bounds, read from `/proc/self/maps` with plain system calls and no
//!   lock (never `pthread_getattr_np`, which allocates while it holds a lock the program's
//!   own call to it may hold), glibc's TLS-destructor registration)
//!   and when the module list is (re)built. The caller is expected to hold its reentrancy guard
//!   so that those allocations are forwarded unrecorded; if it does not, a nested call on the
//!   same thread falls back to libgcc instead of recursing.
//! * **No locks on the unwind path.** The module list is an immutable snapshot published through
//!   an [`AtomicPtr`](core::sync::atomic::AtomicPtr). [`modules_changed`] builds a new snapshot
//!   and swaps it in; old snapshots are leaked (never freed), so a concurrent unwinder can keep
//!   reading the one it loaded. The first snapshot is built lazily by whichever thread first
//!   unwinds; threads that race with that build use libgcc for that one call.
//! * **No faults.** Stack memory is read only inside `[rsp at entry, top of the thread's
//!   stack)`. If `rsp` is not inside the thread's stack (sigaltstack, coroutines), the fast
//!   path is not used and libgcc is called instead.
//!
//! # Limits
//!
//! * Code without unwind info (JIT code) is unwound by framehop's frame-pointer fallback; if
//!   that code does not keep frame pointers the walk stops (or, as with any frame-pointer walk,
//!   may produce a few wrong frames before the stack bound or a null return address stops it).
//!   libgcc stops at such frames, so the two paths can differ there.
//! * Between `dlclose` and the following [`modules_changed`], the published snapshot still
//!   points at the unloaded module's unwind sections. That is only dereferenced for addresses
//!   inside that module, which cannot be on the stack of a correct program after `dlclose`.
//! * framehop's cache generation counter is 16 bits and is bumped once per module per rebuild;
//!   after tens of thousands of rebuilds a stale cached rule could in theory be reused.
//! * After `fork()`, the child's fast path is lock-free as long as the parent had built the
//!   module list (it does on its first unwind). A lazy first build or [`modules_changed`] *in
//!   the child* calls `dl_iterate_phdr`, which can block forever if a vanished parent thread
//!   held the loader lock at fork time (glibc 2.36 does not reset it); so can `dlopen` there.
//!   libgcc's path uses `_dl_find_object` and does not take that lock. (If a vanished thread
//!   had claimed the lazy first build, the child uses libgcc until it calls
//!   [`modules_changed`].)
//! * The first call on a thread builds framehop's cache (a DWARF evaluation context of a few
//!   tens of KiB is constructed on the stack before it is boxed).
//! * Signal frames (`__restore_rt`) go through framehop's slow DWARF-expression path and are not
//!   covered by tests.

#![deny(missing_docs)]

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
compile_error!("memtrace-unwind supports only Linux x86_64");

mod fast;
mod libgcc;
mod memo;
mod modules;
mod stack_bounds;

pub use memo::StackMemo;
pub use modules::modules_changed;

/// Frees the calling thread's unwinder cache; call it when the thread ends
/// (the next unwind on the thread, if any, makes a new one).
pub fn release_thread_cache() {
    fast::release_thread_cache();
}

use core::sync::atomic::{AtomicU64, Ordering};

/// Counts `backtrace_fast` calls that had to use libgcc.
static FALLBACKS: AtomicU64 = AtomicU64::new(0);

/// Frames between an unwinder's own first reported frame and the first frame we return:
/// frame 0 is inside the unwinder itself, frame 1 the return address into the function that
/// called the unwinder, frame 2 the return address into *its* caller (the first one returned).
const OWN_FRAMES: usize = 2;

/// Slow, exact reference path: libgcc's `_Unwind_Backtrace`.
///
/// Fills `out` with return addresses, innermost first, starting with the return address into
/// the caller of the function that called `backtrace_libgcc`, after skipping `skip` further
/// frames. Returns the number of addresses written (at most `out.len()`).
#[inline(never)]
pub fn backtrace_libgcc(skip: usize, out: &mut [u64]) -> usize {
    // `libgcc::walk` is one frame deeper than this function. `black_box` keeps the call out of
    // tail position, so this function's frame really exists when libgcc walks it.
    let n = libgcc::walk(OWN_FRAMES + 1 + skip, out);
    core::hint::black_box(n)
}

/// Fast path: framehop over the in-memory `.eh_frame_hdr`/`.eh_frame` of every loaded module.
///
/// Same contract as [`backtrace_libgcc`] and, for code with unwind info, the same result.
/// Does not allocate or lock except on the first call in a thread / in the process (see the
/// crate documentation). Falls back to [`backtrace_libgcc`]'s walk when the fast path cannot
/// run (module list being built by another thread, nested call on this thread, foreign stack).
#[inline(never)]
pub fn backtrace_fast(skip: usize, out: &mut [u64]) -> usize {
    // Registers of *this* frame, at this point: framehop starts unwinding here.
    let regs = fast::capture_regs();
    match fast::walk(regs, OWN_FRAMES + skip, out) {
        Some(n) => n,
        None => {
            FALLBACKS.fetch_add(1, Ordering::Relaxed);
            let n = libgcc::walk(OWN_FRAMES + 1 + skip, out);
            core::hint::black_box(n)
        }
    }
}

/// A value of `on_miss` that [`backtrace_memo`] returns but does not
/// remember: the caller could not make one this time (the recorder's
/// stack trie had no memory for a new stack), and may next time.
pub const NOT_MEMOIZED: u32 = u32::MAX;

/// Memoized fast path: the value `on_miss` derived from this stack's frames
/// the last time the same stack was seen on this thread, or, when the stack
/// changed, a fresh walk (same contract as [`backtrace_fast`], frames in
/// `out`) passed to `on_miss`, whose result is memoized (unless it is
/// [`NOT_MEMOIZED`]) and returned.
///
/// Exact: a memoized value is returned only when the walk would read the
/// very same stack words from the very same registers (see `memo.rs`).
#[inline(never)]
pub fn backtrace_memo(
    skip: usize,
    memo: &mut StackMemo,
    out: &mut [u64],
    mut on_miss: impl FnMut(&[u64]) -> u32,
) -> u32 {
    let regs = fast::capture_regs();
    match memo::lookup_or_walk(regs, OWN_FRAMES + skip, memo, out, &mut on_miss) {
        Some(value) => value,
        None => {
            FALLBACKS.fetch_add(1, Ordering::Relaxed);
            let n = libgcc::walk(OWN_FRAMES + 1 + skip, out);
            core::hint::black_box(on_miss(&out[..n]))
        }
    }
}

/// How many [`backtrace_fast`] calls so far fell back to libgcc (another thread was building
/// the first module list, a nested call on the same thread, a thread exiting or running on a
/// stack that is not its own). For statistics and tests.
pub fn fallback_count() -> u64 {
    FALLBACKS.load(Ordering::Relaxed)
}

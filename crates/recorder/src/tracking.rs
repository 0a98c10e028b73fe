//! The Rust `#[global_allocator]` wrapper.

use std::alloc::{GlobalAlloc, Layout};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};

use memtrace_format::{Func, Op, RecorderKind};

use crate::call::Call;
use crate::session::{self, Config};
use crate::{scope, stats, thread};

/// A global allocator that records every call of the allocator it wraps.
///
/// ```no_run
/// use memtrace_recorder::Tracking;
/// use std::alloc::System;
///
/// #[global_allocator]
/// static ALLOC: Tracking<System> = Tracking::new(System);
/// ```
///
/// Recording starts with the first allocation and writes
/// `memtrace.<program>.<pid>.trace` in the current directory, or the file
/// named by `MEMTRACE_OUTPUT`, or a default-named file in `MEMTRACE_DIR`.
/// `MEMTRACE_DISABLE=1` keeps only the in-process counters ([`crate::stats`]).
///
/// [`Tracking::untraced`] never records: for `cargo test` with the leak
/// checks and heap statistics of [`crate::LeakScope`].
pub struct Tracking<A> {
    inner: A,
    record: bool,
}

impl<A> Tracking<A> {
    /// Wraps `inner`, recording a trace.
    pub const fn new(inner: A) -> Self {
        Tracking {
            inner,
            record: true,
        }
    }

    /// Wraps `inner` without ever recording a trace: only the counters
    /// ([`crate::stats`]) and the scopes ([`crate::assert_no_leaks`],
    /// [`crate::heap_stats`], [`crate::LeakScope`]) see its calls.
    ///
    /// ```no_run
    /// use memtrace_recorder::Tracking;
    /// use std::alloc::System;
    ///
    /// #[global_allocator]
    /// static ALLOC: Tracking<System> = Tracking::untraced(System);
    /// ```
    pub const fn untraced(inner: A) -> Self {
        Tracking {
            inner,
            record: false,
        }
    }
}

const NOT_STARTED: u8 = 0;
const STARTING: u8 = 1;
const STARTED: u8 = 2;
static START: AtomicU8 = AtomicU8::new(NOT_STARTED);

/// Starts recording a call of the program; `None` for the recorder's own
/// allocations (which also stay out of the counters) or when not recording.
#[inline(always)]
fn begin(op: Op, record: bool) -> Option<Option<Call>> {
    if thread::in_recorder() {
        return None;
    }
    if !record {
        return Some(None);
    }
    if START.load(Ordering::Relaxed) != STARTED {
        start_from_env();
    }
    Some(Call::begin(op))
}

#[cold]
fn start_from_env() {
    if START
        .compare_exchange(NOT_STARTED, STARTING, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return;
    }
    if !thread::enter() {
        START.store(NOT_STARTED, Ordering::Release);
        return;
    }
    if !crate::plumbing::disabled_by_env() {
        crate::plumbing::read_env_options();
        session::start(Config {
            output: std::env::var_os("MEMTRACE_OUTPUT").map(PathBuf::from),
            dir: std::env::var_os("MEMTRACE_DIR").map_or_else(|| PathBuf::from("."), PathBuf::from),
            recorder: RecorderKind::RustAllocator,
            writer_thread: true,
            follow_exec: false,
        });
    }
    START.store(STARTED, Ordering::Release);
    thread::leave();
}

/// Alignment worth recording: anything above what `malloc` gives anyway.
fn align_of(layout: Layout) -> u64 {
    if layout.align() > 16 {
        layout.align() as u64
    } else {
        0
    }
}

// SAFETY: every method forwards to the wrapped allocator with the caller's
// arguments unchanged and returns its result; recording has no effect on
// the memory handed out.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Tracking<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let call = begin(Op::Alloc, self.record);
        // SAFETY: the caller upholds GlobalAlloc::alloc's contract.
        let p = unsafe { self.inner.alloc(layout) };
        let size = layout.size() as u64;
        if let Some(call) = call {
            if !p.is_null() {
                stats::on_alloc(size);
            }
            if let Some(call) = call {
                call.alloc(Func::RustAlloc, p as u64, size, size, align_of(layout));
            }
            scope::on_alloc(p, layout.size());
        }
        p
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let call = begin(Op::Alloc, self.record);
        // SAFETY: as for alloc.
        let p = unsafe { self.inner.alloc_zeroed(layout) };
        let size = layout.size() as u64;
        if let Some(call) = call {
            if !p.is_null() {
                stats::on_alloc(size);
            }
            if let Some(call) = call {
                call.alloc(
                    Func::RustAllocZeroed,
                    p as u64,
                    size,
                    size,
                    align_of(layout),
                );
            }
            scope::on_alloc(p, layout.size());
        }
        p
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Before the block is gone (and can be handed to another thread).
        scope::on_free(ptr);
        let call = begin(Op::Free, self.record);
        // SAFETY: the caller upholds GlobalAlloc::dealloc's contract.
        unsafe { self.inner.dealloc(ptr, layout) };
        if let Some(call) = call {
            stats::on_free(layout.size() as u64);
            if let Some(call) = call {
                call.free(Func::RustDealloc, ptr as u64);
            }
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let resizing = scope::on_realloc_start(ptr);
        let call = begin(Op::Realloc, self.record);
        // SAFETY: the caller upholds GlobalAlloc::realloc's contract.
        let p = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if let Some(call) = call {
            if !p.is_null() {
                stats::on_realloc(layout.size() as u64, new_size as u64);
            }
            let size = new_size as u64;
            if let Some(call) = call {
                call.realloc(Func::RustRealloc, ptr as u64, p as u64, size, size);
            }
        }
        scope::on_realloc_end(resizing, p, new_size);
        p
    }
}

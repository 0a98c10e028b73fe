//! The recording of one heap call, as the hooks drive it.

use std::sync::atomic::Ordering;

use memtrace_format::{Func, HeapEvent, ThreadItem};

use crate::clock::ticks;
use crate::session::{self, is_recording, mark_in_flight};
use crate::thread::{self, ThreadState};

/// Most frames kept per stack.
pub const MAX_FRAMES: usize = 128;

/// One heap call in progress: made by [`Call::begin`] right before the real
/// allocator runs, finished by `alloc`, `realloc` or `free` right after.
///
/// While it lives, the thread's reentrancy guard is set: allocations made by
/// the recorder itself go straight to the real allocator.
pub struct Call {
    state: *mut ThreadState,
    t0: u64,
}

impl Call {
    /// Starts recording a call; `None` when this is a nested call from inside
    /// the recorder, or recording is off. Then just call the real function.
    #[inline(always)]
    pub fn begin() -> Option<Call> {
        if !is_recording() || !thread::enter() {
            return None;
        }
        let state = thread::current();
        mark_in_flight(&state.ring, state.last_ts);
        let t0 = ticks();
        Some(Call { state, t0 })
    }

    #[inline(always)]
    fn state(&mut self) -> &mut ThreadState {
        // SAFETY: made from thread::current() on this thread; the guard keeps
        // any other use of it on this thread out until the Call is dropped.
        unsafe { &mut *self.state }
    }

    /// Records an allocation that returned `addr` (0 on failure).
    #[inline(never)]
    pub fn alloc(mut self, func: Func, addr: u64, size: u64, usable: u64, align: u64) {
        let t1 = ticks();
        let errno = errno();
        let stack = capture_stack(self.state());
        let event = HeapEvent {
            func: func as u8,
            ts: t1,
            latency: t1 - self.t0,
            addr,
            old_addr: 0,
            size,
            usable,
            align,
            stack,
        };
        thread::push(self.state(), ThreadItem::Heap(event));
        set_errno(errno);
    }

    /// Records a resize of `old_addr` to `size` bytes at `new_addr` (0 on failure).
    #[inline(never)]
    pub fn realloc(mut self, func: Func, old_addr: u64, new_addr: u64, size: u64, usable: u64) {
        let t1 = ticks();
        let errno = errno();
        let stack = capture_stack(self.state());
        let event = HeapEvent {
            func: func as u8,
            ts: self.t0,
            latency: t1 - self.t0,
            addr: new_addr,
            old_addr,
            size,
            usable,
            align: 0,
            stack,
        };
        thread::push(self.state(), ThreadItem::Heap(event));
        set_errno(errno);
    }

    /// Records the release of `addr`. Frees carry no stack.
    #[inline]
    pub fn free(mut self, func: Func, addr: u64) {
        let t1 = ticks();
        let event = HeapEvent {
            func: func as u8,
            ts: self.t0,
            latency: t1 - self.t0,
            addr,
            ..HeapEvent::default()
        };
        thread::push(self.state(), ThreadItem::Heap(event));
    }
}

impl Drop for Call {
    #[inline(always)]
    fn drop(&mut self) {
        self.state()
            .ring
            .in_flight
            .0
            .store(u64::MAX, Ordering::Release);
        thread::leave();
    }
}

/// Frames to drop from the unwinder's output: the hook itself.
const SKIP: usize = 1;

/// Unwinds the caller's stack and interns it.
#[inline(always)]
fn capture_stack(state: &mut ThreadState) -> u32 {
    let mut frames = [0u64; MAX_FRAMES];
    let n = if crate::slow_unwinder() {
        memtrace_unwind::backtrace_libgcc(SKIP, &mut frames)
    } else {
        memtrace_unwind::backtrace_fast(SKIP, &mut frames)
    };
    let own = crate::own_code();
    let first = frames[..n]
        .iter()
        .position(|&a| !own.contains(&a))
        .unwrap_or(n);
    state.stacks.intern(&frames[first..n])
}

#[inline(always)]
fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

#[inline(always)]
fn set_errno(value: i32) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = value };
}

/// Ends recording from a hook that is about to end the process.
pub fn finish() {
    session::finish();
}

//! The recording of one heap call, as the hooks drive it.

use std::sync::atomic::Ordering;

use memtrace_format::{Func, HeapEvent, Op, ThreadItem};

use crate::clock::ticks;
use crate::session::{self, is_recording, mark_in_flight};
use crate::thread::{self, NoState, StateGuard, ThreadState};
use crate::UnwindMode;

/// Most frames kept per stack.
pub const MAX_FRAMES: usize = 128;

/// One heap call in progress: made by [`Call::begin`] right before the real
/// allocator runs, finished by `alloc`, `realloc` or `free` right after.
///
/// While it lives, the thread's reentrancy guard is set: allocations made by
/// the recorder itself go straight to the real allocator.
pub struct Call {
    state: StateGuard,
    t0: u64,
}

impl Call {
    /// Starts recording a call that will do `op`; `None` when this is a
    /// nested call from inside the recorder, or recording is off. Then just
    /// call the real function.
    #[inline(always)]
    pub fn begin(op: Op) -> Option<Call> {
        if !is_recording() {
            return None;
        }
        let state = match StateGuard::enter() {
            Ok(state) => state,
            Err(NoState::Nested) => return None,
            Err(NoState::NoMemory) => {
                // No memory for this thread's ring: the event is dropped.
                crate::memory::dropped(1);
                return None;
            }
        };
        mark_in_flight(state.ring(), state.last_ts);
        // Frees and reallocs are stamped before the call (see HeapEvent::ts);
        // an allocation needs the start only to measure its latency.
        let t0 = if op != Op::Alloc || crate::timing() {
            ticks()
        } else {
            0
        };
        Some(Call { state, t0 })
    }

    /// As [`Call::begin`], but the first call starts recording if nothing
    /// started it yet (for the preload library, whose hooks can run before
    /// its constructor).
    #[inline(always)]
    pub fn begin_or_start(op: Op) -> Option<Call> {
        if session::never_started() {
            session::start_early();
        }
        Call::begin(op)
    }

    /// Ticks since `begin`, or 0 when timing is off. A clock that stepped
    /// back (a TSC read early, a migration between unsynchronised cores)
    /// gives 0, never a wrapped difference.
    #[inline(always)]
    fn latency(&self) -> u64 {
        if crate::timing() {
            ticks().saturating_sub(self.t0)
        } else {
            0
        }
    }

    /// Records an allocation that returned `addr` (0 on failure).
    #[inline(never)]
    pub fn alloc(mut self, func: Func, addr: u64, size: u64, usable: u64, align: u64) {
        let t1 = ticks();
        let latency = if self.t0 == 0 {
            0
        } else {
            t1.saturating_sub(self.t0)
        };
        let errno = errno();
        let stack = capture_stack(&mut self.state);
        if stack == NO_STACK {
            crate::memory::dropped(1);
            set_errno(errno);
            return;
        }
        let event = HeapEvent {
            func: func as u8,
            ts: t1,
            latency,
            addr,
            old_addr: 0,
            size,
            usable,
            align,
            stack,
        };
        thread::push(&mut self.state, ThreadItem::Heap(event));
        set_errno(errno);
    }

    /// Records a resize of `old_addr` to `size` bytes at `new_addr` (0 on failure).
    #[inline(never)]
    pub fn realloc(mut self, func: Func, old_addr: u64, new_addr: u64, size: u64, usable: u64) {
        let latency = self.latency();
        let errno = errno();
        let stack = capture_stack(&mut self.state);
        if stack == NO_STACK {
            crate::memory::dropped(1);
            set_errno(errno);
            return;
        }
        let event = HeapEvent {
            func: func as u8,
            ts: self.t0,
            latency,
            addr: new_addr,
            old_addr,
            size,
            usable,
            align: 0,
            stack,
        };
        thread::push(&mut self.state, ThreadItem::Heap(event));
        set_errno(errno);
    }

    /// Records the release of `addr`. Frees carry no stack.
    #[inline]
    pub fn free(mut self, func: Func, addr: u64) {
        let latency = self.latency();
        let event = HeapEvent {
            func: func as u8,
            ts: self.t0,
            latency,
            addr,
            ..HeapEvent::default()
        };
        thread::push(&mut self.state, ThreadItem::Heap(event));
    }
}

impl Drop for Call {
    #[inline(always)]
    fn drop(&mut self) {
        self.state
            .ring()
            .in_flight
            .0
            .store(u64::MAX, Ordering::Release);
        // Dropping `state` next leaves the recorder.
    }
}

/// Frames to drop from the unwinder's output: the hook itself.
const SKIP: usize = 1;

/// What [`capture_stack`] returns for a new stack the trie has no memory
/// for: the event is dropped (the unwinder's memo does not keep it).
const NO_STACK: u32 = memtrace_unwind::NOT_MEMOIZED;

/// Unwinds the caller's stack and interns it. A stack this thread saw
/// before, unchanged, is recognised without unwinding (see the unwinder's
/// memo). [`NO_STACK`] when the stack is new and there is no memory for it.
#[inline(always)]
fn capture_stack(state: &mut ThreadState) -> u32 {
    let ThreadState {
        stacks,
        memo,
        frames,
        ..
    } = state;
    let frames = &mut frames[..];
    match crate::unwind_mode() {
        UnwindMode::Memo => {
            memtrace_unwind::backtrace_memo(SKIP, memo, frames, |f| intern_frames(stacks, f))
        }
        UnwindMode::Fast => {
            let n = memtrace_unwind::backtrace_fast(SKIP, frames);
            intern_frames(stacks, &frames[..n])
        }
        UnwindMode::Libgcc => {
            let n = memtrace_unwind::backtrace_libgcc(SKIP, frames);
            intern_frames(stacks, &frames[..n])
        }
    }
}

/// Interns a stack after dropping the recorder's own frames from its top.
#[inline(always)]
fn intern_frames(stacks: &mut crate::intern::StackCache, frames: &[u64]) -> u32 {
    let own = crate::own_code();
    let first = frames
        .iter()
        .position(|a| !own.contains(a))
        .unwrap_or(frames.len());
    stacks.intern(&frames[first..]).unwrap_or(NO_STACK)
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

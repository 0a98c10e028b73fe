//! Per-thread recorder state: the reentrancy guard, the ring and the stack cache.
//!
//! The state is reached through a `const`-initialised thread-local pointer,
//! which needs no lazy registration and no allocation to read. Thread exit is
//! noticed by a pthread key destructor, which runs after the thread's Rust and
//! C++ thread-local destructors, so their frees are still recorded.

use std::cell::Cell;
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use memtrace_format::ThreadItem;

use crate::clock::ticks;
use crate::intern::StackCache;
use crate::ring::Ring;
use crate::session;
use crate::spin::SpinLock;

/// Items one thread can buffer before it waits for the writer.
const RING_CAPACITY: usize = 1 << 16;

/// What the recorder keeps per thread.
pub(crate) struct ThreadState {
    pub(crate) ring: Arc<Ring>,
    pub(crate) cached_head: usize,
    /// Timestamp of the last item pushed: a lower bound for the next one.
    pub(crate) last_ts: u64,
    pub(crate) stacks: StackCache,
    pub(crate) memo: memtrace_unwind::StackMemo,
    /// Scratch space for one walk's frames.
    pub(crate) frames: Box<[u64; crate::MAX_FRAMES]>,
}

/// The recorder's thread-local data, in one place so that a heap call
/// looks its thread-local block up once.
pub(crate) struct Tls {
    /// True while this thread is inside the recorder (or is the writer).
    guard: Cell<bool>,
    state: Cell<*mut ThreadState>,
}

thread_local! {
    static TLS: Tls = const {
        Tls { guard: Cell::new(false), state: Cell::new(ptr::null_mut()) }
    };
}

/// This thread's block. The pointer stays valid while the thread lives (the
/// thread-local has no destructor).
#[inline(always)]
pub(crate) fn tls() -> *const Tls {
    TLS.with(|t| t as *const Tls)
}

impl Tls {
    /// Sets the guard; false when it was already set (a nested call).
    #[inline(always)]
    pub(crate) fn enter(&self) -> bool {
        !self.guard.replace(true)
    }

    /// Clears the guard.
    #[inline(always)]
    pub(crate) fn leave(&self) {
        self.guard.set(false);
    }

    /// This thread's state, created on first use; `None` when there was no
    /// memory for it (the thread's events are then dropped). Call with the
    /// guard set.
    #[inline(always)]
    pub(crate) fn state(&self) -> Option<&'static mut ThreadState> {
        let p = self.state.get();
        if p.addr() > UNRECORDED.addr() {
            // SAFETY: neither null nor UNRECORDED, so the pointer was made
            // by Box::into_raw in `create`; it is used only by this thread,
            // one call at a time (the guard forbids nesting).
            return Some(unsafe { &mut *p });
        }
        if p.is_null() {
            create()
        } else {
            None
        }
    }
}

/// The state of a thread that could not get memory for its own: never
/// dereferenced, and (address 1) no real state's address.
const UNRECORDED: *mut ThreadState = std::ptr::without_provenance_mut(1);

/// Every ring that has items or may still get some.
pub(crate) static REGISTRY: SpinLock<Vec<Arc<Ring>>> = SpinLock::new(Vec::new());

/// Sets the guard; false when it was already set (a nested call).
#[inline(always)]
pub(crate) fn enter() -> bool {
    TLS.with(Tls::enter)
}

/// True while this thread is inside the recorder: its allocations are the
/// recorder's own.
#[inline(always)]
pub(crate) fn in_recorder() -> bool {
    TLS.with(|t| t.guard.get())
}

/// Clears the guard.
#[inline(always)]
pub(crate) fn leave() {
    TLS.with(Tls::leave);
}

/// Marks this thread as the recorder's own for good (the writer thread).
pub(crate) fn ignore_this_thread() {
    TLS.with(|t| t.guard.set(true));
}

/// This thread's state, created on first use; `None` when there was no
/// memory for it. Call with the guard set.
#[inline]
pub(crate) fn current() -> Option<&'static mut ThreadState> {
    TLS.with(|t| t.state())
}

/// Makes this thread's state. Without memory for its ring (4 MiB), stack
/// cache or unwinder memo, or once the allocator draws on its reserve,
/// the thread is marked as unrecorded for good: its events are dropped
/// and counted rather than retried at every call.
#[cold]
fn create() -> Option<&'static mut ThreadState> {
    let parts = (!crate::memory::short())
        .then(|| {
            Some((
                Ring::try_new(gettid(), RING_CAPACITY)?,
                StackCache::try_new()?,
                memtrace_unwind::StackMemo::try_new()?,
            ))
        })
        .flatten();
    let Some((ring, stacks, memo)) = parts else {
        TLS.with(|t| t.state.set(UNRECORDED));
        return None;
    };
    let ring = Arc::new(ring);
    // Until the start item is pushed the writer must not pass time 0.
    ring.in_flight.0.store(0, Ordering::SeqCst);
    REGISTRY.lock().push(Arc::clone(&ring));
    let state = Box::into_raw(Box::new(ThreadState {
        ring,
        cached_head: 0,
        last_ts: 0,
        stacks,
        memo,
        frames: Box::new([0; crate::MAX_FRAMES]),
    }));
    TLS.with(|t| t.state.set(state));
    register_exit_hook(state);
    // SAFETY: just created above; only this thread uses it.
    let state = unsafe { &mut *state };
    let ts = ticks();
    push(state, ThreadItem::Start { ts });
    state.ring.in_flight.0.store(u64::MAX, Ordering::Release);
    Some(state)
}

/// Pushes an item, waiting for the writer while the ring is full.
#[inline]
pub(crate) fn push(state: &mut ThreadState, item: ThreadItem) {
    state.last_ts = item.ts();
    while !state.ring.push(item, &mut state.cached_head) {
        if !session::is_recording() {
            // Recording ended (the disk is full, the process is exiting):
            // nobody drains this ring any more, so the event is dropped
            // rather than the program made to wait for ever.
            return;
        }
        session::ring_full();
    }
    // Wake the writer every half ring of items, without reading the
    // writer's position (a cache line the writer owns).
    let pushed = state.ring.pushed();
    if pushed & (state.ring.capacity() / 2 - 1) == 0 {
        session::ring_half_full();
    }
}

/// Forgets this thread's state (in a forked child: the ring belongs to
/// the parent), or that it could not have one.
pub(crate) fn forget_current() {
    TLS.with(|t| t.state.set(ptr::null_mut()));
}

fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u32 }
}

static EXIT_KEY: AtomicU32 = AtomicU32::new(u32::MAX);

fn register_exit_hook(state: *mut ThreadState) {
    let mut key = EXIT_KEY.load(Ordering::Acquire);
    if key == u32::MAX {
        let _lock = KEY_LOCK.lock();
        key = EXIT_KEY.load(Ordering::Acquire);
        if key == u32::MAX {
            let mut new_key: libc::pthread_key_t = 0;
            // SAFETY: creates a key whose destructor is `thread_exit`.
            if unsafe { libc::pthread_key_create(&mut new_key, Some(thread_exit)) } != 0 {
                return;
            }
            key = new_key;
            EXIT_KEY.store(key, Ordering::Release);
        }
    }
    // SAFETY: the key exists; the value is only handed back to thread_exit.
    unsafe { libc::pthread_setspecific(key, state.cast()) };
}

static KEY_LOCK: SpinLock<()> = SpinLock::new(());

/// Runs when a thread ends: writes its end marker and closes its ring.
unsafe extern "C" fn thread_exit(value: *mut libc::c_void) {
    let nested = !enter();
    let state = value as *mut ThreadState;
    TLS.with(|t| {
        if t.state.get() == state {
            t.state.set(ptr::null_mut());
        }
    });
    // SAFETY: `value` is the Box pointer set in register_exit_hook, given back
    // once by glibc; no other reference to it remains in this thread.
    let mut state = unsafe { Box::from_raw(state) };
    if session::is_recording() {
        let prev = state.last_ts;
        state.ring.in_flight.0.store(prev, Ordering::SeqCst);
        let ts = ticks();
        push(&mut state, ThreadItem::End { ts });
        state.ring.in_flight.0.store(u64::MAX, Ordering::Release);
    }
    state.ring.closed.store(true, Ordering::Release);
    drop(state);
    memtrace_unwind::release_thread_cache();
    if !nested {
        leave();
    }
}

//! Per-thread recorder state: the reentrancy guard, the ring and the stack cache.
//!
//! The state is reached through a `const`-initialised thread-local pointer,
//! which needs no lazy registration and no allocation to read, and only
//! through a [`StateGuard`]: the guard sets the reentrancy flag, so while it
//! lives no second reference to the state can be made on the thread. Thread
//! exit is noticed by a pthread key destructor, which runs after the
//! thread's Rust and C++ thread-local destructors, so their frees are still
//! recorded.
//!
//! # Calls after the exit hook
//! glibc still calls `free` on an ending thread after the key destructors:
//! a detached thread releases the TLS blocks (DTVs) of cached thread stacks
//! when the stack cache is over its limit. Such a call gets a *late* state:
//! a small ring with no start item and no exit hook, listed in [`LATE`]. The
//! writer frees the state and closes its ring once the kernel no longer
//! knows the thread ([`reap_late`]), so the calls are recorded and nothing is
//! left behind.
//!
//! # Memory
//! A ring starts at [`FIRST_RING`] items and grows on demand up to
//! [`LARGEST_RING`] (see `ring`); the stack cache and the unwinder's memo are
//! allocated untouched (zeroed pages of a fresh mapping, or on first use),
//! so a thread that makes a few calls costs tens of KiB. Everything is freed
//! when the thread ends, the ring by the writer once it has drained it.
//!
//! Without memory for its state (its first ring segment, its unwinder
//! memo), or once the allocator draws on its reserve, a thread is marked
//! as unrecorded for good: its heap events are dropped and counted (see
//! `memory`) rather than retried at every call. A ring that cannot grow
//! for want of memory drops the heap events that do not fit, counted too.

use std::cell::Cell;
use std::ops::{Deref, DerefMut};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use memtrace_format::ThreadItem;

use crate::clock::ticks;
use crate::intern::StackCache;
use crate::ring::{Producer, Push, Ring};
use crate::session;
use crate::spin::SpinLock;

/// Items in a thread's first ring segment (72 bytes each: 9 KiB).
const FIRST_RING: usize = 128;
/// The most items a thread's ring grows to (576 KiB; 1.1 MiB made 1,000
/// busy threads take 2.35 MiB each at their peak); a thread that fills it
/// waits for the writer.
const LARGEST_RING: usize = 8 * 1024;
const _: () = assert!(FIRST_RING >= 2 && FIRST_RING <= LARGEST_RING);

/// The ring of thread items, as the writer sees it.
pub(crate) type ThreadRing = Ring<ThreadItem>;

/// What the recorder keeps per thread.
pub(crate) struct ThreadState {
    /// This thread's end of its ring.
    pub(crate) producer: Producer<ThreadItem>,
    /// Timestamp of the last item pushed: a lower bound for the next one.
    pub(crate) last_ts: u64,
    pub(crate) stacks: StackCache,
    pub(crate) memo: memtrace_unwind::StackMemo,
    /// Scratch space for one walk's frames.
    pub(crate) frames: Box<[u64; crate::call::MAX_FRAMES]>,
}

impl ThreadState {
    /// The shared half of this thread's ring.
    #[inline(always)]
    pub(crate) fn ring(&self) -> &ThreadRing {
        self.producer.ring()
    }
}

/// The recorder's thread-local data, in one place so that a heap call
/// looks its thread-local block up once.
pub(crate) struct Tls {
    /// True while this thread is inside the recorder (or is the writer).
    guard: Cell<bool>,
    state: Cell<*mut ThreadState>,
    /// The exit hook has run: a state made from now on is a late one.
    exited: Cell<bool>,
}

thread_local! {
    static TLS: Tls = const {
        Tls {
            guard: Cell::new(false),
            state: Cell::new(ptr::null_mut()),
            exited: Cell::new(false),
        }
    };
}

/// This thread's block. The pointer stays valid while the thread lives (the
/// thread-local has no destructor).
#[inline(always)]
fn tls() -> *const Tls {
    TLS.with(|t| t as *const Tls)
}

/// Why [`StateGuard::enter`] gave no state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoState {
    /// The thread is inside the recorder already: a nested call, which
    /// must only forward.
    Nested,
    /// There was no memory for the thread's state: its heap events are
    /// dropped (and counted by the caller).
    NoMemory,
}

/// The state of a thread that could not get memory for its own: never
/// dereferenced, and (address 1) no real state's address.
const UNRECORDED: *mut ThreadState = ptr::without_provenance_mut(1);

/// This thread is inside the recorder, with its state: the only way to
/// reach a [`ThreadState`]. Dropping it leaves the recorder.
pub(crate) struct StateGuard {
    tls: *const Tls,
    state: NonNull<ThreadState>,
}

impl StateGuard {
    /// Enters the recorder on this thread and gives its state, made on first
    /// use; why not when the thread is inside the recorder already or has
    /// no memory for its state.
    #[inline(always)]
    pub(crate) fn enter() -> Result<StateGuard, NoState> {
        let tls = tls();
        // SAFETY: this thread's block, valid while the thread lives.
        let block = unsafe { &*tls };
        if block.guard.replace(true) {
            return Err(NoState::Nested);
        }
        let p = block.state.get();
        let state = match NonNull::new(p) {
            Some(_) if p == UNRECORDED => None,
            Some(state) => Some(state),
            None => create(block),
        };
        match state {
            Some(state) => Ok(StateGuard { tls, state }),
            None => {
                block.guard.set(false);
                Err(NoState::NoMemory)
            }
        }
    }
}

impl Deref for StateGuard {
    type Target = ThreadState;
    #[inline(always)]
    fn deref(&self) -> &ThreadState {
        // SAFETY: the state lives until the thread's exit hook (or the
        // writer, for a late state, after the thread is gone) frees it, and
        // neither runs while this thread is inside the recorder. The guard
        // flag was clear when this guard set it, so no other reference made
        // through a StateGuard exists on this thread.
        unsafe { self.state.as_ref() }
    }
}

impl DerefMut for StateGuard {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut ThreadState {
        // SAFETY: as in `deref`; `&mut self` makes this the only borrow.
        unsafe { self.state.as_mut() }
    }
}

impl Drop for StateGuard {
    #[inline(always)]
    fn drop(&mut self) {
        // SAFETY: this thread's block, as in `enter` (a guard is not Send).
        unsafe { &*self.tls }.guard.set(false);
    }
}

/// Every ring that has items or may still get some.
pub(crate) static REGISTRY: SpinLock<Vec<Arc<ThreadRing>>> = SpinLock::new(Vec::new());

/// A late state (see the module docs), owned by this list from its
/// creation: only the writer frees it, once its thread is gone.
pub(crate) struct LateState(NonNull<ThreadState>);

// SAFETY: the state is used by its thread until that thread ends, and then
// only by the writer (`reap_late`), never by both.
unsafe impl Send for LateState {}

/// The late states whose threads may still be running.
pub(crate) static LATE: SpinLock<Vec<LateState>> = SpinLock::new(Vec::new());

/// Sets the guard; false when it was already set (a nested call).
#[inline(always)]
pub(crate) fn enter() -> bool {
    TLS.with(|t| !t.guard.replace(true))
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
    TLS.with(|t| t.guard.set(false));
}

/// Marks this thread as the recorder's own for good (the writer thread).
pub(crate) fn ignore_this_thread() {
    TLS.with(|t| t.guard.set(true));
}

/// Makes this thread's state; without memory for it (see the module
/// docs) marks the thread as unrecorded and returns `None`.
#[cold]
fn create(block: &Tls) -> Option<NonNull<ThreadState>> {
    let late = block.exited.get();
    let parts = (!crate::memory::short())
        .then(|| {
            Some((
                Ring::with_producer(gettid() as u32, FIRST_RING, LARGEST_RING)?,
                memtrace_unwind::StackMemo::try_new()?,
            ))
        })
        .flatten();
    let Some((producer, memo)) = parts else {
        block.state.set(UNRECORDED);
        return None;
    };
    let ring = Arc::clone(producer.ring());
    if !late {
        // Until the start item is pushed the writer must not pass time 0.
        ring.in_flight.0.store(0, Ordering::SeqCst);
    }
    REGISTRY.lock().push(Arc::clone(&ring));
    let state = NonNull::from(Box::leak(Box::new(ThreadState {
        producer,
        last_ts: 0,
        stacks: StackCache::new(),
        memo,
        frames: Box::new([0; crate::call::MAX_FRAMES]),
    })));
    block.state.set(state.as_ptr());
    if late {
        LATE.lock().push(LateState(state));
    } else {
        register_exit_hook(state.as_ptr());
        // SAFETY: just made; this thread holds the guard and no other
        // reference to the state exists yet.
        let state = unsafe { &mut *state.as_ptr() };
        push(state, ThreadItem::Start { ts: ticks() });
        ring.in_flight.0.store(u64::MAX, Ordering::Release);
    }
    Some(state)
}

/// Pushes an item, waiting for the writer while the ring is full at its
/// largest size. When the ring is full and cannot grow for want of memory,
/// a heap event waits once for the writer to make room (it always
/// consumes, memory or not) and is dropped and counted only if there is
/// still none; a thread's start or end waits for the writer then, so that
/// the thread's items stay whole.
#[inline]
pub(crate) fn push(state: &mut ThreadState, item: ThreadItem) {
    state.last_ts = item.ts();
    let mut waited = false;
    loop {
        match state.producer.push(item) {
            Push::Done => break,
            Push::NoMemory if waited && matches!(item, ThreadItem::Heap(_)) => {
                crate::memory::dropped(1);
                return;
            }
            Push::Full | Push::NoMemory => {}
        }
        if !session::is_recording() {
            // Recording ended (the disk is full, the process is exiting):
            // nobody drains this ring any more, so the event is dropped
            // rather than the program made to wait for ever.
            return;
        }
        session::ring_full(&state.producer);
        waited = true;
    }
    // Wake the writer every half ring of items, without reading the
    // writer's position (a cache line the writer owns).
    let pushed = state.producer.pushed();
    if pushed & (state.producer.capacity() / 2 - 1) == 0 {
        session::ring_half_full();
    }
}

/// Forgets this thread's state (in a forked child: the ring belongs to the
/// parent), or that it could not have one. The state is leaked, never
/// freed, so nothing dangles.
pub(crate) fn forget_current() {
    TLS.with(|t| t.state.set(ptr::null_mut()));
}

/// Frees the late states whose threads are gone and closes their rings (the
/// writer, each turn; see the module docs).
pub(crate) fn reap_late() {
    let gone: Vec<LateState> = {
        let mut late = LATE.lock();
        if late.is_empty() {
            return;
        }
        let mut gone = Vec::new();
        let mut i = 0;
        while i < late.len() {
            // SAFETY: listed states are freed only here, by the writer.
            let tid = unsafe { late[i].0.as_ref() }.ring().tid;
            if thread_is_gone(tid) {
                gone.push(late.swap_remove(i));
            } else {
                i += 1;
            }
        }
        gone
    };
    for LateState(state) in gone {
        // SAFETY: made by Box::leak in `create`; its thread has ended, so
        // nothing else uses it, and it was removed from LATE above.
        let state = unsafe { Box::from_raw(state.as_ptr()) };
        state.ring().closed.store(true, Ordering::Release);
    }
}

/// Forgets the late states (in a forked child: their threads are the
/// parent's). They are leaked, never freed.
pub(crate) fn forget_late() {
    std::mem::forget(std::mem::take(&mut *LATE.lock()));
}

/// True when thread `tid` of this process no longer exists.
fn thread_is_gone(tid: u32) -> bool {
    // SAFETY: tgkill with signal 0 only checks that the thread exists.
    let rc = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid as libc::pid_t, 0) };
    rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// The calling thread's id (the one place the recorder asks for it).
pub(crate) fn gettid() -> libc::pid_t {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
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

/// Runs when a thread ends: writes its end marker, closes its ring and frees
/// the rest of its state.
unsafe extern "C" fn thread_exit(value: *mut libc::c_void) {
    let nested = !enter();
    let state = value as *mut ThreadState;
    TLS.with(|t| {
        if t.state.get() == state {
            t.state.set(ptr::null_mut());
        }
        t.exited.set(true);
    });
    // SAFETY: `value` is the Box pointer set in register_exit_hook, given back
    // once by glibc; no StateGuard is alive on this thread (key destructors
    // run after the thread's code), and the TLS no longer points to it.
    let mut state = unsafe { Box::from_raw(state) };
    if session::is_recording() {
        let prev = state.last_ts;
        session::mark_in_flight(state.ring(), prev);
        let ts = ticks();
        push(&mut state, ThreadItem::End { ts });
        state.ring().in_flight.0.store(u64::MAX, Ordering::Release);
    }
    state.ring().closed.store(true, Ordering::Release);
    drop(state);
    memtrace_unwind::release_thread_cache();
    if !nested {
        leave();
    }
}

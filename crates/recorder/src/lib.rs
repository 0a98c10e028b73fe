//! The memtrace recorder: records every heap call with its stack into a trace.
//!
//! Two front ends share it: the `LD_PRELOAD` library (crate
//! `memtrace-preload`, which drives [`Call`] from its C hooks) and the Rust
//! [`Tracking`] global allocator. Each heap call costs the recorder an unwind
//! (framehop over in-memory `.eh_frame`), a lookup in a per-thread stack
//! cache and a push into a per-thread ring; a writer thread drains the rings,
//! encodes and compresses them (`memtrace-format`). No lock and no system
//! call on the fast path; nothing the program computes changes.
//!
//! ```no_run
//! use memtrace_recorder::{phase, stats, Tracking};
//! use std::alloc::System;
//!
//! #[global_allocator]
//! static ALLOC: Tracking<System> = Tracking::new(System);
//!
//! fn main() {
//!     phase("build");
//!     let v: Vec<u64> = (0..1000).collect();
//!     phase("sum");
//!     println!("{} {}", v.iter().sum::<u64>(), stats().peak_bytes);
//! }
//! ```
//!
//! # Leak checks and heap statistics in tests
//!
//! With [`Tracking`] as the global allocator of a test binary,
//! [`assert_no_leaks`] fails a test whose code leaves blocks allocated, and
//! names each with its size and allocation stack (`file:line`);
//! [`heap_stats`] and [`LeakScope`] count the blocks and bytes allocated and
//! freed inside a scope. A scope counts only the allocations of the thread
//! that opened it, so tests running in parallel do not disturb each other.
//! [`Tracking::untraced`] does all this without writing a trace file.
//!
//! ```
//! use memtrace_recorder::{assert_no_leaks, heap_stats, Tracking};
//! use std::alloc::System;
//!
//! #[global_allocator]
//! static ALLOC: Tracking<System> = Tracking::untraced(System);
//!
//! fn main() {
//!     // In a #[test]: passes, everything allocated inside is freed.
//!     let total = assert_no_leaks(|| (1..=10u64).collect::<Vec<_>>().iter().sum::<u64>());
//!     assert_eq!(total, 55);
//!
//!     let (_, stats) = heap_stats(|| vec![0u8; 1000].len());
//!     assert_eq!((stats.blocks_allocated, stats.bytes_allocated), (1, 1000));
//!     assert_eq!(stats.live_bytes(), 0);
//! }
//! ```
//!
//! A leak fails with a message like this one:
//!
//! ```text
//! 1000 bytes in 1 block allocated in the scope were not freed
//! 1000 bytes in 1 block allocated
//!     at mytests::leaky (tests/cache.rs:12)
//!     by mytests::leaky_cache_is_caught (tests/cache.rs:30)
//! ```
#![deny(missing_docs)]

mod call;
mod clock;
mod crash;
mod intern;
mod live;
mod maps;
mod memory;
mod modules;
mod output;
mod own_memory;
mod pace;
mod phase_counters;
mod resources;
mod ring;
mod scan;
mod scope;
mod session;
mod sink;
mod spin;
mod stats;
mod thread;
mod tracking;
mod wake;

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

pub use call::{finish, Call, MAX_FRAMES};
pub use memory::memory_short;
pub use memtrace_format::{Func, Op, RecorderKind};
pub use own_memory::{forget_own_mapping, note_own_mapping};
pub use scope::{
    assert_no_leaks, heap_stats, HeapStats, LeakScope, LeakedBlocks, Leaks, StackFrame,
};
pub use session::{abandon, exec_failed, finish_before_exec, start, start_early, warn, Config};
pub use spin::RawLock;
pub use stats::{stats, Stats};
pub use tracking::Tracking;

/// Marks the start of a named phase; it lands in the trace with the
/// process's page-fault and context-switch counts at that moment, and the
/// performance counters `MEMTRACE_PHASE_COUNTERS` asks for (see
/// `phase_counters`). An empty name ends the current phase; a phase still
/// open when recording ends (exit, exec) is ended then, the same way.
pub fn phase(name: &str) {
    if !session::is_recording() {
        return;
    }
    // The thread's recording state is made before the counters are read,
    // not inside the phase.
    let Ok(mut state) = thread::StateGuard::enter() else {
        return;
    };
    let mut counters = resources::rusage_counters();
    phase_counters::read_into(&mut counters);
    session::push_phase(&mut state, name, counters);
}

/// Call after `dlopen`/`dlclose`: the unwinder and the trace learn the new module list.
pub fn modules_changed() {
    let state = session::is_recording()
        .then(|| thread::StateGuard::enter().ok())
        .flatten();
    // Without a state (not recording, or a nested call from inside the
    // recorder, which never loads modules itself) the guard is set alone.
    let nested = state.is_none() && !thread::enter();
    memtrace_unwind::modules_changed();
    if let Some(mut state) = state {
        session::rescan_modules(&mut state);
    } else if !nested {
        thread::leave();
    }
}

/// How stacks are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnwindMode {
    /// framehop, memoized per thread (the default).
    Memo,
    /// framehop on every call (`MEMTRACE_UNWIND=fast`).
    Fast,
    /// libgcc's `_Unwind_Backtrace` (`MEMTRACE_UNWIND=libgcc`): slow, the reference.
    Libgcc,
}

static UNWIND_MODE: AtomicU8 = AtomicU8::new(0);
static TIMING: AtomicBool = AtomicBool::new(true);
static LEAK_SCAN: AtomicBool = AtomicBool::new(true);

/// True unless `MEMTRACE_LEAK_SCAN=0` turned off the exit-time reachability
/// scan (and the live-block table the writer keeps for it).
pub(crate) fn leak_scan_enabled() -> bool {
    LEAK_SCAN.load(Ordering::Relaxed)
}

/// True unless `MEMTRACE_TIMING=0` turned off the latency measurement (each
/// call then reads the clock once instead of twice).
#[inline(always)]
pub(crate) fn timing() -> bool {
    TIMING.load(Ordering::Relaxed)
}
static OWN_START: AtomicU64 = AtomicU64::new(0);
static OWN_END: AtomicU64 = AtomicU64::new(0);

#[inline(always)]
pub(crate) fn unwind_mode() -> UnwindMode {
    match UNWIND_MODE.load(Ordering::Relaxed) {
        1 => UnwindMode::Fast,
        2 => UnwindMode::Libgcc,
        _ => UnwindMode::Memo,
    }
}

/// True when `MEMTRACE_DISABLE` is set to anything but empty or `0`: the
/// program keeps running through the hooks, but nothing is recorded.
pub fn disabled_by_env() -> bool {
    std::env::var_os("MEMTRACE_DISABLE").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Reads options shared by both front ends from the environment:
/// `MEMTRACE_UNWIND=fast|libgcc` picks an unwinder other than the memoized one.
pub fn read_env_options() {
    let mode = match std::env::var_os("MEMTRACE_UNWIND")
        .as_deref()
        .and_then(|v| v.to_str())
    {
        Some("fast") => 1,
        Some("libgcc") => 2,
        _ => 0,
    };
    UNWIND_MODE.store(mode, Ordering::Relaxed);
    let timing = std::env::var_os("MEMTRACE_TIMING").is_none_or(|v| v != "0");
    TIMING.store(timing, Ordering::Relaxed);
    let leak_scan = std::env::var_os("MEMTRACE_LEAK_SCAN").is_none_or(|v| v != "0");
    LEAK_SCAN.store(leak_scan, Ordering::Relaxed);
    phase_counters::read_env();
}

/// Declares the address range of the recorder's own code, whose frames are
/// dropped from the top of every stack (the preload library sets it).
pub fn set_own_code(range: Range<u64>) {
    OWN_START.store(range.start, Ordering::Relaxed);
    OWN_END.store(range.end, Ordering::Relaxed);
}

#[inline(always)]
pub(crate) fn own_code() -> Range<u64> {
    OWN_START.load(Ordering::Relaxed)..OWN_END.load(Ordering::Relaxed)
}

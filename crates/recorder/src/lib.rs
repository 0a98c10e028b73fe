#![doc = include_str!("../README.md")]
//!
//! ## The API
//!
//! - [`Tracking`]: the global allocator ([`Tracking::new`] records a
//!   trace, [`Tracking::untraced`] does not).
//! - [`stats()`] and [`Stats`]: the process's heap counters; [`phase`]: a
//!   named phase in the trace; [`modules_changed`]: call after loading or
//!   unloading a shared library yourself (`dlopen`), so that stacks through
//!   it unwind.
//! - [`assert_no_leaks`], [`heap_stats`], [`LeakScope`] (with [`HeapStats`],
//!   [`Leaks`], [`LeakedBlocks`], [`StackFrame`]): checks of a scope of code.
//! - [`is_installed`]: whether [`Tracking`] is the global allocator, which
//!   the checks and [`stats()`] require (they panic otherwise).
//!
//! The rest of the crate is the recorder that the `LD_PRELOAD` library
//! (crate `memtrace-preload`) drives from its C hooks, through a hidden
//! module that is not part of this API.
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

pub use scope::{
    assert_no_leaks, heap_stats, is_installed, HeapStats, LeakScope, LeakedBlocks, Leaks,
    StackFrame,
};
pub use stats::{stats, Stats};
pub use tracking::Tracking;

/// The `LD_PRELOAD` library's entry points into the recorder (crate
/// `memtrace-preload`): not part of this crate's API, and free to change in
/// any release. A Rust program uses [`Tracking`] instead.
#[doc(hidden)]
pub mod plumbing {
    use std::ops::Range;
    use std::sync::atomic::Ordering;

    pub use crate::call::{finish, Call, MAX_FRAMES};
    pub use crate::memory::memory_short;
    pub use crate::own_memory::{forget_own_mapping, note_own_mapping};
    pub use crate::session::{
        abandon, exec_failed, finish_before_exec, start, start_early, warn, Config,
    };
    pub use crate::spin::RawLock;
    pub use memtrace_format::{Func, Op, RecorderKind};

    use crate::{phase_counters, LEAK_SCAN, OWN_END, OWN_START, TIMING, UNWIND_MODE};

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
}

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

#[inline(always)]
pub(crate) fn own_code() -> Range<u64> {
    OWN_START.load(Ordering::Relaxed)..OWN_END.load(Ordering::Relaxed)
}

//! Performance counters read at every phase boundary.
//!
//! `MEMTRACE_PHASE_COUNTERS` (`all`, or a comma list of `perf stat` names
//! such as `cycles,L1-dcache-load-misses,minor-faults`) asks the recorder to
//! open those counters at the first `memtrace_phase` call and to read them at
//! every boundary, so that each phase gets its own hardware counts.
//!
//! The counters are opened on the thread that marks the first phase, with
//! `inherit`: they count that thread and every thread it creates afterwards,
//! the latter added in when they exit (as `perf stat` counts a process).
//! Threads that were already running are not counted, so the recorder's own
//! writer thread is left out.
//!
//! Each event lands in the phase record as `perf:NAME` (raw count),
//! `perf:NAME:enabled-ns` and `perf:NAME:running-ns` (for scaling a
//! multiplexed count per phase), plus `perf:NAME:user-only` when the kernel
//! allowed user space only; or `perf:NAME:errno` when it could not be
//! opened or read, with `perf:paranoid` beside it. A process made by `fork`
//! opens its own counters at its first boundary. The state's lock is held
//! across `fork` (see `session::before_fork`), so a child never inherits it
//! locked.

use memtrace_counters::{open, paranoid_level, read, EventKind, Opened, Start};

use crate::spin::{SpinGuard, SpinLock};

/// What the environment asked for and what was opened.
enum State {
    /// No counters asked for.
    Off,
    /// Asked for; opened at the first boundary.
    Wanted(Vec<EventKind>),
    /// Opened (or refused, with the errno) by process `pid`.
    Open {
        pid: u32,
        wanted: Vec<EventKind>,
        events: Vec<(EventKind, Result<Opened, i32>)>,
        paranoid: Option<i32>,
    },
}

static STATE: SpinLock<State> = SpinLock::new(State::Off);

/// Reads `MEMTRACE_PHASE_COUNTERS`; unknown names are reported on stderr
/// once and skipped.
pub(crate) fn read_env() {
    let Some(value) = std::env::var_os("MEMTRACE_PHASE_COUNTERS") else {
        return;
    };
    let value = value.to_string_lossy();
    let mut wanted = Vec::new();
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if name == "all" {
            wanted.extend(EventKind::ALL);
        } else if let Some(kind) = EventKind::from_name(name) {
            wanted.push(kind);
        } else {
            eprintln!("memtrace: MEMTRACE_PHASE_COUNTERS: unknown counter {name:?}, skipped");
        }
    }
    wanted.dedup();
    if !wanted.is_empty() {
        *lock() = State::Wanted(wanted);
    }
}

fn lock() -> SpinGuard<'static, State> {
    STATE.lock()
}

/// Takes the state's lock before `fork`, so that no other thread holds it
/// when the process is copied.
pub(crate) fn lock_for_fork() {
    STATE.lock_raw();
}

/// Releases the lock taken by [`lock_for_fork`], in the parent and the child.
pub(crate) fn unlock_after_fork() {
    STATE.unlock_raw();
}

/// Appends the counters' readings to a phase record's `counters`, opening
/// them first if this is the process's first boundary.
pub(crate) fn read_into(counters: &mut Vec<(String, u64)>) {
    let mut state = lock();
    let pid = std::process::id();
    let wanted = match &*state {
        State::Off => return,
        State::Wanted(wanted) => Some(wanted.clone()),
        State::Open {
            pid: owner, wanted, ..
        } if *owner != pid => Some(wanted.clone()),
        State::Open { .. } => None,
    };
    if let Some(wanted) = wanted {
        let events = wanted
            .iter()
            .map(|&kind| {
                let opened = open(kind, Start::Now).map_err(|e| e.raw_os_error().unwrap_or(0));
                (kind, opened)
            })
            .collect();
        *state = State::Open {
            pid,
            wanted,
            events,
            paranoid: paranoid_level(),
        };
    }
    let State::Open {
        events, paranoid, ..
    } = &mut *state
    else {
        return;
    };
    let mut refused = false;
    for (kind, opened) in events.iter_mut() {
        let name = kind.name();
        let reading = match opened {
            Ok(opened) => read(opened)
                .map(|r| (r, opened.user_only))
                .map_err(|e| e.raw_os_error().unwrap_or(0)),
            Err(errno) => Err(*errno),
        };
        match reading {
            Ok((r, user_only)) => {
                counters.push((format!("perf:{name}"), r.raw));
                counters.push((format!("perf:{name}:enabled-ns"), r.time_enabled_ns));
                counters.push((format!("perf:{name}:running-ns"), r.time_running_ns));
                if user_only {
                    counters.push((format!("perf:{name}:user-only"), 1));
                }
            }
            Err(errno) => {
                refused = true;
                counters.push((format!("perf:{name}:errno"), errno as u64));
            }
        }
    }
    if let (true, Some(level)) = (refused, *paranoid) {
        // Stored as two's complement: perf_event_paranoid may be -1.
        counters.push(("perf:paranoid".into(), level as i64 as u64));
    }
}

//! The performance counters memtrace knows, by their `perf stat` names.
//!
//! One small crate shared by the two places that count: `memtrace cache`
//! (counters on a child program, from its `exec` on) and the recorder
//! (counters on its own process, read at every `memtrace_phase`). It names
//! the events ([`EventKind`]), opens them ([`open`]) through the
//! `perf-event2` crate, reads them with their multiplexing times
//! ([`read`]), and says in words why the kernel refused one
//! ([`explain_open_error`]), so that a counter that could not be counted is
//! never shown as a zero.

#![deny(missing_docs)]

use std::io;

use perf_event::events::{Cache, CacheId, CacheOp, CacheResult, Event, Hardware, Software};
use perf_event::{Builder, Counter};

/// Whether an event is counted by the CPU or by the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A CPU performance-monitoring unit (PMU) counter.
    Hardware,
    /// A kernel software event.
    Software,
}

/// The events memtrace counts, in display order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// CPU cycles.
    Cycles,
    /// Instructions retired.
    Instructions,
    /// Cache references (usually last-level).
    CacheReferences,
    /// Cache misses (usually last-level).
    CacheMisses,
    /// L1 data cache loads.
    L1dLoads,
    /// L1 data cache load misses.
    L1dLoadMisses,
    /// Last-level cache loads.
    LlcLoads,
    /// Last-level cache load misses.
    LlcLoadMisses,
    /// Data TLB load misses.
    DtlbLoadMisses,
    /// Minor page faults.
    MinorFaults,
    /// Major page faults.
    MajorFaults,
    /// Context switches.
    ContextSwitches,
    /// Task clock, in nanoseconds.
    TaskClock,
}

impl EventKind {
    /// Every event, in display order.
    pub const ALL: [EventKind; 13] = [
        EventKind::Cycles,
        EventKind::Instructions,
        EventKind::CacheReferences,
        EventKind::CacheMisses,
        EventKind::L1dLoads,
        EventKind::L1dLoadMisses,
        EventKind::LlcLoads,
        EventKind::LlcLoadMisses,
        EventKind::DtlbLoadMisses,
        EventKind::MinorFaults,
        EventKind::MajorFaults,
        EventKind::ContextSwitches,
        EventKind::TaskClock,
    ];

    /// The name `perf stat` uses.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Cycles => "cycles",
            EventKind::Instructions => "instructions",
            EventKind::CacheReferences => "cache-references",
            EventKind::CacheMisses => "cache-misses",
            EventKind::L1dLoads => "L1-dcache-loads",
            EventKind::L1dLoadMisses => "L1-dcache-load-misses",
            EventKind::LlcLoads => "LLC-loads",
            EventKind::LlcLoadMisses => "LLC-load-misses",
            EventKind::DtlbLoadMisses => "dTLB-load-misses",
            EventKind::MinorFaults => "minor-faults",
            EventKind::MajorFaults => "major-faults",
            EventKind::ContextSwitches => "context-switches",
            EventKind::TaskClock => "task-clock-ns",
        }
    }

    /// The event called `name` (as [`EventKind::name`] spells it).
    pub fn from_name(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Hardware or software.
    pub fn source(self) -> Source {
        match self {
            EventKind::MinorFaults
            | EventKind::MajorFaults
            | EventKind::ContextSwitches
            | EventKind::TaskClock => Source::Software,
            _ => Source::Hardware,
        }
    }

    fn builder(self) -> Builder<'static> {
        fn cache(which: CacheId, result: CacheResult) -> Cache {
            Cache {
                which,
                operation: CacheOp::READ,
                result,
            }
        }
        fn make(event: impl Event + 'static) -> Builder<'static> {
            Builder::new(event)
        }
        match self {
            EventKind::Cycles => make(Hardware::CPU_CYCLES),
            EventKind::Instructions => make(Hardware::INSTRUCTIONS),
            EventKind::CacheReferences => make(Hardware::CACHE_REFERENCES),
            EventKind::CacheMisses => make(Hardware::CACHE_MISSES),
            EventKind::L1dLoads => make(cache(CacheId::L1D, CacheResult::ACCESS)),
            EventKind::L1dLoadMisses => make(cache(CacheId::L1D, CacheResult::MISS)),
            EventKind::LlcLoads => make(cache(CacheId::LL, CacheResult::ACCESS)),
            EventKind::LlcLoadMisses => make(cache(CacheId::LL, CacheResult::MISS)),
            EventKind::DtlbLoadMisses => make(cache(CacheId::DTLB, CacheResult::MISS)),
            EventKind::MinorFaults => make(Software::PAGE_FAULTS_MIN),
            EventKind::MajorFaults => make(Software::PAGE_FAULTS_MAJ),
            EventKind::ContextSwitches => make(Software::CONTEXT_SWITCHES),
            EventKind::TaskClock => make(Software::TASK_CLOCK),
        }
    }
}

/// When an opened counter starts counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Disabled until this process calls `exec`; for a child about to be
    /// spawned, which inherits it (this process never execs, so its own
    /// copy stays disabled).
    OnExec,
    /// Counting from now, for this process.
    Now,
}

/// An opened counter and whether it was limited to user space.
#[derive(Debug)]
pub struct Opened {
    counter: Counter,
    /// True when the kernel counts only user space (`perf_event_paranoid`
    /// forbade kernel counting).
    pub user_only: bool,
}

/// Opens `kind` on this thread, inherited by threads and children created
/// afterwards (the kernel adds their counts back when they exit): kernel and
/// user space first, user space only if that is refused.
pub fn open(kind: EventKind, start: Start) -> io::Result<Opened> {
    let attempt = |exclude_kernel: bool| {
        let mut builder = kind.builder();
        builder
            .observe_self()
            .any_cpu()
            .inherit(true)
            .exclude_kernel(exclude_kernel)
            .exclude_hv(true);
        if start == Start::OnExec {
            builder.enable_on_exec(true);
        }
        let mut counter = builder.build()?;
        if start == Start::Now {
            counter.enable()?;
        }
        Ok::<_, io::Error>(counter)
    };
    match attempt(false) {
        Ok(counter) => Ok(Opened {
            counter,
            user_only: false,
        }),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) => attempt(true)
            .map(|counter| Opened {
                counter,
                user_only: true,
            }),
        Err(e) => Err(e),
    }
}

/// A counter reading with its multiplexing times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reading {
    /// The raw count.
    pub raw: u64,
    /// Nanoseconds the event was enabled.
    pub time_enabled_ns: u64,
    /// Nanoseconds it was actually on a counter.
    pub time_running_ns: u64,
}

/// Reads an opened counter.
pub fn read(opened: &mut Opened) -> io::Result<Reading> {
    let data = opened.counter.read_full()?;
    Ok(Reading {
        raw: data.count(),
        time_enabled_ns: data.time_enabled().map_or(0, |d| d.as_nanos() as u64),
        time_running_ns: data.time_running().map_or(0, |d| d.as_nanos() as u64),
    })
}

/// A counted value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// The raw count.
    pub raw: u64,
    /// The count scaled for multiplexing: `raw * enabled / running`.
    pub scaled: u64,
    /// Nanoseconds the event was enabled.
    pub time_enabled_ns: u64,
    /// Nanoseconds it was actually on a counter.
    pub time_running_ns: u64,
    /// True when the kernel counted only user space.
    pub user_only: bool,
}

impl Measured {
    /// The share of the enabled time the event was counting (1.0: not multiplexed).
    pub fn running_share(&self) -> f64 {
        if self.time_enabled_ns == 0 {
            1.0
        } else {
            self.time_running_ns as f64 / self.time_enabled_ns as f64
        }
    }
}

/// What became of one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Counted.
    Measured(Measured),
    /// Opened, but never scheduled on a counter while enabled: no value.
    NeverRan,
    /// Could not be opened, or read; why.
    Unavailable(String),
}

impl Outcome {
    /// The outcome of a count of `reading` (a whole run, or the difference
    /// of two readings): scaled for multiplexing, or never run.
    pub fn of(reading: Reading, user_only: bool) -> Outcome {
        let Reading {
            raw,
            time_enabled_ns: enabled,
            time_running_ns: running,
        } = reading;
        if enabled > 0 && running == 0 {
            return Outcome::NeverRan;
        }
        let scaled = if running > 0 && running < enabled {
            (raw as u128 * enabled as u128 / running as u128) as u64
        } else {
            raw
        };
        Outcome::Measured(Measured {
            raw,
            scaled,
            time_enabled_ns: enabled,
            time_running_ns: running,
            user_only,
        })
    }

    /// The scaled count, if measured.
    pub fn value(&self) -> Option<u64> {
        match self {
            Outcome::Measured(m) => Some(m.scaled),
            _ => None,
        }
    }
}

/// Reads `/proc/sys/kernel/perf_event_paranoid`.
pub fn paranoid_level() -> Option<i32> {
    std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Why `perf_event_open` refused `kind` with `errno`, in words.
pub fn explain_errno(kind: EventKind, errno: i32, paranoid: Option<i32>) -> String {
    let name = errno_name(errno);
    let paranoid_text = paranoid.map_or_else(
        || "perf_event_paranoid unreadable".to_string(),
        |p| format!("perf_event_paranoid={p}"),
    );
    match errno {
        libc::ENOENT | libc::EOPNOTSUPP if kind.source() == Source::Hardware => format!(
            "{name}: no PMU: this looks like a VM without a virtual PMU \
             (the kernel knows no such hardware event)"
        ),
        libc::ENOENT | libc::EOPNOTSUPP => {
            format!("{name}: this kernel does not support the event")
        }
        libc::EACCES | libc::EPERM => {
            format!("{name}: not permitted ({paranoid_text}; needs CAP_PERFMON or a lower value)")
        }
        libc::ENODEV => format!("{name}: the CPU has no such event"),
        libc::ENOSYS => format!("{name}: this kernel has no perf_event_open"),
        libc::EMFILE => format!("{name}: too many open files"),
        _ => format!(
            "{name}: {} ({paranoid_text})",
            io::Error::from_raw_os_error(errno)
        ),
    }
}

/// Why `perf_event_open` refused `kind`, in words.
pub fn explain_open_error(kind: EventKind, err: &io::Error, paranoid: Option<i32>) -> String {
    match err.raw_os_error() {
        Some(errno) => explain_errno(kind, errno, paranoid),
        None => format!("{err}"),
    }
}

fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::ENOENT => "ENOENT",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::ENODEV => "ENODEV",
        libc::ENOSYS => "ENOSYS",
        libc::EMFILE => "EMFILE",
        libc::EINVAL => "EINVAL",
        libc::EBUSY => "EBUSY",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(EventKind::from_name("bogus"), None);
    }

    #[test]
    fn multiplexed_counts_are_scaled_and_unscheduled_ones_have_no_value() {
        let half = Reading {
            raw: 1000,
            time_enabled_ns: 200,
            time_running_ns: 100,
        };
        assert_eq!(Outcome::of(half, false).value(), Some(2000));
        let never = Reading {
            raw: 0,
            time_enabled_ns: 200,
            time_running_ns: 0,
        };
        assert_eq!(Outcome::of(never, false), Outcome::NeverRan);
        assert_eq!(Outcome::of(Reading::default(), false).value(), Some(0));
    }

    #[test]
    fn page_faults_of_this_process_are_counted_from_now() {
        const PAGES: usize = 1000;
        let page = 4096;
        // SAFETY: a private anonymous mapping of our own, written within its
        // bounds and unmapped at the end; no huge pages, so one fault a page.
        let faults = unsafe {
            let len = PAGES * page;
            let p = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            libc::madvise(p, len, libc::MADV_NOHUGEPAGE);
            let mut opened = open(EventKind::MinorFaults, Start::Now).expect("minor-faults");
            let before = read(&mut opened).unwrap().raw;
            for i in 0..PAGES {
                std::ptr::write_volatile((p as *mut u8).add(i * page), 1);
            }
            let after = read(&mut opened).unwrap().raw;
            libc::munmap(p, len);
            after - before
        };
        // One fault per page written; the reads themselves fault nothing.
        assert!(
            (PAGES as u64..PAGES as u64 + 5).contains(&faults),
            "{faults}"
        );
    }
}

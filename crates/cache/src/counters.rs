//! Hardware and software counters for a child program, from `exec` on.
//!
//! The counters are opened on this process, disabled, with `inherit` and
//! `enable_on_exec`: the child created next inherits them and they start
//! counting when it calls `exec`, so nothing of ours is counted. The child's
//! threads and children inherit them in turn, and the kernel adds their
//! counts back into ours when they exit. This process never execs, so its own
//! copies stay disabled.

use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::process::{Command, ExitStatus};

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

/// The events `memtrace cache` asks for, in display order.
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

/// Which events to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The events, in display order.
    pub events: Vec<EventKind>,
}

impl Plan {
    /// Every event of [`EventKind::ALL`].
    pub fn all() -> Plan {
        Plan {
            events: EventKind::ALL.to_vec(),
        }
    }
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
    /// True when the kernel counted only user space (`perf_event_paranoid`
    /// forbade kernel counting).
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

/// One event's result.
#[derive(Debug, Clone, PartialEq)]
pub struct EventResult {
    /// The event.
    pub kind: EventKind,
    /// Its `perf stat` name.
    pub name: &'static str,
    /// Counted, or why not.
    pub outcome: Outcome,
}

impl EventResult {
    /// The scaled count, if measured.
    pub fn value(&self) -> Option<u64> {
        match &self.outcome {
            Outcome::Measured(m) => Some(m.scaled),
            _ => None,
        }
    }
}

/// A counted run of a program.
#[derive(Debug)]
pub struct CountedRun {
    /// How the program ended.
    pub status: ExitStatus,
    /// Every planned event, in plan order.
    pub events: Vec<EventResult>,
    /// `/proc/sys/kernel/perf_event_paranoid`, if readable.
    pub paranoid: Option<i32>,
}

impl CountedRun {
    /// The result for `kind`, if it was planned.
    pub fn get(&self, kind: EventKind) -> Option<&EventResult> {
        self.events.iter().find(|e| e.kind == kind)
    }

    /// The scaled count of `kind`, if measured.
    pub fn value(&self, kind: EventKind) -> Option<u64> {
        self.get(kind).and_then(EventResult::value)
    }

    /// True when at least one hardware event was measured.
    pub fn any_hardware(&self) -> bool {
        self.events
            .iter()
            .any(|e| e.kind.source() == Source::Hardware && e.value().is_some())
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

/// Why `perf_event_open` refused `kind`, in words.
pub fn explain_open_error(kind: EventKind, err: &io::Error, paranoid: Option<i32>) -> String {
    let errno = err.raw_os_error().unwrap_or(0);
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
        _ => format!("{name}: {err} ({paranoid_text})"),
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

/// An opened counter and whether it was limited to user space.
struct Opened {
    counter: Counter,
    user_only: bool,
}

/// Opens `kind` on this process, disabled, inherited, enabled on exec:
/// kernel and user space first, user space only if that is refused.
fn open(kind: EventKind) -> io::Result<Opened> {
    let attempt = |exclude_kernel: bool| {
        kind.builder()
            .observe_self()
            .any_cpu()
            .inherit(true)
            .enable_on_exec(true)
            .exclude_kernel(exclude_kernel)
            .exclude_hv(true)
            .build()
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

/// Runs `program args` with the planned counters and waits for it.
///
/// Fails only when the program cannot be started; events that cannot be
/// opened or read are reported in the result.
pub fn run_counted(plan: &Plan, program: &Path, args: &[&OsStr]) -> io::Result<CountedRun> {
    let mut command = Command::new(program);
    command.args(args);
    run_command_counted(plan, &mut command)
}

/// Like [`run_counted`], for a prepared command (environment, directory).
pub fn run_command_counted(plan: &Plan, command: &mut Command) -> io::Result<CountedRun> {
    let paranoid = paranoid_level();
    let mut opened: Vec<(EventKind, Result<Opened, String>)> = plan
        .events
        .iter()
        .map(|&kind| {
            let result = open(kind).map_err(|e| explain_open_error(kind, &e, paranoid));
            (kind, result)
        })
        .collect();
    let status = command.spawn()?.wait()?;
    let events = opened
        .iter_mut()
        .map(|(kind, result)| EventResult {
            kind: *kind,
            name: kind.name(),
            outcome: match result {
                Err(reason) => Outcome::Unavailable(reason.clone()),
                Ok(opened) => read(opened),
            },
        })
        .collect();
    Ok(CountedRun {
        status,
        events,
        paranoid,
    })
}

fn read(opened: &mut Opened) -> Outcome {
    let data = match opened.counter.read_full() {
        Ok(data) => data,
        Err(e) => return Outcome::Unavailable(format!("read failed: {e}")),
    };
    let raw = data.count();
    let enabled = data.time_enabled().map_or(0, |d| d.as_nanos() as u64);
    let running = data.time_running().map_or(0, |d| d.as_nanos() as u64);
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
        user_only: opened.user_only,
    })
}

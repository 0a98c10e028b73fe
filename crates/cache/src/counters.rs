//! The counts of a program's run, from `exec` on: each planned event
//! measured, or unavailable with the reason.
//!
//! The caller runs the program (`memtrace cache` opens the counters
//! through `memtrace-counters` and spawns it); this module only holds
//! what came back.

pub use memtrace_counters::{
    explain_open_error, paranoid_level, EventKind, Measured, Outcome, Source,
};

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
        self.outcome.value()
    }
}

/// A counted run of a program.
#[derive(Debug)]
pub struct CountedRun {
    /// The program's exit code; `None` when a signal ended it.
    pub exit_code: Option<i32>,
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

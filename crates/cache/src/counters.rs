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

pub use memtrace_counters::{
    explain_open_error, paranoid_level, EventKind, Measured, Outcome, Source,
};
use memtrace_counters::{open, read, Opened, Start};

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
            let result =
                open(kind, Start::OnExec).map_err(|e| explain_open_error(kind, &e, paranoid));
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
                Ok(opened) => read_outcome(opened),
            },
        })
        .collect();
    Ok(CountedRun {
        status,
        events,
        paranoid,
    })
}

fn read_outcome(opened: &mut Opened) -> Outcome {
    match read(opened) {
        Ok(reading) => Outcome::of(reading, opened.user_only),
        Err(e) => Outcome::Unavailable(format!("read failed: {e}")),
    }
}

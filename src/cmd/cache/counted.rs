//! Runs a program with hardware and software counters, from `exec` on.
//!
//! The counters are opened on this process, disabled, with `inherit` and
//! `enable_on_exec`: the child created next inherits them and they start
//! counting when it calls `exec`, so nothing of ours is counted. The child's
//! threads and children inherit them in turn, and the kernel adds their
//! counts back into ours when they exit. This process never execs, so its own
//! copies stay disabled.

use std::io;
use std::process::{Command, ExitStatus};

use memtrace_cache::counters::{
    explain_open_error, paranoid_level, CountedRun, EventKind, EventResult, Outcome, Plan,
};
use memtrace_counters::{open, read, Opened, Start};

/// Runs `command` with the planned counters and waits for it; how it
/// ended, and the counts.
///
/// Fails only when the program cannot be started; events that cannot be
/// opened or read are reported in the result.
pub fn run_counted(plan: &Plan, command: &mut Command) -> io::Result<(ExitStatus, CountedRun)> {
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
    let run = CountedRun {
        exit_code: status.code(),
        events,
        paranoid,
    };
    Ok((status, run))
}

fn read_outcome(opened: &mut Opened) -> Outcome {
    match read(opened) {
        Ok(reading) => Outcome::of(reading, opened.user_only),
        Err(e) => Outcome::Unavailable(format!("read failed: {e}")),
    }
}

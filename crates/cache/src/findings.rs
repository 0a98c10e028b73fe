//! Everything one `memtrace cache` run measured, the input of the renderings
//! ([`crate::text`], [`crate::json`]) and of the chart plan
//! ([`crate::chart::plan`]).
//!
//! The caller fills it: it runs the program (counters, cachegrind) and
//! symbolizes the scatter's stacks, neither of which this crate does.

use std::io::Read;
use std::path::PathBuf;

use memtrace_format::{DecodeError, Reader};

use crate::cachegrind::Simulation;
use crate::counters::CountedRun;
use crate::derived::Derived;
use crate::phases::{PhaseCollector, PhaseCounts};
use crate::scatter::{ScatterReplay, StackScatter};

/// One allocation site's scatter, with the site named by the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteScatter {
    /// `function (file:line)`, or however the caller names the stack.
    pub site: String,
    /// The scatter of the site's stack.
    pub scatter: StackScatter,
}

/// What was measured; a part that was not asked for is `None`.
#[derive(Debug, Default)]
pub struct Findings {
    /// The counted run of the program, when one ran.
    pub counted: Option<CountedRun>,
    /// Figures derived from `counted`.
    pub derived: Vec<Derived>,
    /// cachegrind's simulation, or why it failed.
    pub simulated: Option<Result<Simulation, String>>,
    /// Per-phase counts from a trace.
    pub phases: Option<Vec<PhaseCounts>>,
    /// Allocation scatter per site from a trace, in the order of
    /// [`ScatterReplay::finish`].
    pub scatter: Option<Vec<SiteScatter>>,
    /// The trace the phases and scatter come from.
    pub trace: Option<PathBuf>,
}

/// Reads a trace to its end: its phases and the scatter of its stacks
/// (unsymbolized).
pub fn read_trace<R: Read>(
    reader: &mut Reader<R>,
) -> Result<(Vec<PhaseCounts>, Vec<StackScatter>), DecodeError> {
    let mut phases = PhaseCollector::default();
    let mut scatter = ScatterReplay::default();
    while let Some(event) = reader.next_event()? {
        phases.apply(&event);
        scatter.apply(&event);
    }
    Ok((phases.finish(), scatter.finish()))
}

//! Cache locality of a program: what its memory layout costs in cache misses.
//!
//! Three sources, each labelled as what it is, because most virtual machines
//! and CI runners have no hardware performance counters:
//!
//! * [`counters`]: hardware and software counters (`perf_event_open` through
//!   the `perf-event2` crate) for a child program from its `exec` on, with its
//!   threads and children. Every event is either measured, with its
//!   multiplexing scale shown, or unavailable with the exact reason; a zero
//!   that was not measured is never reported. [`derived`] turns the counts
//!   into miss ratios, misses per thousand instructions and IPC.
//! * [`cachegrind`]: *simulated* misses, from the program run under
//!   valgrind's cachegrind (`--cache-sim=yes`), per run and per function.
//! * [`scatter`]: *allocation scatter* from a memtrace trace: per allocation
//!   stack, the cache lines and pages its live blocks touch against the
//!   minimum if they were packed, and the distance between consecutive
//!   allocations.
//!
//! [`phases`] splits a trace's phase counters (`memtrace_phase("name")`) into
//! per-phase deltas, and [`chart`] draws misses as an SVG bar chart.
//!
//! The crate does not symbolize (callers map stack ids to sites) and runs a
//! program only in [`counters::run_counted`] and [`cachegrind::simulate`].
//!
//! ```no_run
//! use memtrace_cache::counters::{run_counted, Plan};
//! let run = run_counted(&Plan::all(), "ls".as_ref(), &[]).unwrap();
//! for event in &run.events {
//!     println!("{}: {:?}", event.name, event.outcome);
//! }
//! ```

#![deny(missing_docs)]

pub mod cachegrind;
pub mod chart;
pub mod counters;
pub mod derived;
pub mod phases;
pub mod scatter;

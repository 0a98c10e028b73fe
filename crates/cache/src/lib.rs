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
//! per-phase deltas. [`chart`] plans the bar chart of one run's misses and
//! [`compare`] that of runs compared in pairs, per element; `memtrace-plot`
//! draws both.
//!
//! The report: [`findings::Findings`] holds what one `memtrace cache` run
//! measured, [`text`] renders it for people and [`json`] as typed structs
//! serialized with serde (schema `memtrace-cache/1`).
//!
//! The crate runs no program and does not symbolize: the caller runs the
//! program with counters or under cachegrind and hands over the counts and
//! cachegrind's output, and maps stack ids to sites.
//!
//! ```
//! use memtrace_cache::cachegrind::parse;
//! use memtrace_cache::findings::Findings;
//! use memtrace_cache::json::CacheReport;
//!
//! let out = "events: Ir Dr Dw D1mr D1mw DLmr DLmw\nfn=main\n1 10 4 2 1 0 1 0\nsummary: 10 4 2 1 0 1 0\n";
//! let findings = Findings {
//!     simulated: Some(Ok(parse(out).unwrap())),
//!     ..Findings::default()
//! };
//! let text = memtrace_cache::text::render_text(&findings, 10);
//! assert!(text.contains("D1 misses (simulated)"));
//! let json = serde_json::to_value(CacheReport::of(&findings)).unwrap();
//! assert_eq!(json["simulated"]["total"]["d1_misses"], 1);
//! ```

#![deny(missing_docs)]

pub mod cachegrind;
pub mod chart;
pub mod compare;
pub mod counters;
pub mod derived;
pub mod findings;
pub mod json;
pub mod phases;
pub mod scatter;
pub mod text;

//! Swap and thrash monitor: is a program swapping or thrashing, how badly,
//! and since when.
//!
//! A [`Sampler`] reads, at each tick, a process tree (the process and its
//! descendants: RSS split into anon/file/shmem, `VmSwap`, minor and major
//! faults of all threads, reaped children included), the system
//! (`/proc/vmstat` swap-in/out pages, major faults, reclaim scans and
//! steals as [`vmstat`] reads them in every kernel's layout, workingset
//! refaults; `/proc/meminfo`; `/proc/pressure/memory`)
//! and the memory cgroup that holds the process (v1 or v2: usage, limit,
//! swap, limit hits, refaults, major faults, its own pressure file where it
//! has one). The tree's memory comes from `/proc/PID/status` (`RssAnon`,
//! `RssFile`, `RssShmem`, `VmSwap`), not `smaps_rollup`, which walks every
//! page table at each read and would make the monitor cost what it measures.
//! For a program that memtrace starts, a [`Baseline`] is read before the
//! start (the system and the cgroup the program will run in, its own
//! counters at zero), so that nothing it does before the first tick is
//! lost, however late that tick comes on a loaded machine.
//! Everything after the reading is pure: [`Interval::between`]
//! turns two [`Sample`]s into rates, a [`Classifier`] gives each interval a
//! [`State`], [`Summary::build`] sums a run up, [`timeline`] writes and reads
//! CSV and JSON timelines and [`chart::render_svg`] draws one.
//!
//! # Verdicts
//!
//! Each interval gets the worst state whose rule holds. The thresholds are
//! the fields of [`Thresholds`] (defaults in brackets, and the `memtrace
//! swap` flag that sets each):
//!
//! * **thrashing**: averaged over the last `thrash_intervals` \[3\]
//!   (`--thrash-intervals`) intervals, evicted pages came back at least
//!   `thrash_refault_per_s` \[1000\] (`--thrash-refault`) times per second
//!   (workingset refaults of the cgroup, or of the system when the process
//!   has no memory cgroup: swap-ins and page-cache re-reads of pages the
//!   kernel had just evicted), *and* the program waited for them: the tree
//!   took at least `thrash_majflt_per_s` \[200\] (`--thrash-majflt`) major
//!   faults per second, or memory pressure (the share of time in which some
//!   task waited for memory: PSI "some", from the cgroup's own pressure file
//!   where it has one, else `/proc/pressure/memory`) was at least
//!   `thrash_stall_pct` [10 %] (`--thrash-stall`). Averaging over a window
//!   matters: a thrashing program alternates between waiting on reclaim
//!   (pressure, no faults) and waiting on reads (faults, little pressure:
//!   the kernel counts a read-back as a stall only for pages it had seen as
//!   hot). File mappings read ahead, so page-cache thrashing shows as
//!   refaults and pressure more than as major faults.
//! * **swapping**: the process tree has pages in swap (`VmSwap` > 0) and the
//!   system moved at least `swap_pages_per_s` \[256\] (`--swap-pages`) pages
//!   per second to or from swap (`pswpin` + `pswpout`; the kernel counts
//!   swap traffic only system-wide).
//! * **reclaiming**: the cgroup hit its limit (v1 `memory.failcnt` and `memory.memsw.failcnt`, v2
//!   `memory.events` `max`) or memory pressure was at least
//!   `reclaim_stall_pct` [5 %] (`--reclaim-stall`): the kernel is taking
//!   pages away, but the program does not (yet) wait on getting them back.
//! * **ok**: none of these.
//!
//! Every rule looks at the intervals so far only, so the live view and a
//! recorded timeline give the same answer. Refaults need Linux 5.9
//! (`workingset_refault_anon`/`_file`); PSI needs `CONFIG_PSI`.
//!
//! # Example
//!
//! ```
//! use memtrace_swap::{Classifier, Interval, Sample, State, Thresholds};
//!
//! let at = |t_ms, majflt, sys_refault_anon| Sample {
//!     t_ms,
//!     majflt,
//!     sys_refault_anon,
//!     psi_some_us: Some(0),
//!     ..Sample::default()
//! };
//! // Major faults without refaults are first reads, not thrashing.
//! let first_read = Interval::between(&at(0, 0, 0), &at(100, 50, 0));
//! assert_eq!(first_read.majflt_per_s, 500.0);
//! let mut classifier = Classifier::new(Thresholds::default());
//! assert_eq!(classifier.push(&first_read), State::Ok);
//! // Faults that read back evicted pages: thrashing once 3 intervals show it.
//! let mut classifier = Classifier::new(Thresholds::default());
//! let mut states = Vec::new();
//! for n in 0..3 {
//!     let (a, b) = (at(n * 100, n * 50, n * 200), at(n * 100 + 100, n * 50 + 50, n * 200 + 200));
//!     states.push(classifier.push(&Interval::between(&a, &b)));
//! }
//! assert_eq!(states, [State::Ok, State::Ok, State::Thrashing]);
//! ```
//!
//! The crate never starts, stops or signals a process: the caller owns it.

#![deny(missing_docs)]

pub mod cgroup;
pub mod chart;
mod interval;
mod sample;
mod sampler;
mod summary;
pub mod timeline;
mod tree;
mod verdict;
pub mod vmstat;

pub use interval::Interval;
pub use sample::Sample;
pub use sampler::{Baseline, Error, Sampler};
pub use summary::{render_status, Summary, WorstInterval};
pub use verdict::{classify, Classifier, State, Thresholds};

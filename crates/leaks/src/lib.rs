//! Leak classes, leaked cycles and suppressions, worked out from the
//! reachability scan that the recorder writes at exit
//! ([`memtrace_format::LeakScan`]).
//!
//! The classes have valgrind memcheck's meanings, and this crate gives the
//! same answers as memcheck on the same heap (see `tests/leak_classes.rs`
//! in the workspace):
//!
//! * *definitely lost*: no pointer reaches the block from the roots, nor
//!   from another lost block that is counted first;
//! * *indirectly lost*: reached only from other lost blocks;
//! * *possibly lost*: reached from the roots only through a chain with an
//!   interior pointer;
//! * *still reachable*: reached from the roots through pointers to block
//!   starts.
//!
//! Among lost blocks, a group that points at itself (a strongly connected
//! component of the points-to graph) is a *leaked cycle*: the failure of
//! reference counting, an `Rc` cycle or a C++ parent/child pair.
//!
//! ```
//! use memtrace_format::{LeakScan, Reach, ScannedBlock};
//! use memtrace_leaks::{classify, LeakClass};
//!
//! let block = |addr, reach| ScannedBlock { addr, size: 16, stack: 1, reach };
//! let scan = LeakScan {
//!     blocks: vec![block(0x100, Reach::Unreached), block(0x200, Reach::Unreached)],
//!     edges: vec![(0, 1)],
//!     ..Default::default()
//! };
//! assert_eq!(classify(&scan), vec![LeakClass::Definite, LeakClass::Indirect]);
//! ```
//!
//! [`ci`] writes the findings for CI: SARIF 2.1.0 and GitHub Actions
//! annotations.
#![deny(missing_docs)]

pub mod ci;
mod classify;
mod cycles;
mod records;
mod suppress;

pub use classify::{classify, LeakClass};
pub use cycles::{leaked_cycles, Cycle};
pub use records::{loss_records, totals, ClassTotal, LossRecord, Totals};
pub use suppress::{FrameText, Suppression, SuppressionError, Suppressions, BUILTIN};

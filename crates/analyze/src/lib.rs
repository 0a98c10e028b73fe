//! Analyses over decoded memtrace traces: pure functions from events to reports.
//!
//! [`replay::HeapReplay`] walks the events once and keeps the live blocks and
//! per-stack counts; [`symbols::Symbols`] turns stacks into frames offline;
//! [`report`] builds and renders `memtrace report`. Each analysis is an
//! [`sink::EventSink`], so that [`sink::drive`] decodes a trace once for
//! all of them. Nothing here touches the traced process or writes files.
#![deny(missing_docs)]

pub mod flame;
pub mod heapmap;
pub mod latency;
pub mod leaks;
pub mod receipts;
pub mod replay;
pub mod report;
pub mod requests;
pub mod sink;
pub mod symbols;
pub mod units;

use std::path::Path;

use memtrace_format::{DecodeError, Extent, Reader, TraceReader};

/// Opens a trace file for streaming, read as far as `extent` says (by
/// default, as long as the file was when opened).
pub fn open(path: &Path, extent: Extent) -> Result<TraceReader, DecodeError> {
    Reader::open(path, extent)
}

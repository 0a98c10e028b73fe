//! Analyses over decoded memtrace traces: pure functions from events to reports.
//!
//! [`replay::HeapReplay`] walks the events once and keeps the live blocks and
//! per-stack counts; [`symbols::Symbols`] turns stacks into frames offline;
//! [`report`] builds and renders `memtrace report`. Nothing here touches the
//! traced process or writes files.
#![deny(missing_docs)]

pub mod flame;
pub mod heapmap;
pub mod latency;
pub mod leaks;
pub mod receipts;
pub mod replay;
pub mod report;
pub mod requests;
pub mod symbols;
pub mod units;

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use memtrace_format::{DecodeError, Reader};

/// Opens a trace file for streaming.
pub fn open(path: &Path) -> Result<Reader<BufReader<File>>, DecodeError> {
    let file = File::open(path)?;
    Reader::new(BufReader::with_capacity(1 << 20, file))
}

//! The memtrace trace format: what the recorder writes and every analysis reads.
//!
//! A trace is a preamble followed by self-checking blocks (optionally zstd
//! compressed) of records: the header, loaded modules, nodes of the interned
//! stack trie, per-thread batches of heap events, watermarks, clock syncs,
//! phases and a trailer. See `docs/trace-format.md` for the byte layout.
//!
//! This crate knows nothing about symbols, unwinding or analyses, and has no
//! `unsafe`. Decoding never panics: a damaged file gives a [`DecodeError`]
//! that names the file offset of the fault, a file cut short ends the
//! stream and says so in [`Completeness`].
//!
//! # Hostile input
//!
//! A trace file may come from anyone. What a reader spends on it is bounded
//! by the file: a block may decode to at most [`MAX_BLOCK`] bytes (refused
//! before decompression otherwise); [`Reader::open`] reads a file only as
//! far as it was when opened ([`Extent`]), unless asked to follow it; and
//! nothing after the trailer is read.
//!
//! ```
//! use memtrace_format::*;
//! let header = Header {
//!     pid: 7, ppid: 1, exe: "/bin/demo".into(), cmdline: vec!["demo".into()],
//!     start_unix_ns: 0, page_size: 4096, pointer_size: 8,
//!     ticks: TickSource::MonotonicNs, recorder: RecorderKind::Preload, latency_measured: true,
//!     family: 0,
//! };
//! let mut w = Writer::new(Vec::new(), &header, Codec::Zstd(3)).unwrap();
//! w.stack_nodes(1, &[(0, 0x1000)]).unwrap();
//! let alloc = HeapEvent { func: Func::Malloc as u8, ts: 5, addr: 0x5000, size: 24, usable: 24, stack: 1, ..Default::default() };
//! w.batch(42, &[ThreadItem::Heap(alloc)]).unwrap();
//! let bytes = w.finish(&Trailer::default()).unwrap();
//!
//! let mut r = Reader::new(&bytes[..]).unwrap();
//! assert_eq!(r.header().pid, 7);
//! assert_eq!(r.next_event().unwrap(), Some(Event::Heap { tid: 42, event: alloc }));
//! assert_eq!(r.next_event().unwrap(), None);
//! assert!(matches!(r.completeness(), Completeness::Complete(_)));
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod block;
mod codec;
mod error;
mod leakscan;
mod read;
mod record;
mod source;
mod stacks;
mod write;

pub use block::{with_checksums, Codec, FILE_MAGIC, MAX_BLOCK, MIN_VERSION, VERSION};
pub use error::{DecodeError, Fault};
pub use leakscan::{Incomplete, LeakScan, Reach, ScannedBlock};
pub use read::{Clock, Completeness, Event, Reader, Span};
pub use record::{
    dequantize_latency, quantize_latency, ClockSync, Func, Header, HeapEvent, Module, Op, Phase,
    RecorderKind, Region, ResourceSample, Segment, StackId, ThreadItem, TickSource, Trailer,
};
pub use source::{Extent, Named, TraceFile, TraceReader};
pub use stacks::{Frames, StackTable};
pub use write::{Writer, WriterBuffers};

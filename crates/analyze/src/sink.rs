//! One decode, many analyses: every analysis that reads a trace front to
//! back is an [`EventSink`], and [`drive`] decodes a trace once and hands
//! each event to every sink.
//!
//! A sink sees the events in the reader's order with a [`Trace`]: what
//! the reader knows at that moment (header, modules, stacks, clock sync so
//! far). When the stream ends, [`EventSink::finish`] sees the whole trace
//! (every module and stack, the trailer, the leak scan). Analyses that need
//! the events in [`ReceiptOrder`] (a moving realloc's new block when its
//! call ends) sit behind [`InReceiptOrder`], which reorders once for all of
//! them.
//!
//! ```
//! use memtrace_analyze::replay::HeapReplay;
//! use memtrace_analyze::sink::{drive, EventSink};
//! use memtrace_format::*;
//!
//! let mut w = Writer::new(Vec::new(), &Header::default(), Codec::Raw).unwrap();
//! let alloc = HeapEvent { func: Func::Malloc as u8, ts: 5, addr: 0x50, size: 24, usable: 24, ..Default::default() };
//! w.batch(1, &[ThreadItem::Heap(alloc)]).unwrap();
//! let bytes = w.finish(&Trailer::default()).unwrap();
//!
//! let (mut a, mut b) = (HeapReplay::new(0), HeapReplay::new(10));
//! drive(&mut Reader::new(&bytes[..]).unwrap(), &mut [&mut a, &mut b]).unwrap();
//! assert_eq!((a.n_allocs, b.peak_bytes), (1, 24));
//! ```

use std::io::Read;

use memtrace_format::{
    Clock, Completeness, DecodeError, Event, Header, LeakScan, Module, Reader, Span, StackTable,
};

use crate::receipts::ReceiptOrder;

/// What a reader knows of a trace besides its events: everything so far
/// while the events stream, everything once they have ended.
#[derive(Clone, Copy)]
pub struct Trace<'a> {
    /// The trace header.
    pub header: &'a Header,
    /// Modules loaded so far.
    pub modules: &'a [Module],
    /// The stack trie so far.
    pub stacks: &'a StackTable,
    /// Tick conversion, from the clock syncs so far.
    pub clock: &'a Clock,
    /// Messages the recorder left for the user.
    pub notes: &'a [String],
    /// How decoding ended ([`Completeness::Reading`] while it goes on).
    pub completeness: &'a Completeness,
    /// The span of the events so far (the trace's, at the end).
    pub span: Span,
    /// The exit-time reachability scan, once read.
    pub leak_scan: Option<&'a LeakScan>,
}

impl<'a> Trace<'a> {
    /// What `reader` knows now.
    pub fn of<R: Read>(reader: &'a Reader<R>) -> Trace<'a> {
        Trace {
            header: reader.header(),
            modules: reader.modules(),
            stacks: reader.stacks(),
            clock: reader.clock(),
            notes: reader.notes(),
            completeness: reader.completeness(),
            span: reader.span(),
            leak_scan: reader.leak_scan(),
        }
    }
}

/// An analysis fed one decoded event at a time.
pub trait EventSink {
    /// Takes the next event; `trace` is what the reader knows now.
    fn event(&mut self, event: &Event, trace: &Trace);

    /// The stream has ended; `trace` is the whole trace. Called once.
    fn finish(&mut self, trace: &Trace) {
        let _ = trace;
    }
}

/// Decodes the rest of `reader` once, feeding every event to every sink in
/// the order given, then finishes each sink. A decoding error stops the
/// pass; the sinks are then left unfinished.
pub fn drive<R: Read>(
    reader: &mut Reader<R>,
    sinks: &mut [&mut dyn EventSink],
) -> Result<(), DecodeError> {
    while let Some(event) = reader.next_event()? {
        let trace = Trace::of(reader);
        for sink in sinks.iter_mut() {
            sink.event(&event, &trace);
        }
    }
    let trace = Trace::of(reader);
    for sink in sinks.iter_mut() {
        sink.finish(&trace);
    }
    Ok(())
}

/// Feeds its sinks the events in [`ReceiptOrder`] instead of the reader's.
pub struct InReceiptOrder<'s> {
    order: ReceiptOrder,
    sinks: Vec<&'s mut dyn EventSink>,
}

impl<'s> InReceiptOrder<'s> {
    /// Reorders for `sinks`.
    pub fn new(sinks: Vec<&'s mut dyn EventSink>) -> Self {
        InReceiptOrder {
            order: ReceiptOrder::new(),
            sinks,
        }
    }

    fn pass_on(&mut self, trace: &Trace) {
        while let Some(event) = self.order.pop() {
            for sink in self.sinks.iter_mut() {
                sink.event(&event, trace);
            }
        }
    }
}

impl EventSink for InReceiptOrder<'_> {
    fn event(&mut self, event: &Event, trace: &Trace) {
        self.order.push(event.clone());
        self.pass_on(trace);
    }

    fn finish(&mut self, trace: &Trace) {
        self.order.end();
        self.pass_on(trace);
        for sink in self.sinks.iter_mut() {
            sink.finish(trace);
        }
    }
}

//! The decoder: a stream of blocks in, events in timestamp order out.
//!
//! Threads' batches arrive in whatever order the writer drained them. The
//! reader holds them back until a watermark says no earlier event can still
//! come, then merges the threads by timestamp. Memory stays bounded by what
//! the recorder buffered between two watermarks.

use std::cmp::Reverse;
use std::collections::binary_heap::PeekMut;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use rustc_hash::FxHashMap;
use std::io::Read;

use crate::block::{read_block, read_preamble, BlockRead, Inflation};
use crate::codec::Cursor;
use crate::error::DecodeError;
use crate::leakscan::{LeakScan, ScannedBlock};
use crate::record::{
    decode_batch_head, decode_batch_items, decode_columns_head, decode_columns_items, tag,
    ClockSync, Header, HeapEvent, Module, Phase, Region, ResourceSample, ThreadItem, Trailer,
};
use crate::stacks::StackTable;

/// Most bytes of notes a reader keeps. The recorder writes a handful of
/// one-line notes; a made-up trace could hold a 16 MiB note in every block.
const MAX_NOTE_BYTES: usize = 1 << 20;
/// Most bytes of a thread name kept (Linux names have 15).
const MAX_THREAD_NAME: usize = 256;

/// `text` cut to at most `max` bytes, at a character boundary.
fn shortened(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// One decoded event, in global timestamp order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A heap call made by thread `tid`.
    Heap {
        /// Thread id.
        tid: u32,
        /// The call.
        event: HeapEvent,
    },
    /// A thread's first recorded moment.
    ThreadStart {
        /// Thread id.
        tid: u32,
        /// Timestamp in ticks.
        ts: u64,
    },
    /// A thread ended.
    ThreadEnd {
        /// Thread id.
        tid: u32,
        /// Timestamp in ticks.
        ts: u64,
    },
    /// A phase boundary.
    Phase(Phase),
    /// A module was loaded; its index in [`Reader::modules`].
    ModuleLoaded {
        /// Timestamp in ticks.
        ts: u64,
        /// Index into [`Reader::modules`].
        index: usize,
    },
    /// A module was unloaded.
    ModuleUnloaded {
        /// Timestamp in ticks.
        ts: u64,
        /// Its load bias.
        load_bias: u64,
    },
    /// A snapshot of the heap's mappings.
    HeapRegions {
        /// Timestamp in ticks.
        ts: u64,
        /// The regions.
        regions: Vec<Region>,
    },
    /// A sample of the process's resource use (RSS, CPU time, faults).
    Resources(ResourceSample),
}

impl Event {
    /// The event's timestamp in ticks.
    pub fn ts(&self) -> u64 {
        match self {
            Event::Heap { event, .. } => event.ts,
            Event::ThreadStart { ts, .. }
            | Event::ThreadEnd { ts, .. }
            | Event::ModuleLoaded { ts, .. }
            | Event::ModuleUnloaded { ts, .. }
            | Event::HeapRegions { ts, .. } => *ts,
            Event::Resources(r) => r.ts,
            Event::Phase(p) => p.ts,
        }
    }
}

/// Converts ticks to nanoseconds since the trace started.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    first: Option<ClockSync>,
    last: Option<ClockSync>,
}

impl Clock {
    fn add(&mut self, sync: ClockSync) {
        if self.first.is_none() {
            self.first = Some(sync);
        }
        self.last = Some(sync);
    }

    /// Nanoseconds per tick, from the first and last clock syncs (1.0 when unknown).
    pub fn ns_per_tick(&self) -> f64 {
        match (self.first, self.last) {
            (Some(a), Some(b)) if b.ticks > a.ticks && b.mono_ns > a.mono_ns => {
                (b.mono_ns - a.mono_ns) as f64 / (b.ticks - a.ticks) as f64
            }
            _ => 1.0,
        }
    }

    /// Converts a tick count to nanoseconds since the first clock sync.
    pub fn to_ns(&self, ticks: u64) -> u64 {
        let base = self.first.map_or(0, |s| s.ticks);
        let rel = ticks.saturating_sub(base) as f64;
        (rel * self.ns_per_tick()) as u64
    }

    /// Converts a duration in ticks to nanoseconds.
    pub fn duration_ns(&self, ticks: u64) -> u64 {
        (ticks as f64 * self.ns_per_tick()) as u64
    }
}

/// The time a trace covers, the one duration every analysis reports: from
/// its first timestamped event (the recorder's start, before `main`) to its
/// trailer, or to its last event when it has none (a killed or cut run).
/// Every time an analysis shows ("peak at", RSS samples, phases) is an
/// offset from its start, and lies inside it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    /// The first event's timestamp, in ticks.
    pub start_ts: u64,
    /// The trailer's timestamp, or the last event's, in ticks.
    pub end_ts: u64,
}

impl Span {
    /// Its length in nanoseconds.
    pub fn duration_ns(&self, clock: &Clock) -> u64 {
        clock.duration_ns(self.end_ts.saturating_sub(self.start_ts))
    }

    /// Nanoseconds from its start to `ts`, `ts` clamped into the span.
    pub fn offset_ns(&self, clock: &Clock, ts: u64) -> u64 {
        let ts = ts.clamp(self.start_ts, self.end_ts.max(self.start_ts));
        clock.duration_ns(ts - self.start_ts)
    }
}

/// How the decoding ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completeness {
    /// Still reading.
    Reading,
    /// The trailer was read: recording ended cleanly.
    Complete(Trailer),
    /// The file ended without a trailer (the program died, or is still running).
    NoTrailer,
    /// The file was cut inside a block at this byte offset.
    Truncated(u64),
}

/// Streams the events of a trace.
pub struct Reader<R: Read> {
    src: R,
    offset: u64,
    stored: Vec<u8>,
    raw: Vec<u8>,
    inflation: Inflation,
    header: Header,
    modules: Vec<Module>,
    stacks: StackTable,
    clock: Clock,
    thread_names: HashMap<u32, String>,
    notes: Vec<String>,
    /// Bytes of the notes kept, against [`MAX_NOTE_BYTES`].
    note_bytes: usize,
    threads: FxHashMap<u32, VecDeque<ThreadItem>>,
    heads: BinaryHeap<Reverse<(u64, u32)>>,
    others: BinaryHeap<Reverse<(u64, u64)>>,
    other_events: FxHashMap<u64, Event>,
    n_others: u64,
    watermark: u64,
    end: Completeness,
    skip_events: bool,
    scan_blocks: Vec<ScannedBlock>,
    scan_edges: Vec<(u32, u32)>,
    leak_scan: Option<LeakScan>,
    /// The first and last timestamps of the events returned so far.
    seen_ts: Option<(u64, u64)>,
}

impl<R: Read> Reader<R> {
    /// Reads the preamble and the header.
    pub fn new(mut src: R) -> Result<Self, DecodeError> {
        read_preamble(&mut src)?;
        let mut reader = Reader {
            src,
            offset: 12,
            stored: Vec::new(),
            raw: Vec::new(),
            inflation: Inflation::default(),
            header: Header::default(),
            modules: Vec::new(),
            stacks: StackTable::new(),
            clock: Clock::default(),
            thread_names: HashMap::new(),
            notes: Vec::new(),
            note_bytes: 0,
            threads: FxHashMap::default(),
            heads: BinaryHeap::new(),
            others: BinaryHeap::new(),
            other_events: FxHashMap::default(),
            n_others: 0,
            watermark: 0,
            end: Completeness::Reading,
            skip_events: false,
            scan_blocks: Vec::new(),
            scan_edges: Vec::new(),
            leak_scan: None,
            seen_ts: None,
        };
        let block = read_block(
            &mut reader.src,
            12,
            &mut reader.stored,
            &mut reader.raw,
            &mut reader.inflation,
        )?;
        let Some(block) = block else {
            return Err(DecodeError::Truncated { offset: 12 });
        };
        reader.apply_block(12, block, true)?;
        Ok(reader)
    }

    /// The source the blocks are read from (to ask it how far it got).
    pub fn source(&self) -> &R {
        &self.src
    }

    /// The exit-time reachability scan, once a complete one has been read
    /// (it is the last record before the trailer).
    pub fn leak_scan(&self) -> Option<&LeakScan> {
        self.leak_scan.as_ref()
    }

    /// Reads the rest of the file for its side records (modules, stacks,
    /// clock, the leak scan), without decoding or merging the heap events:
    /// much faster than draining [`Reader::next_event`] when only those are
    /// needed. No event is returned afterwards.
    pub fn skip_to_end(&mut self) -> Result<(), DecodeError> {
        self.skip_events = true;
        self.threads.clear();
        self.heads.clear();
        self.others.clear();
        self.other_events.clear();
        while self.end == Completeness::Reading {
            self.read_more()?;
            self.others.clear();
            self.other_events.clear();
        }
        Ok(())
    }

    /// The trace header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Modules seen so far (all of them once the stream is read).
    pub fn modules(&self) -> &[Module] {
        &self.modules
    }

    /// The stack trie seen so far.
    pub fn stacks(&self) -> &StackTable {
        &self.stacks
    }

    /// Tick conversion.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Thread names recorded.
    pub fn thread_names(&self) -> &HashMap<u32, String> {
        &self.thread_names
    }

    /// Messages the recorder left for the user.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// How the decoding ended; meaningful once [`Reader::next_event`] returned `None`.
    pub fn completeness(&self) -> &Completeness {
        &self.end
    }

    /// The span of the events returned so far, to the trailer once it is
    /// read: the trace's [`Span`] when every event has been.
    pub fn span(&self) -> Span {
        let trailer = match &self.end {
            Completeness::Complete(t) => Some(t.ts),
            _ => None,
        };
        match (self.seen_ts, trailer) {
            (Some((first, last)), t) => Span {
                start_ts: first,
                end_ts: last.max(t.unwrap_or(0)),
            },
            (None, Some(t)) => Span {
                start_ts: t,
                end_ts: t,
            },
            (None, None) => Span::default(),
        }
    }

    /// The next event in timestamp order, or `None` at the end.
    ///
    /// A file cut inside a block ends the stream normally and is reported by
    /// [`Reader::completeness`]; a damaged block is an error.
    pub fn next_event(&mut self) -> Result<Option<Event>, DecodeError> {
        loop {
            if let Some(event) = self.pop_ready() {
                // Timestamp 0: written before the clock started (the
                // modules known at start), not a moment of the run.
                let ts = event.ts();
                if ts > 0 {
                    self.seen_ts = Some(match self.seen_ts {
                        Some((first, last)) => (first.min(ts), last.max(ts)),
                        None => (ts, ts),
                    });
                }
                return Ok(Some(event));
            }
            if self.end != Completeness::Reading && self.watermark == u64::MAX {
                return Ok(None);
            }
            self.read_more()?;
        }
    }

    fn pop_ready(&mut self) -> Option<Event> {
        let thread_ts = self.heads.peek().map(|h| h.0 .0);
        let other_ts = self.others.peek().map(|h| h.0 .0);
        let take_other = match (thread_ts, other_ts) {
            (None, None) => return None,
            (Some(t), Some(o)) => o <= t,
            (None, Some(_)) => true,
            (Some(_), None) => false,
        };
        if take_other {
            let Reverse((ts, key)) = *self.others.peek()?;
            if ts >= self.watermark {
                return None;
            }
            self.others.pop();
            return self.other_events.remove(&key);
        }
        let mut top = self.heads.peek_mut()?;
        let Reverse((ts, tid)) = *top;
        if ts >= self.watermark {
            return None;
        }
        let queue = self.threads.get_mut(&tid)?;
        let item = queue.pop_front()?;
        // Replacing the top sifts once, cheaper than a pop and a push.
        match queue.front() {
            Some(next) => *top = Reverse((next.ts(), tid)),
            None => {
                PeekMut::pop(top);
            }
        }
        Some(match item {
            ThreadItem::Heap(event) => Event::Heap { tid, event },
            ThreadItem::Start { ts } => Event::ThreadStart { tid, ts },
            ThreadItem::End { ts } => Event::ThreadEnd { tid, ts },
        })
    }

    /// Queues thread `tid`'s `n` items, which `decode` appends to the
    /// thread's queue (given the number of stack nodes known): all of them,
    /// or none when decoding fails.
    fn take_batch(
        &mut self,
        tid: u32,
        n: usize,
        decode: impl FnOnce(u32, &mut VecDeque<ThreadItem>) -> Result<(), DecodeError>,
    ) -> Result<(), DecodeError> {
        let n_stacks = self.stacks.len() as u32;
        let queue = self.threads.entry(tid).or_default();
        let was_empty = queue.is_empty();
        queue.reserve(n);
        let before = queue.len();
        if let Err(e) = decode(n_stacks, queue) {
            queue.truncate(before);
            return Err(e);
        }
        if was_empty {
            if let Some(front) = queue.front() {
                self.heads.push(Reverse((front.ts(), tid)));
            }
        }
        Ok(())
    }

    fn read_more(&mut self) -> Result<(), DecodeError> {
        let block = read_block(
            &mut self.src,
            self.offset,
            &mut self.stored,
            &mut self.raw,
            &mut self.inflation,
        );
        match block {
            Ok(Some(block)) => {
                let result = self.apply_block(self.offset, block, false);
                if matches!(self.end, Completeness::Complete(_)) {
                    // The trailer is the last record: nothing after it is
                    // read (a follower would wait for bytes that never come).
                    self.watermark = u64::MAX;
                }
                result
            }
            Ok(None) => {
                if self.end == Completeness::Reading {
                    self.end = Completeness::NoTrailer;
                }
                self.watermark = u64::MAX;
                Ok(())
            }
            Err(DecodeError::Truncated { offset }) => {
                self.end = Completeness::Truncated(offset);
                self.watermark = u64::MAX;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Keeps a note while the notes take at most [`MAX_NOTE_BYTES`]; past
    /// that, one last note says that the rest were left out.
    fn add_note(&mut self, note: String) {
        if self.note_bytes > MAX_NOTE_BYTES {
            return;
        }
        self.note_bytes += note.len();
        if self.note_bytes > MAX_NOTE_BYTES {
            self.notes.push(format!(
                "further notes left out: they pass {MAX_NOTE_BYTES} bytes"
            ));
        } else {
            self.notes.push(note);
        }
    }

    fn push_other(&mut self, event: Event) {
        let key = self.n_others;
        self.n_others += 1;
        self.others.push(Reverse((event.ts(), key)));
        self.other_events.insert(key, event);
    }

    /// Applies the records of the block at file offset `offset`, just read
    /// into `self.raw`; in the first block, the first record must be the
    /// header. Errors inside a record are placed in the file.
    fn apply_block(
        &mut self,
        offset: u64,
        block: BlockRead,
        first: bool,
    ) -> Result<(), DecodeError> {
        self.offset = block.next;
        let raw = std::mem::take(&mut self.raw);
        let mut cur = Cursor::new(&raw, "block");
        let mut result = Ok(());
        let mut record = 0;
        while !cur.is_empty() && result.is_ok() {
            record += 1;
            let record_at = cur.at();
            result = self
                .apply_record(&mut cur, first && record == 1)
                .map_err(|e| e.placed(offset, block.compressed, record, record_at));
        }
        if first && record == 0 {
            result = Err(DecodeError::malformed("the first block is empty").placed(
                offset,
                block.compressed,
                1,
                0,
            ));
        }
        self.raw = raw;
        result
    }

    /// Reads one record from `cur` and applies it.
    fn apply_record(&mut self, cur: &mut Cursor, header: bool) -> Result<(), DecodeError> {
        let record_tag = cur.u8()?;
        let mut p = cur.sub_bytes("record")?;
        if header != (record_tag == tag::HEADER) {
            return Err(DecodeError::malformed(if header {
                "first record is not the header"
            } else {
                "a second header record"
            }));
        }
        match record_tag {
            tag::HEADER => self.header = Header::decode(&mut p)?,
            tag::MODULE_LOADED => {
                let (ts, module) = Module::decode(&mut p)?;
                self.modules.push(module);
                let index = self.modules.len() - 1;
                self.push_other(Event::ModuleLoaded { ts, index });
            }
            tag::MODULE_UNLOADED => {
                let ts = p.u64()?;
                let load_bias = p.u64()?;
                self.push_other(Event::ModuleUnloaded { ts, load_bias });
            }
            tag::STACK_NODES => {
                let first = p.u32()?;
                let n = p.count(2)?;
                if first as usize != self.stacks.len() {
                    return Err(DecodeError::malformed(format!(
                        "stack nodes start at {first}, expected {}",
                        self.stacks.len()
                    )));
                }
                for i in 0..n as u64 {
                    let id = u64::from(first) + i;
                    let back_at = p.at();
                    let back = p.u64()?;
                    let addr = p.u64()?;
                    if back == 0 || back > id {
                        return Err(DecodeError::malformed_at(
                            back_at,
                            format!("stack node {id} has an invalid parent"),
                        ));
                    }
                    self.stacks.push((id - back) as u32, addr);
                }
            }
            tag::BATCH | tag::COLUMNS if self.skip_events => {}
            tag::COLUMNS => {
                let columns = decode_columns_head(&mut p)?;
                let (tid, n) = (columns.tid, columns.n);
                self.take_batch(tid, n, |n_stacks, queue| {
                    decode_columns_items(columns, n_stacks, |item| queue.push_back(item))
                })?;
            }
            tag::BATCH => {
                let (tid, n) = decode_batch_head(&mut p)?;
                self.take_batch(tid, n, |n_stacks, queue| {
                    decode_batch_items(&mut p, n, n_stacks, |item| queue.push_back(item))
                })?;
            }
            tag::WATERMARK => {
                self.watermark = self.watermark.max(p.u64()?);
            }
            tag::CLOCK_SYNC => {
                let ticks = p.u64()?;
                let mono_ns = p.u64()?;
                self.clock.add(ClockSync { ticks, mono_ns });
            }
            tag::PHASE => {
                let phase = Phase::decode(&mut p)?;
                self.push_other(Event::Phase(phase));
            }
            tag::THREAD_NAME => {
                let tid = p.u32()?;
                let name = p.string()?;
                self.thread_names
                    .insert(tid, shortened(name, MAX_THREAD_NAME));
            }
            tag::HEAP_REGIONS => {
                let ts = p.u64()?;
                let n = p.count(3)?;
                let mut regions = Vec::with_capacity(n);
                for _ in 0..n {
                    let start = p.u64()?;
                    let len = p.u64()?;
                    let kind = p.u8()?;
                    regions.push(Region {
                        start,
                        end: start.saturating_add(len),
                        kind,
                    });
                }
                self.push_other(Event::HeapRegions { ts, regions });
            }
            tag::TRAILER => {
                self.end = Completeness::Complete(Trailer::decode(&mut p)?);
            }
            tag::NOTE => {
                let note = p.string()?;
                self.add_note(note);
            }
            tag::RESOURCES => {
                let sample = ResourceSample::decode(&mut p)?;
                self.push_other(Event::Resources(sample));
            }
            tag::LEAK_BLOCKS => LeakScan::decode_blocks(&mut p, &mut self.scan_blocks)?,
            tag::LEAK_EDGES => LeakScan::decode_edges(&mut p, &mut self.scan_edges)?,
            tag::LEAK_SCAN => {
                let blocks = std::mem::take(&mut self.scan_blocks);
                let edges = std::mem::take(&mut self.scan_edges);
                self.leak_scan = Some(LeakScan::decode_summary(&mut p, blocks, edges)?);
            }
            _ => {} // Unknown record from a later version: skipped.
        }
        Ok(())
    }
}

//! The encoder: records in, blocks out.
//!
//! # Memory
//! The recorder writes from inside someone else's program, which may have
//! used up its memory. So the writer never grows a buffer with an
//! allocation that can abort: [`WriterBuffers`] can be allocated ahead of
//! time; a record that does not fit the block buffer seals the block and
//! reuses its room, or, if it would not fit even then, becomes a block of
//! its own written straight from where it lies; a block zstd cannot get
//! memory for is stored uncompressed; a batch whose columns cannot get
//! memory is encoded in smaller pieces. What still cannot be had is an
//! error of kind [`io::ErrorKind::OutOfMemory`], and the stream stays
//! consistent: the record it was for is simply not in the file.

use std::io::{self, Write};

use crate::block::{write_block, write_parts, write_preamble, Codec, Compressor, MAX_BLOCK};
use crate::codec::{put_str, put_u64};
use crate::leakscan::{LeakScan, CHUNK};
use crate::record::{
    column, columns_record_bound, fill_columns, put_record_head, tag, ClockSync, ColumnScratch,
    Header, Module, Phase, Region, ResourceSample, ThreadItem, Trailer, COLUMNS_HEAD_MAX,
    COLUMN_BATCH_ITEMS,
};

/// Most nodes in one `STACK_NODES` record (at most 21 bytes each: about
/// 1.4 MB), so that a drain with millions of new stacks still fits blocks.
const STACK_NODES_PER_RECORD: usize = 1 << 16;

// The largest `COLUMNS` record fits in a block, so a batch is never refused
// for its size.
const _: () = assert!(columns_record_bound(COLUMN_BATCH_ITEMS) <= MAX_BLOCK);

/// Fewest items a batch is cut into when its columns cannot get memory.
const MIN_BATCH_ITEMS: usize = 64;

/// The error of a record or batch that memory could not be had for.
fn out_of_memory(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::OutOfMemory,
        format!("out of memory for {what}"),
    )
}

/// The buffers a [`Writer`] needs before its first record: a program that
/// may run out of memory gets them while it still can, and hands them to
/// [`Writer::with_buffers`] when the file is created.
pub struct WriterBuffers {
    block: Vec<u8>,
    payload: Vec<u8>,
}

impl WriterBuffers {
    /// Buffers for 1 MiB blocks, or for 64 KiB ones when that much cannot
    /// be had (more, smaller blocks: the same trace); `None` when neither.
    pub fn try_new() -> Option<WriterBuffers> {
        [(1usize << 20, 1usize << 16), (1 << 16, 1 << 12)]
            .into_iter()
            .find_map(|(block_len, payload_len)| {
                let mut block = Vec::new();
                block.try_reserve_exact(block_len).ok()?;
                let mut payload = Vec::new();
                payload.try_reserve_exact(payload_len).ok()?;
                Some(WriterBuffers { block, payload })
            })
    }
}

/// Writes a trace: call the record methods in stream order, then [`Writer::finish`].
///
/// Records are gathered into a block that is sealed (compressed, checksummed
/// and written) once it reaches the target size, or on [`Writer::flush`].
/// Whatever the settings, a block never holds more than
/// [`MAX_BLOCK`](crate::MAX_BLOCK) bytes of records: the block is sealed
/// before a record would pass that, and a single record larger than that
/// is refused (`InvalidInput`), since no reader would accept its block.
pub struct Writer<W: Write> {
    out: W,
    block: Vec<u8>,
    payload: Vec<u8>,
    scratch: Vec<u8>,
    columns: ColumnScratch,
    codec: Codec,
    compressor: Option<Compressor>,
    block_target: usize,
    auto_seal: bool,
    bytes_written: u64,
}

impl<W: Write> Writer<W> {
    /// Starts a trace with its header. `codec` chooses compression.
    pub fn new(out: W, header: &Header, codec: Codec) -> io::Result<Self> {
        let buffers = WriterBuffers::try_new().ok_or_else(|| out_of_memory("the writer"))?;
        Writer::with_buffers(out, header, codec, buffers)
    }

    /// [`Writer::new`] with buffers allocated earlier.
    pub fn with_buffers(
        mut out: W,
        header: &Header,
        codec: Codec,
        buffers: WriterBuffers,
    ) -> io::Result<Self> {
        write_preamble(&mut out)?;
        let mut w = Writer {
            out,
            block: buffers.block,
            payload: buffers.payload,
            scratch: Vec::new(),
            columns: ColumnScratch::default(),
            codec,
            compressor: None,
            block_target: 1 << 20,
            auto_seal: true,
            bytes_written: 12,
        };
        let strings: usize = header.cmdline.iter().map(|a| a.len() + 10).sum();
        w.reserve_payload(header.exe.len() + strings + 128)?;
        header.encode(&mut w.payload);
        w.emit(tag::HEADER)?;
        // The header gets a block of its own, so any later cut leaves it readable.
        w.seal()?;
        Ok(w)
    }

    /// Changes the compression of the blocks sealed from now on (each block
    /// names its own codec, so a file may mix them).
    pub fn set_codec(&mut self, codec: Codec) {
        self.codec = codec;
    }

    /// The compression of the next block.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Sets the raw size at which a block is sealed (default 1 MiB).
    pub fn set_block_target(&mut self, bytes: usize) {
        self.block_target = bytes.clamp(1, MAX_BLOCK / 2);
    }

    /// With `false`, records only gather and blocks are sealed by
    /// [`Writer::seal_if_full`] or [`Writer::flush`]: a caller that encodes
    /// while holding something (a ring's slots) compresses after letting go.
    pub fn set_auto_seal(&mut self, auto: bool) {
        self.auto_seal = auto;
    }

    /// Seals the current block if it reached the target size.
    pub fn seal_if_full(&mut self) -> io::Result<()> {
        if self.block.len() >= self.block_target {
            self.seal()?;
        }
        Ok(())
    }

    /// Room for `bytes` more in the payload of the next record.
    fn reserve_payload(&mut self, bytes: usize) -> io::Result<()> {
        self.payload
            .try_reserve(bytes)
            .map_err(|_| out_of_memory("a record"))
    }

    fn emit(&mut self, record_tag: u8) -> io::Result<()> {
        let mut head = [0u8; 11];
        let n = put_record_head(&mut head, record_tag, self.payload.len());
        let payload = std::mem::take(&mut self.payload);
        let result = self.append(&[&head[..n], &payload]);
        self.payload = payload;
        self.payload.clear();
        result?;
        if self.auto_seal && self.block.len() >= self.block_target {
            self.seal()?;
        }
        Ok(())
    }

    /// Appends one record, given as consecutive parts, to the block. When
    /// the block cannot hold it even after sealing, and cannot grow, the
    /// record is written as a block of its own, uncompressed, from the parts.
    /// A record over [`MAX_BLOCK`] is refused (`InvalidInput`).
    fn append(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > MAX_BLOCK {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a record of {len} bytes does not fit in a block"),
            ));
        }
        if !self.make_room(len)? {
            self.bytes_written += write_parts(&mut self.out, 0, len, parts)? as u64;
            return Ok(());
        }
        for part in parts {
            // Within the room just made: no allocation.
            self.block.extend_from_slice(part);
        }
        Ok(())
    }

    /// Makes room for `len` more bytes in the block: there already, by
    /// growing it, or by sealing it and reusing its room. False when none
    /// of these gives it. The block is sealed first, even without
    /// auto-sealing, if `len` more bytes would take it past [`MAX_BLOCK`]:
    /// a block over the limit would be refused by every reader.
    fn make_room(&mut self, len: usize) -> io::Result<bool> {
        if self.block.len() + len > MAX_BLOCK {
            self.seal()?;
        }
        if self.block.capacity() - self.block.len() >= len || self.block.try_reserve(len).is_ok() {
            return Ok(true);
        }
        self.seal()?;
        Ok(self.block.capacity() >= len)
    }

    fn seal(&mut self) -> io::Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let n = write_block(
            &mut self.out,
            &self.block,
            self.codec,
            &mut self.compressor,
            &mut self.scratch,
        )?;
        self.bytes_written += n as u64;
        self.block.clear();
        Ok(())
    }

    /// A module was loaded (at start, or later by `dlopen`).
    pub fn module_loaded(&mut self, ts: u64, module: &Module) -> io::Result<()> {
        let build_id = module.build_id.as_ref().map_or(0, Vec::len);
        self.reserve_payload(module.path.len() + build_id + 30 * module.segments.len() + 64)?;
        module.encode(ts, &mut self.payload);
        self.emit(tag::MODULE_LOADED)
    }

    /// A module was unloaded by `dlclose`.
    pub fn module_unloaded(&mut self, ts: u64, load_bias: u64) -> io::Result<()> {
        self.reserve_payload(20)?;
        put_u64(&mut self.payload, ts);
        put_u64(&mut self.payload, load_bias);
        self.emit(tag::MODULE_UNLOADED)
    }

    /// New nodes of the stack trie, numbered from `first_id` on. Each node is
    /// `(parent id, return address)`; parents always have smaller ids.
    pub fn stack_nodes(&mut self, first_id: u32, nodes: &[(u32, u64)]) -> io::Result<()> {
        if nodes.is_empty() {
            return Ok(());
        }
        let bad_parent = nodes
            .iter()
            .enumerate()
            .any(|(i, &(parent, _))| u64::from(parent) >= u64::from(first_id) + i as u64);
        if bad_parent {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a stack node's parent must have a smaller id",
            ));
        }
        // Events refer to these nodes: they must be written whatever the
        // memory. So they go in records that fit the payload buffer as it
        // is (at least 4 KiB, 20 bytes a node at most), needing no growth.
        let per_record =
            (self.payload.capacity().saturating_sub(20) / 20).clamp(1, STACK_NODES_PER_RECORD);
        let mut first = u64::from(first_id);
        for chunk in nodes.chunks(per_record) {
            self.reserve_payload(20 + 20 * chunk.len())?;
            put_u64(&mut self.payload, first);
            put_u64(&mut self.payload, chunk.len() as u64);
            for (i, &(parent, addr)) in chunk.iter().enumerate() {
                let id = first + i as u64;
                put_u64(&mut self.payload, id - u64::from(parent));
                put_u64(&mut self.payload, addr);
            }
            self.emit(tag::STACK_NODES)?;
            first += chunk.len() as u64;
        }
        Ok(())
    }

    /// A batch of one thread's items, in the order the thread produced them.
    ///
    /// Heap events whose `func` is not a [`crate::Func`] code are refused.
    pub fn batch(&mut self, tid: u32, items: &[ThreadItem]) -> io::Result<()> {
        self.batch_inspect(tid, items, |_| {})
    }

    /// [`Writer::batch`], handing each item to `inspect` as it is encoded:
    /// a caller that must also look at every item (the recorder's live
    /// blocks) reads it while it is in the cache, not in a second pass
    /// over megabytes of items. When the batch is refused, `inspect` may
    /// have seen some of its items. When memory runs out (an error of kind
    /// [`io::ErrorKind::OutOfMemory`]), `inspect` has seen exactly the
    /// items written, a prefix of `items`.
    pub fn batch_inspect(
        &mut self,
        tid: u32,
        items: &[ThreadItem],
        mut inspect: impl FnMut(&ThreadItem),
    ) -> io::Result<()> {
        let refused = || {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "a heap event has an unknown function code",
            )
        };
        if items.is_empty() {
            return Ok(());
        }
        // Keep each record well under the block limit.
        let mut n = self.reserve_columns(items.len())?;
        // A batch of one record is checked while it is encoded (one pass
        // over the items, not two); a longer one first, since its first
        // records may be sealed before the last is encoded.
        if n < items.len()
            && items
                .iter()
                .any(|i| matches!(i, ThreadItem::Heap(e) if e.func().is_none()))
        {
            return Err(refused());
        }
        let mut rest = items;
        loop {
            let (chunk, tail) = rest.split_at(n);
            let mut columns = std::mem::take(&mut self.columns);
            if !fill_columns(chunk, &mut columns, &mut inspect) {
                self.columns = columns;
                return Err(refused());
            }
            let mut head = [0u8; COLUMNS_HEAD_MAX];
            let head_len = columns.head(tid, chunk.len(), &mut head);
            let mut parts: [&[u8]; 1 + column::COUNT] = [&[]; 1 + column::COUNT];
            parts[0] = &head[..head_len];
            parts[1..].copy_from_slice(&columns.bytes());
            let appended = self.append(&parts);
            self.columns = columns;
            appended?;
            if self.auto_seal && self.block.len() >= self.block_target {
                self.seal()?;
            }
            rest = tail;
            if rest.is_empty() {
                return Ok(());
            }
            n = self.reserve_columns(rest.len())?;
        }
    }

    /// Room in the column buffers for up to `want` items: the most that
    /// could be had, halving down to [`MIN_BATCH_ITEMS`].
    fn reserve_columns(&mut self, want: usize) -> io::Result<usize> {
        let mut n = want.min(COLUMN_BATCH_ITEMS);
        while !self.columns.reserve(n) {
            if n <= MIN_BATCH_ITEMS {
                return Err(out_of_memory("a batch of events"));
            }
            n /= 2;
        }
        Ok(n)
    }

    /// Every item with a timestamp below `ts` has been written.
    pub fn watermark(&mut self, ts: u64) -> io::Result<()> {
        self.reserve_payload(10)?;
        put_u64(&mut self.payload, ts);
        self.emit(tag::WATERMARK)
    }

    /// A tick/nanosecond pair for converting timestamps.
    pub fn clock_sync(&mut self, sync: ClockSync) -> io::Result<()> {
        self.reserve_payload(20)?;
        put_u64(&mut self.payload, sync.ticks);
        put_u64(&mut self.payload, sync.mono_ns);
        self.emit(tag::CLOCK_SYNC)
    }

    /// A phase boundary.
    pub fn phase(&mut self, phase: &Phase) -> io::Result<()> {
        let counters: usize = phase.counters.iter().map(|(n, _)| n.len() + 20).sum();
        self.reserve_payload(phase.name.len() + counters + 48)?;
        phase.encode(&mut self.payload);
        self.emit(tag::PHASE)
    }

    /// A thread's name.
    pub fn thread_name(&mut self, tid: u32, name: &str) -> io::Result<()> {
        self.reserve_payload(name.len() + 20)?;
        put_u64(&mut self.payload, tid.into());
        put_str(&mut self.payload, name);
        self.emit(tag::THREAD_NAME)
    }

    /// A snapshot of the heap's mappings.
    pub fn heap_regions(&mut self, ts: u64, regions: &[Region]) -> io::Result<()> {
        self.reserve_payload(20 + 21 * regions.len())?;
        put_u64(&mut self.payload, ts);
        put_u64(&mut self.payload, regions.len() as u64);
        for r in regions {
            put_u64(&mut self.payload, r.start);
            put_u64(&mut self.payload, r.end.saturating_sub(r.start));
            self.payload.push(r.kind);
        }
        self.emit(tag::HEAP_REGIONS)
    }

    /// A sample of the process's resource use.
    pub fn resources(&mut self, sample: &ResourceSample) -> io::Result<()> {
        self.reserve_payload(60)?;
        sample.encode(&mut self.payload);
        self.emit(tag::RESOURCES)
    }

    /// The exit-time reachability scan, in chunks and a closing summary.
    pub fn leak_scan(&mut self, scan: &LeakScan) -> io::Result<()> {
        // A scan of millions of blocks is tens of megabytes: full blocks are
        // sealed between its records even without auto-sealing, or one block
        // would pass the limit every reader enforces.
        for (i, chunk) in scan.blocks.chunks(CHUNK).enumerate() {
            self.reserve_payload(20 + 31 * chunk.len())?;
            LeakScan::encode_blocks(i * CHUNK, chunk, &mut self.payload);
            self.emit(tag::LEAK_BLOCKS)?;
            self.seal_if_full()?;
        }
        for chunk in scan.edges.chunks(CHUNK) {
            self.reserve_payload(10 + 10 * chunk.len())?;
            LeakScan::encode_edges(chunk, &mut self.payload);
            self.emit(tag::LEAK_EDGES)?;
            self.seal_if_full()?;
        }
        self.reserve_payload(100)?;
        scan.encode_summary(&mut self.payload);
        self.emit(tag::LEAK_SCAN)
    }

    /// A message from the recorder for the user (e.g. a hook it could not install).
    pub fn note(&mut self, text: &str) -> io::Result<()> {
        self.reserve_payload(text.len() + 10)?;
        put_str(&mut self.payload, text);
        self.emit(tag::NOTE)
    }

    /// Seals the current block and flushes the output.
    pub fn flush(&mut self) -> io::Result<()> {
        self.seal()?;
        self.out.flush()
    }

    /// Bytes written to the output so far (sealed blocks only).
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Writes the trailer, flushes, and returns the output.
    pub fn finish(mut self, trailer: &Trailer) -> io::Result<W> {
        self.reserve_payload(50)?;
        trailer.encode(&mut self.payload);
        self.emit(tag::TRAILER)?;
        self.flush()?;
        Ok(self.out)
    }

    /// The output, for callers that need to reach the underlying file.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }
}

//! The encoder: records in, blocks out.

use std::io::{self, Write};

use crate::block::{write_block, write_preamble, Codec, MAX_BLOCK};
use crate::codec::{put_str, put_u64};
use crate::leakscan::{LeakScan, CHUNK};
use crate::record::{
    columns_record_bound, encode_columns, put_record, tag, ClockSync, ColumnScratch, Header,
    Module, Phase, Region, ResourceSample, ThreadItem, Trailer, COLUMN_BATCH_ITEMS,
};

/// Most nodes in one `STACK_NODES` record (at most 21 bytes each: about
/// 1.4 MB), so that a drain with millions of new stacks still fits blocks.
const STACK_NODES_PER_RECORD: usize = 1 << 16;

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
    compressor: Option<zstd::bulk::Compressor<'static>>,
    block_target: usize,
    auto_seal: bool,
    bytes_written: u64,
}

impl<W: Write> Writer<W> {
    /// Starts a trace with its header. `codec` chooses compression.
    pub fn new(mut out: W, header: &Header, codec: Codec) -> io::Result<Self> {
        write_preamble(&mut out)?;
        let mut w = Writer {
            out,
            block: Vec::with_capacity(1 << 20),
            payload: Vec::with_capacity(1 << 16),
            scratch: Vec::new(),
            columns: ColumnScratch::default(),
            codec,
            compressor: None,
            block_target: 1 << 20,
            auto_seal: true,
            bytes_written: 12,
        };
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

    fn emit(&mut self, record_tag: u8) -> io::Result<()> {
        // Tag, length varint, payload.
        let size = 1 + 10 + self.payload.len();
        if size > MAX_BLOCK {
            self.payload.clear();
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a record of {size} bytes does not fit in a block"),
            ));
        }
        self.make_room(size)?;
        put_record(&mut self.block, record_tag, &self.payload);
        self.payload.clear();
        if self.auto_seal && self.block.len() >= self.block_target {
            self.seal()?;
        }
        Ok(())
    }

    /// Seals the block first if `size` more bytes would take it past
    /// [`MAX_BLOCK`], even without auto-sealing: a block over the limit
    /// would be refused by every reader.
    fn make_room(&mut self, size: usize) -> io::Result<()> {
        if self.block.len() + size > MAX_BLOCK {
            self.seal()?;
        }
        Ok(())
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
        module.encode(ts, &mut self.payload);
        self.emit(tag::MODULE_LOADED)
    }

    /// A module was unloaded by `dlclose`.
    pub fn module_unloaded(&mut self, ts: u64, load_bias: u64) -> io::Result<()> {
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
        for (k, chunk) in nodes.chunks(STACK_NODES_PER_RECORD).enumerate() {
            let first = u64::from(first_id) + (k * STACK_NODES_PER_RECORD) as u64;
            put_u64(&mut self.payload, first);
            put_u64(&mut self.payload, chunk.len() as u64);
            for (i, &(parent, addr)) in chunk.iter().enumerate() {
                let id = first + i as u64;
                put_u64(&mut self.payload, id - u64::from(parent));
                put_u64(&mut self.payload, addr);
            }
            self.emit(tag::STACK_NODES)?;
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
    /// have seen some of its items.
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
        // A batch of one record is checked while it is encoded (one pass
        // over the items, not two); a longer one first, since its first
        // records may be sealed before the last is encoded.
        let one_record = items.len() <= COLUMN_BATCH_ITEMS;
        if !one_record
            && items
                .iter()
                .any(|i| matches!(i, ThreadItem::Heap(e) if e.func().is_none()))
        {
            return Err(refused());
        }
        // Keep each record well under the block limit. The columns are
        // copied into the block behind a length written afterwards as a
        // 5-byte varint (non-minimal LEB128, which every reader accepts).
        for chunk in items.chunks(COLUMN_BATCH_ITEMS) {
            self.make_room(columns_record_bound(chunk.len()))?;
            let record_at = self.block.len();
            self.block.push(tag::COLUMNS);
            let len_at = self.block.len();
            self.block
                .extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x00]);
            if !encode_columns(tid, chunk, &mut self.columns, &mut self.block, &mut inspect) {
                self.block.truncate(record_at);
                return Err(refused());
            }
            let len = (self.block.len() - len_at - 5) as u32;
            for (i, byte) in self.block[len_at..len_at + 5].iter_mut().enumerate() {
                let bits = ((len >> (7 * i)) & 0x7f) as u8;
                *byte = if i < 4 { bits | 0x80 } else { bits };
            }
            if self.auto_seal && self.block.len() >= self.block_target {
                self.seal()?;
            }
        }
        Ok(())
    }

    /// Every item with a timestamp below `ts` has been written.
    pub fn watermark(&mut self, ts: u64) -> io::Result<()> {
        put_u64(&mut self.payload, ts);
        self.emit(tag::WATERMARK)
    }

    /// A tick/nanosecond pair for converting timestamps.
    pub fn clock_sync(&mut self, sync: ClockSync) -> io::Result<()> {
        put_u64(&mut self.payload, sync.ticks);
        put_u64(&mut self.payload, sync.mono_ns);
        self.emit(tag::CLOCK_SYNC)
    }

    /// A phase boundary.
    pub fn phase(&mut self, phase: &Phase) -> io::Result<()> {
        phase.encode(&mut self.payload);
        self.emit(tag::PHASE)
    }

    /// A thread's name.
    pub fn thread_name(&mut self, tid: u32, name: &str) -> io::Result<()> {
        put_u64(&mut self.payload, tid.into());
        put_str(&mut self.payload, name);
        self.emit(tag::THREAD_NAME)
    }

    /// A snapshot of the heap's mappings.
    pub fn heap_regions(&mut self, ts: u64, regions: &[Region]) -> io::Result<()> {
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
        sample.encode(&mut self.payload);
        self.emit(tag::RESOURCES)
    }

    /// The exit-time reachability scan, in chunks and a closing summary.
    pub fn leak_scan(&mut self, scan: &LeakScan) -> io::Result<()> {
        // A scan of millions of blocks is tens of megabytes: full blocks are
        // sealed between its records even without auto-sealing, or one block
        // would pass the limit every reader enforces.
        for (i, chunk) in scan.blocks.chunks(CHUNK).enumerate() {
            LeakScan::encode_blocks(i * CHUNK, chunk, &mut self.payload);
            self.emit(tag::LEAK_BLOCKS)?;
            self.seal_if_full()?;
        }
        for chunk in scan.edges.chunks(CHUNK) {
            LeakScan::encode_edges(chunk, &mut self.payload);
            self.emit(tag::LEAK_EDGES)?;
            self.seal_if_full()?;
        }
        scan.encode_summary(&mut self.payload);
        self.emit(tag::LEAK_SCAN)
    }

    /// A message from the recorder for the user (e.g. a hook it could not install).
    pub fn note(&mut self, text: &str) -> io::Result<()> {
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

//! The records of a trace and their encoding.
//!
//! Every record is `tag: u8`, `len: varint`, `payload: len bytes`. Readers
//! skip tags they do not know and ignore payload bytes past the fields they
//! know, so later versions can add records and append fields.

use crate::codec::{
    put_bytes, put_str, put_u32_padded, put_u64, put_u64_at, unzigzag, zigzag, Cursor,
};
use crate::error::DecodeError;

/// Record tags. Values are part of the file format: never reuse one.
pub(crate) mod tag {
    pub const HEADER: u8 = 1;
    pub const MODULE_LOADED: u8 = 2;
    pub const MODULE_UNLOADED: u8 = 3;
    pub const STACK_NODES: u8 = 4;
    pub const BATCH: u8 = 5;
    pub const WATERMARK: u8 = 6;
    pub const CLOCK_SYNC: u8 = 7;
    pub const PHASE: u8 = 8;
    pub const THREAD_NAME: u8 = 9;
    pub const HEAP_REGIONS: u8 = 10;
    pub const TRAILER: u8 = 11;
    pub const NOTE: u8 = 12;
    pub const LEAK_BLOCKS: u8 = 13;
    pub const LEAK_EDGES: u8 = 14;
    pub const LEAK_SCAN: u8 = 15;
    pub const RESOURCES: u8 = 16;
    pub const COLUMNS: u8 = 17;
}

/// How timestamps are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickSource {
    /// The CPU's invariant time-stamp counter; [`ClockSync`] records map it to nanoseconds.
    Tsc,
    /// `CLOCK_MONOTONIC` nanoseconds.
    MonotonicNs,
}

/// Which recorder wrote the trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecorderKind {
    /// The `LD_PRELOAD` library interposing the C allocator.
    Preload,
    /// The Rust `#[global_allocator]` wrapper.
    RustAllocator,
}

/// The first record of every trace: what was traced, where and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Process id of the traced process.
    pub pid: u32,
    /// Its parent's process id.
    pub ppid: u32,
    /// Path of the executable (`/proc/self/exe`).
    pub exe: String,
    /// The command line.
    pub cmdline: Vec<String>,
    /// Wall-clock start time, nanoseconds since the Unix epoch.
    pub start_unix_ns: u64,
    /// The system page size.
    pub page_size: u32,
    /// Pointer size in bytes.
    pub pointer_size: u8,
    /// How event timestamps are counted.
    pub ticks: TickSource,
    /// Which recorder wrote the trace.
    pub recorder: RecorderKind,
    /// Whether the recorder measured time inside the real allocator.
    pub latency_measured: bool,
    /// The run this process belongs to: `memtrace run` gives every process
    /// it starts, and their children, the same random token
    /// (`MEMTRACE_FAMILY`); 0 when unknown (a bare `LD_PRELOAD`, the Rust
    /// recorder, version-2 traces).
    pub family: u64,
}

impl Default for Header {
    /// A header that says nothing about a process: the reader's placeholder
    /// until a file's own arrives, and the start of a synthetic trace's
    /// (`Header { pid: 7, ..Header::default() }`).
    fn default() -> Self {
        Header {
            pid: 0,
            ppid: 0,
            exe: String::new(),
            cmdline: Vec::new(),
            start_unix_ns: 0,
            page_size: 4096,
            pointer_size: 8,
            ticks: TickSource::MonotonicNs,
            recorder: RecorderKind::Preload,
            latency_measured: false,
            family: 0,
        }
    }
}

/// One PT_LOAD segment of a module, as `dl_iterate_phdr` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// `p_vaddr`.
    pub vaddr: u64,
    /// `p_memsz`.
    pub memsz: u64,
    /// `p_flags` (PF_X = 1, PF_W = 2, PF_R = 4).
    pub flags: u32,
}

/// A loaded ELF object: the executable, a shared library or the vDSO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Path of the file (empty for the vDSO).
    pub path: String,
    /// GNU build id, if the object has one.
    pub build_id: Option<Vec<u8>>,
    /// Load bias: runtime address minus ELF virtual address.
    pub load_bias: u64,
    /// Its PT_LOAD segments.
    pub segments: Vec<Segment>,
}

impl Module {
    /// True when `address` lies in one of the module's segments.
    pub fn contains(&self, address: u64) -> bool {
        self.segments.iter().any(|s| {
            let start = self.load_bias.wrapping_add(s.vaddr);
            address >= start && address - start < s.memsz
        })
    }
}

/// A mapping of the heap (brk area or an anonymous mmap region of the allocator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// 0 = `[heap]` (brk), 1 = anonymous mapping.
    pub kind: u8,
}

/// Which function was called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Func {
    /// `malloc` (and C++ `operator new`, which calls it).
    Malloc = 0,
    /// `calloc`.
    Calloc = 1,
    /// `realloc`.
    Realloc = 2,
    /// `reallocarray`.
    ReallocArray = 3,
    /// `free` (and C++ `operator delete`).
    Free = 4,
    /// `posix_memalign`.
    PosixMemalign = 5,
    /// `aligned_alloc`.
    AlignedAlloc = 6,
    /// `memalign`.
    Memalign = 7,
    /// `valloc`.
    Valloc = 8,
    /// `pvalloc`.
    Pvalloc = 9,
    /// Rust `GlobalAlloc::alloc`.
    RustAlloc = 10,
    /// Rust `GlobalAlloc::alloc_zeroed`.
    RustAllocZeroed = 11,
    /// Rust `GlobalAlloc::realloc`.
    RustRealloc = 12,
    /// Rust `GlobalAlloc::dealloc`.
    RustDealloc = 13,
}

impl Func {
    /// Every function, in tag order.
    pub const ALL: [Func; 14] = [
        Func::Malloc,
        Func::Calloc,
        Func::Realloc,
        Func::ReallocArray,
        Func::Free,
        Func::PosixMemalign,
        Func::AlignedAlloc,
        Func::Memalign,
        Func::Valloc,
        Func::Pvalloc,
        Func::RustAlloc,
        Func::RustAllocZeroed,
        Func::RustRealloc,
        Func::RustDealloc,
    ];

    /// Decodes a function tag.
    pub fn from_u8(value: u8) -> Option<Func> {
        Func::ALL.get(value as usize).copied()
    }

    /// The name users know it by.
    pub fn name(self) -> &'static str {
        match self {
            Func::Malloc => "malloc",
            Func::Calloc => "calloc",
            Func::Realloc => "realloc",
            Func::ReallocArray => "reallocarray",
            Func::Free => "free",
            Func::PosixMemalign => "posix_memalign",
            Func::AlignedAlloc => "aligned_alloc",
            Func::Memalign => "memalign",
            Func::Valloc => "valloc",
            Func::Pvalloc => "pvalloc",
            Func::RustAlloc => "rust_alloc",
            Func::RustAllocZeroed => "rust_alloc_zeroed",
            Func::RustRealloc => "rust_realloc",
            Func::RustDealloc => "rust_dealloc",
        }
    }

    /// What the call does to the heap.
    pub fn op(self) -> Op {
        match self {
            Func::Realloc | Func::ReallocArray | Func::RustRealloc => Op::Realloc,
            Func::Free | Func::RustDealloc => Op::Free,
            _ => Op::Alloc,
        }
    }
}

/// The three things a heap call can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Returns a new block.
    Alloc,
    /// Resizes a block, possibly moving it.
    Realloc,
    /// Releases a block.
    Free,
}

/// Index of a node in the stack trie; 0 is the empty stack.
pub type StackId = u32;

/// One heap call, as the recorder saw it.
///
/// The same shape serves all three operations; fields that do not apply are 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeapEvent {
    /// The function called.
    pub func: u8,
    /// Timestamp in ticks: after the call for allocations, before it for frees
    /// and reallocs, so that a block freed by one thread and reused by
    /// another sorts free-first (up to the few-nanosecond skew of `rdtsc`).
    pub ts: u64,
    /// Ticks spent inside the real allocator (stored to within 3%: see
    /// [`quantize_latency`]).
    pub latency: u64,
    /// Address returned (alloc, realloc) or released (free); 0 when the call failed.
    pub addr: u64,
    /// For realloc: the block passed in (0 for `realloc(NULL, n)`).
    pub old_addr: u64,
    /// Requested size in bytes.
    pub size: u64,
    /// Usable size of the returned block (`malloc_usable_size`), 0 if unknown.
    pub usable: u64,
    /// Requested alignment, 0 for the default.
    pub align: u64,
    /// Allocation stack (leaf node of the stack trie); 0 for frees.
    pub stack: StackId,
}

impl HeapEvent {
    /// The function called, if the tag is known.
    pub fn func(&self) -> Option<Func> {
        Func::from_u8(self.func)
    }
}

/// Thread lifecycle markers carried in a thread's own stream.
pub(crate) mod marker {
    /// First event of a thread.
    pub const THREAD_START: u8 = 0x40;
    /// Last event of a thread.
    pub const THREAD_END: u8 = 0x41;
}

/// A thread-stream item: a heap call or a lifecycle marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadItem {
    /// A heap call.
    Heap(HeapEvent),
    /// The thread started (its first recorded moment).
    Start {
        /// Timestamp in ticks.
        ts: u64,
    },
    /// The thread ended.
    End {
        /// Timestamp in ticks.
        ts: u64,
    },
}

impl ThreadItem {
    /// The item's timestamp.
    pub fn ts(&self) -> u64 {
        match self {
            ThreadItem::Heap(e) => e.ts,
            ThreadItem::Start { ts } | ThreadItem::End { ts } => *ts,
        }
    }
}

/// A named phase boundary, with counter values read at that moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    /// Timestamp in ticks.
    pub ts: u64,
    /// Thread that marked it.
    pub tid: u32,
    /// Phase name; an empty name ends the current phase.
    pub name: String,
    /// Counter readings `(counter name, value)`.
    pub counters: Vec<(String, u64)>,
}

/// A pair of clock readings that maps ticks to nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockSync {
    /// Tick counter value.
    pub ticks: u64,
    /// `CLOCK_MONOTONIC` at the same moment, in nanoseconds.
    pub mono_ns: u64,
}

/// The process's resource use at one moment, sampled by the writer thread
/// (every 100 ms and at the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResourceSample {
    /// Timestamp in ticks.
    pub ts: u64,
    /// Resident set size in bytes (`/proc/self/statm`).
    pub rss_bytes: u64,
    /// User CPU time of the process so far, in nanoseconds (`getrusage`).
    pub user_ns: u64,
    /// System CPU time of the process so far, in nanoseconds.
    pub system_ns: u64,
    /// Minor page faults so far.
    pub minor_faults: u64,
    /// Major page faults so far.
    pub major_faults: u64,
}

impl ResourceSample {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        for v in [
            self.ts,
            self.rss_bytes,
            self.user_ns,
            self.system_ns,
            self.minor_faults,
            self.major_faults,
        ] {
            put_u64(out, v);
        }
    }

    pub(crate) fn decode(cur: &mut Cursor) -> Result<Self, DecodeError> {
        Ok(ResourceSample {
            ts: cur.u64()?,
            rss_bytes: cur.u64()?,
            user_ns: cur.u64()?,
            system_ns: cur.u64()?,
            minor_faults: cur.u64()?,
            major_faults: cur.u64()?,
        })
    }
}

/// Totals written when recording ends cleanly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Trailer {
    /// Timestamp of the end, in ticks.
    pub ts: u64,
    /// Heap events recorded.
    pub n_events: u64,
    /// Distinct stack nodes.
    pub n_stack_nodes: u64,
    /// Threads seen.
    pub n_threads: u64,
    /// Events the recorder could not record (should be 0).
    pub n_dropped: u64,
}

/// The bytes of a record before its payload of `len` bytes (tag, length)
/// into `out`; returns how many.
pub(crate) fn put_record_head(out: &mut [u8; 11], tag: u8, len: usize) -> usize {
    out[0] = tag;
    put_u64_at(out, 1, len as u64)
}

impl Header {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        put_u64(out, self.pid.into());
        put_u64(out, self.ppid.into());
        put_str(out, &self.exe);
        put_u64(out, self.cmdline.len() as u64);
        for arg in &self.cmdline {
            put_str(out, arg);
        }
        put_u64(out, self.start_unix_ns);
        put_u64(out, self.page_size.into());
        out.push(self.pointer_size);
        out.push(match self.ticks {
            TickSource::Tsc => 0,
            TickSource::MonotonicNs => 1,
        });
        out.push(match self.recorder {
            RecorderKind::Preload => 0,
            RecorderKind::RustAllocator => 1,
        });
        out.push(self.latency_measured as u8);
        put_u64(out, self.family);
    }

    pub(crate) fn decode(cur: &mut Cursor) -> Result<Self, DecodeError> {
        let pid = cur.u32()?;
        let ppid = cur.u32()?;
        let exe = cur.string()?;
        let n_args = cur.count(1)?;
        let cmdline = (0..n_args)
            .map(|_| cur.string())
            .collect::<Result<_, _>>()?;
        Ok(Header {
            pid,
            ppid,
            exe,
            cmdline,
            start_unix_ns: cur.u64()?,
            page_size: cur.u32()?,
            pointer_size: cur.u8()?,
            ticks: match cur.u8()? {
                0 => TickSource::Tsc,
                _ => TickSource::MonotonicNs,
            },
            recorder: match cur.u8()? {
                0 => RecorderKind::Preload,
                _ => RecorderKind::RustAllocator,
            },
            latency_measured: cur.u8()? != 0,
            // Added in version 3; absent before.
            family: if cur.is_empty() { 0 } else { cur.u64()? },
        })
    }
}

impl Module {
    pub(crate) fn encode(&self, ts: u64, out: &mut Vec<u8>) {
        put_u64(out, ts);
        put_str(out, &self.path);
        put_bytes(out, self.build_id.as_deref().unwrap_or(&[]));
        put_u64(out, self.load_bias);
        put_u64(out, self.segments.len() as u64);
        for s in &self.segments {
            put_u64(out, s.vaddr);
            put_u64(out, s.memsz);
            put_u64(out, s.flags.into());
        }
    }

    pub(crate) fn decode(cur: &mut Cursor) -> Result<(u64, Self), DecodeError> {
        let ts = cur.u64()?;
        let path = cur.string()?;
        let build_id = cur.bytes()?;
        let load_bias = cur.u64()?;
        let n = cur.count(3)?;
        let mut segments = Vec::with_capacity(n);
        for _ in 0..n {
            segments.push(Segment {
                vaddr: cur.u64()?,
                memsz: cur.u64()?,
                flags: cur.u32()?,
            });
        }
        Ok((
            ts,
            Module {
                path,
                build_id: (!build_id.is_empty()).then(|| build_id.to_vec()),
                load_bias,
                segments,
            },
        ))
    }
}

impl Phase {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        put_u64(out, self.ts);
        put_u64(out, self.tid.into());
        put_str(out, &self.name);
        put_u64(out, self.counters.len() as u64);
        for (name, value) in &self.counters {
            put_str(out, name);
            put_u64(out, *value);
        }
    }

    pub(crate) fn decode(cur: &mut Cursor) -> Result<Self, DecodeError> {
        let ts = cur.u64()?;
        let tid = cur.u32()?;
        let name = cur.string()?;
        let n = cur.count(2)?;
        let mut counters = Vec::with_capacity(n);
        for _ in 0..n {
            counters.push((cur.string()?, cur.u64()?));
        }
        Ok(Phase {
            ts,
            tid,
            name,
            counters,
        })
    }
}

impl Trailer {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        for v in [
            self.ts,
            self.n_events,
            self.n_stack_nodes,
            self.n_threads,
            self.n_dropped,
        ] {
            put_u64(out, v);
        }
    }

    pub(crate) fn decode(cur: &mut Cursor) -> Result<Self, DecodeError> {
        Ok(Trailer {
            ts: cur.u64()?,
            n_events: cur.u64()?,
            n_stack_nodes: cur.u64()?,
            n_threads: cur.u64()?,
            n_dropped: cur.u64()?,
        })
    }
}

/// Latency is stored on a log scale: values below 16 exactly, larger ones
/// with 16 steps per power of two (at most 3% off), so that a typical call
/// takes one byte.
pub fn quantize_latency(ticks: u64) -> u64 {
    if ticks < 16 {
        return ticks;
    }
    let e = 63 - u64::from(ticks.leading_zeros());
    let m = (ticks >> (e - 4)) & 15;
    16 + (e - 4) * 16 + m
}

/// The latency a code stands for: the middle of its step.
#[inline]
pub fn dequantize_latency(code: u64) -> u64 {
    if code < 16 {
        return code;
    }
    let e = ((code - 16) / 16 + 4).min(63);
    let m = (code - 16) % 16;
    let step = 1u64 << (e - 4);
    (16 + m).saturating_mul(step).saturating_add(step / 2)
}

/// glibc's usable size for a request: chunks are 16-byte multiples with an
/// 8-byte header, at least 32 bytes. Stored usable sizes are deltas from it.
#[inline]
fn predicted_usable(size: u64) -> u64 {
    (size.saturating_add(8 + 15) & !15).max(32) - 8
}

/// Set in a heap event's tag byte when an alignment follows.
const ALIGN_FLAG: u8 = 0x80;

/// Per-batch delta state shared by the event encoder and decoder.
#[derive(Default)]
struct DeltaState {
    ts: u64,
    addr: u64,
    stack: u32,
}

/// One event's bytes, built on the stack before they join the payload: no
/// capacity check per byte.
#[cfg(test)]
struct EventBytes {
    buf: [u8; 96],
    len: usize,
}

#[cfg(test)]
impl EventBytes {
    #[inline(always)]
    fn new() -> Self {
        EventBytes {
            buf: [0; 96],
            len: 0,
        }
    }

    #[inline(always)]
    fn byte(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    #[inline(always)]
    fn u64(&mut self, v: u64) {
        self.len = put_u64_at(&mut self.buf, self.len, v);
    }

    #[inline(always)]
    fn i64(&mut self, v: i64) {
        self.u64(zigzag(v));
    }
}

/// Encodes one thread's items as a version-2 `BATCH` payload (item after
/// item). The writer now writes [`encode_columns`]; this stays to test that
/// older traces still read.
#[cfg(test)]
pub(crate) fn encode_batch(tid: u32, items: &[ThreadItem], out: &mut Vec<u8>) {
    put_u64(out, tid.into());
    put_u64(out, items.len() as u64);
    out.reserve(items.len() * 16);
    let mut st = DeltaState::default();
    for item in items {
        let mut b = EventBytes::new();
        match item {
            ThreadItem::Start { ts } | ThreadItem::End { ts } => {
                b.byte(if matches!(item, ThreadItem::Start { .. }) {
                    marker::THREAD_START
                } else {
                    marker::THREAD_END
                });
                b.i64(ts.wrapping_sub(st.ts) as i64);
                st.ts = *ts;
            }
            ThreadItem::Heap(e) => {
                let op = Func::from_u8(e.func).map(Func::op);
                let has_align = e.align != 0 && op != Some(Op::Free);
                b.byte(e.func | if has_align { ALIGN_FLAG } else { 0 });
                b.i64(e.ts.wrapping_sub(st.ts) as i64);
                st.ts = e.ts;
                b.u64(quantize_latency(e.latency));
                if op == Some(Op::Free) {
                    b.i64(e.addr.wrapping_sub(st.addr) as i64);
                    st.addr = e.addr;
                } else {
                    if op == Some(Op::Realloc) {
                        b.i64(e.old_addr.wrapping_sub(st.addr) as i64);
                        st.addr = e.old_addr;
                    }
                    b.i64(e.addr.wrapping_sub(st.addr) as i64);
                    st.addr = e.addr;
                    b.u64(e.size);
                    b.i64(e.usable.wrapping_sub(predicted_usable(e.size)) as i64);
                    if has_align {
                        b.u64(e.align);
                    }
                    b.i64(i64::from(e.stack) - i64::from(st.stack));
                    st.stack = e.stack;
                }
            }
        }
        out.extend_from_slice(&b.buf[..b.len]);
    }
}

/// Decodes a batch payload into `items`; returns the thread id.
pub(crate) fn decode_batch_head(cur: &mut Cursor) -> Result<(u32, usize), DecodeError> {
    let tid = cur.u32()?;
    let n = cur.count(2)?;
    Ok((tid, n))
}

/// Where a batch decoder reads each field of an item: version 2's
/// item-by-item batches read every field from one cursor, in item order;
/// version 3's columns read each from the cursor of its column.
trait ItemFields {
    /// Where the next read of column `column` (see [`column::NAMES`])
    /// starts in the block's records, for error messages.
    fn at(&self, column: usize) -> usize;
    fn code(&mut self) -> Result<u8, DecodeError>;
    fn ts_delta(&mut self) -> Result<i64, DecodeError>;
    fn latency_code(&mut self) -> Result<u64, DecodeError>;
    /// The delta of a free's `addr` or a realloc's `old_addr`.
    fn released_delta(&mut self) -> Result<u64, DecodeError>;
    /// The delta of an alloc's or a realloc's `addr`.
    fn returned_delta(&mut self) -> Result<u64, DecodeError>;
    fn size(&mut self) -> Result<u64, DecodeError>;
    fn usable_delta(&mut self) -> Result<i64, DecodeError>;
    fn align(&mut self) -> Result<u64, DecodeError>;
    fn stack_delta(&mut self) -> Result<i64, DecodeError>;
}

impl ItemFields for Cursor<'_> {
    fn at(&self, _column: usize) -> usize {
        Cursor::at(self)
    }
    fn code(&mut self) -> Result<u8, DecodeError> {
        self.u8()
    }
    fn ts_delta(&mut self) -> Result<i64, DecodeError> {
        self.i64()
    }
    fn latency_code(&mut self) -> Result<u64, DecodeError> {
        self.u64()
    }
    fn released_delta(&mut self) -> Result<u64, DecodeError> {
        Ok(self.i64()? as u64)
    }
    fn returned_delta(&mut self) -> Result<u64, DecodeError> {
        Ok(self.i64()? as u64)
    }
    fn size(&mut self) -> Result<u64, DecodeError> {
        self.u64()
    }
    fn usable_delta(&mut self) -> Result<i64, DecodeError> {
        self.i64()
    }
    fn align(&mut self) -> Result<u64, DecodeError> {
        self.u64()
    }
    fn stack_delta(&mut self) -> Result<i64, DecodeError> {
        self.i64()
    }
}

/// Decodes `n` items whose fields `src` gives, in the order a version-2
/// item holds them, handing each to `push`; a heap event whose stack id is
/// not below `n_stacks` is an error.
fn decode_items(
    src: &mut impl ItemFields,
    n: usize,
    n_stacks: u32,
    mut push: impl FnMut(ThreadItem),
) -> Result<(), DecodeError> {
    let mut st = DeltaState::default();
    for _ in 0..n {
        let code_at = src.at(column::CODE);
        let code = src.code()?;
        let ts = st.ts.wrapping_add(src.ts_delta()? as u64);
        st.ts = ts;
        let item = match code {
            marker::THREAD_START => ThreadItem::Start { ts },
            marker::THREAD_END => ThreadItem::End { ts },
            _ => {
                let has_align = code & ALIGN_FLAG != 0;
                let code = code & !ALIGN_FLAG;
                let func = Func::from_u8(code).ok_or_else(|| {
                    DecodeError::malformed_at(code_at, format!("unknown heap function tag {code}"))
                })?;
                let mut e = HeapEvent {
                    func: code,
                    ts,
                    latency: dequantize_latency(src.latency_code()?),
                    ..HeapEvent::default()
                };
                if func.op() == Op::Free {
                    e.addr = st.addr.wrapping_add(src.released_delta()?);
                    st.addr = e.addr;
                } else {
                    if func.op() == Op::Realloc {
                        e.old_addr = st.addr.wrapping_add(src.released_delta()?);
                        st.addr = e.old_addr;
                    }
                    e.addr = st.addr.wrapping_add(src.returned_delta()?);
                    st.addr = e.addr;
                    e.size = src.size()?;
                    e.usable = predicted_usable(e.size).wrapping_add(src.usable_delta()? as u64);
                    if has_align {
                        e.align = src.align()?;
                    }
                    let stack_at = src.at(column::STACK);
                    let stack = i64::from(st.stack) + src.stack_delta()?;
                    e.stack = u32::try_from(stack).map_err(|_| {
                        DecodeError::malformed_at(
                            stack_at,
                            format!("stack id {stack} out of range"),
                        )
                    })?;
                    if e.stack >= n_stacks {
                        return Err(DecodeError::malformed_at(
                            stack_at,
                            format!("event refers to unknown stack {}", e.stack),
                        ));
                    }
                    st.stack = e.stack;
                }
                ThreadItem::Heap(e)
            }
        };
        push(item);
    }
    Ok(())
}

/// Decodes the `n` items of a batch (after [`decode_batch_head`]), handing
/// each to `push`; a heap event whose stack id is not below `n_stacks` is an
/// error.
pub(crate) fn decode_batch_items(
    cur: &mut Cursor,
    n: usize,
    n_stacks: u32,
    push: impl FnMut(ThreadItem),
) -> Result<(), DecodeError> {
    decode_items(cur, n, n_stacks, push)
}

/// The columns of a `COLUMNS` record, in the order they are stored. Each
/// field of every item goes to the column of its kind, so that zstd sees
/// long runs of alike bytes (all timestamps, then all sizes, ...) instead
/// of interleaved fields: the same data compresses to about a sixth less,
/// and faster.
pub(crate) mod column {
    /// The item codes' column, one byte per item; the others follow in the
    /// order of [`NAMES`]: timestamp deltas (every item), latency codes
    /// (heap items), addresses given back (frees' `addr`, reallocs'
    /// `old_addr`), addresses handed out (allocs' and reallocs' `addr`),
    /// requested sizes, usable-size deltas, alignments (items with the align
    /// flag) and stack id deltas (allocs and reallocs).
    pub const CODE: usize = 0;
    /// The stack id deltas' column.
    pub const STACK: usize = 8;
    /// Number of columns.
    pub const COUNT: usize = 9;
    /// Column names, for error messages.
    pub const NAMES: [&str; COUNT] = [
        "code", "ts", "latency", "released", "returned", "size", "usable", "align", "stack",
    ];
}

/// Most items in one `COLUMNS` record: the writer splits larger batches.
/// Longer columns compress better (4% smaller at 32 Ki items than at 8 Ki).
pub(crate) const COLUMN_BATCH_ITEMS: usize = 1 << 15;

/// Most bytes one item adds to one column (an escaped address delta).
const MAX_ITEM_COLUMN_BYTES: usize = 11;

/// Most bytes a `COLUMNS` record of `n_items` items takes in a block, tag
/// and length included (3.3 MB for [`COLUMN_BATCH_ITEMS`]): the writer
/// checks at compile time that the largest fits in a block.
pub(crate) const fn columns_record_bound(n_items: usize) -> usize {
    COLUMNS_HEAD_MAX + n_items * column::COUNT * MAX_ITEM_COLUMN_BYTES
}

/// One column being written: a buffer with room for the largest batch,
/// and the length used so far. Writing by index into a buffer that is
/// already long enough measured faster than `Vec::push`.
#[derive(Default)]
pub(crate) struct Column {
    buf: Vec<u8>,
    len: usize,
}

impl Column {
    /// Makes room for `items` items and empties the column; false, with
    /// nothing changed, when the memory cannot be had.
    fn reserve(&mut self, items: usize) -> bool {
        let need = items * MAX_ITEM_COLUMN_BYTES;
        if self.buf.len() < need {
            if self.buf.try_reserve_exact(need - self.buf.len()).is_err() {
                return false;
            }
            // Within the capacity just reserved: no allocation.
            self.buf.resize(need, 0);
        }
        self.len = 0;
        true
    }

    #[cfg(test)]
    fn reset(&mut self, items: usize) {
        assert!(self.reserve(items));
    }

    #[inline(always)]
    fn byte(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    /// Appends `v` as an unsigned LEB128 varint. (A branch-free variant
    /// that writes eight bytes at once measured slower: most values take
    /// one or two bytes.)
    #[inline(always)]
    fn varint(&mut self, v: u64) {
        self.len = put_u64_at(&mut self.buf, self.len, v);
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The writer's column buffers, kept between batches so that encoding
/// allocates nothing once they have grown.
#[derive(Default)]
pub(crate) struct ColumnScratch {
    cols: [Column; column::COUNT],
}

/// Most bytes of a `COLUMNS` record before its columns: the tag, the
/// 5-byte length, the thread id, the item count and the column lengths.
pub(crate) const COLUMNS_HEAD_MAX: usize = 1 + 5 + 10 * (2 + column::COUNT);

impl ColumnScratch {
    /// Makes room for a batch of `items` items; false, allocating nothing
    /// more, when the memory cannot be had (the caller tries fewer items).
    pub(crate) fn reserve(&mut self, items: usize) -> bool {
        self.cols.iter_mut().all(|c| c.reserve(items))
    }

    /// The record's bytes before the columns, for a batch of `n` items of
    /// thread `tid` just encoded by [`fill_columns`], into `out`; returns
    /// how many. The length is a 5-byte varint (non-minimal LEB128, which
    /// every reader accepts), as the writer has always written it.
    pub(crate) fn head(&self, tid: u32, n: usize, out: &mut [u8; COLUMNS_HEAD_MAX]) -> usize {
        let mut at = 6;
        at = put_u64_at(out, at, tid.into());
        at = put_u64_at(out, at, n as u64);
        for col in &self.cols {
            at = put_u64_at(out, at, col.len as u64);
        }
        let len = (at - 6 + self.cols.iter().map(|c| c.len).sum::<usize>()) as u32;
        out[0] = tag::COLUMNS;
        put_u32_padded(out, 1, len);
        at
    }

    /// The encoded columns, in record order.
    pub(crate) fn bytes(&self) -> [&[u8]; column::COUNT] {
        std::array::from_fn(|i| self.cols[i].bytes())
    }
}

/// Appends an address delta. Heap blocks are 16-byte aligned, so deltas
/// are multiples of 16 and lose their four zero bits: an even code is
/// `zigzag(delta / 16) << 1`, an odd one `zigzag(delta) << 1 | 1`, and the
/// code 1 (never needed otherwise: a zero delta is even) is followed by a
/// plain `zigzag(delta)` for deltas too large to shift.
#[inline(always)]
fn put_addr_delta(out: &mut Column, delta: u64) {
    let d = delta as i64;
    if d & 15 == 0 {
        out.varint(zigzag(d >> 4) << 1);
    } else {
        let z = zigzag(d);
        if z >> 63 == 0 {
            out.varint((z << 1) | 1);
        } else {
            out.byte(1);
            out.varint(z);
        }
    }
}

/// Reads an address delta written by [`put_addr_delta`].
#[inline(always)]
fn addr_delta(cur: &mut Cursor) -> Result<u64, DecodeError> {
    let v = cur.u64()?;
    let d = if v & 1 == 0 {
        unzigzag(v >> 1).wrapping_shl(4)
    } else if v == 1 {
        unzigzag(cur.u64()?)
    } else {
        unzigzag(v >> 1)
    };
    Ok(d as u64)
}

/// Encodes one thread's items as a `COLUMNS` payload:
/// `tid n len[COUNT] column[COUNT]`, handing each item to `inspect` first.
/// Returns false, having appended nothing, when a heap event's function
/// code is unknown.
#[cfg(test)]
#[must_use]
pub(crate) fn encode_columns(
    tid: u32,
    items: &[ThreadItem],
    scratch: &mut ColumnScratch,
    out: &mut Vec<u8>,
    inspect: &mut impl FnMut(&ThreadItem),
) -> bool {
    assert!(scratch.reserve(items.len()));
    if !fill_columns(items, scratch, inspect) {
        return false;
    }
    let mut head = [0u8; COLUMNS_HEAD_MAX];
    let n = scratch.head(tid, items.len(), &mut head);
    out.extend_from_slice(&head[6..n]);
    for col in scratch.bytes() {
        out.extend_from_slice(col);
    }
    true
}

/// Encodes items into the columns of `scratch`, which
/// [`ColumnScratch::reserve`] made room for, handing each item to `inspect`
/// first: nothing here allocates. Returns false when a heap event's
/// function code is unknown.
#[must_use]
pub(crate) fn fill_columns(
    items: &[ThreadItem],
    scratch: &mut ColumnScratch,
    inspect: &mut impl FnMut(&ThreadItem),
) -> bool {
    let [codes, ts_col, lat_col, released, returned, sizes, usables, aligns, stacks] =
        &mut scratch.cols;
    for col in [
        &mut *codes,
        &mut *ts_col,
        &mut *lat_col,
        &mut *released,
        &mut *returned,
        &mut *sizes,
        &mut *usables,
        &mut *aligns,
        &mut *stacks,
    ] {
        debug_assert!(col.buf.len() >= items.len() * MAX_ITEM_COLUMN_BYTES);
        col.len = 0;
    }
    let mut st = DeltaState::default();
    for item in items {
        inspect(item);
        match item {
            ThreadItem::Start { ts } | ThreadItem::End { ts } => {
                codes.byte(if matches!(item, ThreadItem::Start { .. }) {
                    marker::THREAD_START
                } else {
                    marker::THREAD_END
                });
                ts_col.varint(zigzag(ts.wrapping_sub(st.ts) as i64));
                st.ts = *ts;
            }
            ThreadItem::Heap(e) => {
                let Some(func) = Func::from_u8(e.func) else {
                    return false;
                };
                let op = Some(func.op());
                let has_align = e.align != 0 && op != Some(Op::Free);
                codes.byte(e.func | if has_align { ALIGN_FLAG } else { 0 });
                ts_col.varint(zigzag(e.ts.wrapping_sub(st.ts) as i64));
                st.ts = e.ts;
                lat_col.varint(quantize_latency(e.latency));
                if op == Some(Op::Free) {
                    put_addr_delta(released, e.addr.wrapping_sub(st.addr));
                    st.addr = e.addr;
                    continue;
                }
                if op == Some(Op::Realloc) {
                    put_addr_delta(released, e.old_addr.wrapping_sub(st.addr));
                    st.addr = e.old_addr;
                }
                put_addr_delta(returned, e.addr.wrapping_sub(st.addr));
                st.addr = e.addr;
                sizes.varint(e.size);
                usables.varint(zigzag(
                    e.usable.wrapping_sub(predicted_usable(e.size)) as i64
                ));
                if has_align {
                    aligns.varint(e.align);
                }
                stacks.varint(zigzag(i64::from(e.stack) - i64::from(st.stack)));
                st.stack = e.stack;
            }
        }
    }
    true
}

/// A `COLUMNS` payload split into its columns, ready to decode.
pub(crate) struct Columns<'a> {
    /// The thread id.
    pub tid: u32,
    /// Number of items.
    pub n: usize,
    cols: [Cursor<'a>; column::COUNT],
}

/// Reads a `COLUMNS` payload's head and cuts its columns apart.
pub(crate) fn decode_columns_head<'a>(cur: &mut Cursor<'a>) -> Result<Columns<'a>, DecodeError> {
    let tid = cur.u32()?;
    let n = cur.count(2)?;
    let mut lens = [0usize; column::COUNT];
    for len in &mut lens {
        *len = cur.len()?;
    }
    if lens[column::CODE] != n {
        return Err(DecodeError::malformed_at(
            cur.at(),
            format!("batch of {n} items has {} item codes", lens[column::CODE]),
        ));
    }
    let mut take = |i: usize| cur.sub(lens[i], column::NAMES[i]);
    let cols = [
        take(0)?,
        take(1)?,
        take(2)?,
        take(3)?,
        take(4)?,
        take(5)?,
        take(6)?,
        take(7)?,
        take(8)?,
    ];
    Ok(Columns { tid, n, cols })
}

/// The column cursors of a `COLUMNS` payload, read field by field.
struct ColumnCursors<'a>([Cursor<'a>; column::COUNT]);

impl ItemFields for ColumnCursors<'_> {
    fn at(&self, column: usize) -> usize {
        self.0[column].at()
    }
    fn code(&mut self) -> Result<u8, DecodeError> {
        self.0[0].u8()
    }
    fn ts_delta(&mut self) -> Result<i64, DecodeError> {
        self.0[1].i64()
    }
    fn latency_code(&mut self) -> Result<u64, DecodeError> {
        self.0[2].u64()
    }
    fn released_delta(&mut self) -> Result<u64, DecodeError> {
        addr_delta(&mut self.0[3])
    }
    fn returned_delta(&mut self) -> Result<u64, DecodeError> {
        addr_delta(&mut self.0[4])
    }
    fn size(&mut self) -> Result<u64, DecodeError> {
        self.0[5].u64()
    }
    fn usable_delta(&mut self) -> Result<i64, DecodeError> {
        self.0[6].i64()
    }
    fn align(&mut self) -> Result<u64, DecodeError> {
        self.0[7].u64()
    }
    fn stack_delta(&mut self) -> Result<i64, DecodeError> {
        self.0[8].i64()
    }
}

/// Decodes the items of a `COLUMNS` payload, handing each to `push`; a heap
/// event whose stack id is not below `n_stacks`, or a column with bytes
/// left over, is an error.
pub(crate) fn decode_columns_items(
    columns: Columns,
    n_stacks: u32,
    push: impl FnMut(ThreadItem),
) -> Result<(), DecodeError> {
    let Columns { n, cols, .. } = columns;
    let mut cols = ColumnCursors(cols);
    decode_items(&mut cols, n, n_stacks, push)?;
    for (i, col) in cols.0.iter().enumerate() {
        if !col.is_empty() {
            return Err(DecodeError::malformed_at(
                col.at(),
                format!(
                    "batch column {} has bytes after its last item",
                    column::NAMES[i]
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_survives_within_three_percent() {
        for ticks in (0..5000u64).chain([1 << 20, 123_456_789, u64::MAX / 3]) {
            let back = dequantize_latency(quantize_latency(ticks));
            let err = back.abs_diff(ticks) as f64 / ticks.max(1) as f64;
            assert!(err <= 1.0 / 32.0, "{ticks} came back as {back}");
        }
        assert!(
            quantize_latency(2047) < 128,
            "calls under ~700 ns take one byte"
        );
    }

    #[test]
    fn usable_sizes_follow_glibc() {
        assert_eq!(predicted_usable(0), 24);
        assert_eq!(predicted_usable(24), 24);
        assert_eq!(predicted_usable(25), 40);
        assert_eq!(predicted_usable(4096), 4104);
    }

    /// Items that reach every corner of both batch encodings.
    fn corner_items() -> Vec<ThreadItem> {
        let heap = |func: Func, ts, addr, old_addr, size, usable, align, stack| {
            ThreadItem::Heap(HeapEvent {
                func: func as u8,
                ts,
                latency: 31,
                addr,
                old_addr,
                size,
                usable,
                align,
                stack,
            })
        };
        vec![
            ThreadItem::Start { ts: 1000 },
            heap(Func::Malloc, 1010, 0x5555_0000_0010, 0, 24, 24, 0, 3),
            // A misaligned address, then one so far away that its delta
            // cannot be shifted, then back to a 16-byte multiple.
            heap(Func::Malloc, 1020, 0x5555_0000_0013, 0, 1, 24, 0, 1),
            heap(Func::Calloc, 1030, u64::MAX - 6, 0, u64::MAX, 0, 0, 2),
            heap(Func::Free, 1040, 0x5555_0000_0010, 0, 0, 0, 0, 0),
            heap(Func::PosixMemalign, 1050, 0x7000, 0, 100, 104, 4096, 2),
            heap(
                Func::Realloc,
                1045,
                0x8000_0000_0000_0000,
                0x7000,
                200,
                200,
                0,
                0,
            ),
            heap(Func::Realloc, 1060, 0, 0x8000_0000_0000_0000, 0, 0, 0, 0),
            heap(Func::Malloc, 1070, 0, 0, 1 << 40, 0, 0, 3),
            ThreadItem::End { ts: 999 },
        ]
    }

    fn decode_both_ways(items: &[ThreadItem]) -> (Vec<ThreadItem>, Vec<ThreadItem>) {
        let mut v2 = Vec::new();
        encode_batch(7, items, &mut v2);
        let mut cur = Cursor::new(&v2, "batch");
        let (tid, n) = decode_batch_head(&mut cur).unwrap();
        assert_eq!((tid, n), (7, items.len()));
        let mut from_v2 = Vec::new();
        decode_batch_items(&mut cur, n, 4, |i| from_v2.push(i)).unwrap();

        let mut v3 = Vec::new();
        assert!(encode_columns(
            7,
            items,
            &mut ColumnScratch::default(),
            &mut v3,
            &mut |_| {}
        ));
        let columns = decode_columns_head(&mut Cursor::new(&v3, "columns")).unwrap();
        assert_eq!((columns.tid, columns.n), (7, items.len()));
        let mut from_v3 = Vec::new();
        decode_columns_items(columns, 4, |i| from_v3.push(i)).unwrap();
        (from_v2, from_v3)
    }

    #[test]
    fn columns_and_item_batches_decode_to_the_same_items() {
        let items = corner_items();
        let (from_v2, from_v3) = decode_both_ways(&items);
        // Latency 31 is below 32, so exact; everything else is exact too.
        assert_eq!(from_v3, items);
        assert_eq!(from_v2, items);
    }

    #[test]
    fn column_varints_match_leb128() {
        let mut values = vec![
            0u64,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::MAX,
            1 << 56,
            (1 << 56) - 1,
        ];
        values.extend((0..64).map(|b| 1u64 << b));
        values.extend((1..64).map(|b| (1u64 << b) - 1));
        let mut col = Column::default();
        col.reset(values.len());
        let mut expected = Vec::new();
        for &v in &values {
            col.varint(v);
            put_u64(&mut expected, v);
        }
        assert_eq!(col.bytes(), &expected[..]);
    }

    #[test]
    fn addresses_take_four_bits_less_when_aligned() {
        for delta in [
            0u64,
            16,
            0u64.wrapping_sub(16),
            0x10_0000,
            3,
            u64::MAX,
            1 << 63,
        ] {
            let mut out = Column::default();
            out.reset(1);
            put_addr_delta(&mut out, delta);
            let mut cur = Cursor::new(out.bytes(), "t");
            assert_eq!(addr_delta(&mut cur).unwrap(), delta, "{delta:#x}");
            assert!(cur.is_empty());
        }
        let mut out = Column::default();
        out.reset(1);
        put_addr_delta(&mut out, 496); // 31 × 16: one byte, where zigzag(496) needs two
        assert_eq!(out.bytes(), [124]);
    }

    #[test]
    fn a_column_with_bytes_left_over_is_malformed() {
        let items = corner_items();
        let mut scratch = ColumnScratch::default();
        let mut out = Vec::new();
        assert!(encode_columns(
            7,
            &items,
            &mut scratch,
            &mut out,
            &mut |_| {}
        ));
        // Re-encode with one extra byte in the stack column (the last one).
        let mut grown = Vec::new();
        put_u64(&mut grown, 7);
        put_u64(&mut grown, items.len() as u64);
        for (i, col) in scratch.cols.iter().enumerate() {
            put_u64(
                &mut grown,
                col.len as u64 + u64::from(i == column::COUNT - 1),
            );
        }
        for col in &scratch.cols {
            grown.extend_from_slice(col.bytes());
        }
        grown.push(0);
        let columns = decode_columns_head(&mut Cursor::new(&grown, "columns")).unwrap();
        let err = decode_columns_items(columns, 4, |_| {}).unwrap_err();
        // The position is that of the extra byte, the payload's last.
        assert_eq!(
            err.to_string(),
            format!(
                "trace is corrupt: byte {} of a block's records: \
                 batch column stack has bytes after its last item",
                grown.len() - 1
            )
        );
    }

    #[test]
    fn a_code_column_shorter_than_the_count_is_malformed() {
        let mut out = Vec::new();
        put_u64(&mut out, 7);
        put_u64(&mut out, 2);
        for len in [1u64, 2, 0, 0, 0, 0, 0, 0, 0] {
            put_u64(&mut out, len);
        }
        out.extend_from_slice(&[marker::THREAD_START, 2, 2]);
        let err = decode_columns_head(&mut Cursor::new(&out, "columns"))
            .err()
            .unwrap();
        // After `tid`, `n` and the nine lengths: byte 11.
        assert_eq!(
            err.to_string(),
            "trace is corrupt: byte 11 of a block's records: batch of 2 items has 1 item codes"
        );
    }
}

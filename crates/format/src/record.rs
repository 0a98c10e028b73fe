//! The records of a trace and their encoding.
//!
//! Every record is `tag: u8`, `len: varint`, `payload: len bytes`. Readers
//! skip tags they do not know and ignore payload bytes past the fields they
//! know, so later versions can add records and append fields.
//!
//! This module holds the record types; their encodings are in submodules of
//! one job each: `payload` (the single records: header, module, phase,
//! resource sample, trailer), `latency` (the log-scale quantisation of latencies), `items`
//! (what both thread-batch encodings share: the delta state and the item
//! decoder), `batch` (version 2's item-by-item `BATCH` records, still read)
//! and `columns` (version 3's column-wise `COLUMNS` records, written).

use crate::codec::put_u64_at;

mod batch;
mod columns;
mod items;
mod latency;
mod payload;

pub(crate) use batch::{decode_batch_head, decode_batch_items};
pub(crate) use columns::{
    column, columns_record_bound, decode_columns_head, decode_columns_items, fill_columns,
    ColumnScratch, COLUMNS_HEAD_MAX, COLUMN_BATCH_ITEMS,
};
pub use latency::{dequantize_latency, quantize_latency};

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

//! External fragmentation of the real heap: the holes between live blocks
//! in glibc's main arena (the `[heap]` brk region), over time and at the
//! peak, rebuilt from the trace's events and its heap-region snapshots.
//!
//! A hole is the free space between two neighbouring live blocks (or between
//! the start of the heap and the first block). With glibc's layout a block
//! at `a` with usable size `u` is followed by the next chunk's 8-byte size
//! field, so the hole between blocks `a` and `b` is `b - a - u - 8` bytes.
//! The free space above the last block (the top chunk, where the heap grows)
//! is not a hole: it is reported apart as `top_free`. External
//! fragmentation is `1 - largest_hole / free_in_holes`.
//!
//! Blocks outside `[heap]` are not placed, but counted, so that the output
//! says what it leaves out: blocks glibc gave their own mapping (above the
//! mmap threshold, recognized by their usable size: a whole number of pages
//! less the 16-byte chunk header, at 16 bytes past a page boundary) have no
//! holes, only page rounding, reported as such; everything else (the
//! arenas of other threads, blocks of another allocator) is reported as
//! not mapped, in blocks and bytes. The heap's extent is the snapshots',
//! grown to cover blocks placed above it since the last one (glibc can grow
//! the brk heap and trim it again between two snapshots, 100 ms apart):
//! such a block is in the heap when it lies within 64 MiB of its
//! known end and in none of the allocator's other mappings.
//!
//! Internal fragmentation is what a block's usable size adds to its
//! request (`malloc_usable_size` less the size asked for), over every live
//! block, by size class and by allocation stack, at the peak and the end.
//!
//! The trace is read once ([`RealHeap`], an [`EventSink`] that can share a
//! decode with other analyses, see [`crate::sink`]): the state at the
//! peak is kept as a copy, and holes are judged stranded at the end, when
//! every later request is known. Memory is bounded by the live blocks and
//! the heap's extent (one bit per 8 bytes of `[heap]`), twice over for the
//! copy, not by the length of the trace.

use memtrace_format::{DecodeError, Event, Op, Reader, Region, StackId};
use memtrace_frag::SmallestLater;
use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::receipts::ReceiptOrder;
use crate::sink::{EventSink, Trace};

/// glibc's chunk header between two blocks.
const HEADER: u64 = 8;
/// Holes at least this large that sit on both sides of a live block make it
/// a block that pins free memory.
const LARGE_HOLE: u64 = 1024;
/// A block at most this far above the heap's known end, outside the
/// allocator's other mappings and not a chunk of its own, lies in the brk
/// heap grown since the last snapshot: glibc grows it by a request plus its
/// 128 KiB pad at a time, and a request that large (above the 32 MiB at
/// most of the mmap threshold) would have its own mapping.
const MAX_BRK_STEP: u64 = 64 << 20;
/// Address granule of the layout's bitmap: real block addresses are
/// multiples of 8 (16 for glibc on x86_64), and two blocks are never closer
/// than that.
const GRANULE: u64 = 8;

/// The heap's state at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct HeapPoint {
    /// Nanoseconds from the start of the trace.
    pub time_ns: u64,
    /// Bytes requested by the live blocks of the whole program.
    pub live_bytes: u64,
    /// Size of the `[heap]` region.
    pub extent_bytes: u64,
    /// Live blocks inside it.
    pub blocks_in_heap: u64,
    /// Free bytes in holes between live blocks.
    pub free_in_holes: u64,
    /// Free bytes above the last live block.
    pub top_free: u64,
    /// Number of holes.
    pub n_holes: u64,
    /// The largest hole.
    pub largest_hole: u64,
    /// `1 - largest_hole / free_in_holes` (0 when there is no hole).
    pub external: f64,
    /// Live blocks in their own mapping (glibc's mmap'd chunks, outside
    /// `[heap]`): no holes, only page rounding.
    pub mmapped_blocks: u64,
    /// Bytes requested by them.
    pub mmapped_bytes: u64,
    /// Bytes of their mappings (usable size plus the 16-byte header).
    pub mmapped_mapped_bytes: u64,
    /// Live blocks neither in `[heap]` nor in a mapping of their own (other
    /// threads' arenas, another allocator): not mapped by this analysis.
    pub unmapped_blocks: u64,
    /// Bytes requested by them.
    pub unmapped_bytes: u64,
    /// Internal fragmentation of all live blocks: usable bytes (what
    /// `malloc_usable_size` gives) less requested bytes.
    pub internal_bytes: u64,
    /// `internal_bytes` over the live blocks' usable bytes (0 without any).
    pub internal: f64,
}

/// Internal fragmentation of the live blocks of one group (a size class or
/// an allocation stack) at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Internal {
    /// The size class (requests of `2^(k-1)` to `2^k - 1` bytes, 0 for 0),
    /// by its least request: set for the per-class rows.
    pub size_from: Option<u64>,
    /// ... and its greatest.
    pub size_to: Option<u64>,
    /// The allocation stack: set for the per-site rows.
    pub stack: Option<StackId>,
    /// Live blocks.
    pub blocks: u64,
    /// Bytes they requested.
    pub requested_bytes: u64,
    /// Their usable bytes less what they requested.
    pub internal_bytes: u64,
    /// `internal_bytes / (requested_bytes + internal_bytes)`.
    pub internal: f64,
}

/// Holes no request fits: the same rule as the allocator models'
/// ([`memtrace_frag::PolicyReport::n_stranded_holes`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stranded {
    /// Holes smaller than the chunk glibc would carve for each request made
    /// after the hole got its present size, to the end of the trace (holes
    /// no request came after are not counted).
    pub holes: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Live blocks that sit between large holes, by allocation stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pinning {
    /// The allocation stack.
    pub stack: StackId,
    /// Live blocks of that stack with a large hole on each side.
    pub blocks: u64,
    /// Bytes of the holes next to them, each hole counted once (for the
    /// block before it when both sides of it pin).
    pub hole_bytes: u64,
}

/// The real heap over a whole trace.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HeapMap {
    /// Evenly spaced points, by heap event (500 to 1,000 of them once the
    /// trace has 1,000 heap events).
    pub timeline: Vec<HeapPoint>,
    /// The point where live bytes peaked.
    pub at_peak: HeapPoint,
    /// The end of the trace.
    pub at_end: HeapPoint,
    /// Stacks whose live blocks pin large holes at the peak, most bytes first.
    pub pinning_at_peak: Vec<Pinning>,
    /// Stacks whose live blocks pin large holes at the end.
    pub pinning_at_end: Vec<Pinning>,
    /// Stranded holes at the live peak.
    pub stranded_at_peak: Stranded,
    /// Stranded holes at the end.
    pub stranded_at_end: Stranded,
    /// The holes at the end as `(size, count)`, the most bytes first (20 at most).
    pub holes_at_end: Vec<(u64, u64)>,
    /// False when the trace has no `[heap]` snapshot (nothing to measure).
    pub measured: bool,
    /// Internal fragmentation at the live peak by size class, smallest
    /// class first.
    pub internal_by_size_at_peak: Vec<Internal>,
    /// ... and by allocation stack, most internal bytes first (20 at most).
    pub internal_by_site_at_peak: Vec<Internal>,
    /// The same at the end.
    pub internal_by_size_at_end: Vec<Internal>,
    /// ... and by stack.
    pub internal_by_site_at_end: Vec<Internal>,
    /// The trace's duration ([`memtrace_format::Span`]), in nanoseconds:
    /// every `time_ns` here is an offset into it.
    pub duration_ns: u64,
}

/// A set of granules (multiples of [`GRANULE`] above a base address) as a
/// hierarchy of bitmaps: level 0 has a bit per granule, each level above a
/// bit per non-zero word below, so the next member above or below any
/// granule is found in a few word operations per level.
#[derive(Clone, Default)]
struct GranuleSet {
    levels: Vec<Vec<u64>>,
}

impl GranuleSet {
    /// Room for granules `0..n`, members kept. The room at least doubles
    /// when it grows, so a heap that grows a little at a time costs the
    /// rebuild of the levels above only once per doubling.
    fn reserve(&mut self, n: u64) {
        let words = n.div_ceil(64).max(1) as usize;
        let had = self.levels.first().map_or(0, Vec::len);
        if had >= words {
            return;
        }
        let mut base = std::mem::take(&mut self.levels)
            .into_iter()
            .next()
            .unwrap_or_default();
        base.resize(words.max(2 * had), 0);
        self.levels = vec![base];
        while self.levels.last().is_some_and(|l| l.len() > 1) {
            let below = self.levels.last().expect("a level");
            let mut up = vec![0u64; below.len().div_ceil(64)];
            for (i, &w) in below.iter().enumerate() {
                if w != 0 {
                    up[i / 64] |= 1 << (i % 64);
                }
            }
            self.levels.push(up);
        }
    }

    fn capacity(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64 * 64)
    }

    fn contains(&self, g: u64) -> bool {
        g < self.capacity() && self.levels[0][(g / 64) as usize] & (1 << (g % 64)) != 0
    }

    fn insert(&mut self, mut g: u64) {
        for level in &mut self.levels {
            let word = &mut level[(g / 64) as usize];
            let was = *word;
            *word |= 1 << (g % 64);
            if was != 0 {
                break;
            }
            g /= 64;
        }
    }

    fn remove(&mut self, mut g: u64) {
        for level in &mut self.levels {
            let word = &mut level[(g / 64) as usize];
            *word &= !(1 << (g % 64));
            if *word != 0 {
                break;
            }
            g /= 64;
        }
    }

    /// The largest member `< g`.
    fn below(&self, g: u64) -> Option<u64> {
        let mut pos = g.min(self.capacity());
        let mut level = 0;
        loop {
            let words = self.levels.get(level)?;
            let (w, b) = ((pos / 64) as usize, pos % 64);
            if let Some(&word) = words.get(w) {
                let masked = word & ((1u64 << b) - 1);
                if masked != 0 {
                    pos = w as u64 * 64 + 63 - u64::from(masked.leading_zeros());
                    break;
                }
            }
            if w == 0 {
                return None;
            }
            pos = w as u64;
            level += 1;
        }
        while level > 0 {
            level -= 1;
            let word = self.levels[level][pos as usize];
            pos = pos * 64 + 63 - u64::from(word.leading_zeros());
        }
        Some(pos)
    }

    /// The smallest member `>= g`.
    fn at_or_above(&self, g: u64) -> Option<u64> {
        let mut pos = g;
        let mut level = 0;
        loop {
            let words = self.levels.get(level)?;
            let (w, b) = ((pos / 64) as usize, pos % 64);
            let word = *words.get(w)?;
            let masked = word & (!0u64 << b);
            if masked != 0 {
                pos = w as u64 * 64 + u64::from(masked.trailing_zeros());
                break;
            }
            pos = w as u64 + 1;
            level += 1;
        }
        while level > 0 {
            level -= 1;
            let word = self.levels[level][pos as usize];
            pos = pos * 64 + u64::from(word.trailing_zeros());
        }
        Some(pos)
    }
}

/// A live block.
#[derive(Clone, Copy)]
struct Block {
    size: u64,
    usable: u64,
    stack: StackId,
}

/// Live blocks in address order with the holes between them.
#[derive(Clone, Default)]
struct Layout {
    /// `[heap]` as of the latest snapshot.
    region: Option<(u64, u64)>,
    /// Blocks anywhere in `[start, limit)` belong to the heap: `limit` is the
    /// largest end of any snapshot, so blocks made before a snapshot caught
    /// up with the heap's growth are not missed.
    limit: u64,
    blocks: GranuleSet,
    /// The addresses of blocks not on a granule boundary, by granule.
    unaligned: FxHashMap<u64, u64>,
    n_blocks: u64,
    /// Bytes requested by the blocks in the heap.
    block_bytes: u64,
    /// Hole size to the number of holes of that size.
    holes: FxHashMap<u64, u64>,
    free_in_holes: u64,
    n_holes: u64,
    /// Each hole by the block above it (every hole has one: the free space
    /// above the last block is the top, not a hole): its size and the
    /// number of allocations made when it got that size.
    births: FxHashMap<u64, (u64, u64)>,
    /// Allocations made so far: the birth of a hole made now.
    now: u64,
}

impl Layout {
    /// Takes a block at `addr` of `usable` bytes above the known end into
    /// the heap when it can only lie in the brk heap grown since the last
    /// snapshot ([`MAX_BRK_STEP`]): not a chunk of its own, in none of the
    /// allocator's other mappings (`arenas`).
    fn grow_for(&mut self, addr: u64, b: Block, page: u64, arenas: &[(u64, u64)]) {
        let Some((start, _)) = self.region else {
            return;
        };
        if addr < self.limit
            || addr < start
            || addr - self.limit >= MAX_BRK_STEP
            || Mmapped::is_mmapped(addr, b, page)
            || arenas.iter().any(|&(s, e)| s <= addr && addr < e)
        {
            return;
        }
        self.limit = addr + b.usable + HEADER;
        self.blocks.reserve((self.limit - start).div_ceil(GRANULE));
    }

    fn hole_between(&self, left_end: u64, right_start: u64) -> u64 {
        right_start.saturating_sub(left_end).saturating_sub(HEADER)
    }

    fn start(&self) -> u64 {
        self.region.map_or(0, |(s, _)| s)
    }

    fn granule(&self, addr: u64) -> u64 {
        (addr - self.start()) / GRANULE
    }

    fn addr(&self, g: u64) -> u64 {
        if self.unaligned.is_empty() {
            return self.start() + g * GRANULE;
        }
        self.unaligned
            .get(&g)
            .copied()
            .unwrap_or(self.start() + g * GRANULE)
    }

    /// The end of the block before `addr`, or the heap start.
    fn left_end(&self, addr: u64, live: &FxHashMap<u64, Block>) -> u64 {
        match self.blocks.below(self.granule(addr)) {
            Some(g) => {
                let a = self.addr(g);
                a + live.get(&a).map_or(0, |b| b.usable)
            }
            None => self.start() + HEADER,
        }
    }

    fn right(&self, addr: u64) -> Option<u64> {
        self.blocks
            .at_or_above(self.granule(addr) + 1)
            .map(|g| self.addr(g))
    }

    /// Adds a hole of `size` bytes below the block at `right`, born now.
    fn add_hole(&mut self, right: u64, size: u64) {
        if size > 0 {
            *self.holes.entry(size).or_default() += 1;
            self.free_in_holes += size;
            self.n_holes += 1;
            self.births.insert(right, (size, self.now));
        }
    }

    /// Takes out the hole of `size` bytes below the block at `right`.
    fn remove_hole(&mut self, right: u64, size: u64) {
        if size == 0 {
            return;
        }
        self.births.remove(&right);
        if let Some(n) = self.holes.get_mut(&size) {
            *n -= 1;
            if *n == 0 {
                self.holes.remove(&size);
            }
            self.free_in_holes -= size;
            self.n_holes -= 1;
        }
    }

    fn contains(&self, addr: u64) -> bool {
        self.region
            .is_some_and(|(s, _)| addr >= s && addr < self.limit)
    }

    fn has_block(&self, addr: u64) -> bool {
        self.contains(addr) && {
            let g = self.granule(addr);
            self.blocks.contains(g) && self.addr(g) == addr
        }
    }

    /// Places `block` (already in `live`, or about to be) at `addr`.
    fn insert(&mut self, addr: u64, block: Block, live: &FxHashMap<u64, Block>) {
        if !self.contains(addr) || self.blocks.contains(self.granule(addr)) {
            return;
        }
        let left_end = self.left_end(addr, live);
        if let Some(right) = self.right(addr) {
            self.remove_hole(right, self.hole_between(left_end, right));
            self.add_hole(right, self.hole_between(addr + block.usable, right));
        }
        self.add_hole(addr, self.hole_between(left_end, addr));
        let g = self.granule(addr);
        self.blocks.insert(g);
        if addr != self.addr(g) {
            self.unaligned.insert(g, addr);
        }
        self.n_blocks += 1;
        self.block_bytes += block.size;
    }

    /// Takes the block at `addr` (still in `live`) out.
    fn remove(&mut self, addr: u64, live: &FxHashMap<u64, Block>) {
        if !self.has_block(addr) {
            return;
        }
        let block = live.get(&addr).copied().expect("placed blocks are live");
        let g = self.granule(addr);
        self.blocks.remove(g);
        self.unaligned.remove(&g);
        self.n_blocks -= 1;
        self.block_bytes -= block.size;
        let left_end = self.left_end(addr, live);
        self.remove_hole(addr, self.hole_between(left_end, addr));
        if let Some(right) = self.right(addr) {
            self.remove_hole(right, self.hole_between(addr + block.usable, right));
            self.add_hole(right, self.hole_between(left_end, right));
        }
    }

    /// Moves to a new `[heap]` range (`limit` as in the field), placing the
    /// live blocks of `live` that lie in it.
    fn set_region(&mut self, start: u64, end: u64, limit: u64, live: &FxHashMap<u64, Block>) {
        // A heap that grew past every snapshot keeps what it grew to.
        let limit = if self.start() == start && self.region.is_some() {
            limit.max(self.limit)
        } else {
            limit
        };
        if self.region == Some((start, end)) && self.limit == limit {
            return;
        }
        let (old_births, now) = (std::mem::take(&mut self.births), self.now);
        *self = Layout {
            region: Some((start, end)),
            limit,
            now,
            ..Layout::default()
        };
        self.blocks
            .reserve(limit.saturating_sub(start).div_ceil(GRANULE));
        let mut inside: Vec<(u64, Block)> = live
            .iter()
            .filter(|(&a, _)| a >= start && a < limit)
            .map(|(&a, &b)| (a, b))
            .collect();
        inside.sort_unstable_by_key(|&(a, _)| a);
        for (a, b) in inside {
            self.insert(a, b, live);
        }
        // A hole that was there before the snapshot keeps its birth.
        for (right, (size, birth)) in &mut self.births {
            if let Some(&(old_size, old_birth)) = old_births.get(right) {
                if old_size == *size {
                    *birth = old_birth;
                }
            }
        }
    }

    /// The holes smaller than the chunk of every request made after they
    /// got their size ([`Stranded`]).
    fn stranded(&self, later: &SmallestLater) -> Stranded {
        let mut s = Stranded::default();
        for &(size, birth) in self.births.values() {
            if later.after(birth).is_some_and(|r| size < chunk_for(r)) {
                s.holes += 1;
                s.bytes += size;
            }
        }
        s
    }

    /// The blocks in address order.
    fn addresses(&self) -> impl Iterator<Item = u64> + '_ {
        let mut next = 0;
        std::iter::from_fn(move || {
            let g = self.blocks.at_or_above(next)?;
            next = g + 1;
            Some(self.addr(g))
        })
    }

    fn point(&self, live_bytes: u64, live: &FxHashMap<u64, Block>) -> HeapPoint {
        let (extent, top_free) = match self.region {
            Some((start, end)) => {
                let top = match self.blocks.below(self.blocks.capacity()) {
                    Some(g) => {
                        let a = self.addr(g);
                        a + live.get(&a).map_or(0, |b| b.usable)
                    }
                    None => start,
                };
                let end = end.max(top);
                (end - start, end - top)
            }
            None => (0, 0),
        };
        let largest = self.holes.keys().copied().max().unwrap_or(0);
        HeapPoint {
            time_ns: 0,
            live_bytes,
            extent_bytes: extent,
            blocks_in_heap: self.n_blocks,
            free_in_holes: self.free_in_holes,
            top_free,
            n_holes: self.n_holes,
            largest_hole: largest,
            external: if self.free_in_holes == 0 {
                0.0
            } else {
                1.0 - largest as f64 / self.free_in_holes as f64
            },
            ..HeapPoint::default()
        }
    }

    fn pinning(&self, live: &FxHashMap<u64, Block>) -> Vec<Pinning> {
        let mut by_stack: FxHashMap<StackId, (u64, u64)> = FxHashMap::default();
        let mut prev_end = self.region.map_or(0, |(s, _)| s + HEADER);
        let blocks: Vec<(u64, Block)> = self
            .addresses()
            .map(|a| (a, live.get(&a).copied().expect("placed blocks are live")))
            .collect();
        // Each hole counts once: for the pinning block before it, or, when
        // that block does not pin, for the one after it.
        let mut left_counted = false;
        for (i, &(a, b)) in blocks.iter().enumerate() {
            let left = self.hole_between(prev_end, a);
            let right = blocks
                .get(i + 1)
                .map_or(0, |&(next, _)| self.hole_between(a + b.usable, next));
            let pins = left >= LARGE_HOLE && right >= LARGE_HOLE;
            if pins {
                let e = by_stack.entry(b.stack).or_default();
                e.0 += 1;
                e.1 += if left_counted { 0 } else { left } + right;
            }
            left_counted = pins;
            prev_end = a + b.usable;
        }
        let mut out: Vec<Pinning> = by_stack
            .into_iter()
            .map(|(stack, (blocks, hole_bytes))| Pinning {
                stack,
                blocks,
                hole_bytes,
            })
            .collect();
        out.sort_by(|a, b| b.hole_bytes.cmp(&a.hole_bytes).then(a.stack.cmp(&b.stack)));
        out
    }
}

/// Most points the timeline keeps: when it has this many, every other one
/// is dropped and points are taken half as often, so that a trace of any
/// length ends with between half this and this many, evenly spaced.
const TIMELINE_POINTS: usize = 1000;

/// Most events held back while waiting for the trace's first `[heap]`
/// snapshot (see [`RealHeap`]): a trace without one this early is laid out
/// from where it comes.
const EARLY_EVENTS: usize = 1 << 20;

/// One event as the layout needs it, owned, so that it can be kept and
/// applied again (see [`PeakCopy`]).
#[derive(Clone)]
enum Step {
    /// A snapshot of the allocator's mappings: `[heap]`, if it was there,
    /// and the others.
    Regions {
        heap: Option<(u64, u64)>,
        arenas: Vec<(u64, u64)>,
    },
    /// A heap call.
    Heap {
        op: Op,
        ts: u64,
        addr: u64,
        old_addr: u64,
        size: u64,
        usable: u64,
        stack: StackId,
    },
}

impl Step {
    /// The step of `event`, if the layout cares about it.
    fn of(event: &Event) -> Option<Step> {
        match event {
            Event::HeapRegions { regions, .. } => Some(Step::Regions {
                heap: regions
                    .iter()
                    .find(|r: &&Region| r.kind == 0)
                    .map(|r| (r.start, r.end)),
                arenas: regions
                    .iter()
                    .filter(|r| r.kind != 0)
                    .map(|r| (r.start, r.end))
                    .collect(),
            }),
            Event::Heap { event: e, .. } => Some(Step::Heap {
                op: e.func()?.op(),
                ts: e.ts,
                addr: e.addr,
                old_addr: e.old_addr,
                size: e.size,
                usable: e.usable,
                stack: e.stack,
            }),
            _ => None,
        }
    }

    /// The size of the block this step allocates, if it allocates one.
    fn allocation(&self) -> Option<u64> {
        match *self {
            Step::Heap { op, addr, size, .. } if op != Op::Free && addr != 0 => Some(size),
            _ => None,
        }
    }
}

/// The real heap after some prefix of the trace: everything a point, the
/// stranded holes, the pinning blocks and the internal fragmentation are
/// read from.
#[derive(Clone, Default)]
struct HeapState {
    layout: Layout,
    live: FxHashMap<u64, Block>,
    mmapped: Mmapped,
    /// The allocator's mappings other than `[heap]` in the latest snapshot.
    arenas: Vec<(u64, u64)>,
    /// The largest end of `[heap]` in any snapshot so far.
    heap_limit: u64,
    live_bytes: u64,
    /// Heap events so far.
    n: u64,
    /// Allocations so far.
    n_allocs: u64,
    /// Timestamp (ticks) of the latest heap event.
    ts: u64,
}

impl HeapState {
    /// Takes `step` in; `page` is the trace's page size.
    fn apply(&mut self, step: &Step, page: u64) {
        match step {
            Step::Regions { heap, arenas } => {
                self.arenas.clone_from(arenas);
                if let Some((start, end)) = *heap {
                    self.heap_limit = self.heap_limit.max(end);
                    self.layout
                        .set_region(start, end, self.heap_limit, &self.live);
                }
            }
            &Step::Heap {
                op,
                ts,
                addr,
                old_addr,
                size,
                usable,
                stack,
            } => {
                self.n += 1;
                self.ts = ts;
                self.layout.now = self.n_allocs;
                if op == Op::Free
                    || (op == Op::Realloc && (addr != 0 || size == 0) && old_addr != 0)
                {
                    let gone = if op == Op::Free { addr } else { old_addr };
                    self.remove(gone, page);
                }
                if op != Op::Free && addr != 0 {
                    self.n_allocs += 1;
                    self.layout.now = self.n_allocs;
                    self.remove(addr, page);
                    self.live_bytes += size;
                    let block = Block {
                        size,
                        usable: usable.max(size),
                        stack,
                    };
                    self.live.insert(addr, block);
                    self.layout.grow_for(addr, block, page, &self.arenas);
                    self.layout.insert(addr, block, &self.live);
                    self.mmapped.add(addr, block, page);
                }
            }
        }
    }

    /// Takes the live block at `addr`, if any, out.
    fn remove(&mut self, addr: u64, page: u64) {
        self.layout.remove(addr, &self.live);
        if let Some(b) = self.live.remove(&addr) {
            self.live_bytes -= b.size;
            self.mmapped.remove(addr, b, page);
        }
    }

    /// The point of now, at `time` (ticks until the end of the pass).
    fn point(&self, time: u64) -> HeapPoint {
        outside(
            HeapPoint {
                time_ns: time,
                ..self.layout.point(self.live_bytes, &self.live)
            },
            &self.layout,
            &self.mmapped,
            self.live.len() as u64,
        )
    }

    /// Steps kept for a copy before catching it up: enough that copying
    /// the whole state instead costs about as much as applying them.
    fn copy_cost(&self) -> usize {
        let bitmap_words = self.layout.blocks.levels.first().map_or(0, Vec::len);
        (2 * self.live.len()).max(bitmap_words / 4).max(1 << 16)
    }
}

/// The heap as it was at the peak, in one pass: a copy of the state from
/// some moment no later than the peak, and the steps since then. The copy
/// is caught up to the peak (or replaced by a clone of the present state
/// at a new peak) whenever the steps kept grow past what a clone costs, so
/// every step is applied at most twice and the memory stays within a few
/// times the state's.
#[derive(Default)]
struct PeakCopy {
    /// Most live bytes so far.
    peak: u64,
    /// The state at some moment no later than the peak: at the peak once
    /// the steps up to `peak_at` are applied. None before the first peak.
    state: Option<HeapState>,
    /// The steps since `state`'s moment.
    pending: Vec<Step>,
    /// How many of `pending` lead up to the peak.
    peak_at: usize,
    /// `pending` was given up: `state` is the peak's, and a new peak must
    /// clone the present state.
    gave_up: bool,
}

impl PeakCopy {
    /// `now` has just taken `step` in.
    fn after(&mut self, step: &Step, now: &HeapState, page: u64) {
        let Some(state) = &mut self.state else {
            if step.allocation().is_some() && now.live_bytes > self.peak {
                self.peak = now.live_bytes;
                self.state = Some(now.clone());
            }
            return;
        };
        if !self.gave_up {
            self.pending.push(step.clone());
        }
        let limit = now.copy_cost();
        if step.allocation().is_some() && now.live_bytes > self.peak {
            self.peak = now.live_bytes;
            if self.gave_up || self.pending.len() > limit {
                *state = now.clone();
                self.pending.clear();
                self.gave_up = false;
                self.peak_at = 0;
            } else {
                self.peak_at = self.pending.len();
            }
        } else if !self.gave_up && self.pending.len() > limit {
            for s in self.pending.drain(..self.peak_at) {
                state.apply(&s, page);
            }
            self.peak_at = 0;
            if self.pending.len() > limit / 2 {
                self.pending = Vec::new();
                self.gave_up = true;
            }
        }
    }

    /// The state at the peak, if there was one.
    fn finish(mut self, page: u64) -> Option<HeapState> {
        let mut state = self.state.take()?;
        if !self.gave_up {
            for s in &self.pending[..self.peak_at] {
                state.apply(s, page);
            }
        }
        Some(state)
    }
}

/// The real heap's layout over a trace, in one pass, as an [`EventSink`]
/// behind [`crate::sink::InReceiptOrder`] (a moving realloc's new block
/// when its call ends); [`RealHeap::finish_map`] gives the [`HeapMap`].
///
/// Three things the pass cannot know when it needs them are handled so:
/// * the peak: the state at the peak is kept as a copy (`PeakCopy`);
///   its stranded holes are judged at the end, once every later request is
///   known;
/// * the heap's extent before the first `[heap]` snapshot: the events
///   before it are held back (a million at most) and laid out in
///   the region it shows, as the heap cannot have moved;
/// * the number of events, for evenly spaced points: the timeline thins
///   itself to between 500 and 1,000 points.
///
/// Memory is bounded by the live blocks and the heap's extent (one bit per
/// 8 bytes of `[heap]`), twice over for the copy, not by the trace's length.
#[derive(Default)]
pub struct RealHeap {
    now: HeapState,
    peak: PeakCopy,
    /// Allocation sizes by allocation number (from 1), for stranded holes.
    later: SmallestLater,
    map: HeapMap,
    /// Points are taken every `every` heap events.
    every: u64,
    /// Steps held back until the first `[heap]` snapshot; None once laid out.
    early: Option<Vec<Step>>,
    page: u64,
}

impl RealHeap {
    /// Nothing seen yet.
    pub fn new() -> Self {
        RealHeap {
            every: 1,
            early: Some(Vec::new()),
            page: 4096,
            ..RealHeap::default()
        }
    }

    /// Takes in the next event, in [`ReceiptOrder`]; `page_size` is the
    /// trace header's.
    pub fn feed(&mut self, event: &Event, page_size: u32) {
        self.page = u64::from(page_size).max(1);
        let Some(step) = Step::of(event) else { return };
        if let Some(early) = &mut self.early {
            let first_heap = match &step {
                Step::Regions { heap, .. } => *heap,
                Step::Heap { .. } => None,
            };
            early.push(step);
            if let Some((start, end)) = first_heap {
                // Laid out from the start in the heap the snapshot shows.
                self.now.heap_limit = end;
                self.now.layout.set_region(start, end, end, &self.now.live);
                self.map.measured = true;
            } else if early.len() < EARLY_EVENTS {
                return;
            }
            for step in self.early.take().expect("held back") {
                self.take(&step);
            }
            return;
        }
        self.take(&step);
    }

    fn take(&mut self, step: &Step) {
        self.now.apply(step, self.page);
        if let Step::Regions { heap: Some(_), .. } = step {
            self.map.measured = true;
        }
        if let Some(size) = step.allocation() {
            self.later.push(self.now.n_allocs, size);
        }
        self.peak.after(step, &self.now, self.page);
        if let Step::Heap { ts, .. } = *step {
            if self.now.n.is_multiple_of(self.every) {
                self.map.timeline.push(self.now.point(ts));
                if self.map.timeline.len() == TIMELINE_POINTS {
                    // Points were taken at every, 2 every, ...: keep the
                    // even multiples.
                    let mut i = 0;
                    self.map.timeline.retain(|_| {
                        i += 1;
                        i % 2 == 0
                    });
                    self.every *= 2;
                }
            }
        }
    }

    /// The map of the whole trace; `trace` is the trace at its end.
    pub fn finish_map(mut self, trace: &Trace) -> HeapMap {
        if let Some(early) = self.early.take() {
            for step in early {
                self.take(&step);
            }
        }
        let page = self.page;
        let mut map = std::mem::take(&mut self.map);
        let later = &self.later;
        if let Some(at_peak) = std::mem::take(&mut self.peak).finish(page) {
            map.at_peak = at_peak.point(at_peak.ts);
            map.stranded_at_peak = at_peak.layout.stranded(later);
            map.pinning_at_peak = at_peak.layout.pinning(&at_peak.live);
            (map.internal_by_size_at_peak, map.internal_by_site_at_peak) =
                internal_groups(&at_peak.live);
        }
        let (clock, span) = (trace.clock, trace.span);
        map.duration_ns = span.duration_ns(clock);
        map.at_peak.time_ns = span.offset_ns(clock, map.at_peak.time_ns);
        for p in &mut map.timeline {
            p.time_ns = span.offset_ns(clock, p.time_ns);
        }
        let now = &self.now;
        map.at_end = now.point(span.offset_ns(clock, now.ts));
        map.stranded_at_end = now.layout.stranded(later);
        map.pinning_at_end = now.layout.pinning(&now.live);
        (map.internal_by_size_at_end, map.internal_by_site_at_end) = internal_groups(&now.live);
        let mut holes: Vec<(u64, u64)> = now.layout.holes.iter().map(|(&s, &n)| (s, n)).collect();
        holes.sort_by(|a, b| (b.0 * b.1).cmp(&(a.0 * a.1)).then(b.0.cmp(&a.0)));
        holes.truncate(20);
        map.holes_at_end = holes;
        map
    }
}

impl EventSink for RealHeap {
    fn event(&mut self, event: &Event, trace: &Trace) {
        self.feed(event, trace.header.page_size);
    }
}

/// Rebuilds the real heap from the rest of `reader`, in one pass.
pub fn analyze<R: std::io::Read>(reader: &mut Reader<R>) -> Result<HeapMap, DecodeError> {
    let mut heap = RealHeap::new();
    let mut order = ReceiptOrder::new();
    while let Some(event) = order.next(reader)? {
        heap.feed(&event, reader.header().page_size);
    }
    Ok(heap.finish_map(&Trace::of(reader)))
}

/// The chunk glibc (64-bit) carves for a request of `size` bytes: the
/// request and the 8-byte size field rounded up to 16, at least 32. A hole
/// between two blocks is a free chunk of exactly its size, so a request
/// fits a hole when its chunk is no larger.
fn chunk_for(size: u64) -> u64 {
    size.saturating_add(HEADER + 15).max(32) & !15
}

/// Live blocks in mappings of their own, and the bytes of all live blocks.
#[derive(Clone, Default)]
struct Mmapped {
    blocks: u64,
    bytes: u64,
    mapped: u64,
    all_bytes: u64,
    all_usable: u64,
}

impl Mmapped {
    /// glibc's mmap'd chunk: its pointer 16 bytes past a page boundary and
    /// its usable size a whole number of pages less that header (a heap
    /// chunk's usable size is 8 less than a multiple of 16, never this).
    fn is_mmapped(addr: u64, b: Block, page: u64) -> bool {
        addr % page == 16 && (b.usable + 16).is_multiple_of(page) && b.usable.is_multiple_of(16)
    }

    fn add(&mut self, addr: u64, b: Block, page: u64) {
        self.all_bytes += b.size;
        self.all_usable += b.usable;
        if Self::is_mmapped(addr, b, page) {
            self.blocks += 1;
            self.bytes += b.size;
            self.mapped += b.usable + 16;
        }
    }

    fn remove(&mut self, addr: u64, b: Block, page: u64) {
        self.all_bytes -= b.size;
        self.all_usable -= b.usable;
        if Self::is_mmapped(addr, b, page) {
            self.blocks -= 1;
            self.bytes -= b.size;
            self.mapped -= b.usable + 16;
        }
    }
}

/// `p` with the blocks outside `[heap]` filled in.
fn outside(mut p: HeapPoint, layout: &Layout, m: &Mmapped, n_live: u64) -> HeapPoint {
    p.mmapped_blocks = m.blocks;
    p.mmapped_bytes = m.bytes;
    p.mmapped_mapped_bytes = m.mapped;
    p.unmapped_blocks = n_live.saturating_sub(layout.n_blocks + m.blocks);
    p.unmapped_bytes = m.all_bytes.saturating_sub(layout.block_bytes + m.bytes);
    p.internal_bytes = m.all_usable.saturating_sub(m.all_bytes);
    p.internal = if m.all_usable == 0 {
        0.0
    } else {
        p.internal_bytes as f64 / m.all_usable as f64
    };
    p
}

/// Internal fragmentation of the live blocks by size class and by stack.
fn internal_groups(live: &FxHashMap<u64, Block>) -> (Vec<Internal>, Vec<Internal>) {
    let mut by_class: std::collections::BTreeMap<u32, (u64, u64, u64)> = Default::default();
    let mut by_stack: FxHashMap<StackId, (u64, u64, u64)> = FxHashMap::default();
    for b in live.values() {
        let slack = b.usable - b.size.min(b.usable);
        for e in [
            by_class.entry(64 - b.size.leading_zeros()).or_default(),
            by_stack.entry(b.stack).or_default(),
        ] {
            e.0 += 1;
            e.1 += b.size;
            e.2 += slack;
        }
    }
    let row = |blocks, requested: u64, internal: u64| Internal {
        size_from: None,
        size_to: None,
        stack: None,
        blocks,
        requested_bytes: requested,
        internal_bytes: internal,
        internal: if requested + internal == 0 {
            0.0
        } else {
            internal as f64 / (requested + internal) as f64
        },
    };
    let classes = by_class
        .into_iter()
        .map(|(k, (n, req, int))| Internal {
            size_from: Some(if k == 0 { 0 } else { 1u64 << (k - 1) }),
            size_to: Some(match k {
                0 => 0,
                64 => u64::MAX,
                k => (1u64 << k) - 1,
            }),
            ..row(n, req, int)
        })
        .collect();
    let mut sites: Vec<Internal> = by_stack
        .into_iter()
        .map(|(stack, (n, req, int))| Internal {
            stack: Some(stack),
            ..row(n, req, int)
        })
        .collect();
    sites.sort_by(|a, b| {
        b.internal_bytes
            .cmp(&a.internal_bytes)
            .then(a.stack.cmp(&b.stack))
    });
    sites.truncate(20);
    (classes, sites)
}

#[cfg(test)]
mod tests {
    use super::*;
    use memtrace_format::{Codec, Func, Header, HeapEvent, ThreadItem, Trailer, Writer};

    /// A layout and the live blocks it reads usable sizes from.
    struct Heap {
        layout: Layout,
        live: FxHashMap<u64, Block>,
    }

    impl Heap {
        fn insert(&mut self, addr: u64, usable: u64) {
            let b = Block {
                size: usable,
                usable,
                stack: 7,
            };
            self.live.insert(addr, b);
            self.layout.insert(addr, b, &self.live);
        }

        fn remove(&mut self, addr: u64) {
            self.layout.remove(addr, &self.live);
            self.live.remove(&addr);
        }

        fn holes(&self) -> (u64, u64) {
            (self.layout.n_holes, self.layout.free_in_holes)
        }

        fn point(&self, live_bytes: u64) -> HeapPoint {
            self.layout.point(live_bytes, &self.live)
        }
    }

    fn heap() -> Heap {
        let mut layout = Layout::default();
        layout.set_region(0x1000, 0x10000, 0x10000, &FxHashMap::default());
        Heap {
            layout,
            live: FxHashMap::default(),
        }
    }

    #[test]
    fn holes_open_and_close_as_blocks_come_and_go() {
        let mut l = heap();
        // Three blocks of usable 40 at 0x1010, 0x1040, 0x1070 (chunks of 48).
        for a in [0x1010, 0x1040, 0x1070] {
            l.insert(a, 40);
        }
        assert_eq!(l.holes(), (0, 0));
        l.remove(0x1040);
        // Freed: 0x1040 - 0x1010 - 40 - 8 ... the hole spans 0x1038..0x1068 = 48 bytes.
        assert_eq!(l.holes(), (1, 48));
        l.insert(0x1040, 40);
        assert_eq!(l.holes(), (0, 0));
        l.remove(0x1070);
        // The last block going leaves no hole: its space joins the top.
        assert_eq!(l.holes(), (0, 0));
        let p = l.point(80);
        assert_eq!(p.top_free, 0x10000 - 0x1040 - 40);
        assert_eq!(p.blocks_in_heap, 2);
    }

    #[test]
    fn the_textbook_holes_of_50_30_and_40() {
        let mut l = heap();
        // Live blocks with gaps that leave holes of 50, 30 and 40 bytes.
        let mut addr = 0x1010;
        for hole in [50u64, 30, 40, 0] {
            l.insert(addr, 16);
            addr += 16 + HEADER + hole;
        }
        let p = l.point(64);
        assert_eq!(p.free_in_holes, 120);
        assert_eq!(p.largest_hole, 50);
        assert_eq!(p.external, 1.0 - 50.0 / 120.0);
        // The holes were made before the 4th allocation; a 100-byte request
        // (a 112-byte chunk) after it fits none of them.
        let mut later = SmallestLater::new();
        later.push(5, 100);
        assert_eq!(
            l.layout.stranded(&later),
            Stranded {
                holes: 3,
                bytes: 120
            }
        );
        // A 20-byte request needs a 32-byte chunk: only the 30-byte hole is
        // too small for it, though 30 bytes exceed the 20 asked for.
        later.push(6, 20);
        assert_eq!(
            l.layout.stranded(&later),
            Stranded {
                holes: 1,
                bytes: 30
            }
        );
    }

    #[test]
    fn a_hole_counts_only_against_requests_made_after_it_got_its_size() {
        let mut l = heap();
        let mut later = SmallestLater::new();
        // Allocations 1-3: three 40-byte blocks side by side; allocation 4
        // asks for 16 bytes (a 32-byte chunk), allocation 5 for 100.
        for (i, a) in [0x1010u64, 0x1040, 0x1070].into_iter().enumerate() {
            l.layout.now = i as u64 + 1;
            later.push(i as u64 + 1, 40);
            l.insert(a, 40);
        }
        later.push(4, 16);
        later.push(5, 100);
        // Freed after allocation 3: a 48-byte hole that the 16-byte request
        // would fit.
        l.layout.now = 3;
        l.remove(0x1040);
        assert_eq!(l.layout.stranded(&later), Stranded::default());
        // The same hole made again after allocation 4: only the 100-byte
        // request comes after it, and it does not fit.
        l.insert(0x1040, 40);
        l.layout.now = 4;
        l.remove(0x1040);
        assert_eq!(
            l.layout.stranded(&later),
            Stranded {
                holes: 1,
                bytes: 48
            }
        );
        // After the last request a hole is not judged at all.
        l.layout.now = 5;
        l.insert(0x1040, 40);
        l.remove(0x1040);
        assert_eq!(l.layout.stranded(&later), Stranded::default());
    }

    #[test]
    fn a_new_snapshot_keeps_the_birth_of_the_holes_it_finds_again() {
        let mut l = heap();
        for a in [0x1010u64, 0x1040, 0x1070] {
            l.insert(a, 40);
        }
        l.remove(0x1040);
        let mut later = SmallestLater::new();
        later.push(1, 100);
        assert_eq!(l.layout.stranded(&later).holes, 1);
        // The heap grows; the layout is rebuilt after allocation 1.
        l.layout.now = 1;
        l.layout
            .set_region(0x1000, 0x20000, 0x20000, &l.live.clone());
        assert_eq!(l.layout.stranded(&later).holes, 1);
    }

    /// A one-thread trace of `calls` (function, address, size; usable
    /// size = size) in a 1 MiB `[heap]` at [`BASE`], whose snapshot is
    /// written after the first `snapshot_after` calls.
    fn trace_of(calls: &[(Func, u64, u64)], snapshot_after: usize) -> Vec<u8> {
        let mut w = Writer::new(Vec::new(), &Header::default(), Codec::Raw).unwrap();
        w.stack_nodes(1, &[(0, 0x1000)]).unwrap();
        let items: Vec<ThreadItem> = calls
            .iter()
            .enumerate()
            .map(|(i, &(func, addr, size))| {
                ThreadItem::Heap(HeapEvent {
                    func: func as u8,
                    ts: 10 * (i as u64 + 1),
                    addr,
                    size,
                    usable: size,
                    stack: u32::from(func != Func::Free),
                    ..Default::default()
                })
            })
            .collect();
        let (before, after) = items.split_at(snapshot_after);
        w.batch(1, before).unwrap();
        let heap = Region {
            start: BASE,
            end: BASE + (1 << 20),
            kind: 0,
        };
        w.heap_regions(10 * snapshot_after as u64 + 5, &[heap])
            .unwrap();
        for chunk in after.chunks(4096) {
            w.batch(1, chunk).unwrap();
        }
        w.finish(&Trailer::default()).unwrap()
    }

    const BASE: u64 = 0x10_0000;

    /// Block `i` of the first 100: 40 bytes, chunks of 48 side by side.
    fn small(i: u64) -> u64 {
        BASE + 16 + 48 * i
    }

    /// 100 blocks of 40 B; the 50 odd ones freed (50 holes of 48 B, born
    /// at allocation 100); a 5,000 B block after them: the first peak,
    /// 7,000 B live.
    fn ramp() -> Vec<(Func, u64, u64)> {
        let mut calls: Vec<(Func, u64, u64)> =
            (0..100).map(|i| (Func::Malloc, small(i), 40)).collect();
        calls.extend((1..100).step_by(2).map(|i| (Func::Free, small(i), 0)));
        calls.push((Func::Malloc, small(100), 5000));
        calls
    }

    /// Where a churn block goes: well above everything else.
    const CHURN: u64 = BASE + 0x8_0000;

    /// `n` times malloc(100) and free at [`CHURN`], never near the peak.
    fn churn(calls: &mut Vec<(Func, u64, u64)>, n: usize) {
        for _ in 0..n {
            calls.push((Func::Malloc, CHURN, 100));
            calls.push((Func::Free, CHURN, 0));
        }
    }

    fn map_of(bytes: &[u8]) -> HeapMap {
        analyze(&mut Reader::new(bytes).unwrap()).unwrap()
    }

    #[test]
    fn the_peak_is_kept_through_a_long_tail_and_a_later_peak() {
        // The first peak, then 70,000 pairs: more steps than a copy of
        // the state costs, so the copy is caught up and the steps given up.
        let mut calls = ramp();
        churn(&mut calls, 70_000);
        // A new peak after that (a clone of the state): 10,000 B right
        // after the 5,000 B block, 17,000 B live. Then it is freed.
        calls.push((Func::Malloc, small(100) + 5008, 10_000));
        let peak_call = calls.len();
        calls.push((Func::Free, small(100) + 5008, 0));
        let map = map_of(&trace_of(&calls, 0));
        let p = map.at_peak;
        assert_eq!(
            (p.live_bytes, p.blocks_in_heap, p.n_holes, p.free_in_holes),
            (17_000, 52, 50, 2400)
        );
        // Every 48 B hole was born before the 100 B requests (chunks of
        // 112): all stranded, at the peak and at the end.
        let all = Stranded {
            holes: 50,
            bytes: 2400,
        };
        assert_eq!((map.stranded_at_peak, map.stranded_at_end), (all, all));
        assert_eq!(
            (map.at_end.live_bytes, map.at_end.blocks_in_heap),
            (7000, 51)
        );
        assert_eq!(map.internal_by_size_at_peak.len(), 3);
        assert_same_peak(&calls, peak_call);
    }

    #[test]
    fn a_peak_inside_the_kept_steps_is_caught_up_to() {
        // First peak; 40,000 steps; a new peak; 30,000 steps: the copy
        // catches up to the new peak and keeps the rest.
        let mut calls = ramp();
        churn(&mut calls, 20_000);
        calls.push((Func::Malloc, small(100) + 5008, 10_000));
        let peak_call = calls.len();
        // Down to 12,000 B, so that the churn stays below the peak.
        calls.push((Func::Free, small(100), 0));
        churn(&mut calls, 15_000);
        let map = map_of(&trace_of(&calls, 0));
        assert_eq!(
            (map.at_peak.live_bytes, map.at_peak.blocks_in_heap),
            (17_000, 52)
        );
        assert_same_peak(&calls, peak_call);
    }

    /// The peak of `calls` is what the trace cut right after call
    /// `peak_call` (counted from 1) shows at its end.
    fn assert_same_peak(calls: &[(Func, u64, u64)], peak_call: usize) {
        let full = map_of(&trace_of(calls, 0));
        let cut = map_of(&trace_of(&calls[..peak_call], 0));
        assert_eq!(full.at_peak, cut.at_end);
        assert_eq!(full.pinning_at_peak, cut.pinning_at_end);
        assert_eq!(full.internal_by_size_at_peak, cut.internal_by_size_at_end);
        assert_eq!(full.internal_by_site_at_peak, cut.internal_by_site_at_end);
    }

    #[test]
    fn events_before_the_first_snapshot_are_laid_out_in_its_heap() {
        let mut calls = ramp();
        churn(&mut calls, 10);
        // The same map, times apart: the snapshot written first moves the
        // trace's start 5 ticks earlier.
        let untimed = |map: &HeapMap| {
            fn strip(v: &mut serde_json::Value) {
                match v {
                    serde_json::Value::Object(m) => {
                        m.retain(|k, _| k != "time_ns" && k != "duration_ns");
                        m.values_mut().for_each(strip);
                    }
                    serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
                    _ => {}
                }
            }
            let mut v = serde_json::to_value(map).unwrap();
            strip(&mut v);
            v
        };
        let first = map_of(&trace_of(&calls, 0));
        let late = map_of(&trace_of(&calls, 120));
        assert!(untimed(&first) == untimed(&late), "the maps differ");
        assert!(first.measured);
        // The peak: the first 100 B churn block, 7,100 B live, with a
        // hole below it.
        assert_eq!(
            (first.at_peak.live_bytes, first.at_peak.n_holes),
            (7100, 51)
        );
        assert_eq!(first.timeline.len(), calls.len());
    }

    #[test]
    fn the_timeline_thins_itself_to_between_500_and_1000_points() {
        let mut calls = ramp();
        churn(&mut calls, 2_000);
        let n = calls.len() as u64; // 4,151 heap events
        let map = map_of(&trace_of(&calls, 0));
        // Points every 8th event: 4,151 / 8.
        assert_eq!(map.timeline.len() as u64, n / 8);
        assert_eq!(map.timeline.len(), 518);
    }

    /// The bitmap's neighbour queries against a sorted vector, across
    /// levels (64 granules a word, 4096 a second-level word).
    #[test]
    fn granule_set_finds_neighbours() {
        let mut set = GranuleSet::default();
        set.reserve(300_000);
        let mut v: Vec<u64> = Vec::new();
        let mut x = 99u64;
        for step in 0..20_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Clustered and far-apart members alike.
            let g = if step % 3 == 0 {
                (x >> 40) % 300_000
            } else {
                (x >> 40) % 5_000
            };
            match v.binary_search(&g) {
                Ok(i) => {
                    v.remove(i);
                    set.remove(g);
                }
                Err(i) => {
                    v.insert(i, g);
                    set.insert(g);
                }
            }
            let q = (x >> 20) % 310_000;
            let below = v.iter().rev().find(|&&m| m < q).copied();
            let above = v.iter().find(|&&m| m >= q).copied();
            assert_eq!(set.below(q), below, "step {step} q {q}");
            assert_eq!(set.at_or_above(q), above, "step {step} q {q}");
            assert_eq!(set.contains(q), v.binary_search(&q).is_ok());
        }
        // Growing keeps the members.
        set.reserve(5_000_000);
        assert_eq!(set.below(5_000_000), v.last().copied());
        assert_eq!(set.at_or_above(0), v.first().copied());
    }

    #[test]
    fn mmapped_chunks_are_told_from_heap_chunks() {
        let b = |usable| Block {
            size: 200_000,
            usable,
            stack: 1,
        };
        // malloc(200000) above the threshold: 200016 rounded up to 49 pages,
        // less the 16-byte header.
        assert!(Mmapped::is_mmapped(
            0x7f00_0000_0010,
            b(49 * 4096 - 16),
            4096
        ));
        // A heap chunk's usable size is 8 less than a multiple of 16.
        assert!(!Mmapped::is_mmapped(0x7f00_0000_0010, b(200_008), 4096));
        assert!(!Mmapped::is_mmapped(
            0x7f00_0000_0020,
            b(49 * 4096 - 16),
            4096
        ));
    }
}

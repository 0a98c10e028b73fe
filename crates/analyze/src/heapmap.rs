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

use std::collections::BTreeMap;

use memtrace_format::{DecodeError, Event, Op, Reader, Region, StackId};
use rustc_hash::FxHashMap;
use serde::Serialize;

/// glibc's chunk header between two blocks.
const HEADER: u64 = 8;
/// Holes at least this large that sit on both sides of a live block make it
/// a block that pins free memory.
const LARGE_HOLE: u64 = 1024;

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
    /// Holes smaller than every request made after this moment.
    pub n_useless_holes: u64,
    /// Their bytes.
    pub useless_hole_bytes: u64,
}

/// Live blocks that sit between large holes, by allocation stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pinning {
    /// The allocation stack.
    pub stack: StackId,
    /// Live blocks of that stack with a large hole on each side.
    pub blocks: u64,
    /// Bytes of the holes next to them (each hole counted once per side).
    pub hole_bytes: u64,
}

/// The real heap over a whole trace.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HeapMap {
    /// Evenly spaced points (at most about 500).
    pub timeline: Vec<HeapPoint>,
    /// The point where live bytes peaked.
    pub at_peak: HeapPoint,
    /// The end of the trace.
    pub at_end: HeapPoint,
    /// Stacks whose live blocks pin large holes at the peak, most bytes first.
    pub pinning_at_peak: Vec<Pinning>,
    /// Stacks whose live blocks pin large holes at the end.
    pub pinning_at_end: Vec<Pinning>,
    /// The holes at the end as `(size, count)`, the most bytes first (20 at most).
    pub holes_at_end: Vec<(u64, u64)>,
    /// False when the trace has no `[heap]` snapshot (nothing to measure).
    pub measured: bool,
}

/// Live blocks in address order with the holes between them.
#[derive(Default)]
struct Layout {
    /// `[heap]` as of the latest snapshot.
    region: Option<(u64, u64)>,
    /// Blocks anywhere in `[start, limit)` belong to the heap: `limit` is the
    /// largest end of any snapshot, so blocks made before a snapshot caught
    /// up with the heap's growth are not missed.
    limit: u64,
    blocks: BTreeMap<u64, (u64, StackId)>,
    holes: BTreeMap<u64, u64>,
    free_in_holes: u64,
    n_holes: u64,
}

impl Layout {
    fn hole_between(&self, left_end: u64, right_start: u64) -> u64 {
        right_start.saturating_sub(left_end).saturating_sub(HEADER)
    }

    /// The end of the block before `addr`, or the heap start.
    fn left_end(&self, addr: u64) -> u64 {
        match self.blocks.range(..addr).next_back() {
            Some((&a, &(u, _))) => a + u,
            None => self.region.map_or(addr, |(start, _)| start + HEADER),
        }
    }

    fn add_hole(&mut self, size: u64) {
        if size > 0 {
            *self.holes.entry(size).or_default() += 1;
            self.free_in_holes += size;
            self.n_holes += 1;
        }
    }

    fn remove_hole(&mut self, size: u64) {
        if size == 0 {
            return;
        }
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

    fn insert(&mut self, addr: u64, usable: u64, stack: StackId) {
        if !self.contains(addr) || self.blocks.contains_key(&addr) {
            return;
        }
        let left_end = self.left_end(addr);
        let right = self.blocks.range(addr..).next().map(|(&a, _)| a);
        if let Some(right) = right {
            self.remove_hole(self.hole_between(left_end, right));
            self.add_hole(self.hole_between(addr + usable, right));
        }
        self.add_hole(self.hole_between(left_end, addr));
        self.blocks.insert(addr, (usable, stack));
    }

    fn remove(&mut self, addr: u64) {
        let Some((usable, _)) = self.blocks.remove(&addr) else {
            return;
        };
        let left_end = self.left_end(addr);
        self.remove_hole(self.hole_between(left_end, addr));
        if let Some(right) = self.blocks.range(addr..).next().map(|(&a, _)| a) {
            self.remove_hole(self.hole_between(addr + usable, right));
            self.add_hole(self.hole_between(left_end, right));
        }
    }

    /// Moves to a new `[heap]` range (`limit` as in the field), placing the
    /// live blocks of `all` that lie in it.
    fn set_region(
        &mut self,
        start: u64,
        end: u64,
        limit: u64,
        all: &FxHashMap<u64, (u64, StackId)>,
    ) {
        if self.region == Some((start, end)) && self.limit == limit {
            return;
        }
        *self = Layout {
            region: Some((start, end)),
            limit,
            ..Layout::default()
        };
        let mut inside: Vec<(u64, (u64, StackId))> = all
            .iter()
            .filter(|(&a, _)| a >= start && a < limit)
            .map(|(&a, &v)| (a, v))
            .collect();
        inside.sort_unstable_by_key(|&(a, _)| a);
        for (a, (u, s)) in inside {
            self.insert(a, u, s);
        }
    }

    fn point(&self, live_bytes: u64, smallest_later: u64) -> HeapPoint {
        let (extent, top_free) = match self.region {
            Some((start, end)) => {
                let top = self
                    .blocks
                    .iter()
                    .next_back()
                    .map_or(start, |(&a, &(u, _))| a + u);
                let end = end.max(top);
                (end - start, end - top)
            }
            None => (0, 0),
        };
        let largest = self.holes.keys().next_back().copied().unwrap_or(0);
        let (mut n_useless, mut useless_bytes) = (0, 0);
        for (&size, &n) in self.holes.range(..smallest_later) {
            n_useless += n;
            useless_bytes += size * n;
        }
        HeapPoint {
            time_ns: 0,
            live_bytes,
            extent_bytes: extent,
            blocks_in_heap: self.blocks.len() as u64,
            free_in_holes: self.free_in_holes,
            top_free,
            n_holes: self.n_holes,
            largest_hole: largest,
            external: if self.free_in_holes == 0 {
                0.0
            } else {
                1.0 - largest as f64 / self.free_in_holes as f64
            },
            n_useless_holes: n_useless,
            useless_hole_bytes: useless_bytes,
        }
    }

    fn pinning(&self) -> Vec<Pinning> {
        let mut by_stack: FxHashMap<StackId, (u64, u64)> = FxHashMap::default();
        let mut prev_end = self.region.map_or(0, |(s, _)| s + HEADER);
        let blocks: Vec<(u64, u64, StackId)> =
            self.blocks.iter().map(|(&a, &(u, s))| (a, u, s)).collect();
        for (i, &(a, u, s)) in blocks.iter().enumerate() {
            let left = self.hole_between(prev_end, a);
            let right = blocks
                .get(i + 1)
                .map_or(0, |&(next, _, _)| self.hole_between(a + u, next));
            if left >= LARGE_HOLE && right >= LARGE_HOLE {
                let e = by_stack.entry(s).or_default();
                e.0 += 1;
                e.1 += left + right;
            }
            prev_end = a + u;
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

/// Rebuilds the real heap from a trace. `open` gives a fresh reader of the
/// same trace: the trace is read twice (the first pass finds the peak and
/// the requests still to come).
pub fn analyze<R: std::io::Read>(
    mut open: impl FnMut() -> Result<Reader<R>, DecodeError>,
) -> Result<HeapMap, DecodeError> {
    // Pass 1: allocation sizes in order, the peak, the number of events.
    let mut reader = open()?;
    let mut sizes: Vec<u64> = Vec::new();
    let mut live: FxHashMap<u64, u64> = FxHashMap::default();
    let (mut live_bytes, mut peak, mut peak_event, mut n_events) = (0u64, 0u64, 0u64, 0u64);
    let mut heap_limit = 0u64;
    let mut first_heap: Option<(u64, u64)> = None;
    while let Some(event) = reader.next_event()? {
        if let Event::HeapRegions { regions, .. } = &event {
            if let Some(r) = regions.iter().find(|r| r.kind == 0) {
                heap_limit = heap_limit.max(r.end);
                first_heap.get_or_insert((r.start, r.end));
            }
        }
        let Event::Heap { event: e, .. } = event else {
            continue;
        };
        let Some(func) = e.func() else { continue };
        n_events += 1;
        let mut free = |addr: u64, live_bytes: &mut u64| {
            if let Some(size) = live.remove(&addr) {
                *live_bytes -= size;
            }
        };
        match func.op() {
            Op::Free => free(e.addr, &mut live_bytes),
            Op::Alloc | Op::Realloc => {
                if func.op() == Op::Realloc && (e.addr != 0 || e.size == 0) && e.old_addr != 0 {
                    free(e.old_addr, &mut live_bytes);
                }
                if e.addr != 0 {
                    sizes.push(e.size);
                    if let Some(old) = live.insert(e.addr, e.size) {
                        live_bytes -= old;
                    }
                    live_bytes += e.size;
                    if live_bytes > peak {
                        peak = live_bytes;
                        peak_event = n_events;
                    }
                }
            }
        }
    }
    // smallest_later[i]: the smallest request after the i-th allocation.
    let mut smallest_later = vec![u64::MAX; sizes.len() + 1];
    for i in (0..sizes.len()).rev() {
        smallest_later[i] = smallest_later[i + 1].min(sizes[i]);
    }
    drop(sizes);

    // Pass 2: the layout.
    let mut reader = open()?;
    let step = (n_events / 500).max(1);
    let mut layout = Layout::default();
    let mut map = HeapMap::default();
    // Until the first snapshot, the heap is taken as that snapshot shows it:
    // a short run may have only the snapshot written at its end.
    if let Some((start, end)) = first_heap {
        layout.set_region(start, end, heap_limit, &FxHashMap::default());
        map.measured = true;
    }
    let mut live: FxHashMap<u64, (u64, StackId)> = FxHashMap::default();
    let mut live_sizes: FxHashMap<u64, u64> = FxHashMap::default();
    let (mut live_bytes, mut n, mut n_allocs) = (0u64, 0u64, 0usize);
    let mut first_ts = None;
    while let Some(event) = reader.next_event()? {
        let ts = event.ts();
        let first = *first_ts.get_or_insert(ts);
        let e = match event {
            Event::HeapRegions { regions, .. } => {
                if let Some(r) = regions.iter().find(|r: &&Region| r.kind == 0) {
                    layout.set_region(r.start, r.end, heap_limit.max(r.end), &live);
                    map.measured = true;
                }
                continue;
            }
            Event::Heap { event: e, .. } => e,
            _ => continue,
        };
        let Some(func) = e.func() else { continue };
        n += 1;
        let op = func.op();
        if op == Op::Free || (op == Op::Realloc && (e.addr != 0 || e.size == 0) && e.old_addr != 0)
        {
            let addr = if op == Op::Free { e.addr } else { e.old_addr };
            if let Some(size) = live_sizes.remove(&addr) {
                live_bytes -= size;
            }
            live.remove(&addr);
            layout.remove(addr);
        }
        if op != Op::Free && e.addr != 0 {
            n_allocs += 1;
            if let Some(old) = live_sizes.insert(e.addr, e.size) {
                live_bytes -= old;
                layout.remove(e.addr);
            }
            live_bytes += e.size;
            let usable = e.usable.max(e.size);
            live.insert(e.addr, (usable, e.stack));
            layout.insert(e.addr, usable, e.stack);
        }
        let later = smallest_later[n_allocs.min(smallest_later.len() - 1)];
        let time_ns = reader.clock().duration_ns(ts.saturating_sub(first));
        if n == peak_event {
            map.at_peak = HeapPoint {
                time_ns,
                ..layout.point(live_bytes, later)
            };
            map.pinning_at_peak = layout.pinning();
        }
        if n % step == 0 {
            map.timeline.push(HeapPoint {
                time_ns,
                ..layout.point(live_bytes, later)
            });
        }
        map.at_end = HeapPoint {
            time_ns,
            ..HeapPoint::default()
        };
    }
    let end_time = map.at_end.time_ns;
    // No request comes after the end: "useless" is only defined before it.
    map.at_end = HeapPoint {
        time_ns: end_time,
        ..layout.point(live_bytes, 0)
    };
    map.pinning_at_end = layout.pinning();
    let mut holes: Vec<(u64, u64)> = layout.holes.iter().map(|(&s, &n)| (s, n)).collect();
    holes.sort_by(|a, b| (b.0 * b.1).cmp(&(a.0 * a.1)).then(b.0.cmp(&a.0)));
    holes.truncate(20);
    map.holes_at_end = holes;
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        let mut l = Layout::default();
        l.set_region(0x1000, 0x10000, 0x10000, &FxHashMap::default());
        l
    }

    #[test]
    fn holes_open_and_close_as_blocks_come_and_go() {
        let mut l = layout();
        // Three blocks of usable 40 at 0x1010, 0x1040, 0x1070 (chunks of 48).
        for a in [0x1010, 0x1040, 0x1070] {
            l.insert(a, 40, 1);
        }
        assert_eq!((l.n_holes, l.free_in_holes), (0, 0));
        l.remove(0x1040);
        // Freed: 0x1040 - 0x1010 - 40 - 8 ... the hole spans 0x1038..0x1068 = 48 bytes.
        assert_eq!((l.n_holes, l.free_in_holes), (1, 48));
        l.insert(0x1040, 40, 1);
        assert_eq!((l.n_holes, l.free_in_holes), (0, 0));
        l.remove(0x1070);
        // The last block going leaves no hole: its space joins the top.
        assert_eq!((l.n_holes, l.free_in_holes), (0, 0));
        let p = l.point(80, u64::MAX);
        assert_eq!(p.top_free, 0x10000 - 0x1040 - 40);
    }

    #[test]
    fn the_textbook_holes_of_50_30_and_40() {
        let mut l = layout();
        // Live blocks with gaps that leave holes of 50, 30 and 40 bytes.
        let mut addr = 0x1010;
        for hole in [50u64, 30, 40, 0] {
            l.insert(addr, 16, 7);
            addr += 16 + HEADER + hole;
        }
        let p = l.point(64, 100);
        assert_eq!(p.free_in_holes, 120);
        assert_eq!(p.largest_hole, 50);
        assert_eq!(p.external, 1.0 - 50.0 / 120.0);
        // A later 100-byte request fits none of them.
        assert_eq!((p.n_useless_holes, p.useless_hole_bytes), (3, 120));
    }
}

//! Replays a trace's heap events and keeps what every report needs: the
//! live blocks, per-stack counts, the peak and who held it, a timeline.

use memtrace_format::{DecodeError, Event, Func, HeapEvent, Op, Reader, StackId};
use rustc_hash::FxHashMap;

use crate::receipts::Receipts;
use crate::sink::{drive, EventSink, Trace};

/// Counts for one allocation stack.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StackStats {
    /// Allocation calls made from this stack (a realloc counts as one).
    pub n_allocs: u64,
    /// Bytes requested by those calls.
    pub bytes_allocated: u64,
    /// Usable bytes the allocator returned for them.
    pub usable_allocated: u64,
    /// Blocks from this stack that were freed (by free, or replaced by a realloc).
    pub n_freed: u64,
    /// Their bytes.
    pub bytes_freed: u64,
    /// Blocks from this stack live at the end of the trace.
    pub live_blocks: u64,
    /// Their bytes.
    pub live_bytes: u64,
    /// Bytes from this stack live at the moment of the global peak.
    pub peak_bytes: u64,
    /// Blocks from this stack live at the peak.
    pub peak_blocks: u64,
    /// Allocations freed by the same thread before it allocated anything else.
    pub n_temporary: u64,
    /// Ticks spent in the allocator by calls from this stack.
    pub latency_ticks: u64,
    // Lazy snapshot of the values at the latest peak (see `HeapReplay::bump`).
    snap_epoch: u64,
    snap_bytes: u64,
    snap_blocks: u64,
}

/// One live block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveBlock {
    /// Requested size.
    pub size: u64,
    /// Usable size.
    pub usable: u64,
    /// Allocation stack.
    pub stack: StackId,
    /// Allocating thread.
    pub tid: u32,
    /// Allocation time in ticks.
    pub ts: u64,
}

/// Calls and time per allocator function.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FuncStats {
    /// Calls.
    pub calls: u64,
    /// Ticks spent inside the real function.
    pub latency_ticks: u64,
}

/// A point of the heap timeline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimePoint {
    /// Ticks.
    pub ts: u64,
    /// Live bytes at that time.
    pub live_bytes: u64,
    /// Heap calls so far.
    pub calls: u64,
}

/// The result of replaying a trace.
#[derive(Debug, Clone, Default)]
pub struct HeapReplay {
    /// Per-stack statistics, by stack id.
    pub stacks: FxHashMap<StackId, StackStats>,
    /// Blocks live now (at the end: unfreed at exit).
    pub live: FxHashMap<u64, LiveBlock>,
    /// Per-function calls and latency.
    pub funcs: [FuncStats; Func::ALL.len()],
    /// Bytes live now.
    pub live_bytes: u64,
    /// Highest live bytes.
    pub peak_bytes: u64,
    /// Time of the peak in ticks.
    pub peak_ts: u64,
    /// Allocation calls (malloc, calloc, aligned, realloc).
    pub n_allocs: u64,
    /// Blocks freed (free, or moved/shrunk to nothing by realloc).
    pub n_frees: u64,
    /// Bytes requested in total.
    pub bytes_allocated: u64,
    /// Temporary allocations by memtrace's rule: blocks freed by the thread
    /// that allocated them before that thread allocated anything else
    /// (frees of other blocks may come between).
    pub n_temporary: u64,
    /// Temporary allocations by heaptrack's rule (`heaptrack_print`'s
    /// "temporary memory allocations"): frees that come right after an
    /// allocation of the same size from the same stack, with no other
    /// allocation or free between, in the trace's time order across all
    /// threads (heaptrack has one event stream per process). A realloc
    /// counts as the free of its old block, then the allocation of its new
    /// one, and is not an event at all when it returns NULL, as heaptrack
    /// records it; frees of blocks the trace never saw allocated are not
    /// events either.
    pub n_temporary_heaptrack: u64,
    /// Frees of addresses that were not live (allocated before tracing, or foreign).
    pub n_unmatched_frees: u64,
    /// Allocation calls that returned NULL.
    pub n_failed: u64,
    /// Requested sizes by power-of-two bucket (65 buckets): index `i` counts sizes in `[2^(i-1), 2^i)`, 0 counts size 0.
    pub size_histogram: Vec<u64>,
    /// First and last event timestamps.
    pub first_ts: u64,
    /// Last event timestamp.
    pub last_ts: u64,
    /// Heap events replayed.
    pub n_events: u64,
    /// Threads seen.
    pub n_threads: u64,
    /// Phase boundaries `(ts, name)`.
    pub phases: Vec<(u64, String)>,
    /// The live heap over time, at most about `timeline_points` points.
    pub timeline: Vec<TimePoint>,
    /// The process's resource samples (RSS, CPU time, faults), every 100 ms.
    pub resources: Vec<memtrace_format::ResourceSample>,
    last_alloc_by_thread: FxHashMap<u32, u64>,
    /// `(stack, size)` of the last allocation, until the next free: the
    /// state of heaptrack's rule (its `lastAllocationPtr`, an index of
    /// `(size, trace)` pairs).
    last_alloc_info: Option<(StackId, u64)>,
    /// Blocks received by moving reallocs whose calls may not have ended:
    /// they become live once the replay passes `ts + latency`, or the
    /// thread's next call (docs/trace-format.md section 6.6).
    receipts: Receipts,
    peak_epoch: u64,
    timeline_step: u64,
    timeline_max: usize,
    /// For each timeline point, the quiet stretch before its call (ticks
    /// since the call before): a point after a stretch longer than the
    /// timeline's step, and the point before it, are kept when the
    /// timeline is thinned.
    timeline_holds: Vec<u64>,
}

impl HeapReplay {
    /// An empty replay that keeps a timeline of at most `timeline_points`
    /// evenly spaced points (0: no timeline).
    pub fn new(timeline_points: usize) -> Self {
        HeapReplay {
            timeline_step: u64::from(timeline_points > 0),
            timeline_max: timeline_points,
            size_histogram: vec![0; 65],
            ..Default::default()
        }
    }

    /// Reads every event of `reader` into a replay with a timeline of at
    /// most `timeline_points` points.
    pub fn from_reader<R: std::io::Read>(
        reader: &mut Reader<R>,
        timeline_points: usize,
    ) -> Result<Self, DecodeError> {
        let mut replay = HeapReplay::new(timeline_points);
        drive(reader, &mut [&mut replay])?;
        Ok(replay)
    }

    /// Applies one event.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::Heap { tid, event } => self.heap(*tid, event),
            Event::ThreadStart { .. } => self.n_threads += 1,
            Event::Phase(p) => self.phases.push((p.ts, p.name.clone())),
            Event::Resources(r) => self.resources.push(*r),
            _ => {}
        }
    }

    fn heap(&mut self, tid: u32, e: &HeapEvent) {
        let Some(func) = e.func() else { return };
        // The heap as the previous call left it.
        let before = (self.n_events > 0).then_some(TimePoint {
            ts: self.last_ts,
            live_bytes: self.live_bytes,
            calls: self.n_events,
        });
        for (t, received) in self.receipts.arrived(tid, e.ts) {
            self.allocate(t, &received);
        }
        if self.n_events == 0 {
            self.first_ts = e.ts;
        }
        self.n_events += 1;
        self.last_ts = self.last_ts.max(e.ts);
        let f = &mut self.funcs[func as usize];
        f.calls += 1;
        f.latency_ticks = f.latency_ticks.saturating_add(e.latency);
        match func.op() {
            Op::Alloc => {
                let s = self.stats(e.stack);
                s.latency_ticks = s.latency_ticks.saturating_add(e.latency);
                if e.addr == 0 {
                    self.n_failed += 1;
                } else {
                    self.allocate(tid, e);
                    self.last_alloc_info = Some((e.stack, e.size));
                }
            }
            Op::Free => {
                let temporary = self.last_alloc_by_thread.get(&tid) == Some(&e.addr);
                self.heaptrack_free(e.addr);
                self.release(e.addr, temporary);
            }
            Op::Realloc => {
                let s = self.stats(e.stack);
                s.latency_ticks = s.latency_ticks.saturating_add(e.latency);
                if e.addr == 0 && e.size > 0 {
                    // Failed: the old block is untouched.
                    self.n_failed += 1;
                } else {
                    if e.addr != 0 {
                        // heaptrack: a free and an allocation, only when
                        // the realloc returned a block.
                        if e.old_addr != 0 {
                            self.heaptrack_free(e.old_addr);
                        }
                        self.last_alloc_info = Some((e.stack, e.size));
                    }
                    if e.old_addr != 0 {
                        self.release(e.old_addr, false);
                    }
                    if Receipts::is_moving(e) {
                        self.receipts.hold(tid, e);
                    } else if e.addr != 0 {
                        self.allocate(tid, e);
                    }
                }
            }
        }
        if self.timeline_step > 0 {
            let step = self.timeline_step;
            let last = self.timeline.last().map(|p| p.ts);
            if last.is_none_or(|t| e.ts >= t.saturating_add(step)) {
                // After a quiet stretch (no call for a step or more), the
                // heap the last call left, held until this one: a line
                // straight from the last point would show a slow ramp
                // where the heap jumped and then stayed.
                let quiet = before.map_or(0, |b| e.ts.saturating_sub(b.ts));
                if let (Some(t), Some(b)) = (last, before) {
                    if b.ts > t && quiet >= step {
                        self.push_point(b, 0);
                    }
                }
                self.push_point(
                    TimePoint {
                        ts: e.ts,
                        live_bytes: self.live_bytes,
                        calls: self.n_events,
                    },
                    quiet,
                );
            }
        }
    }

    /// Adds a timeline point (`quiet`: the stretch without calls before
    /// it); past `timeline_max` points, halves the resolution, keeping the
    /// points that end a stretch at least as long as the new step, and the
    /// point before each.
    fn push_point(&mut self, p: TimePoint, quiet: u64) {
        self.timeline.push(p);
        self.timeline_holds.push(quiet);
        if self.timeline.len() <= self.timeline_max {
            return;
        }
        let step = self.timeline_step.saturating_mul(2);
        let holds = std::mem::take(&mut self.timeline_holds);
        let keep: Vec<bool> = (0..holds.len())
            .map(|i| i % 2 == 0 || holds[i] >= step || holds.get(i + 1).is_some_and(|&q| q >= step))
            .collect();
        let mut i = 0;
        self.timeline.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        self.timeline_holds = holds
            .into_iter()
            .zip(&keep)
            .filter_map(|(h, &k)| k.then_some(h))
            .collect();
        self.timeline_step = step;
    }

    fn stats(&mut self, stack: StackId) -> &mut StackStats {
        self.stacks.entry(stack).or_default()
    }

    /// Brings a stack's peak snapshot up to date before its live values change.
    fn touch(&mut self, stack: StackId) -> &mut StackStats {
        let epoch = self.peak_epoch;
        let s = self.stacks.entry(stack).or_default();
        if s.snap_epoch != epoch {
            s.snap_epoch = epoch;
            s.snap_bytes = s.live_bytes;
            s.snap_blocks = s.live_blocks;
        }
        s
    }

    fn allocate(&mut self, tid: u32, e: &HeapEvent) {
        if let Some(old) = self.live.get(&e.addr).copied() {
            // The same address handed out twice: its free was not seen.
            self.forget(e.addr, old);
        }
        let s = self.touch(e.stack);
        s.n_allocs += 1;
        s.bytes_allocated = s.bytes_allocated.saturating_add(e.size);
        s.usable_allocated = s.usable_allocated.saturating_add(e.usable);
        s.live_blocks += 1;
        s.live_bytes = s.live_bytes.saturating_add(e.size);
        self.live.insert(
            e.addr,
            LiveBlock {
                size: e.size,
                usable: e.usable,
                stack: e.stack,
                tid,
                ts: e.ts,
            },
        );
        self.n_allocs += 1;
        self.bytes_allocated = self.bytes_allocated.saturating_add(e.size);
        let bucket = if e.size == 0 {
            0
        } else {
            64 - e.size.leading_zeros() as usize
        };
        self.size_histogram[bucket] += 1;
        self.live_bytes = self.live_bytes.saturating_add(e.size);
        self.last_alloc_by_thread.insert(tid, e.addr);
        if self.live_bytes > self.peak_bytes {
            self.peak_bytes = self.live_bytes;
            self.peak_ts = e.ts;
            // Every stack's snapshot is now stale: its live values are the peak values.
            self.peak_epoch += 1;
        }
    }

    /// Heaptrack's rule for the free of `addr`, before it is released.
    fn heaptrack_free(&mut self, addr: u64) {
        let Some(block) = self.live.get(&addr) else {
            return;
        };
        if self.last_alloc_info.take() == Some((block.stack, block.size)) {
            self.n_temporary_heaptrack += 1;
        }
    }

    fn release(&mut self, addr: u64, temporary: bool) {
        let Some(block) = self.live.get(&addr).copied() else {
            self.n_unmatched_frees += 1;
            return;
        };
        self.forget(addr, block);
        let s = self.stats(block.stack);
        s.n_freed += 1;
        s.bytes_freed = s.bytes_freed.saturating_add(block.size);
        if temporary {
            s.n_temporary += 1;
            self.n_temporary += 1;
        }
        self.n_frees += 1;
    }

    fn forget(&mut self, addr: u64, block: LiveBlock) {
        self.live.remove(&addr);
        let s = self.touch(block.stack);
        s.live_blocks -= 1;
        s.live_bytes = s.live_bytes.saturating_sub(block.size);
        self.live_bytes = self.live_bytes.saturating_sub(block.size);
        if self.last_alloc_by_thread.get(&block.tid) == Some(&addr) {
            self.last_alloc_by_thread.remove(&block.tid);
        }
    }

    /// Resolves the per-stack peak values; call once after the last event.
    pub fn finish(&mut self) {
        for (tid, received) in self.receipts.all() {
            self.allocate(tid, &received);
        }
        let epoch = self.peak_epoch;
        for s in self.stacks.values_mut() {
            if s.snap_epoch == epoch {
                s.peak_bytes = s.snap_bytes;
                s.peak_blocks = s.snap_blocks;
            } else {
                s.peak_bytes = s.live_bytes;
                s.peak_blocks = s.live_blocks;
            }
        }
        if self.timeline_step > 0 {
            self.timeline.push(TimePoint {
                ts: self.last_ts,
                live_bytes: self.live_bytes,
                calls: self.n_events,
            });
            self.timeline_holds.push(0);
        }
    }
}

impl EventSink for HeapReplay {
    fn event(&mut self, event: &Event, _: &Trace) {
        self.apply(event);
    }

    fn finish(&mut self, _: &Trace) {
        HeapReplay::finish(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(func: Func, ts: u64, addr: u64, old: u64, size: u64, stack: u32) -> Event {
        heap(1, func, ts, 1, (addr, old), size, stack)
    }

    fn heap(
        tid: u32,
        func: Func,
        ts: u64,
        latency: u64,
        (addr, old_addr): (u64, u64),
        size: u64,
        stack: u32,
    ) -> Event {
        Event::Heap {
            tid,
            event: HeapEvent {
                func: func as u8,
                ts,
                latency,
                addr,
                old_addr,
                size,
                usable: size,
                align: 0,
                stack,
            },
        }
    }

    /// Thread 2's realloc starts at 20 and runs 100 ticks; thread 1 frees
    /// 0xa0 at 50, and the realloc receives it: the free sorts after the
    /// realloc, yet frees the first block, not the one the realloc moved in.
    #[test]
    fn a_free_during_a_realloc_that_receives_its_block_frees_the_old_block() {
        let mut r = HeapReplay::new(0);
        r.apply(&heap(1, Func::Malloc, 10, 5, (0xa0, 0), 64, 1));
        r.apply(&heap(2, Func::Malloc, 12, 5, (0xb0, 0), 32, 2));
        r.apply(&heap(2, Func::Realloc, 20, 100, (0xa0, 0xb0), 48, 3));
        r.apply(&heap(1, Func::Free, 50, 5, (0xa0, 0), 0, 0));
        // Thread 1 allocates and frees the address again while the realloc runs.
        r.apply(&heap(1, Func::Malloc, 60, 5, (0xa0, 0), 16, 4));
        r.apply(&heap(1, Func::Free, 70, 5, (0xa0, 0), 0, 0));
        // The call has ended by 200: the moved block is live.
        r.apply(&heap(1, Func::Malloc, 200, 5, (0xc0, 0), 8, 5));
        assert_eq!(r.live[&0xa0].size, 48);
        assert_eq!(r.live_bytes, 56);
        assert_eq!((r.stacks[&1].n_freed, r.stacks[&1].bytes_freed), (1, 64));
        assert_eq!((r.stacks[&2].n_freed, r.stacks[&2].bytes_freed), (1, 32));
        assert_eq!((r.stacks[&4].n_freed, r.stacks[&4].bytes_freed), (1, 16));
        assert_eq!(r.stacks[&3].n_freed, 0);
        assert_eq!((r.n_frees, r.n_unmatched_frees), (3, 0));
        // A free of 0xa0 after the realloc ended frees the moved block.
        r.apply(&heap(2, Func::Free, 300, 5, (0xa0, 0), 0, 0));
        assert_eq!(r.stacks[&3].n_freed, 1);
        assert_eq!((r.live_bytes, r.n_frees), (8, 4));
    }

    /// The realloc's own thread calls again: its call has returned, whatever
    /// its latency says, and a realloc still running at the end is settled.
    #[test]
    fn a_received_block_is_live_by_the_threads_next_call_and_at_the_end() {
        let mut r = HeapReplay::new(0);
        r.apply(&heap(1, Func::Malloc, 10, 5, (0xb0, 0), 32, 1));
        r.apply(&heap(1, Func::Realloc, 20, 1000, (0xa0, 0xb0), 48, 2));
        r.apply(&heap(1, Func::Free, 30, 5, (0xa0, 0), 0, 0));
        assert_eq!((r.n_frees, r.n_unmatched_frees, r.live_bytes), (2, 0, 0));
        r.apply(&heap(2, Func::Realloc, 40, 1000, (0xd0, 0), 8, 3));
        r.finish();
        assert_eq!(r.live[&0xd0].size, 8);
        assert_eq!(r.live_bytes, 8);
    }

    /// A burst of calls, a quiet stretch, then one more call: the timeline
    /// holds the heap the burst left until the quiet stretch ends, instead
    /// of a line that ramps across it.
    #[test]
    fn the_timeline_holds_the_heap_through_a_quiet_stretch() {
        let mut r = HeapReplay::new(1000);
        for i in 0..10u64 {
            r.apply(&ev(Func::Malloc, 1 + i, 0x1000 + 0x100 * i, 0, 100, 1));
        }
        r.apply(&ev(Func::Malloc, 1_000_000, 0x9000, 0, 24, 2));
        r.finish();
        let points: Vec<(u64, u64)> = r.timeline.iter().map(|p| (p.ts, p.live_bytes)).collect();
        let tail = &points[points.len() - 3..];
        assert_eq!(tail, [(10, 1000), (1_000_000, 1024), (1_000_000, 1024)]);
    }

    /// Thinning a long timeline keeps the hold before a stretch longer than
    /// the new step.
    #[test]
    fn thinning_keeps_the_holds_of_long_quiet_stretches() {
        let mut r = HeapReplay::new(8);
        let mut addr = 0x1000;
        for ts in (1..=40u64).chain([5_000]) {
            r.apply(&ev(Func::Malloc, ts, addr, 0, 1, 1));
            addr += 0x10;
        }
        r.finish();
        assert!(r.timeline.len() <= 9 + 2, "{} points", r.timeline.len());
        let hold = r.timeline.iter().position(|p| p.ts == 40);
        let held = hold.map(|i| (r.timeline[i].live_bytes, r.timeline[i + 1].ts));
        assert_eq!(held, Some((40, 5_000)));
    }

    /// Where memtrace's rule and heaptrack's agree and where they differ.
    #[test]
    fn temporaries_by_memtraces_rule_and_by_heaptracks() {
        let count = |events: &[Event]| {
            let mut r = HeapReplay::new(0);
            for e in events {
                r.apply(e);
            }
            r.finish();
            (r.n_temporary, r.n_temporary_heaptrack)
        };
        // An allocation freed at once: both.
        assert_eq!(
            count(&[
                heap(1, Func::Malloc, 1, 1, (0xa0, 0), 16, 1),
                heap(1, Func::Free, 2, 1, (0xa0, 0), 0, 0),
            ]),
            (1, 1)
        );
        // Another free between: memtrace's only.
        assert_eq!(
            count(&[
                heap(1, Func::Malloc, 1, 1, (0xb0, 0), 8, 2),
                heap(1, Func::Malloc, 2, 1, (0xa0, 0), 16, 1),
                heap(1, Func::Free, 3, 1, (0xb0, 0), 0, 0),
                heap(1, Func::Free, 4, 1, (0xa0, 0), 0, 0),
            ]),
            (1, 0)
        );
        // Another thread's allocation between: memtrace's only.
        assert_eq!(
            count(&[
                heap(1, Func::Malloc, 1, 1, (0xa0, 0), 16, 1),
                heap(2, Func::Malloc, 2, 1, (0xb0, 0), 8, 2),
                heap(1, Func::Free, 3, 1, (0xa0, 0), 0, 0),
            ]),
            (1, 0)
        );
        // Another block of the same size and stack allocated between:
        // heaptrack's only (it tells allocations apart by size and stack).
        assert_eq!(
            count(&[
                heap(1, Func::Malloc, 1, 1, (0xa0, 0), 16, 1),
                heap(1, Func::Malloc, 2, 1, (0xb0, 0), 16, 1),
                heap(1, Func::Free, 3, 1, (0xa0, 0), 0, 0),
            ]),
            (0, 1)
        );
        // A realloc right after the malloc, then a free: heaptrack's twice
        // (each release follows its allocation), memtrace's once (the free).
        assert_eq!(
            count(&[
                heap(1, Func::Malloc, 1, 1, (0xa0, 0), 16, 1),
                heap(1, Func::Realloc, 2, 1, (0xa0, 0xa0), 32, 2),
                heap(1, Func::Free, 3, 1, (0xa0, 0), 0, 0),
            ]),
            (1, 2)
        );
        // realloc(p, 0) returning NULL is no event to heaptrack: the free
        // after it still follows the second malloc.
        assert_eq!(
            count(&[
                heap(1, Func::Malloc, 1, 1, (0xa0, 0), 16, 1),
                heap(1, Func::Malloc, 2, 1, (0xb0, 0), 8, 2),
                heap(1, Func::Realloc, 3, 1, (0, 0xa0), 0, 3),
                heap(1, Func::Free, 4, 1, (0xb0, 0), 0, 0),
            ]),
            (1, 1)
        );
    }

    #[test]
    fn peak_is_attributed_to_the_stacks_live_at_that_moment() {
        let mut r = HeapReplay::new(0);
        // stack 1: 100 bytes; stack 2: 50 then freed; stack 1 again after the peak.
        r.apply(&ev(Func::Malloc, 1, 0x10, 0, 100, 1));
        r.apply(&ev(Func::Malloc, 2, 0x20, 0, 50, 2));
        r.apply(&ev(Func::Free, 3, 0x20, 0, 0, 0));
        r.apply(&ev(Func::Malloc, 4, 0x30, 0, 30, 1));
        r.apply(&ev(Func::Realloc, 5, 0x40, 0x30, 10, 3));
        r.finish();
        assert_eq!(r.peak_bytes, 150);
        assert_eq!(r.peak_ts, 2);
        assert_eq!(r.stacks[&1].peak_bytes, 100);
        assert_eq!(r.stacks[&2].peak_bytes, 50);
        assert_eq!(r.stacks[&3].peak_bytes, 0);
        assert_eq!(r.stacks[&1].live_bytes, 100);
        assert_eq!(r.stacks[&1].n_freed, 1);
        assert_eq!(r.stacks[&3].live_bytes, 10);
        assert_eq!(r.live_bytes, 110);
        assert_eq!((r.n_allocs, r.n_frees), (4, 2));
        // 0x20 was freed right after being allocated by the same thread.
        assert_eq!(r.n_temporary, 1);
        // heaptrack's rule also counts the realloc of 0x30 right after its
        // malloc (a free, then an allocation, to heaptrack).
        assert_eq!(r.n_temporary_heaptrack, 2);
    }

    #[test]
    fn realloc_to_zero_frees_and_failed_realloc_keeps_the_block() {
        let mut r = HeapReplay::new(0);
        r.apply(&ev(Func::Malloc, 1, 0x10, 0, 64, 1));
        r.apply(&ev(Func::Realloc, 2, 0, 0x10, 1 << 40, 2));
        assert_eq!(r.live_bytes, 64);
        r.apply(&ev(Func::Realloc, 3, 0, 0x10, 0, 2));
        r.finish();
        assert_eq!(r.live_bytes, 0);
        assert_eq!(r.n_failed, 1);
    }
}

//! The blocks live right now, kept by the writer thread from the events it
//! drains, for the exit-time reachability scan.
//!
//! The writer drains each thread's ring in turn, so a block freed by one
//! thread may be seen before its allocation by another. Every entry keeps
//! the timestamp of the event that made it, and an event older than what is
//! known about its address changes nothing: the result does not depend on
//! the order of the rings. Every free leaves a tombstone, its time, dropped
//! once the watermark passes it (no older event can come after that): not
//! only a free seen before its allocation needs one. Thread 2 mallocs A at
//! 10, frees it at 20, mallocs A again at 30, and thread 1 frees it at 40;
//! with the malloc at 10 applied in one turn and the rest in the next,
//! thread 1's ring drained first, the free at 40 removes the block of 10,
//! and without its tombstone the malloc at 30, applied after it, made A
//! live again: a block nothing pointed to, "definitely lost" (node's GC
//! workers, 1 run in 90, each lost `Worklist` segment freed in the trace).

use memtrace_format::{Func, Op, StackId, ThreadItem};
use std::collections::hash_map::Entry;
use std::collections::VecDeque;

use rustc_hash::FxHashMap;

/// A live block as the scan needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LiveBlock {
    /// Timestamp of the allocation, in ticks.
    pub ts: u64,
    /// Requested size in bytes.
    pub size: u64,
    /// Allocation stack.
    pub stack: StackId,
}

/// Address -> live block, plus a tombstone for each recent free.
#[derive(Default)]
pub(crate) struct LiveBlocks {
    live: FxHashMap<u64, LiveBlock>,
    /// The last free of each address, until the watermark passes it.
    freed: FxHashMap<u64, u64>,
    /// The tombstone count past which [`LiveBlocks::passed`] next drops
    /// the old ones: twice what the last pruning kept (at least
    /// [`PRUNE_FROM`]), so that tombstones still newer than a lagging
    /// watermark are not walked again on every turn of the writer.
    prune_at: usize,
    recent_frees: RecentFrees,
}

/// Tombstones kept before any pruning.
const PRUNE_FROM: usize = 1024;

/// Bytes of the most recent frees whose addresses are kept: valgrind's
/// memcheck keeps this much freed memory out of reuse (`--freelist-vol`'s
/// default), so a pointer left to a block freed within it points, under
/// memcheck, into freed memory, never into a newer block.
const RECENT_FREE_BYTES: u64 = 20_000_000;
/// At most this many addresses (512 KiB of them, taken at the first free:
/// address space a program under `ulimit -v` would otherwise have).
const RECENT_FREE_COUNT: usize = 1 << 15;

/// The addresses of the most recently freed blocks, for the scan: a
/// pointer a program left to one of them after freeing it (in a global, on
/// the stack) is stale. When glibc reuses that memory for a newer block,
/// the stale pointer lands inside the newer block, and a block found only
/// through such pointers would read "possibly lost" where memcheck, which
/// does not reuse memory this soon, says "definitely lost" (`sites.c`'s
/// `leak_one`: the static `small[]` still points at the 24-byte blocks
/// `free_all` freed, whose chunks the 1000-byte block took over).
#[derive(Default)]
struct RecentFrees {
    addrs: VecDeque<(u64, u64)>,
    bytes: u64,
    gave_up: bool,
}

impl RecentFrees {
    /// Takes the memory for the addresses, once: the first free does, or
    /// [`LiveBlocks::reserve`] before the scan stops the threads, so that
    /// `push` never allocates while they are stopped. Without memory for
    /// them, no pointer is taken for stale.
    fn prepare(&mut self) {
        if self.addrs.capacity() == 0 && !self.gave_up {
            self.gave_up = self.addrs.try_reserve_exact(RECENT_FREE_COUNT).is_err();
        }
    }

    fn push(&mut self, addr: u64, size: u64) {
        self.prepare();
        if self.addrs.capacity() < RECENT_FREE_COUNT {
            return;
        }
        while self.addrs.len() >= RECENT_FREE_COUNT
            || (self.bytes + size > RECENT_FREE_BYTES && !self.addrs.is_empty())
        {
            let (_, old) = self.addrs.pop_front().expect("not empty");
            self.bytes -= old;
        }
        self.addrs.push_back((addr, size));
        self.bytes += size;
    }
}

impl LiveBlocks {
    /// Applies one drained item; false when the table could not get the
    /// memory to grow (it is then incomplete: give it up).
    #[inline]
    pub fn apply(&mut self, item: &ThreadItem) -> bool {
        let ThreadItem::Heap(e) = item else {
            return true;
        };
        let Some(func) = Func::from_u8(e.func) else {
            return true;
        };
        match func.op() {
            Op::Alloc => self.alloc(e.ts, e.addr, e.size, e.stack),
            Op::Free => self.free(e.ts, e.addr),
            Op::Realloc => {
                // A failed realloc (NULL for a non-zero size) leaves the old block.
                if e.addr != 0 || e.size == 0 {
                    // Stamped when it started, a realloc may receive a block
                    // that another thread frees while it runs (that free is
                    // stamped later): the new block counts from the call's end.
                    let end = e.ts.saturating_add(e.latency);
                    self.free(e.ts, e.old_addr) && self.alloc(end, e.addr, e.size, e.stack)
                } else {
                    true
                }
            }
        }
    }

    fn alloc(&mut self, ts: u64, addr: u64, size: u64, stack: StackId) -> bool {
        if addr == 0 {
            return true;
        }
        if !self.freed.is_empty() && self.freed.get(&addr).is_some_and(|&freed| freed > ts) {
            return true; // Already freed by a later event.
        }
        // Growing the table is the one allocation here.
        if self.live.try_reserve(1).is_err() {
            return false;
        }
        // One hash per event: insert, and put the old entry back in the rare
        // case that it was newer.
        let block = LiveBlock { ts, size, stack };
        if let Some(old) = self.live.insert(addr, block) {
            if old.ts > ts {
                self.live.insert(addr, old);
            }
        }
        true
    }

    fn free(&mut self, ts: u64, addr: u64) -> bool {
        if addr == 0 {
            return true;
        }
        // Remembered in every case: an older allocation of the same address
        // may still come from another ring (see the module docs).
        if self.freed.try_reserve(1).is_err() {
            return false;
        }
        let t = self.freed.entry(addr).or_insert(ts);
        *t = (*t).max(ts);
        // The block, unless it is unknown (allocated before recording
        // began, or its allocation is still in another ring) or was
        // re-allocated later.
        if let Entry::Occupied(e) = self.live.entry(addr) {
            if e.get().ts <= ts {
                let block = e.remove();
                self.recent_frees.push(addr, block.size);
            }
        }
        true
    }

    /// Every event below `watermark` has been applied: tombstones older than
    /// it can no longer cancel anything.
    pub fn passed(&mut self, watermark: u64) {
        if self.freed.len() > self.prune_at.max(PRUNE_FROM) {
            self.freed.retain(|_, &mut ts| ts >= watermark);
            self.prune_at = 2 * self.freed.len();
        }
    }

    /// The addresses of the blocks freed most recently (within memcheck's
    /// 20 MB of freed memory, at most 32,768 of them), sorted; `None` when
    /// the memory for the list cannot be had.
    pub fn recently_freed(&self) -> Option<Vec<u64>> {
        let mut v = crate::memory::try_collect(self.recent_frees.addrs.iter().map(|&(a, _)| a))?;
        v.sort_unstable();
        v.dedup();
        Some(v)
    }

    /// Blocks live now.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Makes room for `n` more allocations and `n` more early frees, so
    /// that applying up to `n` items allocates nothing; false when the
    /// memory cannot be had.
    pub fn reserve(&mut self, n: usize) -> bool {
        self.recent_frees.prepare();
        self.live.try_reserve(n).is_ok() && self.freed.try_reserve(n).is_ok()
    }

    /// Puts the live blocks into `out` in address order, `(address,
    /// block)`, without growing it (the sort is in place); false, leaving
    /// `out` empty, when they do not fit.
    pub fn sorted_into(&self, out: &mut Vec<(u64, LiveBlock)>) -> bool {
        out.clear();
        if self.live.len() > out.capacity() {
            return false;
        }
        out.extend(self.live.iter().map(|(&a, &b)| (a, b)));
        out.sort_unstable_by_key(|&(a, _)| a);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memtrace_format::HeapEvent;

    fn ev(func: Func, ts: u64, addr: u64, old_addr: u64, size: u64) -> ThreadItem {
        ThreadItem::Heap(HeapEvent {
            func: func as u8,
            ts,
            addr,
            old_addr,
            size,
            stack: 1,
            ..Default::default()
        })
    }

    fn live(blocks: &LiveBlocks) -> Vec<(u64, u64)> {
        let mut out = Vec::with_capacity(blocks.len());
        assert!(blocks.sorted_into(&mut out));
        out.iter().map(|(a, b)| (*a, b.size)).collect()
    }

    #[test]
    fn the_order_of_the_rings_does_not_change_the_result() {
        // Thread 1: malloc A at 10; thread 2: free A at 20; thread 3: malloc A at 30.
        let events = [
            ev(Func::Malloc, 10, 0xa0, 0, 16),
            ev(Func::Free, 20, 0xa0, 0, 0),
            ev(Func::Malloc, 30, 0xa0, 0, 24),
            ev(Func::Malloc, 15, 0xb0, 0, 8),
        ];
        let orders = [
            [0, 1, 2, 3],
            [1, 0, 2, 3],
            [2, 1, 0, 3],
            [1, 2, 3, 0],
            [2, 0, 1, 3],
        ];
        for order in orders {
            let mut blocks = LiveBlocks::default();
            for i in order {
                blocks.apply(&events[i]);
            }
            assert_eq!(
                live(&blocks),
                vec![(0xa0, 24), (0xb0, 8)],
                "order {order:?}"
            );
        }
    }

    /// Tombstones the watermark has passed are dropped once there are more
    /// than 1,024; the rest, newer, are kept and still cancel an older
    /// allocation that comes late; the next pruning waits until the table
    /// has doubled.
    #[test]
    fn tombstones_behind_the_watermark_are_pruned_and_the_newer_kept() {
        let mut blocks = LiveBlocks::default();
        for i in 1..=2000u64 {
            assert!(blocks.apply(&ev(Func::Free, i, 0x1000 + 16 * i, 0, 0)));
        }
        blocks.passed(1501);
        assert_eq!(blocks.freed.len(), 500);
        // Freed at 1700: an allocation made at 1650, applied now, stays dead.
        blocks.apply(&ev(Func::Malloc, 1650, 0x1000 + 16 * 1700, 0, 8));
        assert_eq!(live(&blocks), vec![]);
        // 500 kept: no pruning before 1,024 (at least) tombstones, whatever
        // the watermark.
        for i in 2001..=2524u64 {
            blocks.apply(&ev(Func::Free, i, 0x1000 + 16 * i, 0, 0));
        }
        blocks.passed(3000);
        assert_eq!(blocks.freed.len(), 1024);
        blocks.apply(&ev(Func::Free, 2525, 0x1000 + 16 * 2525, 0, 0));
        blocks.passed(3000);
        assert_eq!(blocks.freed.len(), 0);
        // A watermark that lags: 1,500 tombstones all newer than it are
        // walked once, and not again until there are more than 3,000.
        for i in 4001..=5500u64 {
            blocks.apply(&ev(Func::Free, i, 0x1000 + 16 * i, 0, 0));
        }
        blocks.passed(3000);
        assert_eq!(blocks.prune_at, 3000);
        for i in 5501..=7000u64 {
            blocks.apply(&ev(Func::Free, i, 0x1000 + 16 * i, 0, 0));
        }
        blocks.passed(6000);
        assert_eq!(blocks.freed.len(), 3000, "3,000 is not past the threshold");
        blocks.apply(&ev(Func::Free, 7001, 0x1000 + 16 * 7001, 0, 0));
        blocks.passed(6000);
        assert_eq!(blocks.freed.len(), 1002, "6000 to 7001 kept");
    }

    /// Every order of `n` items, as lists of indices.
    fn orders(n: usize) -> Vec<Vec<usize>> {
        if n == 0 {
            return vec![vec![]];
        }
        let mut out = Vec::new();
        for rest in orders(n - 1) {
            for at in 0..=rest.len() {
                let mut order = rest.clone();
                order.insert(at, n - 1);
                out.push(order);
            }
        }
        out
    }

    /// Thread 2 mallocs A at 10, frees it at 20 and mallocs it again at
    /// 30; thread 1 frees it at 40 (node's GC workers and their `Worklist`
    /// segments). The writer saw the malloc at 10 in one turn, then thread
    /// 1's ring before thread 2's: the free at 40 removed the block of 10
    /// without a trace, and the malloc at 30 made A live again for good.
    #[test]
    fn a_block_reused_by_its_thread_and_freed_by_another_is_freed_in_any_order() {
        let events = [
            ev(Func::Malloc, 10, 0xa0, 0, 4112),
            ev(Func::Free, 20, 0xa0, 0, 0),
            ev(Func::Malloc, 30, 0xa0, 0, 4112),
            ev(Func::Free, 40, 0xa0, 0, 0),
            ev(Func::Malloc, 15, 0xb0, 0, 8),
        ];
        let all = orders(events.len());
        assert_eq!(all.len(), 120);
        for order in &all {
            let mut blocks = LiveBlocks::default();
            for &i in order {
                blocks.apply(&events[i]);
            }
            assert_eq!(live(&blocks), vec![(0xb0, 8)], "order {order:?}");
        }
        // Malloc'd once more at 50: live, with that size, in any order.
        let mut more = events.to_vec();
        more.push(ev(Func::Malloc, 50, 0xa0, 0, 24));
        for order in orders(more.len()) {
            let mut blocks = LiveBlocks::default();
            for &i in &order {
                blocks.apply(&more[i]);
            }
            let want = vec![(0xa0, 24), (0xb0, 8)];
            assert_eq!(live(&blocks), want, "order {order:?}");
        }
    }

    /// Thread 2's realloc runs from 20 to 120 and receives 0xa0, which
    /// thread 1 frees at 50: the realloc's block stays live, in any order.
    #[test]
    fn a_free_during_a_realloc_that_receives_its_block_leaves_the_new_block() {
        let mut realloc = ev(Func::Realloc, 20, 0xa0, 0xb0, 48);
        if let ThreadItem::Heap(e) = &mut realloc {
            e.latency = 100;
        }
        let events = [
            ev(Func::Malloc, 10, 0xa0, 0, 64),
            ev(Func::Malloc, 12, 0xb0, 0, 32),
            realloc,
            ev(Func::Free, 50, 0xa0, 0, 0),
        ];
        for order in [[0, 1, 2, 3], [0, 1, 3, 2], [1, 2, 0, 3], [3, 2, 1, 0]] {
            let mut blocks = LiveBlocks::default();
            for i in order {
                blocks.apply(&events[i]);
            }
            assert_eq!(live(&blocks), vec![(0xa0, 48)], "order {order:?}");
        }
    }

    #[test]
    fn the_most_recent_frees_are_kept_within_memchecks_volume() {
        let mut blocks = LiveBlocks::default();
        blocks.apply(&ev(Func::Malloc, 1, 0x100, 0, 12_000_000));
        blocks.apply(&ev(Func::Malloc, 2, 0x200, 0, 24));
        blocks.apply(&ev(Func::Malloc, 3, 0x300, 0, 9_000_000));
        blocks.apply(&ev(Func::Free, 4, 0x200, 0, 0));
        blocks.apply(&ev(Func::Free, 5, 0x100, 0, 0));
        assert_eq!(blocks.recently_freed(), Some(vec![0x100, 0x200]));
        // 12,000,024 + 9,000,000 bytes is over 20 MB: the oldest go.
        blocks.apply(&ev(Func::Free, 6, 0x300, 0, 0));
        assert_eq!(blocks.recently_freed(), Some(vec![0x300]));
        // A free of an unknown block has no size: not kept.
        blocks.apply(&ev(Func::Free, 7, 0x400, 0, 0));
        assert_eq!(blocks.recently_freed(), Some(vec![0x300]));
    }

    #[test]
    fn realloc_moves_and_failed_realloc_keeps_the_block() {
        let mut blocks = LiveBlocks::default();
        blocks.apply(&ev(Func::Malloc, 1, 0x100, 0, 10));
        blocks.apply(&ev(Func::Realloc, 2, 0x200, 0x100, 20));
        assert_eq!(live(&blocks), vec![(0x200, 20)]);
        blocks.apply(&ev(Func::Realloc, 3, 0, 0x200, 1 << 40));
        assert_eq!(live(&blocks), vec![(0x200, 20)]);
        blocks.apply(&ev(Func::Realloc, 4, 0x200, 0x200, 30));
        assert_eq!(live(&blocks), vec![(0x200, 30)]);
        blocks.apply(&ev(Func::Realloc, 5, 0, 0x200, 0));
        assert_eq!(live(&blocks), vec![]);
    }

    #[test]
    fn items_applied_within_the_reserve_allocate_nothing() {
        let mut blocks = LiveBlocks::default();
        for i in 0..100u64 {
            blocks.apply(&ev(Func::Malloc, i, 0x1000 + 16 * i, 0, 8));
        }
        assert!(blocks.reserve(50));
        let room = (blocks.live.capacity(), blocks.freed.capacity());
        for i in 0..25u64 {
            blocks.apply(&ev(Func::Malloc, 200 + i, 0x9000 + 16 * i, 0, 8));
            blocks.apply(&ev(Func::Free, 300 + i, 0x1000 + 16 * i, 0, 0));
            blocks.apply(&ev(Func::Free, 400 + i, 0x20000 + 16 * i, 0, 0));
        }
        // Never grown (a growth doubles the table; tombstones of removed
        // entries may lower the capacity reported).
        assert!(blocks.live.capacity() <= room.0);
        assert!(blocks.freed.capacity() <= room.1);
        assert_eq!(blocks.len(), 100);
        let mut out = Vec::with_capacity(99);
        assert!(!blocks.sorted_into(&mut out));
        assert!(out.is_empty());
    }
}

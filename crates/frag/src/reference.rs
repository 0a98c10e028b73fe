//! The two reference rows: a compacting and a copying collector.
//!
//! `Compact` slides live blocks together after every free, so its footprint
//! is the live bytes (each block rounded to the alignment): the lower bound
//! of any allocator with that alignment, with no free space at all.
//! `Semispace` copies live blocks between two halves, each as large as the
//! most ever live: zero external fragmentation at twice the space. Both
//! allocate by bumping a pointer, so `examined` is 0.

use crate::heap::{round_up, Config, Heap, Hole, Placement};
use crate::ids::IdMap;

/// A compacting (`doubled == false`) or semispace (`doubled == true`) heap.
pub struct CollectorHeap {
    doubled: bool,
    align: u64,
    live: IdMap<u64>,
    given: u64,
    high: u64,
}

impl CollectorHeap {
    /// A compacting collector's heap.
    pub fn compact(config: &Config) -> Self {
        Self::new(false, config)
    }

    /// A semispace collector's heap.
    pub fn semispace(config: &Config) -> Self {
        Self::new(true, config)
    }

    fn new(doubled: bool, config: &Config) -> Self {
        CollectorHeap {
            doubled,
            align: config.align.max(1),
            live: IdMap::new(),
            given: 0,
            high: 0,
        }
    }
}

impl Heap for CollectorHeap {
    fn alloc(&mut self, id: u64, size: u64, _now: u64) -> Placement {
        let need = self.block_size(size);
        let addr = self.given;
        self.live.insert(id, need);
        self.given += need;
        let grew = self.given > self.high;
        self.high = self.high.max(self.given);
        Placement {
            addr,
            given: need,
            examined: 0,
            grew,
        }
    }

    fn free(&mut self, id: u64, _now: u64) -> bool {
        match self.live.remove(id) {
            Some(size) => {
                self.given -= size;
                true
            }
            None => false,
        }
    }

    fn footprint(&self) -> u64 {
        if self.doubled {
            2 * self.high
        } else {
            self.given
        }
    }

    fn given_bytes(&self) -> u64 {
        self.given
    }

    /// All free space is one range (after the copy, in the idle half).
    fn largest_hole(&self) -> u64 {
        self.footprint() - self.given
    }

    fn holes(&self) -> Vec<Hole> {
        Vec::new()
    }

    fn block_size(&self, size: u64) -> u64 {
        round_up(size.max(1), self.align)
    }
}

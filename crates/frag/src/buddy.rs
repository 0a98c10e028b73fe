//! A binary buddy allocator.
//!
//! Blocks are `2^k` bytes, `k >= min_order`, aligned to their size. A request
//! takes the lowest-addressed free block of the smallest order that can hold
//! it, splitting larger blocks in halves; a freed block merges with its buddy
//! (`addr ^ 2^k`) while that is free and of the same order.
//!
//! Growth: when no free block is large enough, the arena grows at its top by
//! one block of `max(page, block)` bytes. The top is first aligned to that
//! size by free blocks of the largest order the top address allows, so every
//! block stays aligned to its size and merges with its buddy like any other.
//! `examined` counts the free lists looked at (orders `k, k+1, ...`).

use std::collections::BTreeMap;

use crate::heap::{ceil_log2, Config, Heap, Hole, Placement};
use crate::ids::IdMap;

const ORDERS: usize = 64;

/// A buddy heap.
pub struct BuddyHeap {
    min_order: u32,
    page_order: u32,
    header: u64,
    end: u64,
    free: Vec<BTreeMap<u64, u64>>,
    live: IdMap<(u64, u32)>,
    given: u64,
}

impl BuddyHeap {
    /// An empty heap with `config.buddy_min_order` and `config.page_size`
    /// (rounded up to a power of two).
    pub fn new(config: &Config) -> Self {
        BuddyHeap {
            min_order: config.buddy_min_order.min(62),
            page_order: ceil_log2(config.page_size).min(62),
            header: config.header,
            end: 0,
            free: vec![BTreeMap::new(); ORDERS],
            live: IdMap::new(),
            given: 0,
        }
    }

    /// The order of the block for a request of `size` bytes.
    pub fn order_for(&self, size: u64) -> u32 {
        ceil_log2(size.max(1) + self.header)
            .max(self.min_order)
            .min(62)
    }

    /// Adds a free block, merging it with its buddy while possible.
    fn release(&mut self, mut addr: u64, mut order: u32, now: u64) {
        while (order as usize) < ORDERS - 2 {
            let buddy = addr ^ (1u64 << order);
            if self.free[order as usize].remove(&buddy).is_none() {
                break;
            }
            addr = addr.min(buddy);
            order += 1;
        }
        self.free[order as usize].insert(addr, now);
    }

    fn grow(&mut self, order: u32, now: u64) {
        let g = order.max(self.page_order);
        let size = 1u64 << g;
        while !self.end.is_multiple_of(size) {
            let o = self.end.trailing_zeros();
            let start = self.end;
            self.end += 1u64 << o;
            self.release(start, o, now);
        }
        let start = self.end;
        self.end += size;
        self.release(start, g, now);
    }

    fn find(&self, order: u32) -> Option<u32> {
        (order as usize..ORDERS)
            .find(|&o| !self.free[o].is_empty())
            .map(|o| o as u32)
    }
}

impl Heap for BuddyHeap {
    fn alloc(&mut self, id: u64, size: u64, now: u64) -> Placement {
        let k = self.order_for(size);
        let (j, examined, grew) = match self.find(k) {
            Some(j) => (j, u64::from(j - k + 1), false),
            None => {
                self.grow(k, now);
                let j = self.find(k).expect("growth made a block");
                ((j), (ORDERS as u64) - u64::from(k), true)
            }
        };
        let (&addr, _) = self.free[j as usize].first_key_value().expect("non-empty");
        self.free[j as usize].remove(&addr);
        for o in (k..j).rev() {
            self.free[o as usize].insert(addr + (1u64 << o), now);
        }
        self.live.insert(id, (addr, k));
        self.given += 1u64 << k;
        Placement {
            addr,
            given: 1u64 << k,
            examined,
            grew,
        }
    }

    fn free(&mut self, id: u64, now: u64) -> bool {
        let Some((addr, order)) = self.live.remove(id) else {
            return false;
        };
        self.given -= 1u64 << order;
        self.release(addr, order, now);
        true
    }

    fn footprint(&self) -> u64 {
        self.end
    }

    fn given_bytes(&self) -> u64 {
        self.given
    }

    fn largest_hole(&self) -> u64 {
        (0..ORDERS)
            .rev()
            .find(|&o| !self.free[o].is_empty())
            .map_or(0, |o| 1u64 << o)
    }

    fn holes(&self) -> Vec<Hole> {
        let mut holes: Vec<Hole> = self
            .free
            .iter()
            .enumerate()
            .flat_map(|(o, m)| {
                m.iter().map(move |(&addr, &birth)| Hole {
                    addr,
                    size: 1u64 << o,
                    birth,
                })
            })
            .filter(|h| h.addr + h.size != self.end)
            .collect();
        holes.sort_unstable_by_key(|h| h.addr);
        holes
    }

    fn block_size(&self, size: u64) -> u64 {
        1u64 << self.order_for(size)
    }
}

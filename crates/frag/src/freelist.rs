//! First-fit, next-fit, best-fit and worst-fit over one contiguous heap.
//!
//! Blocks are split on allocation (the block takes the low end of the hole)
//! and free neighbours are coalesced on release. When no hole fits, the heap
//! grows at its top by whole pages, merging with a free range at the top.
//! The holes are kept in address order (a `BTreeMap`, for coalescing) and
//! indexed for the policy: a treap with subtree maxima finds the first fit
//! in O(log n); a `BTreeSet` of `(size, addr)` finds the best and worst fit.
//!
//! `examined` counts what an address-ordered free list would visit: first-fit
//! stops at the first hole that fits, next-fit walks on from where it last
//! allocated (wrapping around), best-fit and worst-fit read the whole list;
//! a search that fails reads the whole list.

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::heap::{round_up, Config, Heap, Hole, Placement};
use crate::treap::Treap;

/// Which hole a free-list allocator picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Fit {
    /// The lowest-addressed hole that fits.
    First,
    /// The first hole that fits at or after the end of the last allocation,
    /// wrapping around to the bottom.
    Next,
    /// The smallest hole that fits (lowest address among equals).
    Best,
    /// The largest hole (lowest address among equals).
    Worst,
}

/// A free-list heap with one placement policy.
pub struct FreeListHeap {
    fit: Fit,
    page: u64,
    align: u64,
    header: u64,
    end: u64,
    holes: BTreeMap<u64, (u64, u64)>,
    by_size: BTreeSet<(u64, u64)>,
    by_addr: Treap,
    live: FxHashMap<u64, (u64, u64)>,
    given: u64,
    rover: u64,
}

impl FreeListHeap {
    /// An empty heap.
    pub fn new(fit: Fit, config: &Config) -> Self {
        FreeListHeap {
            fit,
            page: config.page_size.max(1),
            align: config.align.max(1),
            header: config.header,
            end: 0,
            holes: BTreeMap::new(),
            by_size: BTreeSet::new(),
            by_addr: Treap::new(),
            live: FxHashMap::default(),
            given: 0,
            rover: 0,
        }
    }

    fn uses_treap(&self) -> bool {
        matches!(self.fit, Fit::First | Fit::Next)
    }

    fn insert_hole(&mut self, addr: u64, size: u64, birth: u64) {
        self.holes.insert(addr, (size, birth));
        if self.uses_treap() {
            self.by_addr.insert(addr, size);
        } else {
            self.by_size.insert((size, addr));
        }
    }

    fn remove_hole(&mut self, addr: u64) -> u64 {
        let (size, _) = self.holes.remove(&addr).expect("hole exists");
        if self.uses_treap() {
            self.by_addr.remove(addr);
        } else {
            self.by_size.remove(&(size, addr));
        }
        size
    }

    fn n_holes(&self) -> u64 {
        self.holes.len() as u64
    }

    /// The hole to use for `need` bytes and how many holes were examined.
    fn search(&self, need: u64) -> (Option<u64>, u64) {
        let n = self.n_holes();
        let found = match self.fit {
            Fit::First => self.by_addr.first_fit(0, need).map(|a| {
                let examined = self.by_addr.count_below(a) + 1;
                (a, examined)
            }),
            Fit::Next => {
                let from = self.by_addr.count_below(self.rover);
                match self.by_addr.first_fit(self.rover, need) {
                    Some(a) => Some((a, self.by_addr.count_below(a) - from + 1)),
                    None => self
                        .by_addr
                        .first_fit(0, need)
                        .map(|a| (a, n - from + self.by_addr.count_below(a) + 1)),
                }
            }
            Fit::Best => self.by_size.range((need, 0)..).next().map(|&(_, a)| (a, n)),
            Fit::Worst => {
                // The largest size, and among equals the lowest address.
                self.by_size.last().and_then(|&(s, _)| {
                    (s >= need).then(|| {
                        let &(_, a) = self.by_size.range((s, 0)..).next().expect("non-empty");
                        (a, n)
                    })
                })
            }
        };
        match found {
            Some((a, e)) => (Some(a), e),
            None => (None, n),
        }
    }

    /// Grows the heap at its top so that a hole of `need` bytes ends there;
    /// returns that hole's address.
    fn grow(&mut self, need: u64, now: u64) -> u64 {
        let top = self
            .holes
            .range(..self.end)
            .next_back()
            .filter(|(&a, &(s, _))| a + s == self.end)
            .map(|(&a, &(s, _))| (a, s));
        let (start, have) = match top {
            Some((a, s)) => {
                self.remove_hole(a);
                (a, s)
            }
            None => (self.end, 0),
        };
        let extra = round_up(need - have, self.page);
        self.end += extra;
        self.insert_hole(start, have + extra, now);
        start
    }
}

impl Heap for FreeListHeap {
    fn alloc(&mut self, id: u64, size: u64, now: u64) -> Placement {
        let need = self.block_size(size);
        let (found, examined) = self.search(need);
        let (addr, grew) = match found {
            Some(a) => (a, false),
            None => (self.grow(need, now), true),
        };
        let hole = self.remove_hole(addr);
        if hole > need {
            self.insert_hole(addr + need, hole - need, now);
        }
        self.live.insert(id, (addr, need));
        self.given += need;
        self.rover = addr + need;
        Placement {
            addr,
            given: need,
            examined,
            grew,
        }
    }

    fn free(&mut self, id: u64, now: u64) -> bool {
        let Some((addr, size)) = self.live.remove(&id) else {
            return false;
        };
        self.given -= size;
        let (mut start, mut len) = (addr, size);
        let pred = self
            .holes
            .range(..addr)
            .next_back()
            .map(|(&a, &(s, _))| (a, s));
        if let Some((a, s)) = pred.filter(|&(a, s)| a + s == addr) {
            self.remove_hole(a);
            start = a;
            len += s;
        }
        let succ = self.holes.get(&(addr + size)).map(|&(s, _)| s);
        if let Some(s) = succ {
            self.remove_hole(addr + size);
            len += s;
        }
        self.insert_hole(start, len, now);
        true
    }

    fn footprint(&self) -> u64 {
        self.end
    }

    fn given_bytes(&self) -> u64 {
        self.given
    }

    fn largest_hole(&self) -> u64 {
        if self.uses_treap() {
            self.by_addr.max()
        } else {
            self.by_size.last().map_or(0, |&(s, _)| s)
        }
    }

    fn holes(&self) -> Vec<Hole> {
        self.holes
            .iter()
            .filter(|(&a, &(s, _))| a + s != self.end)
            .map(|(&addr, &(size, birth))| Hole { addr, size, birth })
            .collect()
    }

    fn block_size(&self, size: u64) -> u64 {
        round_up(size.max(1) + self.header, self.align)
    }
}

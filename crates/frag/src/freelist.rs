//! First-fit, next-fit, best-fit and worst-fit over one contiguous heap.
//!
//! Blocks are split on allocation (the block takes the low end of the hole)
//! and free neighbours are coalesced on release. When no hole fits, the heap
//! grows at its top by whole pages, merging with a free range at the top.
//! The holes are kept in a B+ tree in address order with the largest hole
//! and the hole count of every subtree ([`HoleTree`]): first-fit, next-fit
//! and worst-fit search it in a few node visits, and splitting or
//! coalescing mostly changes one hole in place. Best-fit adds a `BTreeSet`
//! of `(size, addr)`.
//!
//! `examined` counts what an address-ordered free list would visit: first-fit
//! stops at the first hole that fits, next-fit walks on from where it last
//! allocated (wrapping around), best-fit and worst-fit read the whole list;
//! a search that fails reads the whole list.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::heap::{round_up, Config, Heap, Hole, Placement};
use crate::holetree::{Entry, HoleTree};
use crate::ids::IdMap;

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
    holes: HoleTree,
    /// Best-fit only: `(size, addr)` of every hole.
    by_size: BTreeSet<(u64, u64)>,
    live: IdMap<(u64, u64)>,
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
            holes: HoleTree::new(),
            by_size: BTreeSet::new(),
            live: IdMap::new(),
            given: 0,
            rover: 0,
        }
    }

    fn sized(&self) -> bool {
        self.fit == Fit::Best
    }

    fn insert_hole(&mut self, addr: u64, size: u64, birth: u64) {
        self.holes.insert(Entry { addr, size, birth });
        if self.sized() {
            self.by_size.insert((size, addr));
        }
    }

    fn remove_hole(&mut self, addr: u64) -> u64 {
        let e = self.holes.remove(addr).expect("hole exists");
        if self.sized() {
            self.by_size.remove(&(e.size, addr));
        }
        e.size
    }

    /// Changes the hole at `old` (of `old_size` bytes) to `addr`/`size`,
    /// which keeps its place among the holes.
    fn move_hole(&mut self, old: u64, old_size: u64, addr: u64, size: u64, birth: u64) {
        self.holes.update(old, Entry { addr, size, birth });
        if self.sized() {
            self.by_size.remove(&(old_size, old));
            self.by_size.insert((size, addr));
        }
    }

    /// The hole to use for `need` bytes and how many holes were examined.
    fn search(&self, need: u64) -> (Option<Entry>, u64) {
        let n = self.holes.len();
        let found = match self.fit {
            Fit::First => self
                .holes
                .first_fit(0, need)
                .map(|(e, below)| (e, below + 1)),
            Fit::Next => {
                let from = self.holes.rank(self.rover);
                match self.holes.first_fit(self.rover, need) {
                    Some((e, below)) => Some((e, below - from + 1)),
                    None => self
                        .holes
                        .first_fit(0, need)
                        .map(|(e, below)| (e, n - from + below + 1)),
                }
            }
            Fit::Best => self.by_size.range((need, 0)..).next().map(|&(size, addr)| {
                let e = Entry {
                    addr,
                    size,
                    birth: 0,
                };
                (e, n)
            }),
            Fit::Worst => {
                // The largest size, and among equals the lowest address.
                let largest = self.holes.max();
                if largest >= need && n > 0 {
                    self.holes.first_fit(0, largest).map(|(e, _)| (e, n))
                } else {
                    None
                }
            }
        };
        match found {
            Some((e, examined)) => (Some(e), examined),
            None => (None, n),
        }
    }

    /// Grows the heap at its top so that a hole of `need` bytes ends there;
    /// returns that hole.
    fn grow(&mut self, need: u64, now: u64) -> Entry {
        let top = self
            .holes
            .below(self.end)
            .filter(|e| e.addr + e.size == self.end);
        match top {
            Some(e) => {
                let extra = round_up(need - e.size, self.page);
                self.end += extra;
                self.move_hole(e.addr, e.size, e.addr, e.size + extra, now);
                Entry {
                    addr: e.addr,
                    size: e.size + extra,
                    birth: now,
                }
            }
            None => {
                let addr = self.end;
                let extra = round_up(need, self.page);
                self.end += extra;
                self.insert_hole(addr, extra, now);
                Entry {
                    addr,
                    size: extra,
                    birth: now,
                }
            }
        }
    }
}

impl Heap for FreeListHeap {
    fn alloc(&mut self, id: u64, size: u64, now: u64) -> Placement {
        let need = self.block_size(size);
        let (found, examined) = self.search(need);
        let (hole, grew) = match found {
            Some(e) => (e, false),
            None => (self.grow(need, now), true),
        };
        let addr = hole.addr;
        if hole.size > need {
            // The rest of the hole stays where it was, shorter.
            self.move_hole(addr, hole.size, addr + need, hole.size - need, now);
        } else {
            self.remove_hole(addr);
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
        let Some((addr, size)) = self.live.remove(id) else {
            return false;
        };
        self.given -= size;
        let pred = self.holes.below(addr).filter(|e| e.addr + e.size == addr);
        let succ = self.holes.get(addr + size);
        match (pred, succ) {
            (Some(p), Some(s)) => {
                self.remove_hole(s.addr);
                self.move_hole(p.addr, p.size, p.addr, p.size + size + s.size, now);
            }
            (Some(p), None) => self.move_hole(p.addr, p.size, p.addr, p.size + size, now),
            (None, Some(s)) => self.move_hole(s.addr, s.size, addr, size + s.size, now),
            (None, None) => self.insert_hole(addr, size, now),
        }
        true
    }

    fn footprint(&self) -> u64 {
        self.end
    }

    fn given_bytes(&self) -> u64 {
        self.given
    }

    fn largest_hole(&self) -> u64 {
        self.holes.max()
    }

    fn holes(&self) -> Vec<Hole> {
        self.holes
            .entries()
            .into_iter()
            .filter(|e| e.addr + e.size != self.end)
            .map(|e| Hole {
                addr: e.addr,
                size: e.size,
                birth: e.birth,
            })
            .collect()
    }

    fn block_size(&self, size: u64) -> u64 {
        round_up(size.max(1) + self.header, self.align)
    }
}

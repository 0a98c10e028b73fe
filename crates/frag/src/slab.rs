//! A slab allocator with the kernel's kmalloc size classes.
//!
//! A request of up to 131072 bytes takes an object of the smallest class
//! that holds it, from the lowest-addressed slab of that class with a free
//! object; a slab is `2^order` pages from a page-level first-fit heap, and
//! goes back to it when its last object is freed. Larger requests take whole
//! pages from the page level.
//!
//! The order of a class is simpler than the kernel's `calculate_order`: the
//! smallest order whose slab holds at least one object and leaves at most
//! 1/8 of the slab unused. For 96-byte objects that is one page, 42 objects,
//! 64 bytes left over, as in the kernel; for 2048-byte objects it is one page
//! where SLUB takes eight to reach its minimum object count.
//!
//! The unusable tail of each slab counts as given (internal fragmentation).

use std::collections::BTreeSet;

use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::freelist::{Fit, FreeListHeap};
use crate::heap::{round_up, Config, Heap, Hole, Placement};
use crate::ids::IdMap;

/// The kmalloc size classes, in bytes.
pub const KMALLOC_CLASSES: [u64; 15] = [
    32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072,
];

/// The geometry of one cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SlabClass {
    /// Object size in bytes.
    pub object_size: u64,
    /// A slab is `2^order` pages.
    pub order: u32,
    /// Objects per slab.
    pub objects: u64,
    /// Bytes of each slab that no object uses.
    pub waste: u64,
}

impl SlabClass {
    /// The geometry for `object_size` with pages of `page_size` bytes.
    pub fn new(object_size: u64, page_size: u64) -> Self {
        let object_size = object_size.max(1);
        let mut order = 0;
        loop {
            let bytes = page_size << order;
            let objects = bytes / object_size;
            let waste = bytes - objects * object_size;
            if objects >= 1 && waste * 8 <= bytes || order >= 40 {
                return SlabClass {
                    object_size,
                    order,
                    objects,
                    waste,
                };
            }
            order += 1;
        }
    }
}

struct Slab {
    page_id: u64,
    free: Vec<u32>,
}

struct Cache {
    class: SlabClass,
    partial: BTreeSet<u64>,
    slabs: FxHashMap<u64, Slab>,
}

#[derive(Clone, Copy)]
enum Loc {
    Object { class: usize, slab: u64, slot: u32 },
    Pages { page_id: u64, bytes: u64 },
}

/// A slab heap over a page-level heap.
pub struct SlabHeap {
    page: u64,
    pages: FreeListHeap,
    caches: Vec<Cache>,
    live: IdMap<Loc>,
    next_page_id: u64,
    /// Page-level ids given back, for reuse (they index a vector).
    spare_page_ids: Vec<u64>,
    given: u64,
}

impl SlabHeap {
    /// An empty heap with pages of `config.page_size` bytes.
    pub fn new(config: &Config) -> Self {
        let page = config.page_size.max(1);
        let page_config = Config {
            page_size: page,
            align: page,
            header: 0,
            ..config.clone()
        };
        SlabHeap {
            page,
            pages: FreeListHeap::new(Fit::First, &page_config),
            caches: KMALLOC_CLASSES
                .iter()
                .map(|&s| Cache {
                    class: SlabClass::new(s, page),
                    partial: BTreeSet::new(),
                    slabs: FxHashMap::default(),
                })
                .collect(),
            live: IdMap::new(),
            next_page_id: 0,
            spare_page_ids: Vec::new(),
            given: 0,
        }
    }

    /// The cache geometries, smallest class first.
    pub fn classes(&self) -> Vec<SlabClass> {
        self.caches.iter().map(|c| c.class).collect()
    }

    fn class_of(size: u64) -> Option<usize> {
        KMALLOC_CLASSES.iter().position(|&c| c >= size)
    }

    fn page_alloc(&mut self, bytes: u64, now: u64) -> (u64, Placement) {
        let id = self.spare_page_ids.pop().unwrap_or_else(|| {
            self.next_page_id += 1;
            self.next_page_id - 1
        });
        (id, self.pages.alloc(id, bytes, now))
    }
}

impl Heap for SlabHeap {
    fn alloc(&mut self, id: u64, size: u64, now: u64) -> Placement {
        let Some(c) = Self::class_of(size.max(1)) else {
            let bytes = round_up(size, self.page);
            let (page_id, mut p) = self.page_alloc(bytes, now);
            self.live.insert(id, Loc::Pages { page_id, bytes });
            self.given += bytes;
            p.examined += 1;
            return p;
        };
        let class = self.caches[c].class;
        let (slab, examined, grew) = match self.caches[c].partial.first() {
            Some(&slab) => (slab, 1, false),
            None => {
                let bytes = self.page << class.order;
                let (page_id, p) = self.page_alloc(bytes, now);
                let slots = (0..class.objects as u32).rev().collect();
                let cache = &mut self.caches[c];
                cache.slabs.insert(
                    p.addr,
                    Slab {
                        page_id,
                        free: slots,
                    },
                );
                cache.partial.insert(p.addr);
                self.given += class.waste;
                (p.addr, 1 + p.examined, p.grew)
            }
        };
        let cache = &mut self.caches[c];
        let s = cache.slabs.get_mut(&slab).expect("slab exists");
        let slot = s.free.pop().expect("partial slab has a free object");
        if s.free.is_empty() {
            cache.partial.remove(&slab);
        }
        self.live.insert(
            id,
            Loc::Object {
                class: c,
                slab,
                slot,
            },
        );
        self.given += class.object_size;
        Placement {
            addr: slab + u64::from(slot) * class.object_size,
            given: class.object_size,
            examined,
            grew,
        }
    }

    fn free(&mut self, id: u64, now: u64) -> bool {
        match self.live.remove(id) {
            None => false,
            Some(Loc::Pages { page_id, bytes }) => {
                self.given -= bytes;
                self.spare_page_ids.push(page_id);
                self.pages.free(page_id, now)
            }
            Some(Loc::Object { class, slab, slot }) => {
                let cache = &mut self.caches[class];
                let s = cache.slabs.get_mut(&slab).expect("slab exists");
                s.free.push(slot);
                self.given -= cache.class.object_size;
                if s.free.len() as u64 == cache.class.objects {
                    let page_id = s.page_id;
                    cache.slabs.remove(&slab);
                    cache.partial.remove(&slab);
                    self.given -= cache.class.waste;
                    self.spare_page_ids.push(page_id);
                    self.pages.free(page_id, now);
                } else {
                    cache.partial.insert(slab);
                }
                true
            }
        }
    }

    fn footprint(&self) -> u64 {
        self.pages.footprint()
    }

    fn given_bytes(&self) -> u64 {
        self.given
    }

    fn largest_hole(&self) -> u64 {
        let object = self
            .caches
            .iter()
            .rev()
            .find(|c| !c.partial.is_empty())
            .map_or(0, |c| c.class.object_size);
        object.max(self.pages.largest_hole())
    }

    /// The page-level holes; free objects inside slabs are not listed.
    fn holes(&self) -> Vec<Hole> {
        self.pages.holes()
    }

    fn block_size(&self, size: u64) -> u64 {
        match Self::class_of(size.max(1)) {
            Some(c) => self.page << self.caches[c].class.order,
            None => round_up(size, self.page),
        }
    }
}

//! Stack interning: every distinct stack becomes one id, a leaf of a trie.
//!
//! Each thread keeps a direct-mapped cache from a stack's hash to its id, so
//! a stack seen before costs one hash and one compare. Only a miss takes the
//! global lock and walks the trie; the nodes it adds wait in `pending` for
//! the writer, which writes them before any event that uses them.

use std::sync::atomic::{AtomicU64, Ordering};

use memtrace_format::StackId;
use rustc_hash::FxHashMap;

use crate::spin::SpinLock;

/// The global trie.
pub(crate) struct Interner {
    children: FxHashMap<(StackId, u64), StackId>,
    next_id: StackId,
    pending_first: StackId,
    pending: Vec<(StackId, u64)>,
}

impl Interner {
    const fn new() -> Self {
        Interner {
            children: FxHashMap::with_hasher(rustc_hash::FxBuildHasher),
            next_id: 1,
            pending_first: 1,
            pending: Vec::new(),
        }
    }

    /// The id of the stack `frames` (innermost first), adding nodes as
    /// needed; `None`, with nothing added, when there is no memory for them
    /// (see `memory`).
    fn intern(&mut self, frames: &[u64]) -> Option<StackId> {
        let mut node = 0;
        let mut reserved = false;
        for (depth, &addr) in frames.iter().rev().enumerate() {
            node = match self.children.get(&(node, addr)) {
                Some(&child) => child,
                None => {
                    // The first new node: every deeper one is new too.
                    // Make room for all of them, or add none.
                    if !reserved {
                        self.reserve(frames.len() - depth)?;
                        reserved = true;
                    }
                    let id = self.next_id;
                    self.next_id += 1;
                    self.children.insert((node, addr), id);
                    self.pending.push((node, addr));
                    id
                }
            };
        }
        Some(node)
    }

    /// Room for `n` new nodes, so that adding them allocates nothing.
    fn reserve(&mut self, n: usize) -> Option<()> {
        if crate::memory::short() {
            return None;
        }
        self.children.try_reserve(n).ok()?;
        self.pending.try_reserve(n).ok()
    }

    /// Moves the nodes added since the last call into `out` (cleared
    /// first) and returns the first one's id. The trie keeps `out`'s room
    /// for the nodes to come: a stack first seen when memory has run out
    /// still finds room for its nodes if the writer's buffer had it, rather
    /// than depend on whether the writer has just taken the trie's.
    pub(crate) fn take_pending_into(&mut self, out: &mut Vec<(StackId, u64)>) -> StackId {
        let first = self.pending_first;
        self.pending_first = self.next_id;
        out.clear();
        std::mem::swap(&mut self.pending, out);
        first
    }

    /// Number of nodes, the root included.
    pub(crate) fn n_nodes(&self) -> u64 {
        u64::from(self.next_id)
    }
}

pub(crate) static INTERNER: SpinLock<Interner> = SpinLock::new(Interner::new());

/// Bumped when the trie is reset (in a forked child), invalidating every
/// thread's cache.
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// Forgets every stack (in a forked child, whose trace starts afresh).
pub(crate) fn reset() {
    *INTERNER.lock() = Interner::new();
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// Slots of a thread's first stack cache (1 KiB): enough for a thread that
/// allocates from a few places.
const FIRST_CACHE_SLOTS: usize = 64;
/// Slots of the largest (16 KiB).
const CACHE_SLOTS: usize = 1024;

/// A thread's cache of recently seen stacks. Its slots are allocated on the
/// first stack, few at first, and four times as many each time the thread
/// has missed more often than it has slots (the entries are dropped then
/// and filled again), up to [`CACHE_SLOTS`]: an idle thread keeps its
/// memory small, a busy one gets the full cache after a few misses.
pub(crate) struct StackCache {
    slots: Box<[(u64, StackId)]>,
    generation: u64,
    misses: usize,
}

impl StackCache {
    /// An empty cache: its slots are allocated on the first stack.
    pub(crate) fn new() -> Self {
        StackCache {
            slots: Box::new([]),
            generation: GENERATION.load(Ordering::Relaxed),
            misses: 0,
        }
    }

    /// Slots now (0 before the first stack).
    #[cfg(test)]
    fn n_slots(&self) -> usize {
        self.slots.len()
    }

    /// The id of the stack `frames`, innermost first; `None` when it is a
    /// new stack and there is no memory for it. Without memory for the
    /// cache's slots, stacks are looked up in the trie every time.
    #[inline]
    pub(crate) fn intern(&mut self, frames: &[u64]) -> Option<StackId> {
        if frames.is_empty() {
            return Some(0);
        }
        if self.slots.is_empty() {
            match empty_slots(FIRST_CACHE_SLOTS) {
                Some(slots) => self.slots = slots,
                None => return INTERNER.lock().intern(frames),
            }
        }
        let generation = GENERATION.load(Ordering::Relaxed);
        if generation != self.generation {
            self.slots.fill((0, 0));
            self.generation = generation;
        }
        let hash = hash_frames(frames);
        let mask = self.slots.len() - 1;
        let slot = self.slots[(hash as usize) & mask];
        if slot.0 == hash && slot.1 != 0 {
            return Some(slot.1);
        }
        let id = INTERNER.lock().intern(frames)?;
        self.misses += 1;
        if self.misses > self.slots.len() && self.slots.len() < CACHE_SLOTS {
            // A larger cache if memory allows; else this one is refilled.
            if let Some(slots) = empty_slots(self.slots.len() * 4) {
                self.slots = slots;
            }
            self.misses = 0;
        }
        let mask = self.slots.len() - 1;
        self.slots[(hash as usize) & mask] = (hash, id);
        Some(id)
    }
}

/// `n` empty cache slots; `None` when their memory cannot be had.
fn empty_slots(n: usize) -> Option<Box<[(u64, StackId)]>> {
    crate::memory::try_collect((0..n).map(|_| (0, 0))).map(Vec::into_boxed_slice)
}

/// A 64-bit hash of a stack; distinct stacks collide with odds of 2^-64.
#[inline]
fn hash_frames(frames: &[u64]) -> u64 {
    let mut h = 0x9e37_79b9_7f4a_7c15u64 ^ frames.len() as u64;
    for &f in frames {
        h = (h.rotate_left(23) ^ f).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    h ^ (h >> 29)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_prefixes_share_nodes() {
        let mut t = Interner::new();
        let a = t.intern(&[0x30, 0x20, 0x10]).unwrap();
        let b = t.intern(&[0x31, 0x20, 0x10]).unwrap();
        assert_eq!(t.intern(&[0x30, 0x20, 0x10]), Some(a));
        assert_ne!(a, b);
        let mut nodes = Vec::with_capacity(100);
        let first = t.take_pending_into(&mut nodes);
        assert_eq!(first, 1);
        // root->0x10 (1), ->0x20 (2), ->0x30 (3), 0x20->0x31 (4)
        assert_eq!(nodes, vec![(0, 0x10), (1, 0x20), (2, 0x30), (2, 0x31)]);
        assert_eq!((a, b), (3, 4));
        // The trie kept the room of the buffer it was given.
        assert!(t.pending.capacity() >= 100);
        assert_eq!(t.take_pending_into(&mut nodes), 5);
        assert!(nodes.is_empty());
    }

    /// The cache starts at 64 slots and grows fourfold after more misses
    /// than it has slots: 65 distinct stacks make it 256, 257 more make it
    /// 1024, where it stays. Every stack keeps its id throughout.
    #[test]
    fn a_thread_cache_grows_with_its_misses() {
        let mut cache = StackCache::new();
        assert_eq!(cache.n_slots(), 0);
        let stack = |i: u64| [0x7000 + i, 0x10_0000, 0x20_0000];
        let first = cache.intern(&stack(0));
        assert_eq!(cache.n_slots(), 64);
        for i in 1..65 {
            cache.intern(&stack(i));
        }
        assert_eq!(cache.n_slots(), 256);
        for i in 65..65 + 257 {
            cache.intern(&stack(i));
        }
        assert_eq!(cache.n_slots(), 1024);
        for i in 0..5000 {
            cache.intern(&stack(1000 + i));
        }
        assert_eq!(cache.n_slots(), 1024);
        assert_eq!(cache.intern(&stack(0)), first);
    }
}

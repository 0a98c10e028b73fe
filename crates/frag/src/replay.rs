//! Replays a request stream through one allocator model and measures it.

use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::buddy::BuddyHeap;
use crate::freelist::{Fit, FreeListHeap};
use crate::heap::{Config, Heap};
use crate::reference::CollectorHeap;
use crate::slab::SlabHeap;

/// One heap request, independent of the trace format.
///
/// Ids pair a free with its allocation; a `realloc` is a `Free` of the old
/// id followed by an `Alloc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Request {
    /// `size` bytes for `id`.
    Alloc {
        /// Names the block until it is freed.
        id: u64,
        /// Bytes requested.
        size: u64,
    },
    /// Release `id`.
    Free {
        /// The id given to the allocation.
        id: u64,
    },
}

/// An allocator model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum PolicyKind {
    /// Free list, lowest-addressed hole that fits.
    FirstFit,
    /// Free list, first fit from where the last allocation ended.
    NextFit,
    /// Free list, smallest hole that fits.
    BestFit,
    /// Free list, largest hole.
    WorstFit,
    /// Binary buddy blocks.
    Buddy,
    /// kmalloc-style slab caches.
    Slab,
    /// Reference: a compacting collector (the footprint lower bound).
    Compact,
    /// Reference: a semispace copying collector.
    Semispace,
}

impl PolicyKind {
    /// Every model, real policies first.
    pub const ALL: [PolicyKind; 8] = [
        PolicyKind::FirstFit,
        PolicyKind::NextFit,
        PolicyKind::BestFit,
        PolicyKind::WorstFit,
        PolicyKind::Buddy,
        PolicyKind::Slab,
        PolicyKind::Compact,
        PolicyKind::Semispace,
    ];

    /// A short lowercase name (`first-fit`, ...).
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::FirstFit => "first-fit",
            PolicyKind::NextFit => "next-fit",
            PolicyKind::BestFit => "best-fit",
            PolicyKind::WorstFit => "worst-fit",
            PolicyKind::Buddy => "buddy",
            PolicyKind::Slab => "slab",
            PolicyKind::Compact => "compact",
            PolicyKind::Semispace => "semispace",
        }
    }

    /// Whether this is a reference row rather than a real allocator.
    pub fn is_reference(self) -> bool {
        matches!(self, PolicyKind::Compact | PolicyKind::Semispace)
    }

    /// A fresh model of this policy.
    pub fn heap(self, config: &Config) -> Box<dyn Heap + Send> {
        match self {
            PolicyKind::FirstFit => Box::new(FreeListHeap::new(Fit::First, config)),
            PolicyKind::NextFit => Box::new(FreeListHeap::new(Fit::Next, config)),
            PolicyKind::BestFit => Box::new(FreeListHeap::new(Fit::Best, config)),
            PolicyKind::WorstFit => Box::new(FreeListHeap::new(Fit::Worst, config)),
            PolicyKind::Buddy => Box::new(BuddyHeap::new(config)),
            PolicyKind::Slab => Box::new(SlabHeap::new(config)),
            PolicyKind::Compact => Box::new(CollectorHeap::compact(config)),
            PolicyKind::Semispace => Box::new(CollectorHeap::semispace(config)),
        }
    }
}

/// What one policy did with the stream.
///
/// Free bytes are the footprint less the bytes given; external fragmentation
/// is `1 - largest_hole / free` (0 when nothing is free); internal
/// fragmentation is the bytes given less the bytes requested. "At peak" is
/// the state after the request that first brought the footprint to its
/// maximum; averages are over all requests, sampled after each.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyReport {
    /// The model.
    pub policy: PolicyKind,
    /// The largest footprint (bytes).
    pub peak_footprint: u64,
    /// The most requested bytes live at once.
    pub peak_live: u64,
    /// Internal fragmentation at the footprint peak (bytes).
    pub internal_at_peak: u64,
    /// External fragmentation at the footprint peak (0 to 1).
    pub external_at_peak: f64,
    /// Free bytes at the footprint peak.
    pub free_at_peak: u64,
    /// Largest hole at the footprint peak (bytes).
    pub largest_hole_at_peak: u64,
    /// Mean internal fragmentation over requests (bytes).
    pub internal_avg: f64,
    /// Mean external fragmentation over requests.
    pub external_avg: f64,
    /// Allocations that grew the heap.
    pub n_growths: u64,
    /// Mean free blocks examined per allocation.
    pub examined_avg: f64,
    /// Holes left at the end below the top of the heap that are smaller
    /// than every request made after the hole got its size (holes with no
    /// later request are not counted).
    pub n_stranded_holes: u64,
    /// Their total size (bytes).
    pub stranded_bytes: u64,
    /// Allocations replayed.
    pub n_allocs: u64,
    /// Frees replayed.
    pub n_frees: u64,
    /// Requests skipped: frees of ids not live, allocations of live ids.
    pub n_ignored: u64,
}

/// Replays `stream` through `policy`.
pub fn replay(stream: &[Request], policy: PolicyKind, config: &Config) -> PolicyReport {
    let mut heap = policy.heap(config);
    let heap = heap.as_mut();
    let mut live: FxHashMap<u64, u64> = FxHashMap::default();
    let mut r = PolicyReport {
        policy,
        peak_footprint: 0,
        peak_live: 0,
        internal_at_peak: 0,
        external_at_peak: 0.0,
        free_at_peak: 0,
        largest_hole_at_peak: 0,
        internal_avg: 0.0,
        external_avg: 0.0,
        n_growths: 0,
        examined_avg: 0.0,
        n_stranded_holes: 0,
        stranded_bytes: 0,
        n_allocs: 0,
        n_frees: 0,
        n_ignored: 0,
    };
    let (mut requested, mut examined) = (0u64, 0u64);
    let (mut internal_sum, mut external_sum) = (0f64, 0f64);
    for (i, req) in stream.iter().enumerate() {
        let now = i as u64;
        match *req {
            Request::Alloc { id, size } => {
                if let std::collections::hash_map::Entry::Vacant(e) = live.entry(id) {
                    e.insert(size);
                    let p = heap.alloc(id, size, now);
                    requested += size;
                    r.peak_live = r.peak_live.max(requested);
                    r.n_allocs += 1;
                    examined += p.examined;
                    r.n_growths += u64::from(p.grew);
                } else {
                    r.n_ignored += 1;
                }
            }
            Request::Free { id } => match live.remove(&id) {
                Some(size) => {
                    heap.free(id, now);
                    requested -= size;
                    r.n_frees += 1;
                }
                None => r.n_ignored += 1,
            },
        }
        let footprint = heap.footprint();
        let given = heap.given_bytes();
        let internal = given - requested;
        let free = footprint - given;
        let external = if free == 0 {
            0.0
        } else {
            external_fragmentation(heap.largest_hole(), free)
        };
        internal_sum += internal as f64;
        external_sum += external;
        if footprint > r.peak_footprint {
            r.peak_footprint = footprint;
            r.internal_at_peak = internal;
            r.external_at_peak = external;
            r.free_at_peak = free;
            r.largest_hole_at_peak = heap.largest_hole();
        }
    }
    let n = stream.len().max(1) as f64;
    r.internal_avg = internal_sum / n;
    r.external_avg = external_sum / n;
    r.examined_avg = examined as f64 / r.n_allocs.max(1) as f64;
    let (count, bytes) = stranded(stream, heap);
    r.n_stranded_holes = count;
    r.stranded_bytes = bytes;
    r
}

/// `1 - largest_hole / free`, or 0 when nothing is free.
pub fn external_fragmentation(largest_hole: u64, free: u64) -> f64 {
    if free == 0 {
        0.0
    } else {
        1.0 - largest_hole as f64 / free as f64
    }
}

/// Holes at the end smaller than every later request, by a backward pass.
fn stranded(stream: &[Request], heap: &dyn Heap) -> (u64, u64) {
    let mut holes = heap.holes();
    holes.sort_unstable_by_key(|h| std::cmp::Reverse(h.birth));
    let mut next = holes.iter().peekable();
    let mut smallest_later = u64::MAX;
    let (mut count, mut bytes) = (0, 0);
    for i in (0..stream.len()).rev() {
        while let Some(h) = next.next_if(|h| h.birth >= i as u64) {
            if smallest_later != u64::MAX && h.size < smallest_later {
                count += 1;
                bytes += h.size;
            }
        }
        if let Request::Alloc { size, .. } = stream[i] {
            smallest_later = smallest_later.min(heap.block_size(size));
        }
    }
    (count, bytes)
}

/// Replays `stream` through every policy in [`PolicyKind::ALL`], one
/// thread each.
pub fn replay_all(stream: &[Request], config: &Config) -> Vec<PolicyReport> {
    std::thread::scope(|s| {
        let handles: Vec<_> = PolicyKind::ALL
            .iter()
            .map(|&p| s.spawn(move || replay(stream, p, config)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("replay does not panic"))
            .collect()
    })
}

/// The real policy with the lowest peak footprint (ties: fewer blocks
/// examined), and a sentence that says why with the numbers.
///
/// Returns `None` when `reports` holds no real policy.
pub fn best_policy(reports: &[PolicyReport]) -> Option<(PolicyKind, String)> {
    let mut real: Vec<&PolicyReport> = reports
        .iter()
        .filter(|r| !r.policy.is_reference())
        .collect();
    real.sort_by(|a, b| {
        a.peak_footprint
            .cmp(&b.peak_footprint)
            .then(a.examined_avg.total_cmp(&b.examined_avg))
    });
    let best = real.first()?;
    let mut why = format!(
        "{} has the lowest peak footprint, {} bytes, examining {:.2} free blocks per allocation",
        best.policy.name(),
        best.peak_footprint,
        best.examined_avg
    );
    if let Some(next) = real.get(1) {
        why += &format!(
            "; next is {} with {} bytes, examining {:.2}",
            next.policy.name(),
            next.peak_footprint,
            next.examined_avg
        );
    }
    if let Some(c) = reports.iter().find(|r| r.policy == PolicyKind::Compact) {
        if c.peak_footprint > 0 {
            why += &format!(
                "; the compacting lower bound is {} bytes ({:.2}x)",
                c.peak_footprint,
                best.peak_footprint as f64 / c.peak_footprint as f64
            );
        }
    }
    Some((best.policy, why))
}

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
    /// The largest footprint (bytes), at whatever moment.
    pub peak_footprint: u64,
    /// The most requested bytes live at once. The `*_at_peak` figures are
    /// all taken at one moment, this *live peak* (the first time it is
    /// reached), the same request for every policy.
    pub peak_live: u64,
    /// The footprint at the live peak (bytes).
    pub footprint_at_peak: u64,
    /// Internal fragmentation at the live peak (bytes).
    pub internal_at_peak: u64,
    /// External fragmentation at the live peak (0 to 1).
    pub external_at_peak: f64,
    /// Free bytes at the live peak.
    pub free_at_peak: u64,
    /// Largest hole at the live peak (bytes).
    pub largest_hole_at_peak: u64,
    /// Mean internal fragmentation over requests (bytes).
    pub internal_avg: f64,
    /// Mean external fragmentation over requests.
    pub external_avg: f64,
    /// Allocations that grew the heap.
    pub n_growths: u64,
    /// Mean free blocks examined per allocation.
    pub examined_avg: f64,
    /// Stranded holes at the end: holes below the top of the heap smaller
    /// than the block this model would give each request made after the
    /// hole got its present size, to the end of the stream (holes with no
    /// later request are not counted). The real heap's stranded holes
    /// (`memtrace_analyze::heapmap::Stranded`) follow the same rule with
    /// glibc's chunks.
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
    let (ops, later) = prepare(stream);
    let mut r = Replayer::new(policy, config);
    for &op in &ops {
        r.step(op);
    }
    r.finish(&later)
}

/// Replays `stream` through every policy in [`PolicyKind::ALL`], one
/// thread each, resolving the request ids once for all of them.
pub fn replay_all(stream: &[Request], config: &Config) -> Vec<PolicyReport> {
    let (ops, later) = prepare(stream);
    let (ops, later) = (&ops, &later);
    std::thread::scope(|s| {
        let handles: Vec<_> = PolicyKind::ALL
            .iter()
            .map(|&p| {
                s.spawn(move || {
                    let mut r = Replayer::new(p, config);
                    for &op in ops {
                        r.step(op);
                    }
                    r.finish(later)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("replay does not panic"))
            .collect()
    })
}

/// `1 - largest_hole / free`, or 0 when nothing is free.
pub fn external_fragmentation(largest_hole: u64, free: u64) -> f64 {
    if free == 0 {
        0.0
    } else {
        1.0 - largest_hole as f64 / free as f64
    }
}

/// The smallest of the values pushed after a given index, for "holes
/// smaller than any later request", without keeping the stream: a stack of
/// the values that are smaller than everything pushed after them, so its
/// size is bounded by the number of distinct values.
#[derive(Debug, Clone, Default)]
pub struct SmallestLater {
    /// `(index, value)`, both strictly increasing from the bottom.
    stack: Vec<(u64, u64)>,
}

impl SmallestLater {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `value` at `index`; indices must increase.
    pub fn push(&mut self, index: u64, value: u64) {
        while self.stack.last().is_some_and(|&(_, v)| v >= value) {
            self.stack.pop();
        }
        self.stack.push((index, value));
    }

    /// The smallest value pushed at an index `> index`, if any.
    pub fn after(&self, index: u64) -> Option<u64> {
        let i = self.stack.partition_point(|&(at, _)| at <= index);
        self.stack.get(i).map(|&(_, v)| v)
    }
}

/// A request resolved for the models: the id replaced by a small slot
/// number (reused after a free, so the models index vectors, not hash
/// maps), a free carrying its block's size, unmatched requests marked.
#[derive(Debug, Clone, Copy)]
struct Op {
    size: u64,
    slot: u32,
    kind: OpKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Alloc,
    Free,
    /// A free of an id not live or an allocation of a live one.
    Ignored,
}

/// Turns requests into [`Op`]s; the same for every policy.
#[derive(Default)]
struct Resolver {
    live: FxHashMap<u64, (u32, u64)>,
    spare: Vec<u32>,
    next_slot: u32,
    n: u64,
    later: SmallestLater,
}

impl Resolver {
    fn resolve(&mut self, req: Request) -> Op {
        let index = self.n;
        self.n += 1;
        match req {
            Request::Alloc { id, size } => {
                // Every allocation counts as a later request, matched or not.
                self.later.push(index, size);
                if self.live.contains_key(&id) {
                    return Op {
                        size,
                        slot: 0,
                        kind: OpKind::Ignored,
                    };
                }
                let slot = self.spare.pop().unwrap_or_else(|| {
                    self.next_slot += 1;
                    self.next_slot - 1
                });
                self.live.insert(id, (slot, size));
                Op {
                    size,
                    slot,
                    kind: OpKind::Alloc,
                }
            }
            Request::Free { id } => match self.live.remove(&id) {
                Some((slot, size)) => {
                    self.spare.push(slot);
                    Op {
                        size,
                        slot,
                        kind: OpKind::Free,
                    }
                }
                None => Op {
                    size: 0,
                    slot: 0,
                    kind: OpKind::Ignored,
                },
            },
        }
    }
}

fn prepare(stream: &[Request]) -> (Vec<Op>, SmallestLater) {
    let mut resolver = Resolver::default();
    let ops = stream.iter().map(|&r| resolver.resolve(r)).collect();
    (ops, resolver.later)
}

/// One policy's model and the running measurements.
struct Replayer {
    heap: Box<dyn Heap + Send>,
    r: PolicyReport,
    n: u64,
    requested: u64,
    examined: u64,
    internal_sum: f64,
    external_sum: f64,
}

impl Replayer {
    fn new(policy: PolicyKind, config: &Config) -> Self {
        Replayer {
            heap: policy.heap(config),
            r: PolicyReport {
                policy,
                peak_footprint: 0,
                peak_live: 0,
                footprint_at_peak: 0,
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
            },
            n: 0,
            requested: 0,
            examined: 0,
            internal_sum: 0.0,
            external_sum: 0.0,
        }
    }

    fn step(&mut self, op: Op) {
        let now = self.n;
        self.n += 1;
        let heap = self.heap.as_mut();
        let r = &mut self.r;
        match op.kind {
            OpKind::Alloc => {
                let p = heap.alloc(u64::from(op.slot), op.size, now);
                self.requested += op.size;
                r.n_allocs += 1;
                self.examined += p.examined;
                r.n_growths += u64::from(p.grew);
            }
            OpKind::Free => {
                heap.free(u64::from(op.slot), now);
                self.requested -= op.size;
                r.n_frees += 1;
            }
            OpKind::Ignored => r.n_ignored += 1,
        }
        let footprint = heap.footprint();
        let given = heap.given_bytes();
        let internal = given - self.requested;
        let free = footprint - given;
        let largest = if free == 0 { 0 } else { heap.largest_hole() };
        let external = external_fragmentation(largest, free);
        self.internal_sum += internal as f64;
        self.external_sum += external;
        r.peak_footprint = r.peak_footprint.max(footprint);
        if self.requested > r.peak_live {
            r.peak_live = self.requested;
            r.footprint_at_peak = footprint;
            r.internal_at_peak = internal;
            r.external_at_peak = external;
            r.free_at_peak = free;
            r.largest_hole_at_peak = largest;
        }
    }

    fn finish(mut self, later: &SmallestLater) -> PolicyReport {
        let n = self.n.max(1) as f64;
        let r = &mut self.r;
        r.internal_avg = self.internal_sum / n;
        r.external_avg = self.external_sum / n;
        r.examined_avg = self.examined as f64 / r.n_allocs.max(1) as f64;
        let (count, bytes) = stranded(self.heap.as_ref(), later);
        r.n_stranded_holes = count;
        r.stranded_bytes = bytes;
        self.r
    }
}

/// Holes at the end smaller than every later request. Every model's block
/// size grows with the request, so the smallest block of the later
/// requests is the block of the smallest later request.
fn stranded(heap: &dyn Heap, later: &SmallestLater) -> (u64, u64) {
    let (mut count, mut bytes) = (0, 0);
    for h in heap.holes() {
        if let Some(size) = later.after(h.birth) {
            if h.size < heap.block_size(size) {
                count += 1;
                bytes += h.size;
            }
        }
    }
    (count, bytes)
}

/// Replays a stream as it comes, through several policies at once, in
/// bounded memory: requests are resolved once, in batches that every
/// policy's thread replays while the next batch is read.
///
/// ```
/// use memtrace_frag::{Config, PolicyKind, Request, StreamReplay};
///
/// let mut replay = StreamReplay::new(&PolicyKind::ALL, &Config::default());
/// replay.push(Request::Alloc { id: 7, size: 100 });
/// replay.push(Request::Free { id: 7 });
/// let reports = replay.finish();
/// assert_eq!(reports.len(), 8);
/// assert_eq!(reports[0].peak_live, 100);
/// ```
pub struct StreamReplay {
    resolver: Resolver,
    batch: Vec<Op>,
    senders: Vec<std::sync::mpsc::SyncSender<std::sync::Arc<[Op]>>>,
    workers: Vec<std::thread::JoinHandle<Replayer>>,
}

/// Ops per batch handed to the policy threads.
const BATCH: usize = 1 << 15;
/// Batches that may wait for a slow policy before the reader waits too.
const QUEUED: usize = 4;

impl StreamReplay {
    /// Starts one thread per policy.
    pub fn new(policies: &[PolicyKind], config: &Config) -> Self {
        let mut senders = Vec::new();
        let mut workers = Vec::new();
        for &policy in policies {
            let (tx, rx) = std::sync::mpsc::sync_channel::<std::sync::Arc<[Op]>>(QUEUED);
            let mut replayer = Replayer::new(policy, config);
            workers.push(std::thread::spawn(move || {
                for batch in rx {
                    for &op in batch.iter() {
                        replayer.step(op);
                    }
                }
                replayer
            }));
            senders.push(tx);
        }
        StreamReplay {
            resolver: Resolver::default(),
            batch: Vec::with_capacity(BATCH),
            senders,
            workers,
        }
    }

    /// The next request.
    pub fn push(&mut self, request: Request) {
        let op = self.resolver.resolve(request);
        self.batch.push(op);
        if self.batch.len() == BATCH {
            self.send();
        }
    }

    /// Requests pushed so far.
    pub fn len(&self) -> u64 {
        self.resolver.n
    }

    /// Whether nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.resolver.n == 0
    }

    fn send(&mut self) {
        let batch: std::sync::Arc<[Op]> = std::mem::take(&mut self.batch).into();
        self.batch.reserve(BATCH);
        for tx in &self.senders {
            // A worker only stops early by panicking; join reports that.
            let _ = tx.send(batch.clone());
        }
    }

    /// Waits for every policy and returns their reports, in the order given.
    pub fn finish(mut self) -> Vec<PolicyReport> {
        if !self.batch.is_empty() {
            self.send();
        }
        self.senders.clear();
        let later = &self.resolver.later;
        self.workers
            .drain(..)
            .map(|w| w.join().expect("replay does not panic").finish(later))
            .collect()
    }
}

/// The real policy with the lowest peak footprint (ties: fewer blocks
/// examined), and a sentence that says why with the numbers, naming a tie
/// as one: policies equal on both counts tie; others that reach the same
/// footprint with more blocks examined are named beside it.
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
    let best = *real.first()?;
    let same_footprint = |r: &&&PolicyReport| r.peak_footprint == best.peak_footprint;
    let (tied, rest): (Vec<&PolicyReport>, Vec<&PolicyReport>) = real
        .iter()
        .filter(same_footprint)
        .partition(|r| r.examined_avg == best.examined_avg);
    let mut why = if tied.len() > 1 {
        let names: Vec<&str> = tied.iter().map(|r| r.policy.name()).collect();
        format!(
            "{} tie: the lowest peak footprint, {} bytes, each examining {:.2} free blocks per allocation",
            names.join(" and "),
            best.peak_footprint,
            best.examined_avg
        )
    } else {
        format!(
            "{} has the lowest peak footprint, {} bytes, examining {:.2} free blocks per allocation",
            best.policy.name(),
            best.peak_footprint,
            best.examined_avg
        )
    };
    for r in &rest {
        why += &format!(
            "; {} peaks at {} bytes too, examining {:.2}",
            r.policy.name(),
            r.peak_footprint,
            r.examined_avg
        );
    }
    if let Some(next) = real.iter().find(|r| r.peak_footprint > best.peak_footprint) {
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

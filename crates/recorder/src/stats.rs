//! In-process heap counters of the Rust tracking allocator.

use std::sync::atomic::{AtomicU64, Ordering};

static N_ALLOCS: AtomicU64 = AtomicU64::new(0);
static N_FREES: AtomicU64 = AtomicU64::new(0);
static TOTAL_BYTES: AtomicU64 = AtomicU64::new(0);
static LIVE_BYTES: AtomicU64 = AtomicU64::new(0);
static LIVE_BLOCKS: AtomicU64 = AtomicU64::new(0);
static PEAK_BYTES: AtomicU64 = AtomicU64::new(0);

/// Heap counters since the program started, readable at any time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Allocations (reallocs are not counted: they resize).
    pub n_allocs: u64,
    /// Deallocations.
    pub n_frees: u64,
    /// Bytes ever allocated.
    pub total_bytes: u64,
    /// Bytes allocated and not freed.
    pub live_bytes: u64,
    /// Blocks allocated and not freed.
    pub live_blocks: u64,
    /// Highest `live_bytes` seen.
    pub peak_bytes: u64,
}

/// The counters now.
pub fn stats() -> Stats {
    Stats {
        n_allocs: N_ALLOCS.load(Ordering::Relaxed),
        n_frees: N_FREES.load(Ordering::Relaxed),
        total_bytes: TOTAL_BYTES.load(Ordering::Relaxed),
        live_bytes: LIVE_BYTES.load(Ordering::Relaxed),
        live_blocks: LIVE_BLOCKS.load(Ordering::Relaxed),
        peak_bytes: PEAK_BYTES.load(Ordering::Relaxed),
    }
}

pub(crate) fn on_alloc(size: u64) {
    N_ALLOCS.fetch_add(1, Ordering::Relaxed);
    TOTAL_BYTES.fetch_add(size, Ordering::Relaxed);
    LIVE_BLOCKS.fetch_add(1, Ordering::Relaxed);
    let live = LIVE_BYTES.fetch_add(size, Ordering::Relaxed) + size;
    PEAK_BYTES.fetch_max(live, Ordering::Relaxed);
}

pub(crate) fn on_free(size: u64) {
    N_FREES.fetch_add(1, Ordering::Relaxed);
    LIVE_BLOCKS.fetch_sub(1, Ordering::Relaxed);
    LIVE_BYTES.fetch_sub(size, Ordering::Relaxed);
}

pub(crate) fn on_realloc(old_size: u64, new_size: u64) {
    TOTAL_BYTES.fetch_add(new_size.saturating_sub(old_size), Ordering::Relaxed);
    let live = if new_size >= old_size {
        LIVE_BYTES.fetch_add(new_size - old_size, Ordering::Relaxed) + new_size - old_size
    } else {
        LIVE_BYTES.fetch_sub(old_size - new_size, Ordering::Relaxed) - (old_size - new_size)
    };
    PEAK_BYTES.fetch_max(live, Ordering::Relaxed);
}

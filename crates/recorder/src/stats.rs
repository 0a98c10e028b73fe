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
///
/// ```
/// use memtrace_recorder::{stats, Tracking};
/// use std::alloc::System;
///
/// #[global_allocator]
/// static ALLOC: Tracking<System> = Tracking::untraced(System);
///
/// fn main() {
///     let before = stats();
///     let v = vec![0u8; 4096];
///     let after = stats();
///     assert_eq!(after.n_allocs - before.n_allocs, 1);
///     assert!(after.peak_bytes >= before.live_bytes + 4096);
///     drop(v);
/// }
/// ```
///
/// # Panics
///
/// When [`Tracking`](crate::Tracking) is not the global allocator
/// ([`is_installed`](crate::is_installed)): the counters would read 0.
#[track_caller]
pub fn stats() -> Stats {
    crate::scope::require_installed("stats");
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

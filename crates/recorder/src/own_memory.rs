//! The mappings that hold the recorder's own memory (the preload library's
//! allocator reports them here), so that the leak scan never takes the
//! recorder's buffers, which are full of block addresses, for the program's.
//!
//! A fixed table of atomics: noting a mapping never allocates and never
//! takes a lock, as the allocator that calls it requires.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

const SLOTS: usize = 8192;

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU64 = AtomicU64::new(0);
static STARTS: [AtomicU64; SLOTS] = [ZERO; SLOTS];
static LENS: [AtomicU64; SLOTS] = [ZERO; SLOTS];

/// Records that `start..start + len` is the recorder's own mapping.
pub fn note_own_mapping(start: u64, len: u64) {
    for (s, l) in STARTS.iter().zip(&LENS) {
        // A load first: a failed compare-exchange is a locked instruction,
        // and thousands of threads each note their memo's mapping here.
        if s.load(Ordering::Relaxed) == 0
            && s.compare_exchange(0, start, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            l.store(len, Ordering::Release);
            return;
        }
    }
}

/// Records that the mapping at `start` is gone.
pub fn forget_own_mapping(start: u64) {
    for (s, l) in STARTS.iter().zip(&LENS) {
        if s.load(Ordering::Acquire) == start {
            l.store(0, Ordering::Release);
            s.store(0, Ordering::Release);
            return;
        }
    }
}

/// Room for every range [`own_ranges_into`] can give: allocate it before
/// the scan stops the threads.
pub(crate) const MAX_RANGES: usize = SLOTS;

/// Fills `out` (cleared first, never grown) with the recorder's own
/// mappings, sorted by start; allocates nothing, for the scan to call
/// while the other threads are stopped. False when some did not fit.
pub(crate) fn own_ranges_into(out: &mut Vec<Range<u64>>) -> bool {
    out.clear();
    let mut all_fit = true;
    for (s, l) in STARTS.iter().zip(&LENS) {
        let start = s.load(Ordering::Acquire);
        let len = l.load(Ordering::Acquire);
        if start != 0 && len != 0 {
            if out.len() == out.capacity() {
                all_fit = false;
                continue;
            }
            out.push(start..start + len);
        }
    }
    out.sort_unstable_by_key(|r| r.start);
    all_fit
}

//! What every allocator model offers the replay: placement, release and a
//! view of its free space.

use serde::Serialize;

/// Parameters shared by the allocator models.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Config {
    /// Granule by which a heap grows at its top (bytes, default 4096).
    pub page_size: u64,
    /// Free-list models round every block up to this (bytes, default 16).
    pub align: u64,
    /// Bytes of bookkeeping added to each block by the free-list and buddy
    /// models (default 0).
    pub header: u64,
    /// Smallest buddy block is `2^buddy_min_order` bytes (default 4: 16 bytes).
    pub buddy_min_order: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            page_size: 4096,
            align: 16,
            header: 0,
            buddy_min_order: 4,
        }
    }
}

/// A free range of a heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Hole {
    /// First byte.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// Index of the request after which the hole got this size.
    pub birth: u64,
}

/// What one allocation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Placement {
    /// Address given.
    pub addr: u64,
    /// Bytes given (the block size, at least the request).
    pub given: u64,
    /// Free blocks (or free lists) an ordinary implementation of the
    /// policy would have looked at.
    pub examined: u64,
    /// Whether the heap had to grow.
    pub grew: bool,
}

/// An allocator model driven by a request stream.
///
/// Ids are the caller's: `alloc` is only called with an id that is not live,
/// and `free` returns `false` for an id that is not.
pub trait Heap {
    /// Places a block of `size` bytes for `id`; `now` is the request index.
    fn alloc(&mut self, id: u64, size: u64, now: u64) -> Placement;
    /// Releases `id`'s block; `false` if `id` is not live.
    fn free(&mut self, id: u64, now: u64) -> bool;
    /// Bytes the heap occupies now.
    fn footprint(&self) -> u64;
    /// Bytes held by live blocks, their rounding and fixed overheads included.
    fn given_bytes(&self) -> u64;
    /// The largest single free range.
    fn largest_hole(&self) -> u64;
    /// Free ranges below the top of the heap, in address order (the free
    /// range at the top can always be extended, so it is not a hole).
    fn holes(&self) -> Vec<Hole>;
    /// The size of hole that a request of `size` bytes would need.
    fn block_size(&self, size: u64) -> u64;
}

/// `n` rounded up to a multiple of `to` (`to` >= 1).
pub(crate) fn round_up(n: u64, to: u64) -> u64 {
    let to = to.max(1);
    n.div_ceil(to).saturating_mul(to)
}

/// The smallest `k` with `2^k >= n`.
pub(crate) fn ceil_log2(n: u64) -> u32 {
    if n <= 1 {
        0
    } else {
        64 - (n - 1).leading_zeros()
    }
}

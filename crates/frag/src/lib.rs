//! Heap fragmentation: how a program's own request stream would fare under
//! other allocators, and how fragmented the kernel's memory is.
//!
//! **Policy replay** ([`replay`], [`replay_all`], [`best_policy`]) runs a
//! stream of [`Request`]s through allocator models that share one growth
//! rule, a heap that grows at its top by whole pages: first-fit, next-fit,
//! best-fit and worst-fit free lists (split on allocation, coalesce on free),
//! a binary buddy allocator, kmalloc-style slab caches, and two reference
//! rows, a compacting collector (the footprint lower bound) and a semispace
//! collector (no fragmentation at twice the space). Each gives a
//! [`PolicyReport`]: peak footprint, internal and external fragmentation at
//! the peak and on average, growths, free blocks examined per allocation
//! and the holes no later request could use.
//!
//! **System view** ([`system`]) parses `/proc/buddyinfo`, with the kernel's
//! unusable free space index and fragmentation index per order, and
//! `/proc/slabinfo`, with caches ranked by the bytes of their free objects;
//! live files and captured ones alike.
//!
//! This crate does not read traces: turning a trace into requests is the
//! caller's job (a `realloc` is a free then an allocation). It has no
//! `unsafe` and, apart from the `system::read_*` helpers, reads no files.
//!
//! ```
//! use memtrace_frag::{best_policy, replay, replay_all, Config, PolicyKind, Request};
//!
//! let stream = [
//!     Request::Alloc { id: 1, size: 33 },
//!     Request::Alloc { id: 2, size: 100 },
//!     Request::Free { id: 1 },
//! ];
//! let buddy = replay(&stream, PolicyKind::Buddy, &Config::default());
//! assert_eq!(buddy.peak_footprint, 4096);
//! assert_eq!(buddy.peak_live, 33 + 100);
//! // 33 bytes take a 64-byte block and 100 bytes a 128-byte one: 31, then
//! // 31 + 28, then 28 bytes of internal fragmentation after each request.
//! assert_eq!(buddy.internal_avg, (31.0 + 59.0 + 28.0) / 3.0);
//!
//! let reports = replay_all(&stream, &Config::default());
//! let (policy, why) = best_policy(&reports).unwrap();
//! println!("{}: {why}", policy.name());
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod buddy;
mod freelist;
mod heap;
mod holetree;
mod ids;
mod reference;
mod replay;
mod slab;
pub mod system;

pub use buddy::BuddyHeap;
pub use freelist::{Fit, FreeListHeap};
pub use heap::{Config, Heap, Hole, Placement};
pub use reference::CollectorHeap;
pub use replay::{
    best_policy, external_fragmentation, replay, replay_all, PolicyKind, PolicyReport, Request,
    SmallestLater, StreamReplay,
};
pub use slab::{SlabClass, SlabHeap, KMALLOC_CLASSES};

//! A single-producer, single-consumer ring of thread items.
//!
//! Each traced thread owns one ring and is its only producer; the writer is
//! its only consumer. Pushing is a store into the slot and a release store of
//! the tail: no lock, no system call, no allocation.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use memtrace_format::ThreadItem;

/// Aligns a value to its own cache line, so producer and consumer counters do
/// not share one.
#[repr(align(64))]
pub(crate) struct CacheLine<T>(pub(crate) T);

/// One thread's ring of items waiting for the writer.
pub(crate) struct Ring {
    slots: Box<[UnsafeCell<ThreadItem>]>,
    mask: usize,
    head: CacheLine<AtomicUsize>,
    tail: CacheLine<AtomicUsize>,
    /// A lower bound for the timestamp of an item this thread is about to
    /// push, or `u64::MAX` when it is between heap calls (see `session`).
    pub(crate) in_flight: CacheLine<AtomicU64>,
    /// The thread id.
    pub(crate) tid: u32,
    /// Set when the thread has ended: the writer drops the ring once drained.
    pub(crate) closed: AtomicBool,
}

// SAFETY: a slot is written only by the producer while it is outside
// [head, tail) and read only by the consumer while it is inside; the
// release/acquire pairs on `tail` and `head` order those accesses.
unsafe impl Sync for Ring {}
// SAFETY: as above; the ring owns plain data.
unsafe impl Send for Ring {}

impl Ring {
    /// A ring of `capacity` items (rounded up to a power of two); `None`
    /// when its memory cannot be had.
    pub(crate) fn try_new(tid: u32, capacity: usize) -> Option<Ring> {
        let capacity = capacity.next_power_of_two();
        let slots = crate::memory::try_collect(
            (0..capacity).map(|_| UnsafeCell::new(ThreadItem::Start { ts: 0 })),
        )?;
        Some(Ring {
            slots: slots.into_boxed_slice(),
            mask: capacity - 1,
            head: CacheLine(AtomicUsize::new(0)),
            tail: CacheLine(AtomicUsize::new(0)),
            in_flight: CacheLine(AtomicU64::new(u64::MAX)),
            tid,
            closed: AtomicBool::new(false),
        })
    }

    /// Pushes an item; returns false when the ring is full. Producer only.
    ///
    /// `cached_head` is the producer's last view of the consumer position, so
    /// the shared counter is read only when the ring looks full.
    #[inline]
    pub(crate) fn push(&self, item: ThreadItem, cached_head: &mut usize) -> bool {
        let tail = self.tail.0.load(Ordering::Relaxed);
        if tail - *cached_head > self.mask {
            *cached_head = self.head.0.load(Ordering::Acquire);
            if tail - *cached_head > self.mask {
                return false;
            }
        }
        // SAFETY: `tail` is outside [head, tail): the consumer does not read
        // this slot until the release store below publishes it.
        unsafe { *self.slots[tail & self.mask].get() = item };
        self.tail.0.store(tail + 1, Ordering::Release);
        true
    }

    /// Items pushed so far (producer only: reads its own counter).
    #[inline]
    pub(crate) fn pushed(&self) -> usize {
        self.tail.0.load(Ordering::Relaxed)
    }

    /// Capacity in items.
    pub(crate) fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// The producer's position now: items before it are published.
    pub(crate) fn published(&self) -> usize {
        self.tail.0.load(Ordering::Acquire)
    }

    /// Items waiting before position `until`. Consumer only.
    pub(crate) fn waiting(&self, until: usize) -> usize {
        until.saturating_sub(self.head.0.load(Ordering::Relaxed))
    }

    /// True when nothing before `until` is waiting.
    pub(crate) fn is_drained(&self, until: usize) -> bool {
        self.head.0.load(Ordering::Relaxed) >= until
    }

    /// Hands the items before position `until` (a value of
    /// [`Ring::published`]) to `f` as at most two slices, in order, without
    /// copying them, then releases their slots. Consumer only.
    pub(crate) fn consume_until<E>(
        &self,
        until: usize,
        mut f: impl FnMut(&[ThreadItem]) -> Result<(), E>,
    ) -> Result<(), E> {
        let head = self.head.0.load(Ordering::Relaxed);
        if until <= head {
            return Ok(());
        }
        let start = head & self.mask;
        let end = start + (until - head);
        let cap = self.capacity();
        // SAFETY: the slots of [head, until) were published by the producer
        // (release store of `tail`, acquired in `published`) and are not
        // written again until `head` moves past them below; UnsafeCell<T> has
        // the layout of T, so the slots can be read as a slice of items.
        let all: &[ThreadItem] =
            unsafe { std::slice::from_raw_parts(self.slots.as_ptr().cast::<ThreadItem>(), cap) };
        let result = if end <= cap {
            f(&all[start..end])
        } else {
            f(&all[start..]).and_then(|()| f(&all[..end - cap]))
        };
        self.head.0.store(until, Ordering::Release);
        result
    }

    /// Forgets every waiting item (in a forked child: they belong to the parent).
    pub(crate) fn discard(&self) {
        let tail = self.tail.0.load(Ordering::Acquire);
        self.head.0.store(tail, Ordering::Release);
    }
}

//! A single-producer, single-consumer ring of thread items that starts small
//! and grows on demand.
//!
//! Each traced thread pushes into its own ring through its [`Producer`], the
//! only handle that can push (it is neither `Clone` nor `Sync`); the writer
//! is the only consumer ([`Ring::consume_until`] takes a flag, so a second
//! consumer finds it taken and consumes nothing). Pushing is a store into a
//! slot and a release store of the tail: no lock, no system call, and no
//! allocation unless the ring is full and may still grow.
//!
//! # Segments
//! Positions are counters that only grow: the consumer's `head`, the
//! producer's `tail`. The items live in a chain of segments whose sizes are
//! powers of two; position `p` is slot `p & mask` of the segment that holds
//! it. The producer writes only into the newest segment. When that is full
//! and smaller than the ring's largest size, the producer links a segment
//! twice as large after it, starting at the current tail, and goes on there.
//! The consumer reads the oldest segment up to where the next one starts, then
//! frees it. So a thread that never fills its first segment costs only that,
//! and the memory of a burst goes back once the writer has caught up; the
//! writer drops a closed ring, and with it the last segment, once drained.
//!
//! A segment that cannot be had (the allocator returns null, or the
//! recorder is short of memory, see `memory`) leaves the ring as it is:
//! the push says so ([`Push::NoMemory`]) and the caller waits for the
//! consumer or drops the item.
//!
//! # Protocol (checked by the loom models of `ring/loom_tests.rs`)
//! * The producer writes position `p` of segment `s` only while
//!   `p - max(head, s.start) < s.capacity`, with `head` loaded with acquire:
//!   the slot's previous position has been read by the consumer, which
//!   stores `head` with release after reading.
//! * It publishes positions below `t` by storing `tail = t` with release,
//!   after writing them; it stores `s.next` with release before writing the
//!   first position of the new segment, and never touches `s` again.
//! * The consumer reads only positions in `[head, until)` with `until` at
//!   most the `tail` it loaded with acquire, so every position it reads was
//!   published, and a position beyond `s` means `s.next` is visible.
//! * The consumer frees `s` only when `s.next` is set and `head` has reached
//!   its start: no position of `s` is readable or writable any more.

#[cfg(all(test, loom))]
mod loom_tests;
mod sync;

#[cfg(not(loom))]
use std::alloc::Layout;
use std::mem::MaybeUninit;
use std::ptr::{self, NonNull};
use std::sync::Arc;

use sync::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering, RaceCell};

/// Aligns a value to its own cache line, so producer and consumer counters do
/// not share one.
#[repr(align(64))]
pub(crate) struct CacheLine<T>(pub(crate) T);

type Slot<T> = RaceCell<MaybeUninit<T>>;

/// A run of slots for the positions from `start` on, until the next
/// segment's start.
struct Segment<T> {
    start: usize,
    mask: usize,
    slots: NonNull<Slot<T>>,
    next: AtomicPtr<Segment<T>>,
}

impl<T> Segment<T> {
    /// A segment of `capacity` slots (a power of two) for positions from
    /// `start`; `None` when memory is short. Both allocations are fallible.
    fn new(start: usize, capacity: usize) -> Option<NonNull<Segment<T>>> {
        let slots = alloc_slots::<T>(capacity)?;
        let Some(segment) = alloc_segment::<T>() else {
            // SAFETY: made just above with this capacity, never used.
            unsafe { free_slots(slots, capacity) };
            return None;
        };
        // SAFETY: `segment` is fresh, writable memory for one Segment<T>.
        unsafe {
            segment.as_ptr().write(Segment {
                start,
                mask: capacity - 1,
                slots,
                next: AtomicPtr::new(ptr::null_mut()),
            })
        };
        Some(segment)
    }

    fn capacity(&self) -> usize {
        self.mask + 1
    }

    fn slot(&self, position: usize) -> &Slot<T> {
        // SAFETY: the index is below the capacity, the length of `slots`,
        // which lives as long as the segment.
        unsafe { &*self.slots.as_ptr().add(position & self.mask) }
    }

    /// Hands positions `[from, to)`, all in this segment and all published,
    /// to `f` as at most two slices.
    ///
    /// # Safety
    /// The producer has published `[from, to)` (release store of `tail`,
    /// loaded by the caller with acquire) and does not write these slots
    /// until `head` passes them.
    unsafe fn read<E>(
        &self,
        from: usize,
        to: usize,
        f: &mut impl FnMut(&[T]) -> Result<(), E>,
    ) -> Result<(), E>
    where
        T: Copy,
    {
        #[cfg(not(loom))]
        {
            let first = from & self.mask;
            let n = to - from;
            let first_run = n.min(self.capacity() - first);
            // SAFETY: `RaceCell<MaybeUninit<T>>` has the layout of `T`; the
            // slots of [from, to) were written (so are initialised) and
            // published, and nothing writes them while the slices live (the
            // caller's contract). The runs lie inside the slot array.
            let run = |at: usize, len: usize| unsafe {
                std::slice::from_raw_parts(self.slots.as_ptr().add(at).cast::<T>(), len)
            };
            f(run(first, first_run))?;
            if first_run < n {
                f(run(0, n - first_run))?;
            }
            Ok(())
        }
        #[cfg(loom)]
        {
            // Loom's cells are not laid out like `T`: copy the items out
            // through checked reads, at the moment the slices would be read.
            let items: Vec<T> = (from..to)
                // SAFETY: as above; loom checks that no write races.
                .map(|p| unsafe { self.slot(p).read().assume_init() })
                .collect();
            f(&items)
        }
    }
}

impl<T> Drop for Segment<T> {
    fn drop(&mut self) {
        // SAFETY: made by `alloc_slots` with this capacity; the items are
        // `Copy` data or uninitialised, so nothing needs dropping first.
        unsafe { free_slots(self.slots, self.capacity()) };
    }
}

/// Memory for one segment's header, freed as a `Box` (same allocator,
/// same layout); `None` when the allocator has none.
#[cfg(not(loom))]
fn alloc_segment<T>() -> Option<NonNull<Segment<T>>> {
    // SAFETY: a segment is not zero-sized.
    NonNull::new(unsafe { std::alloc::alloc(Layout::new::<Segment<T>>()) }.cast())
}

#[cfg(loom)]
fn alloc_segment<T>() -> Option<NonNull<Segment<T>>> {
    let segment: Box<MaybeUninit<Segment<T>>> = Box::new(MaybeUninit::uninit());
    Some(NonNull::from(Box::leak(segment)).cast())
}

#[cfg(not(loom))]
fn alloc_slots<T>(capacity: usize) -> Option<NonNull<Slot<T>>> {
    let layout = Layout::array::<Slot<T>>(capacity).ok()?;
    // SAFETY: the layout has a non-zero size (capacity >= 1, items are not
    // zero-sized). The slots are left uninitialised, which `MaybeUninit`
    // allows, so pages of a fresh mapping stay untouched until used.
    NonNull::new(unsafe { std::alloc::alloc(layout) }.cast())
}

#[cfg(loom)]
fn alloc_slots<T>(capacity: usize) -> Option<NonNull<Slot<T>>> {
    let slots: Box<[Slot<T>]> = (0..capacity)
        .map(|_| RaceCell::new(MaybeUninit::uninit()))
        .collect();
    NonNull::new(Box::into_raw(slots).cast())
}

/// # Safety
/// `slots` came from `alloc_slots::<T>(capacity)` and is not used again.
#[cfg(not(loom))]
unsafe fn free_slots<T>(slots: NonNull<Slot<T>>, capacity: usize) {
    let layout = Layout::array::<Slot<T>>(capacity).expect("allocated with this layout");
    // SAFETY: allocated with this layout by `alloc_slots`.
    unsafe { std::alloc::dealloc(slots.as_ptr().cast(), layout) };
}

/// # Safety
/// `slots` came from `alloc_slots::<T>(capacity)` and is not used again.
#[cfg(loom)]
unsafe fn free_slots<T>(slots: NonNull<Slot<T>>, capacity: usize) {
    // SAFETY: made by Box::into_raw of a boxed slice of this length.
    drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(slots.as_ptr(), capacity)) });
}

/// One thread's ring of items waiting for the writer: the shared half,
/// which the writer holds in the registry.
pub(crate) struct Ring<T> {
    head: CacheLine<AtomicUsize>,
    tail: CacheLine<AtomicUsize>,
    /// The oldest segment not yet consumed: the consumer's alone (while it
    /// holds `consuming`), or the owner's in `drop`.
    oldest: RaceCell<NonNull<Segment<T>>>,
    consuming: AtomicBool,
    largest: usize,
    /// A lower bound for the timestamp of an item this thread is about to
    /// push, or `u64::MAX` when it is between heap calls (see `session`).
    pub(crate) in_flight: CacheLine<AtomicU64>,
    /// The thread id.
    pub(crate) tid: u32,
    /// Set when the thread has ended: the writer drops the ring once drained.
    pub(crate) closed: AtomicBool,
    /// 1 while the producer waits for room in the full ring (a futex word,
    /// see `session::ring_full`): the consumer wakes it once it has read.
    /// Outside the ring's own protocol, so std's atomic even under loom.
    pub(crate) room_wanted: CacheLine<std::sync::atomic::AtomicU32>,
}

// SAFETY: the slots are shared by the protocol in the module docs (each one
// written by the producer only outside [head, tail), read by the consumer
// only inside it, ordered by release/acquire pairs on `tail` and `head`);
// `oldest` is touched only by the consumer holding `consuming`, or in drop.
unsafe impl<T: Send> Sync for Ring<T> {}
// SAFETY: as above; the ring owns its segments and their plain items.
unsafe impl<T: Send> Send for Ring<T> {}

/// What became of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) enum Push {
    /// The item is in the ring.
    Done,
    /// The ring is full at its largest size: the writer must drain it.
    Full,
    /// The ring is full and a larger segment could not be had.
    NoMemory,
}

/// The producing half of a ring: the only handle that pushes.
pub(crate) struct Producer<T> {
    ring: Arc<Ring<T>>,
    /// The segment the producer writes into, the newest of the chain.
    newest: NonNull<Segment<T>>,
    tail: usize,
    /// The producer's last view of the consumer's `head`: the shared counter
    /// is read only when the ring looks full.
    cached_head: usize,
}

// SAFETY: the producer's role moves with the handle; it is neither Clone nor
// Sync, so one thread at a time pushes. `newest` is never freed while the
// handle lives (the consumer frees only segments that have a successor, and
// the ring outlives the handle's Arc).
unsafe impl<T: Send> Send for Producer<T> {}

impl<T: Copy> Ring<T> {
    /// A ring for thread `tid` whose first segment holds `first` items and
    /// which grows up to `largest` (both rounded up to powers of two), and
    /// its producer. `None` when memory is short.
    pub(crate) fn with_producer(tid: u32, first: usize, largest: usize) -> Option<Producer<T>> {
        let first = first.next_power_of_two();
        let segment = Segment::new(0, first)?;
        let ring = Arc::new(Ring {
            head: CacheLine(AtomicUsize::new(0)),
            tail: CacheLine(AtomicUsize::new(0)),
            oldest: RaceCell::new(segment),
            consuming: AtomicBool::new(false),
            largest: largest.next_power_of_two().max(first),
            in_flight: CacheLine(AtomicU64::new(u64::MAX)),
            tid,
            closed: AtomicBool::new(false),
            room_wanted: CacheLine(std::sync::atomic::AtomicU32::new(0)),
        });
        Some(Producer {
            ring,
            newest: segment,
            tail: 0,
            cached_head: 0,
        })
    }

    /// The consumer's position now: items before it have been read.
    pub(crate) fn consumed(&self) -> usize {
        self.head.0.load(Ordering::Acquire)
    }

    /// True when at most half the ring's largest size waits to be read:
    /// a producer that waits for room is worth waking.
    pub(crate) fn half_empty(&self) -> bool {
        let waiting = self
            .tail
            .0
            .load(Ordering::Acquire)
            .saturating_sub(self.head.0.load(Ordering::Acquire));
        waiting <= self.largest / 2
    }

    /// The producer's position now: items before it are published.
    pub(crate) fn published(&self) -> usize {
        self.tail.0.load(Ordering::Acquire)
    }

    /// Items waiting before position `until`.
    pub(crate) fn waiting(&self, until: usize) -> usize {
        until.saturating_sub(self.head.0.load(Ordering::Relaxed))
    }

    /// True when nothing before `until` is waiting.
    pub(crate) fn is_drained(&self, until: usize) -> bool {
        self.head.0.load(Ordering::Relaxed) >= until
    }

    /// Hands the items before position `until` (a value of
    /// [`Ring::published`]; a larger one counts as the tail now) to `f` as
    /// slices, in order, without copying them, then releases their slots and
    /// frees the segments left behind. The items count as consumed even when
    /// `f` fails. Does nothing while another consumer is at work.
    pub(crate) fn consume_until<E>(
        &self,
        until: usize,
        mut f: impl FnMut(&[T]) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.consuming.swap(true, Ordering::Acquire) {
            return Ok(());
        }
        let until = until.min(self.tail.0.load(Ordering::Acquire));
        let mut head = self.head.0.load(Ordering::Relaxed);
        let mut result = Ok(());
        loop {
            // SAFETY: `oldest` is the consumer's, and this thread holds
            // `consuming`.
            let oldest = unsafe { self.oldest.read() };
            // SAFETY: segments from `oldest` on are freed only here, below.
            let segment = unsafe { oldest.as_ref() };
            let next = segment.next.load(Ordering::Acquire);
            // SAFETY: a successor is freed only after this segment, here.
            let end = NonNull::new(next).map_or(usize::MAX, |n| unsafe { n.as_ref() }.start);
            if head >= end {
                // SAFETY: only the consumer, holding `consuming`, writes it.
                unsafe {
                    self.oldest
                        .write(NonNull::new(next).expect("end is finite"))
                };
                // SAFETY: made by Segment::new; the producer has moved on to
                // the successor and never touches it again, and the consumer
                // has read all of it (the protocol in the module docs).
                drop(unsafe { Box::from_raw(oldest.as_ptr()) });
                continue;
            }
            if head >= until {
                break;
            }
            let to = until.min(end);
            if result.is_ok() {
                // SAFETY: [head, to) is published (`until` is at most the
                // tail loaded above) and lies in this segment; the producer
                // does not write it again before `head` passes it below.
                result = unsafe { segment.read(head, to, &mut f) };
            }
            head = to;
            self.head.0.store(head, Ordering::Release);
        }
        self.consuming.store(false, Ordering::Release);
        result
    }

    /// Hands the items waiting now to `f`, like [`Ring::consume_until`],
    /// but leaves them waiting: the next consumer gets them again. Frees
    /// and allocates nothing, so the leak scan may call it while the
    /// producer is stopped anywhere. `None`, handing nothing, while another
    /// consumer is at work.
    pub(crate) fn peek<E>(
        &self,
        mut f: impl FnMut(&[T]) -> Result<(), E>,
    ) -> Option<Result<(), E>> {
        if self.consuming.swap(true, Ordering::Acquire) {
            return None;
        }
        let until = self.tail.0.load(Ordering::Acquire);
        let mut at = self.head.0.load(Ordering::Relaxed);
        // SAFETY: `oldest` is the consumer's, and this thread holds
        // `consuming`.
        let mut segment = unsafe { self.oldest.read() };
        let mut result = Ok(());
        while at < until && result.is_ok() {
            // SAFETY: segments from `oldest` on are freed only by a
            // consumer, which holds `consuming`: not while we do.
            let seg = unsafe { segment.as_ref() };
            let next = seg.next.load(Ordering::Acquire);
            // SAFETY: as above, for the successor.
            let end = NonNull::new(next).map_or(usize::MAX, |n| unsafe { n.as_ref() }.start);
            if at >= end {
                segment = NonNull::new(next).expect("end is finite");
                continue;
            }
            let to = until.min(end);
            // SAFETY: [at, to) is published (`until` is the tail loaded
            // above) and lies in this segment; the producer does not write
            // it again before `head` passes it, and `head` does not move.
            result = unsafe { seg.read(at, to, &mut f) };
            at = to;
        }
        self.consuming.store(false, Ordering::Release);
        Some(result)
    }

    /// Forgets every waiting item (in a forked child: they belong to the parent).
    pub(crate) fn discard(&self) {
        let _ = self.consume_until(usize::MAX, |_| Ok::<(), ()>(()));
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // SAFETY: `drop` has the ring to itself: no producer handle (it
        // holds an Arc) and no consumer (it borrows the ring) is left.
        let mut segment = unsafe { self.oldest.read() }.as_ptr();
        while !segment.is_null() {
            // SAFETY: every segment of the chain was made by Segment::new and
            // is freed only here or by the consumer, which has unlinked it
            // from `oldest` first.
            let owned = unsafe { Box::from_raw(segment) };
            segment = owned.next.load(Ordering::Acquire);
        }
    }
}

impl<T: Copy> Producer<T> {
    /// The shared half of the ring.
    pub(crate) fn ring(&self) -> &Arc<Ring<T>> {
        &self.ring
    }

    /// Pushes an item, unless the ring is full and cannot grow: it is at
    /// its largest size ([`Push::Full`]) or memory is short
    /// ([`Push::NoMemory`]).
    #[inline]
    pub(crate) fn push(&mut self, item: T) -> Push {
        let tail = self.tail;
        // SAFETY: `newest` lives while the producer does (see Send above).
        let mut segment = unsafe { self.newest.as_ref() };
        if tail - self.cached_head.max(segment.start) > segment.mask {
            self.cached_head = self.ring.head.0.load(Ordering::Acquire);
            if tail - self.cached_head.max(segment.start) > segment.mask {
                if let Err(refused) = self.grow() {
                    return refused;
                }
                // SAFETY: as above, for the new newest segment.
                segment = unsafe { self.newest.as_ref() };
            }
        }
        // SAFETY: the slot of `tail` held position `tail - capacity` (or
        // nothing), which the consumer has read: `head` (acquired) is past
        // it. The consumer reads `tail` only after the release store below.
        unsafe { segment.slot(tail).write(MaybeUninit::new(item)) };
        self.tail = tail + 1;
        self.ring.tail.0.store(tail + 1, Ordering::Release);
        Push::Done
    }

    /// Links a segment twice as large after the full newest one; why not
    /// when the ring is at its largest or memory is short (the recorder
    /// keeps its allocator's reserve for finishing the trace once short).
    #[cold]
    fn grow(&mut self) -> Result<(), Push> {
        // SAFETY: `newest` lives while the producer does.
        let segment = unsafe { self.newest.as_ref() };
        let capacity = segment.capacity() * 2;
        if capacity > self.ring.largest {
            return Err(Push::Full);
        }
        if crate::memory::short() {
            return Err(Push::NoMemory);
        }
        let Some(next) = Segment::new(self.tail, capacity) else {
            return Err(Push::NoMemory);
        };
        // The last access to the old segment: from here on the consumer may
        // free it as soon as it has read it.
        segment.next.store(next.as_ptr(), Ordering::Release);
        self.newest = next;
        Ok(())
    }

    /// Items pushed so far.
    #[inline]
    pub(crate) fn pushed(&self) -> usize {
        self.tail
    }

    /// Slots of the newest segment.
    #[inline]
    pub(crate) fn capacity(&self) -> usize {
        // SAFETY: `newest` lives while the producer does.
        unsafe { self.newest.as_ref() }.capacity()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn drain(ring: &Ring<u64>) -> Vec<u64> {
        let mut got = Vec::new();
        ring.consume_until(ring.published(), |items| {
            got.extend_from_slice(items);
            Ok::<(), ()>(())
        })
        .unwrap();
        got
    }

    #[test]
    fn a_full_ring_grows_to_its_largest_size_then_refuses() {
        let mut p = Ring::<u64>::with_producer(7, 2, 8).unwrap();
        let ring = Arc::clone(p.ring());
        // 2 + 4 + 8 slots, nothing consumed.
        for i in 0..14 {
            assert_eq!(p.push(i), Push::Done, "push {i}");
        }
        assert_eq!(p.capacity(), 8);
        assert_eq!(p.push(14), Push::Full, "the largest segment is full");
        assert_eq!(drain(&ring), (0..14).collect::<Vec<_>>());
        // Consumed: the newest segment has room again, the old ones are gone.
        for i in 14..22 {
            assert_eq!(p.push(i), Push::Done, "push {i}");
        }
        assert_eq!(p.push(22), Push::Full);
        assert_eq!(drain(&ring), (14..22).collect::<Vec<_>>());
    }

    #[test]
    fn items_wrap_around_and_come_out_in_order() {
        let mut p = Ring::<u64>::with_producer(1, 4, 4).unwrap();
        let ring = Arc::clone(p.ring());
        let mut expected = Vec::new();
        let mut got = Vec::new();
        for round in 0..10u64 {
            for i in 0..3 {
                assert_eq!(p.push(round * 3 + i), Push::Done);
                expected.push(round * 3 + i);
            }
            got.extend(drain(&ring));
        }
        assert_eq!(got, expected);
        assert_eq!(p.pushed(), 30);
    }

    #[test]
    fn consume_stops_at_until_and_discard_empties() {
        let mut p = Ring::<u64>::with_producer(1, 2, 64).unwrap();
        let ring = Arc::clone(p.ring());
        for i in 0..10 {
            assert_eq!(p.push(i), Push::Done);
        }
        let mut got = Vec::new();
        ring.consume_until(5, |items| {
            got.extend_from_slice(items);
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(got, [0, 1, 2, 3, 4]);
        assert_eq!(ring.waiting(ring.published()), 5);
        ring.discard();
        assert!(ring.is_drained(ring.published()));
        assert!(drain(&ring).is_empty());
        // A position past the tail counts as the tail.
        assert_eq!(p.push(10), Push::Done);
        assert_eq!(
            {
                let mut v = Vec::new();
                ring.consume_until(usize::MAX, |items| {
                    v.extend_from_slice(items);
                    Ok::<(), ()>(())
                })
                .unwrap();
                v
            },
            [10]
        );
    }
}

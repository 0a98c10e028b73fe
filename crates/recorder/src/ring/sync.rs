//! The ring's synchronisation primitives: std's, or loom's when the crate is
//! built with `RUSTFLAGS="--cfg loom"` for the model-checking tests
//! (`ring/loom_tests.rs`), as tokio and crossbeam do it. Only the ring uses
//! this module; the rest of the crate keeps std's atomics.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize};

pub(crate) use std::sync::atomic::Ordering;

/// A cell written by one side of the ring and read by the other, with the
/// ordering supplied by the ring's atomics. Under loom every access is
/// checked against the others for a data race.
#[cfg(not(loom))]
#[repr(transparent)]
pub(crate) struct RaceCell<T>(std::cell::UnsafeCell<T>);

#[cfg(loom)]
pub(crate) struct RaceCell<T>(loom::cell::UnsafeCell<T>);

impl<T> RaceCell<T> {
    /// A cell holding `value`.
    pub(crate) fn new(value: T) -> Self {
        #[cfg(not(loom))]
        return RaceCell(std::cell::UnsafeCell::new(value));
        #[cfg(loom)]
        return RaceCell(loom::cell::UnsafeCell::new(value));
    }

    /// Overwrites the value.
    ///
    /// # Safety
    /// No other thread accesses the cell during the call, and no reference
    /// into it is alive.
    #[inline(always)]
    pub(crate) unsafe fn write(&self, value: T) {
        #[cfg(not(loom))]
        // SAFETY: exclusive access, guaranteed by the caller.
        unsafe {
            *self.0.get() = value
        };
        #[cfg(loom)]
        // SAFETY: as above; loom checks the claim.
        self.0.with_mut(|p| unsafe { *p = value });
    }

    /// Reads a copy of the value.
    ///
    /// # Safety
    /// No other thread writes the cell during the call.
    #[inline(always)]
    pub(crate) unsafe fn read(&self) -> T
    where
        T: Copy,
    {
        #[cfg(not(loom))]
        // SAFETY: no concurrent writer, guaranteed by the caller.
        return unsafe { *self.0.get() };
        #[cfg(loom)]
        // SAFETY: as above; loom checks the claim.
        return self.0.with(|p| unsafe { *p });
    }
}

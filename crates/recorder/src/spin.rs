//! A value behind memtrace's one lock ([`memtrace_lock::RawLock`]), which
//! can be taken and released across `fork` and sleeps rather than spins
//! when it has to wait: `pthread_atfork` handlers take every lock before
//! `fork` and release them in both processes after it.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};

pub use memtrace_lock::RawLock;

/// A mutual-exclusion lock around a value, on a [`RawLock`].
pub(crate) struct SpinLock<T> {
    raw: RawLock,
    value: UnsafeCell<T>,
}

// SAFETY: access to `value` is serialized by `raw`, as for a Mutex.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: moving the lock moves the value; no thread can hold a guard then.
unsafe impl<T: Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    pub(crate) const fn new(value: T) -> Self {
        SpinLock {
            raw: RawLock::new(),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the lock, waiting until it is free.
    pub(crate) fn lock(&self) -> SpinGuard<'_, T> {
        self.raw.lock();
        SpinGuard { lock: self }
    }

    /// Takes the lock if it is free.
    pub(crate) fn try_lock(&self) -> Option<SpinGuard<'_, T>> {
        // `then`, not `then_some`: a guard built eagerly for a failed
        // attempt would be dropped at once, releasing the holder's lock.
        self.raw.try_lock().then(|| SpinGuard { lock: self })
    }

    /// Takes the lock without a guard (for `fork` handlers).
    pub(crate) fn lock_raw(&self) {
        self.raw.lock();
    }

    /// Releases a lock taken with [`SpinLock::lock_raw`].
    pub(crate) fn unlock_raw(&self) {
        self.raw.unlock();
    }
}

/// Holds a [`SpinLock`] until dropped.
pub(crate) struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves this thread holds the lock.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves this thread holds the lock exclusively.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.unlock_raw();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_try_lock_leaves_the_lock_to_its_holder() {
        let lock = SpinLock::new(0u32);
        let held = lock.lock();
        assert!(lock.try_lock().is_none());
        assert!(
            lock.try_lock().is_none(),
            "the first failure released the lock"
        );
        drop(held);
        assert!(lock.try_lock().is_some());
    }

    /// Threads that wait sleep on the futex and are woken by each unlock:
    /// every increment made under the lock is counted once.
    #[test]
    fn waiters_sleep_and_every_holder_gets_its_turn() {
        let lock = std::sync::Arc::new(SpinLock::new(0u64));
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let lock = std::sync::Arc::clone(&lock);
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        *lock.lock() += 1;
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(*lock.lock(), 80_000);
        assert!(lock.raw.try_lock(), "the lock ends free");
    }
}

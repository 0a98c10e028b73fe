//! A small lock that can be taken and released across `fork`, and that
//! sleeps rather than spins when it has to wait.
//!
//! std's `Mutex` cannot be force-unlocked, and a lock held by another thread
//! at `fork` time stays locked forever in the child; `pthread_atfork`
//! handlers take every [`RawLock`] before `fork` and release them in both
//! processes after it. A waiter spins a few rounds (the holders keep these
//! locks for a few instructions), then sleeps on a futex: with hundreds of
//! threads on a few cores, spinning or yielding waiters would take the CPU
//! from the holder (measured: 2,000 threads starting at once under the old
//! spin-and-yield class locks of the preload allocator did not finish in
//! 180 s). The lock word is Drepper's "Futexes are tricky" mutex: 0 free,
//! 1 taken, 2 taken with possible sleepers, so an unlock without sleepers
//! makes no system call.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU32, Ordering};

const FREE: u32 = 0;
const TAKEN: u32 = 1;
const SLEEPERS: u32 = 2;
/// Rounds a waiter spins before it sleeps.
const SPINS: u32 = 100;

/// A lock word without data: taken and released explicitly (the preload
/// library's allocator and `fork` handlers use it this way).
pub struct RawLock {
    word: AtomicU32,
}

impl Default for RawLock {
    fn default() -> Self {
        RawLock::new()
    }
}

impl RawLock {
    /// A free lock.
    pub const fn new() -> Self {
        RawLock {
            word: AtomicU32::new(FREE),
        }
    }

    /// Takes the lock if it is free.
    #[inline]
    pub fn try_lock(&self) -> bool {
        self.word
            .compare_exchange(FREE, TAKEN, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Takes the lock, spinning briefly, then sleeping until it is free.
    #[inline]
    pub fn lock(&self) {
        if !self.try_lock() {
            self.lock_contended();
        }
    }

    #[cold]
    fn lock_contended(&self) {
        for _ in 0..SPINS {
            std::hint::spin_loop();
            if self.word.load(Ordering::Relaxed) == FREE && self.try_lock() {
                return;
            }
        }
        // From here on the word says that someone may sleep, so the holder's
        // unlock wakes one sleeper.
        while self.word.swap(SLEEPERS, Ordering::Acquire) != FREE {
            futex(
                &self.word,
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                SLEEPERS,
            );
        }
    }

    /// Releases the lock, waking one sleeper if there may be one.
    #[inline]
    pub fn unlock(&self) {
        if self.word.swap(FREE, Ordering::Release) == SLEEPERS {
            futex(&self.word, libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, 1);
        }
    }
}

/// `futex(word, op, value)`: waits while `word` holds `value`, or wakes up
/// to `value` waiters. Errors (a changed word, an interruption) only make
/// the caller look at the word again.
fn futex(word: &AtomicU32, op: libc::c_int, value: u32) {
    // SAFETY: the address is a live, aligned u32; no timeout, no second word.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            op,
            value,
            std::ptr::null::<libc::timespec>(),
        )
    };
}

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
        assert_eq!(lock.raw.word.load(Ordering::Relaxed), FREE);
    }
}

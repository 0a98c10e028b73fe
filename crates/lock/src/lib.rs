//! The one lock of memtrace's code that runs inside other programs: the
//! recorder's tables, its preload allocator's size classes and the
//! unwinder's shared stack-bounds snapshot all take a [`RawLock`].
//!
//! It allocates nothing and calls no libc function that could take a lock
//! of the program's (only the `futex`, `tgkill` and `getpid`
//! system calls), so a hook can take it whatever the interrupted code
//! holds. std's `Mutex` would do neither: it cannot be released by a `fork`
//! handler, and a lock held by another thread at `fork` stays locked for
//! ever in the child.
//!
//! A waiter spins a few rounds (the holders keep these locks for a few
//! instructions), then sleeps on a futex: with hundreds of threads on a
//! few cores, spinning or yielding waiters would take the CPU from the
//! holder (measured: 2,000 threads starting at once under the old
//! spin-and-yield class locks of the preload allocator did not finish in
//! 180 s).
//!
//! The lock word is 0 when free, else the holder's id with a mark set
//! while someone may sleep on it (Drepper's "Futexes are tricky" mutex,
//! with the holder named): an unlock without sleepers makes no system
//! call. [`RawLock::lock`] names nobody in particular;
//! [`RawLock::lock_as`] names the calling thread, so that a waiter can tell
//! a busy holder from a thread that no longer exists, such as a thread of
//! the parent in a child made by `fork` (which costs the waiter 10 ms,
//! never a hang). A lock is taken one way or the other, never both.

use std::sync::atomic::{AtomicU32, Ordering};

const FREE: u32 = 0;
/// Set in the lock word while a thread may sleep on it.
const WAITERS: u32 = 1 << 31;
/// The holder of a lock taken by [`RawLock::lock`]: nobody in particular.
const ANYONE: u32 = 1;
/// Rounds a waiter spins before it sleeps.
const SPINS: u32 = 100;
/// How long a waiter of [`RawLock::lock_as`] sleeps before it checks that
/// the holder still exists.
const HOLDER_CHECK_NS: i64 = 10_000_000;

/// A lock word without data, taken and released explicitly.
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
        self.try_lock_as(ANYONE)
    }

    /// Takes the lock, spinning briefly, then sleeping until it is free.
    #[inline]
    pub fn lock(&self) {
        if !self.try_lock() {
            self.lock_contended(ANYONE, false);
        }
    }

    /// Takes the lock for thread `tid` (the caller's id from `gettid`) if
    /// it is free.
    #[inline]
    pub fn try_lock_as(&self, tid: u32) -> bool {
        debug_assert!(tid != FREE && tid & WAITERS == 0, "not a thread id");
        self.word
            .compare_exchange(FREE, tid, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Takes the lock for thread `tid` (the caller's id from `gettid`),
    /// sleeping while its holder exists. False, without the lock, when the
    /// holder is a thread that no longer exists, so that the lock will
    /// never be released.
    pub fn lock_as(&self, tid: u32) -> bool {
        self.try_lock_as(tid) || self.lock_contended(tid, true)
    }

    #[cold]
    fn lock_contended(&self, me: u32, check_holder: bool) -> bool {
        for _ in 0..SPINS {
            std::hint::spin_loop();
            if self.word.load(Ordering::Relaxed) == FREE && self.try_lock_as(me) {
                return true;
            }
        }
        loop {
            let now = self.word.load(Ordering::Relaxed);
            if now == FREE {
                // Taken with the mark, since others may still sleep: the
                // unlock then wakes the next one.
                if self
                    .word
                    .compare_exchange(FREE, me | WAITERS, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return true;
                }
                continue;
            }
            let held = now | WAITERS;
            if now != held
                && self
                    .word
                    .compare_exchange(now, held, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            let timed_out = futex_wait(&self.word, held, check_holder.then_some(HOLDER_CHECK_NS));
            if timed_out
                && self.word.load(Ordering::Relaxed) == held
                && !thread_exists(held & !WAITERS)
            {
                return false;
            }
        }
    }

    /// Releases the lock, waking one sleeper if there may be one.
    #[inline]
    pub fn unlock(&self) {
        if self.word.swap(FREE, Ordering::Release) & WAITERS != 0 {
            futex_wake_one(&self.word);
        }
    }
}

/// Sleeps while `word` holds `value`, at most `timeout_ns` when given:
/// true when the time ran out. A changed word, a wake-up or a signal only
/// make the caller look at the word again.
fn futex_wait(word: &AtomicU32, value: u32, timeout_ns: Option<i64>) -> bool {
    let limit = timeout_ns.map(|ns| libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    });
    let limit_ptr = limit
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: FUTEX_WAIT on a live, aligned u32, which it only reads, with
    // a timespec (or null) on our stack that outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            value,
            limit_ptr,
        )
    };
    rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT)
}

fn futex_wake_one(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE on a live, aligned u32; no memory is written.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        )
    };
}

/// True when thread `tid` of this process exists.
fn thread_exists(tid: u32) -> bool {
    // SAFETY: getpid and tgkill with signal 0 (which only checks that the
    // thread exists) take no pointers.
    let rc = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn gettid() -> u32 {
        // SAFETY: gettid has no preconditions.
        unsafe { libc::gettid() as u32 }
    }

    #[test]
    fn a_taken_lock_is_not_taken_again_until_released() {
        let lock = RawLock::new();
        assert!(lock.try_lock());
        assert!(!lock.try_lock());
        assert!(!lock.try_lock_as(gettid()));
        lock.unlock();
        assert!(lock.try_lock_as(gettid()));
        assert_eq!(lock.word.load(Ordering::Relaxed), gettid());
        lock.unlock();
        assert_eq!(lock.word.load(Ordering::Relaxed), FREE);
    }

    /// Threads that wait sleep on the futex and are woken by each unlock,
    /// in both ways of taking it: every increment made under the lock is
    /// counted once, and the lock ends free, with no waiter mark left.
    #[test]
    fn waiters_sleep_and_every_holder_gets_its_turn() {
        struct Counted {
            lock: RawLock,
            n: std::cell::UnsafeCell<u64>,
        }
        // SAFETY: `n` is touched only under `lock`.
        unsafe impl Sync for Counted {}
        for named in [false, true] {
            let shared = Arc::new(Counted {
                lock: RawLock::new(),
                n: std::cell::UnsafeCell::new(0),
            });
            let workers: Vec<_> = (0..8)
                .map(|_| {
                    let shared = Arc::clone(&shared);
                    std::thread::spawn(move || {
                        for _ in 0..10_000 {
                            if named {
                                assert!(shared.lock.lock_as(gettid()));
                            } else {
                                shared.lock.lock();
                            }
                            // SAFETY: the lock is held.
                            unsafe { *shared.n.get() += 1 };
                            shared.lock.unlock();
                        }
                    })
                })
                .collect();
            for w in workers {
                w.join().unwrap();
            }
            // SAFETY: every worker has ended.
            assert_eq!(unsafe { *shared.n.get() }, 80_000);
            assert_eq!(shared.lock.word.load(Ordering::Relaxed), FREE);
        }
    }

    /// A lock left taken by a thread that has ended (as a thread of the
    /// parent is, in a child made by `fork`) is reported, not waited for.
    #[test]
    fn a_holder_that_no_longer_exists_is_told_apart() {
        let lock = Arc::new(RawLock::new());
        let holder = {
            let lock = Arc::clone(&lock);
            std::thread::spawn(move || {
                assert!(lock.lock_as(gettid()));
                gettid()
            })
        };
        let dead = holder.join().unwrap();
        assert_eq!(lock.word.load(Ordering::Relaxed), dead);
        assert!(!lock.lock_as(gettid()));
        // The lock is left as it was: nobody can release it.
        assert_eq!(lock.word.load(Ordering::Relaxed), dead | WAITERS);
    }
}

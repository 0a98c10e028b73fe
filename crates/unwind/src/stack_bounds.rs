//! The calling thread's stack bounds, learned from `/proc/self/maps` with
//! plain system calls: no lock the program could hold, and no allocation
//! but the shared snapshot's.
//!
//! Why not `pthread_getattr_np`: it holds the thread's descriptor lock
//! while it allocates (glibc 2.36 reallocs a cpuset, and on the main thread
//! opens `/proc/self/maps` with `fopen`). When the *program* calls it (every
//! Rust binary does at start-up, as does the JVM), its `malloc` enters
//! memtrace's hook, whose unwinder asked `pthread_getattr_np` again and
//! waited for ever on the lock the program's own call held.
//!
//! The stack is the mapping that holds the stack pointer. A thread stack's
//! mapping may have been merged by the kernel with an adjacent anonymous
//! one, so `hi` can lie above the stack's real top: still mapped and
//! readable, which is all the unwinder needs (it stops at a null return
//! address or a failed rule long before). The main thread's mapping grows
//! down on demand, so its `lo` is `hi` minus the stack size limit.
//!
//! # One read for many threads
//! `/proc/self/maps` has two lines per thread (stack and guard page), so a
//! read per new thread costs quadratic time: 1,000 threads starting
//! together spent seconds in the kernel, all taking the address-space lock
//! that their `mmap`s wait for. The mappings are kept in a shared snapshot
//! instead, which a thread uses when its stack is in it: the range holding
//! `sp` also holds the thread's descriptor, which glibc puts at the top of
//! every thread's stack (`holds_this_thread`). Otherwise the thread reads
//! the file again, unless a read began after it first asked (the
//! `REFRESHES` count it saw has moved on): a thread's stack is mapped
//! before the thread runs, and does not move while it lives, so that read
//! holds it. The threads that arrive during a read sleep on the lock until
//! it is done. The lock is taken with the holder's thread id
//! (`memtrace_lock::RawLock::lock_as`): a waiter that has slept 10 ms
//! checks that the holder still exists, so a lock left taken by a thread
//! that did not survive `fork` costs the child's threads 10 ms and a read
//! of their own, never a hang.

use std::cell::UnsafeCell;
use std::sync::atomic::Ordering;

use memtrace_lock::RawLock;

/// `[lo, hi)` of the mapping of this process that contains `sp`, the
/// calling thread's stack pointer; `None` when `/proc/self/maps` cannot be
/// read or holds no such mapping.
pub(crate) fn query(sp: u64) -> Option<(u64, u64)> {
    let seen = REFRESHES.load(Ordering::SeqCst);
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() } as u32;
    let found = if SNAPSHOT.lock.lock_as(tid) {
        // SAFETY: the snapshot lock is held.
        let snapshot = unsafe { &mut *SNAPSHOT.maps.get() };
        let mut found = snapshot.find(sp);
        if !found.is_some_and(|range| holds_this_thread(range, sp)) && snapshot.taken <= seen {
            snapshot.taken = REFRESHES.fetch_add(1, Ordering::SeqCst) + 1;
            snapshot.read();
            found = snapshot.find(sp);
        }
        SNAPSHOT.lock.unlock();
        found
    } else {
        // The holder is gone (a thread lost at `fork`): read alone.
        read_one(sp)
    };
    let (lo, hi, main_stack) = found?;
    if !main_stack {
        return Some((lo, hi));
    }
    Some((hi.saturating_sub(stack_limit()).min(lo), hi))
}

/// Whether a range from a snapshot that may be older than this thread is
/// its stack: the main thread's `[stack]` never moves, and glibc puts a
/// thread's descriptor (`pthread_self()`) at the top of its stack, given or
/// mapped. A range holding both `sp` and the descriptor is the stack's
/// mapping, or an older one that covered it: its `hi` is then above the
/// stack's frames, which is all the unwinder needs (see the module docs).
fn holds_this_thread((lo, hi, main_stack): (u64, u64, bool), sp: u64) -> bool {
    // SAFETY: pthread_self reads the thread pointer; no lock, no failure.
    let descriptor = unsafe { libc::pthread_self() } as u64;
    main_stack || (lo <= sp && sp < descriptor && descriptor < hi)
}

/// Every mapping of the process, as read at one moment.
struct Maps {
    /// The `REFRESHES` count when the read began; 0 before the first.
    taken: u64,
    /// `(lo, hi, is the main thread's [stack])`, in address order.
    ranges: Vec<(u64, u64, bool)>,
}

impl Maps {
    /// Replaces the ranges with the mappings now; empty when the file
    /// cannot be read.
    fn read(&mut self) {
        self.ranges.clear();
        let mut lines = Lines::new();
        let ranges = &mut self.ranges;
        read_maps(|bytes| {
            lines.feed(bytes, |lo, hi, stack| {
                ranges.push((lo, hi, stack));
                false
            })
        });
    }

    fn find(&self, sp: u64) -> Option<(u64, u64, bool)> {
        let i = self.ranges.partition_point(|&(_, hi, _)| hi <= sp);
        self.ranges
            .get(i)
            .copied()
            .filter(|&(lo, hi, _)| lo <= sp && sp < hi)
    }
}

/// Refreshes of the snapshot begun so far.
static REFRESHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The snapshot behind a lock taken with the holder's thread id, so that a
/// waiter can tell a holder that is busy from one that is gone (a thread of
/// the parent, in a child made by `fork`).
struct Snapshot {
    lock: RawLock,
    maps: UnsafeCell<Maps>,
}

// SAFETY: `maps` is touched only while `lock` is held.
unsafe impl Sync for Snapshot {}

static SNAPSHOT: Snapshot = Snapshot {
    lock: RawLock::new(),
    maps: UnsafeCell::new(Maps {
        taken: 0,
        ranges: Vec::new(),
    }),
};

/// The mapping that holds `sp`, read on its own (no snapshot).
fn read_one(sp: u64) -> Option<(u64, u64, bool)> {
    let mut found = None;
    let mut lines = Lines::new();
    read_maps(|bytes| {
        lines.feed(bytes, |lo, hi, stack| {
            let hit = lo <= sp && sp < hi;
            if hit {
                found = Some((lo, hi, stack));
            }
            hit
        })
    });
    found
}

/// Feeds `/proc/self/maps` to `f` in pieces until `f` says it is done.
fn read_maps(mut f: impl FnMut(&[u8]) -> bool) {
    let mut buf = [0u8; 4096];
    // SAFETY: a NUL-terminated path literal; open(2) takes no lock in user space.
    let fd = unsafe {
        libc::open(
            c"/proc/self/maps".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return;
    }
    loop {
        // SAFETY: reads into a local buffer of exactly `buf.len()` bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        if n <= 0 || f(&buf[..n as usize]) {
            break;
        }
    }
    // SAFETY: closes the descriptor opened above, once.
    unsafe { libc::close(fd) };
}

/// The soft `RLIMIT_STACK`, capped at 8 GiB (unlimited reads as the cap).
fn stack_limit() -> u64 {
    const CAP: u64 = 8 << 30;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes one struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_STACK, &mut limit) } != 0 {
        return 0;
    }
    limit.rlim_cur.min(CAP)
}

/// Where the parser is within a line of `/proc/self/maps`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Field {
    Start,
    End,
    /// After the range: permissions, offset, device, inode, path.
    Rest,
}

/// A byte-at-a-time parser of `/proc/self/maps` that keeps no line: it
/// needs no buffer however long a path is, and input may be cut anywhere.
pub(crate) struct Lines {
    field: Field,
    start: u64,
    end: u64,
    /// The last bytes of the line, to tell `[stack]` at its end.
    tail: [u8; 7],
}

impl Lines {
    pub(crate) fn new() -> Lines {
        Lines {
            field: Field::Start,
            start: 0,
            end: 0,
            tail: [0; 7],
        }
    }

    /// Parses more input, calling `line(lo, hi, is the main thread's
    /// [stack])` for each line it completes; `true` as soon as `line` does.
    pub(crate) fn feed(
        &mut self,
        bytes: &[u8],
        mut line: impl FnMut(u64, u64, bool) -> bool,
    ) -> bool {
        for &b in bytes {
            match (self.field, b) {
                (_, b'\n') => {
                    let done = line(self.start, self.end, &self.tail == b"[stack]");
                    *self = Lines::new();
                    if done {
                        return true;
                    }
                }
                (Field::Start, b'-') => self.field = Field::End,
                (Field::Start, _) => self.start = push_hex(self.start, b),
                (Field::End, b' ') => self.field = Field::Rest,
                (Field::End, _) => self.end = push_hex(self.end, b),
                (Field::Rest, _) => {
                    self.tail.copy_within(1.., 0);
                    self.tail[6] = b;
                }
            }
        }
        false
    }
}

/// `acc` with one more hexadecimal digit (anything else counts as 0: the
/// kernel writes only hex digits there).
fn push_hex(acc: u64, digit: u8) -> u64 {
    let v = (digit as char).to_digit(16).unwrap_or(0) as u64;
    acc.wrapping_shl(4) | v
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &[u8] = b"\
55d0c0000000-55d0c0021000 r--p 00000000 fd:01 1234   /usr/bin/a very long name with spaces
7f0000000000-7f0000800000 rw-p 00000000 00:00 0 
7f0000800000-7f0000801000 ---p 00000000 00:00 0 
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0                          [stack]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";

    /// The mapping holding `sp`, the input fed in pieces of `chunk` bytes,
    /// found by the parser on its own and in a snapshot (which must agree).
    fn find(sp: u64, chunk: usize) -> Option<(u64, u64, bool)> {
        let mut lines = Lines::new();
        let mut found = None;
        let mut all = Maps {
            taken: 1,
            ranges: Vec::new(),
        };
        for c in MAPS.chunks(chunk) {
            lines.feed(c, |lo, hi, stack| {
                all.ranges.push((lo, hi, stack));
                if found.is_none() && lo <= sp && sp < hi {
                    found = Some((lo, hi, stack));
                }
                false
            });
        }
        assert_eq!(all.find(sp), found, "{sp:#x}");
        found
    }

    #[test]
    fn finds_the_mapping_that_holds_sp_however_the_input_is_cut() {
        for chunk in [1, 2, 7, 64, MAPS.len()] {
            assert_eq!(
                find(0x7f0000123456, chunk),
                Some((0x7f0000000000, 0x7f0000800000, false))
            );
            assert_eq!(
                find(0x7ffc00020ff8, chunk),
                Some((0x7ffc00000000, 0x7ffc00021000, true))
            );
            assert_eq!(
                find(0x7f0000800000, chunk),
                Some((0x7f0000800000, 0x7f0000801000, false))
            );
            assert_eq!(find(0x1000, chunk), None);
            assert_eq!(find(0x7ffc00021000, chunk), None);
        }
    }

    #[test]
    fn this_threads_stack_holds_its_stack_pointer() {
        let local = 0u8;
        let sp = &local as *const u8 as u64;
        let (lo, hi) = query(sp).expect("a mapping holds the stack");
        assert!(lo <= sp && sp < hi, "{lo:#x} {sp:#x} {hi:#x}");
        let other = std::thread::spawn(|| {
            let local = 0u8;
            let sp = &local as *const u8 as u64;
            (sp, query(sp))
        })
        .join()
        .unwrap();
        let (sp, bounds) = other;
        let (lo, hi) = bounds.expect("a spawned thread's stack is mapped");
        assert!(lo <= sp && sp < hi);
    }

    /// Threads that start together, and so mostly find their stacks in a
    /// snapshot another thread read, each find their own.
    #[test]
    fn threads_starting_together_each_find_their_stack() {
        let n = 64;
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(n));
        let threads: Vec<_> = (0..n)
            .map(|_| {
                let barrier = std::sync::Arc::clone(&barrier);
                std::thread::spawn(move || {
                    barrier.wait();
                    let local = 0u8;
                    let sp = &local as *const u8 as u64;
                    let (lo, hi) = query(sp).expect("the stack is mapped");
                    assert!(lo <= sp && sp < hi, "{lo:#x} {sp:#x} {hi:#x}");
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}

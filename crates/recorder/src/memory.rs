//! When the recorder cannot get memory.
//!
//! The recorder runs inside a program that may use up its memory (an
//! address-space limit, a full cgroup, overcommit turned off). It must then
//! neither abort the program, which Rust's `handle_alloc_error` does when
//! an infallible allocation fails, nor take memory the program asked for.
//! So every allocation that grows with what the program does is fallible,
//! and a failure turns into dropped work:
//!
//! | what needs memory | when it cannot get it |
//! | --- | --- |
//! | a thread's ring and state | the thread's heap events are dropped |
//! | a new node of the stack trie | the event is dropped |
//! | the writer's buffers | allocated when recording starts; a batch's columns are cut smaller, a record too big for the block is written as a block of its own; a batch still unwritable has its events dropped |
//! | zstd | the block is stored uncompressed |
//! | the live-block table, the leak scan | no leak scan; a note says why |
//! | `/proc/self/maps`, the resource sample | skipped this time |
//!
//! Dropped heap events are counted: the count goes into the trailer
//! (`n_dropped`) and a note, which `memtrace report` shows.
//!
//! Small allocations (an `Arc`, a few rings' `Vec`) are not all made
//! fallible: the preload library's allocator keeps a reserve for them.
//! Once it draws on it, it calls [`memory_short`]: from then on the
//! recorder takes on no new thread and no new stack, so the reserve lasts
//! until the trace is finished. Events of known threads at known stacks
//! are still recorded (a ring needs no memory).

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static DROPPED: AtomicU64 = AtomicU64::new(0);
static SHORT: AtomicBool = AtomicBool::new(false);

/// Tells the recorder that its allocator has begun to use its last
/// reserve: it takes on no new thread or stack from now on. Never
/// allocates, never takes a lock (the allocator calls it).
pub fn memory_short() {
    SHORT.store(true, Ordering::Relaxed);
}

/// True once the allocator has begun to use its reserve.
#[inline]
pub(crate) fn short() -> bool {
    SHORT.load(Ordering::Relaxed)
}

/// Counts `n` heap events that were not recorded for want of memory.
#[cold]
pub(crate) fn dropped(n: u64) {
    DROPPED.fetch_add(n, Ordering::Relaxed);
}

/// Heap events not recorded for want of memory, so far.
pub(crate) fn n_dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Forgets the count (in a forked child, whose trace starts afresh).
pub(crate) fn reset_count() {
    DROPPED.store(0, Ordering::Relaxed);
}

/// The sentence for the trace's note and the stderr line.
pub(crate) fn dropped_message(n: u64) -> String {
    let s = if n == 1 { "" } else { "s" };
    format!("out of memory: {n} heap event{s} could not be recorded")
}

/// The error for work given up for want of memory.
pub(crate) fn out_of_memory() -> io::Error {
    io::Error::new(io::ErrorKind::OutOfMemory, "out of memory")
}

/// `None` as an [`out_of_memory`] error, for fallible allocations in code
/// that reports other errors too.
pub(crate) trait OrOom<T> {
    /// The value, or an error of kind `OutOfMemory`.
    fn or_oom(self) -> io::Result<T>;
}

impl<T> OrOom<T> for Option<T> {
    fn or_oom(self) -> io::Result<T> {
        self.ok_or_else(out_of_memory)
    }
}

/// A file of `/proc` read whole, growing the buffer only with fallible
/// allocations; an error of kind `OutOfMemory` when memory cannot be had.
pub(crate) fn read_proc(path: &str) -> io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut bytes: Vec<u8> = Vec::new();
    loop {
        if bytes.capacity() - bytes.len() < 4096 {
            bytes
                .try_reserve(bytes.len().max(8192))
                .map_err(|_| out_of_memory())?;
        }
        let len = bytes.len();
        // Read into the spare capacity, zeroed first (no allocation).
        bytes.resize(bytes.capacity(), 0);
        match file.read(&mut bytes[len..]) {
            Ok(0) => {
                bytes.truncate(len);
                break;
            }
            Ok(n) => bytes.truncate(len + n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => bytes.truncate(len),
            Err(e) => return Err(e),
        }
    }
    String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// An empty vector with room for exactly `n` items, allocated fallibly:
/// `None` when memory is short.
pub(crate) fn try_with_capacity<T>(n: usize) -> Option<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).ok()?;
    Some(v)
}

/// Collects `items` into a new vector with fallible allocation: `None`
/// when memory for all of them cannot be had.
pub(crate) fn try_collect<T>(items: impl ExactSizeIterator<Item = T>) -> Option<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(items.len()).ok()?;
    v.extend(items);
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_read_whole() {
        let maps = read_proc("/proc/self/maps").unwrap();
        assert!(maps.lines().count() > 3);
        assert!(maps.ends_with('\n'));
        assert_eq!(
            read_proc("/proc/self/no-such-file").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn the_message_counts_events() {
        assert_eq!(
            dropped_message(1),
            "out of memory: 1 heap event could not be recorded"
        );
        assert_eq!(
            dropped_message(7),
            "out of memory: 7 heap events could not be recorded"
        );
    }
}

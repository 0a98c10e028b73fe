//! Memoized unwinding: a stack seen before costs a few compares, not a walk.
//!
//! A walk is a pure function of the starting registers (fixed `ip`, `sp`,
//! `bp`), of the stack words it reads and of the modules' unwind tables. The
//! memo keeps, per `(sp, bp)`, the words the last walk read and the value the
//! caller derived from its frames (the recorder's stack id). If every word
//! still holds the same value, a new walk would read the same words and find
//! the same frames: the memoized value is returned exactly, without walking.
//! A module list change (dlopen, dlclose) empties every memo.
//!
//! Optimised code keeps data in rbp, and frames save it on the stack, so the
//! starting `bp` and the saved copies change from call to call without
//! affecting the frames. After a walk, a second walk starts from `bp = 0` and
//! sees 0 for every word that is neither a code address nor an address on
//! this stack. framehop's x86-64 rules use `bp` and saved words only as
//! addresses to read from; a walk that used a zeroed one would read near
//! address 0, outside the stack, and differ. When the second walk reads the
//! same addresses and finds the same frames, only the code-address and
//! stack-address words (return addresses, saved frame pointers) are kept for
//! checking, and the entry holds for any `bp`. Otherwise every word and `bp`
//! are checked.
//!
//! Stack addresses are kept because a frame-pointer frame (glibc is built
//! with frame pointers on Ubuntu 24.04 and Fedora) below optimised code finds
//! its frame through a saved `bp`: zeroing those made every walk through such
//! a frame depend on `bp`, and the memo missed on every call (measured: the
//! recorder 12-15x slower than native on an Ubuntu-based VM, against 3x on
//! Debian 12).

use crate::fast::{self, WordLog, LOG_WORDS};
use crate::modules;

const SLOTS: usize = 128;

#[derive(Clone, Copy)]
struct Entry {
    sp: u64,
    bp: u64,
    /// The walk did not depend on the starting `bp` (see `lookup_or_walk`).
    any_bp: bool,
    skip: usize,
    generation: u64,
    value: u32,
    n_words: u8,
    words: [(u64, u64); LOG_WORDS],
}

/// One thread's memo of earlier walks. Create one per thread and pass it to
/// [`crate::backtrace_memo`] on that thread only.
pub struct StackMemo {
    slots: Box<[Entry]>,
    hits: u64,
    misses: u64,
}

impl Default for StackMemo {
    fn default() -> Self {
        Self::new()
    }
}

impl StackMemo {
    /// An empty memo (about 100 KiB, allocated zeroed: an entry's pages
    /// become resident only when a walk from its stack pointers is stored).
    /// An all-zero entry is empty: its `sp` of 0 matches no stack.
    pub fn new() -> Self {
        // SAFETY: an entry is integers and a bool, for which all-zero bytes
        // are a valid value.
        let slots = unsafe { Box::<[Entry]>::new_zeroed_slice(SLOTS).assume_init() };
        StackMemo {
            slots,
            hits: 0,
            misses: 0,
        }
    }

    /// [`StackMemo::new`], or `None` when its memory (about 100 KiB) cannot
    /// be had: a recorder inside a program that used up its memory must
    /// not abort it.
    pub fn try_new() -> Option<Self> {
        let layout = std::alloc::Layout::array::<Entry>(SLOTS).ok()?;
        // SAFETY: the layout has a non-zero size (SLOTS entries of a
        // non-zero-sized type).
        let p = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<Entry>();
        if p.is_null() {
            return None;
        }
        // SAFETY: `p` is a global-allocator block with the layout of
        // `[Entry; SLOTS]`, which a boxed slice of that length frees with;
        // all-zero bytes are a valid (empty) entry, as in `new`.
        let slots = unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, SLOTS)) };
        Some(StackMemo {
            slots,
            hits: 0,
            misses: 0,
        })
    }

    /// Walks answered from the memo, and walks done.
    pub fn counts(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }
}

fn slot_of(sp: u64) -> usize {
    let h = sp.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (h >> 57) as usize % SLOTS
}

/// Checks an entry against the current stack.
#[inline]
fn still_valid(e: &Entry, sp: u64, bp: u64, skip: usize, generation: u64) -> bool {
    if e.sp != sp || (!e.any_bp && e.bp != bp) || e.skip != skip || e.generation != generation {
        return false;
    }
    e.words[..e.n_words as usize].iter().all(|&(addr, value)| {
        // SAFETY: `addr` was read by the walk that made this entry, which read
        // only the live part of this thread's stack above that walk's `sp`.
        // The current `sp` is the same, so `[sp, top)` is live now too and
        // `addr` lies inside it.
        unsafe { core::ptr::read_unaligned(addr as *const u64) == value }
    })
}

/// The body of [`crate::backtrace_memo`]; `regs` were captured by it.
#[inline]
pub(crate) fn lookup_or_walk(
    regs: fast::Regs,
    skip: usize,
    memo: &mut StackMemo,
    out: &mut [u64],
    on_miss: &mut dyn FnMut(&[u64]) -> u32,
) -> Option<u32> {
    let generation = modules::generation();
    let (sp, bp) = regs.stack_regs();
    let index = slot_of(sp);
    if still_valid(&memo.slots[index], sp, bp, skip, generation) {
        memo.hits += 1;
        return Some(memo.slots[index].value);
    }
    memo.misses += 1;
    let mut log = WordLog::new();
    let n = fast::walk_logged(regs, skip, out, Some(&mut log), false)?;
    let value = on_miss(&out[..n]);
    if !log.overflow && !log.failed_read && value != crate::NOT_MEMOIZED {
        let mut poisoned_log = WordLog::new();
        let mut again = [0u64; 128];
        let limit = out.len().min(again.len());
        let poisoned = fast::walk_logged(
            regs.with_bp(0),
            skip,
            &mut again[..limit],
            Some(&mut poisoned_log),
            true,
        );
        let same_addresses = poisoned_log.len == log.len
            && poisoned_log.words[..log.len]
                .iter()
                .zip(&log.words[..log.len])
                .all(|(a, b)| a.0 == b.0);
        let any_bp = poisoned == Some(n)
            && again[..n] == out[..n]
            && same_addresses
            && !poisoned_log.failed_read
            && !poisoned_log.overflow;
        let e = &mut memo.slots[index];
        e.sp = sp;
        e.bp = bp;
        e.any_bp = any_bp;
        e.skip = skip;
        e.generation = generation;
        e.value = value;
        let code = modules::current();
        let mut kept = 0;
        let (lo, hi) = log.stack;
        for &(addr, word) in &log.words[..log.len] {
            // With `any_bp`, only the return addresses and saved frame
            // pointers decide the frames.
            let kept_by_poisoned_walk =
                code.is_none_or(|m| m.is_code(word)) || (lo..hi).contains(&word);
            if !any_bp || kept_by_poisoned_walk {
                e.words[kept] = (addr, word);
                kept += 1;
            }
        }
        e.n_words = kept as u8;
    }
    Some(value)
}

//! The fast path: framehop with a per-thread rule cache, reading only this thread's stack.

use core::arch::asm;
use core::cell::RefCell;

use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64};
use framehop::{FrameAddress, MustNotAllocateDuringUnwind, Unwinder as _};

use crate::modules::{self, Unwinder};

/// framehop's per-thread state: the rule cache plus a preallocated DWARF evaluation context.
type Cache = CacheX86_64<MustNotAllocateDuringUnwind>;

/// The registers framehop needs, captured at one instruction.
#[derive(Clone, Copy)]
pub(crate) struct Regs {
    ip: u64,
    sp: u64,
    bp: u64,
}

impl Regs {
    /// The stack pointer and frame pointer.
    pub(crate) fn stack_regs(&self) -> (u64, u64) {
        (self.sp, self.bp)
    }

    /// The same registers with another frame pointer.
    pub(crate) fn with_bp(self, bp: u64) -> Regs {
        Regs { bp, ..self }
    }
}

/// Reads rip, rsp and rbp at this point of the function it is inlined into.
#[inline(always)]
pub(crate) fn capture_regs() -> Regs {
    let (ip, sp, bp): (u64, u64, u64);
    // SAFETY: only copies rip/rsp/rbp into output registers: no memory access, no stack
    // change, flags preserved. All three values describe the same instruction (the `mov`s
    // follow the `lea` inside one asm block, which the compiler cannot split).
    unsafe {
        asm!(
            "lea {ip}, [rip]",
            "mov {sp}, rsp",
            "mov {bp}, rbp",
            ip = out(reg) ip,
            sp = out(reg) sp,
            bp = out(reg) bp,
            options(nomem, nostack, preserves_flags),
        );
    }
    Regs { ip, sp, bp }
}

/// This thread's stack, as far as the unwinder is concerned.
#[derive(Clone, Copy)]
enum StackBounds {
    /// Not asked yet.
    Unknown,
    /// `/proc/self/maps` could not be read: the fast path is off for this thread.
    Unavailable,
    /// `[lo, hi)`: the whole stack mapping of this thread.
    Known { lo: u64, hi: u64 },
}

struct ThreadState {
    stack: StackBounds,
    /// Created on this thread's first unwind (allocates). A raw pointer, so
    /// that the thread-local has no destructor: the cache is freed only by
    /// [`release_thread_cache`], which the recorder calls with its guard set,
    /// never by a TLS destructor running outside it.
    cache: *mut Cache,
}

/// Frees this thread's framehop cache (the next unwind makes a new one).
/// Call it at thread exit, where allocations are not recorded.
pub(crate) fn release_thread_cache() {
    let _ = STATE.try_with(|state| {
        if let Ok(mut state) = state.try_borrow_mut() {
            let cache = std::mem::replace(&mut state.cache, core::ptr::null_mut());
            if !cache.is_null() {
                // SAFETY: made by Box::into_raw in `walk`, owned by this thread only.
                drop(unsafe { Box::from_raw(cache) });
            }
        }
    });
}

thread_local! {
    // `const` init and no destructor: no lazy-init closure, no TLS-destructor registration.
    static STATE: RefCell<ThreadState> = const {
        RefCell::new(ThreadState { stack: StackBounds::Unknown, cache: core::ptr::null_mut() })
    };
}

/// Unwinds from `regs` (captured in the caller, which must still be running), dropping the
/// first `skip` frames (frame 0 is `regs.ip`). `None` when the fast path cannot run: the
/// module list is being built by another thread, this thread is already inside the fast path
/// (reentrancy), its TLS is gone (thread exit), or `rsp` is not on this thread's stack.
#[inline]
pub(crate) fn walk(regs: Regs, skip: usize, out: &mut [u64]) -> Option<usize> {
    walk_logged(regs, skip, out, None, false)
}

/// [`walk`], recording every stack word the unwinder read into `log`.
#[inline]
pub(crate) fn walk_logged(
    regs: Regs,
    skip: usize,
    out: &mut [u64],
    log: Option<&mut WordLog>,
    poison_data: bool,
) -> Option<usize> {
    if out.is_empty() {
        return Some(0);
    }
    let modules = modules::current()?;
    STATE
        .try_with(|state| {
            let mut state = state.try_borrow_mut().ok()?;
            let state = &mut *state;
            let (lo, hi) = stack_bounds(&mut state.stack)?;
            if regs.sp < lo || regs.sp >= hi {
                return None;
            }
            if state.cache.is_null() {
                state.cache = Box::into_raw(Box::new(Cache::new_in()));
            }
            // SAFETY: non-null, made by Box::into_raw above, used only by this thread, and
            // the RefCell borrow keeps a nested call out.
            let cache = unsafe { &mut *state.cache };
            // Everything from the captured rsp up to the top of the stack belongs to frames
            // that are still live (the capturing frame and its callers): it is mapped and
            // does not change while we walk it.
            let poison = poison_data.then_some(modules);
            Some(unwind(
                &modules.unwinder,
                cache,
                regs,
                regs.sp,
                hi,
                skip,
                out,
                log,
                poison,
            ))
        })
        .ok()
        .flatten()
}

fn stack_bounds(stack: &mut StackBounds) -> Option<(u64, u64)> {
    match *stack {
        StackBounds::Known { lo, hi } => Some((lo, hi)),
        StackBounds::Unavailable => None,
        StackBounds::Unknown => {
            let bounds = query_stack_bounds();
            *stack = match bounds {
                Some((lo, hi)) => StackBounds::Known { lo, hi },
                None => StackBounds::Unavailable,
            };
            bounds
        }
    }
}

/// The current thread's stack mapping, read once per thread from `/proc/self/maps` with
/// plain system calls: never `pthread_getattr_np`, which holds a lock the interrupted
/// program may hold itself (see `stack_bounds.rs`).
#[cold]
fn query_stack_bounds() -> Option<(u64, u64)> {
    let (lo, hi) = crate::stack_bounds::query(capture_regs().sp)?;
    (lo < hi).then_some((lo, hi))
}

/// The stack words one walk read, in order: with the same registers and
/// the same words in memory, a walk gives the same frames.
pub(crate) struct WordLog {
    pub(crate) words: [(u64, u64); LOG_WORDS],
    pub(crate) len: usize,
    /// More words were read than fit.
    pub(crate) overflow: bool,
    /// The walk ended on a read outside the stack (not reproducible by a log).
    pub(crate) failed_read: bool,
    /// The stack the walk read, `[lo, hi)`.
    pub(crate) stack: (u64, u64),
}

/// Words a memoizable walk may read.
pub(crate) const LOG_WORDS: usize = 48;

impl WordLog {
    pub(crate) const fn new() -> Self {
        WordLog {
            words: [(0, 0); LOG_WORDS],
            len: 0,
            overflow: false,
            failed_read: false,
            stack: (0, 0),
        }
    }
}

/// The framehop walk proper. Reads only `[lo, hi)`.
#[allow(clippy::too_many_arguments)]
fn unwind(
    unwinder: &Unwinder,
    cache: &mut Cache,
    regs: Regs,
    lo: u64,
    hi: u64,
    mut skip: usize,
    out: &mut [u64],
    mut log: Option<&mut WordLog>,
    poison: Option<&modules::ModuleList>,
) -> usize {
    if let Some(log) = log.as_deref_mut() {
        log.stack = (lo, hi);
    }
    let mut read_stack = |addr: u64| -> Result<u64, ()> {
        if addr < lo || addr.checked_add(8).is_none_or(|end| end > hi) {
            if let Some(log) = log.as_deref_mut() {
                log.failed_read = true;
            }
            return Err(());
        }
        // SAFETY: `[lo, hi)` is the live part of this thread's stack (see `walk`): mapped and
        // readable, and the 8 bytes at `addr` lie inside it.
        let value = unsafe { core::ptr::read_unaligned(addr as *const u64) };
        if let Some(log) = log.as_deref_mut() {
            if log.len < LOG_WORDS {
                log.words[log.len] = (addr, value);
                log.len += 1;
            } else {
                log.overflow = true;
            }
        }
        // A poisoned walk sees 0 for every word that is neither a code
        // address nor an address on this stack (spilled data): see memo.rs.
        Ok(match poison {
            Some(modules) if !modules.is_code(value) && !(lo..hi).contains(&value) => 0,
            _ => value,
        })
    };
    if out.is_empty() {
        return 0;
    }
    let mut uregs = UnwindRegsX86_64::new(regs.ip, regs.sp, regs.bp);
    // Frame 0 is the captured instruction pointer itself.
    let mut frame = FrameAddress::from_instruction_pointer(regs.ip);
    let mut written = 0;
    if skip == 0 {
        out[0] = regs.ip;
        written = 1;
    } else {
        skip -= 1;
    }
    while written < out.len() {
        // Ok(None): framehop found the outermost frame; Err: it could not go on.
        let Ok(Some(ra)) = unwinder.unwind_frame(frame, &mut uregs, cache, &mut read_stack) else {
            break;
        };
        // A null return address also ends the stack.
        let Some(next) = FrameAddress::from_return_address(ra) else {
            break;
        };
        frame = next;
        if skip > 0 {
            skip -= 1;
            continue;
        }
        out[written] = ra;
        written += 1;
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hint::black_box;

    #[inline(never)]
    fn both() -> (Vec<u64>, Vec<u64>) {
        let mut a = [0u64; 64];
        let mut b = [0u64; 64];
        let na = crate::backtrace_libgcc(0, &mut a);
        let nb = crate::backtrace_fast(0, &mut b);
        black_box((&a, &b));
        (a[..na].to_vec(), b[..nb].to_vec())
    }

    #[test]
    fn fast_path_runs_and_agrees() {
        // Another test may be doing the lazy first build right now (then `walk` would say
        // None); after this call a list is published.
        crate::modules_changed();
        let (a, b) = both();
        assert!(a.len() > 2);
        assert_eq!(a, b);
        let mut out = [0u64; 8];
        let regs = capture_regs();
        assert!(walk(regs, 0, &mut out).is_some_and(|n| n > 2));
        // Frame 0 is `regs.ip` itself.
        assert_eq!(out[0], regs.ip);
    }

    #[test]
    fn nested_call_falls_back_to_libgcc() {
        let before = crate::fallback_count();
        let (a, b) = STATE.with(|state| {
            let _busy = state.borrow_mut();
            both()
        });
        assert!(a.len() > 2);
        assert_eq!(a, b);
        assert!(crate::fallback_count() > before);
    }

    #[test]
    fn stack_bounds_contain_rsp() {
        let regs = capture_regs();
        let (lo, hi) = query_stack_bounds().unwrap();
        assert!(
            lo < regs.sp && regs.sp < hi,
            "{lo:#x} {:#x} {hi:#x}",
            regs.sp
        );
    }
}

//! The reference unwinder: libgcc's `_Unwind_Backtrace` (linked by std on linux-gnu).

use core::ffi::{c_int, c_void};

/// `_Unwind_Reason_Code` values we use.
const URC_NO_REASON: c_int = 0;
const URC_END_OF_STACK: c_int = 5;

type TraceFn = extern "C" fn(ctx: *mut c_void, arg: *mut c_void) -> c_int;

extern "C" {
    fn _Unwind_Backtrace(trace: TraceFn, arg: *mut c_void) -> c_int;
    fn _Unwind_GetIP(ctx: *mut c_void) -> usize;
}

struct State<'a> {
    out: &'a mut [u64],
    written: usize,
    /// Frames still to skip; frame 0 is inside `walk`.
    skip: usize,
}

extern "C" fn trace(ctx: *mut c_void, arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `&mut State` that `walk` passed to `_Unwind_Backtrace`, which is
    // live and not otherwise accessed for the duration of that call; `ctx` is the context
    // libgcc hands to this callback, valid for the call.
    let (state, ip) = unsafe { (&mut *arg.cast::<State<'_>>(), _Unwind_GetIP(ctx) as u64) };
    if ip == 0 {
        return URC_END_OF_STACK;
    }
    if state.skip > 0 {
        state.skip -= 1;
        return URC_NO_REASON;
    }
    match state.out.get_mut(state.written) {
        Some(slot) => {
            *slot = ip;
            state.written += 1;
            if state.written == state.out.len() {
                URC_END_OF_STACK
            } else {
                URC_NO_REASON
            }
        }
        None => URC_END_OF_STACK,
    }
}

/// Walks the stack with libgcc. Frame 0 is the return address into `walk` itself (from
/// `_Unwind_Backtrace`), frame 1 the return address into `walk`'s caller, and so on; the
/// first `skip` frames are dropped.
#[inline(never)]
pub(crate) fn walk(skip: usize, out: &mut [u64]) -> usize {
    if out.is_empty() {
        return 0;
    }
    let mut state = State {
        out,
        written: 0,
        skip,
    };
    // SAFETY: `trace` matches libgcc's `_Unwind_Trace_Fn` ABI and only uses `arg` as the
    // `State` passed here, which outlives the call. The return code is irrelevant: whatever
    // stopped the walk, `state.written` frames are valid.
    unsafe {
        _Unwind_Backtrace(trace, (&raw mut state).cast::<c_void>());
    }
    core::hint::black_box(state.written)
}

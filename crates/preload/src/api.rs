//! Every interposed C function, each in the same order: begin recording
//! (which sets the reentrancy guard), call the real function, record, return.
//!
//! This file and `exec.rs` (the exec family and `syscall`) are the preload
//! ABI: the only places that export symbols.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::atomic::{AtomicUsize, Ordering};

use memtrace_recorder::plumbing::{Call, Func, Op};

use crate::libc_alloc::{
    __libc_calloc, __libc_free, __libc_malloc, __libc_memalign, __libc_pvalloc, __libc_realloc,
    __libc_valloc,
};

/// Usable size of a block returned by glibc.
#[inline(always)]
fn usable(ptr: *mut c_void) -> u64 {
    if ptr.is_null() {
        0
    } else {
        // SAFETY: ptr is a live block just returned by glibc's allocator.
        unsafe { libc::malloc_usable_size(ptr) as u64 }
    }
}

/// The page size (valloc and pvalloc align to it).
fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as u64 }
}

/// `malloc(3)`.
#[no_mangle]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    let call = Call::begin_or_start(Op::Alloc);
    // SAFETY: forwards the caller's argument to glibc.
    let ptr = unsafe { __libc_malloc(size) };
    if let Some(call) = call {
        call.alloc(Func::Malloc, ptr as u64, size as u64, usable(ptr), 0);
    }
    ptr
}

/// `calloc(3)`; an overflowing `n * size` returns NULL with ENOMEM, as glibc does.
#[no_mangle]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    let call = Call::begin_or_start(Op::Alloc);
    // SAFETY: forwards the caller's arguments to glibc, which checks overflow.
    let ptr = unsafe { __libc_calloc(n, size) };
    if let Some(call) = call {
        let total = n.saturating_mul(size) as u64;
        call.alloc(Func::Calloc, ptr as u64, total, usable(ptr), 0);
    }
    ptr
}

/// `realloc(3)`.
#[no_mangle]
pub unsafe extern "C" fn realloc(old: *mut c_void, size: usize) -> *mut c_void {
    let call = Call::begin_or_start(Op::Realloc);
    // SAFETY: forwards the caller's arguments to glibc.
    let ptr = unsafe { __libc_realloc(old, size) };
    if let Some(call) = call {
        call.realloc(
            Func::Realloc,
            old as u64,
            ptr as u64,
            size as u64,
            usable(ptr),
        );
    }
    ptr
}

/// `reallocarray(3)`: realloc with an overflow check on `n * size`.
#[no_mangle]
pub unsafe extern "C" fn reallocarray(old: *mut c_void, n: usize, size: usize) -> *mut c_void {
    let Some(total) = n.checked_mul(size) else {
        // SAFETY: sets this thread's errno.
        unsafe { *libc::__errno_location() = libc::ENOMEM };
        return std::ptr::null_mut();
    };
    let call = Call::begin_or_start(Op::Realloc);
    // SAFETY: forwards to glibc.
    let ptr = unsafe { __libc_realloc(old, total) };
    if let Some(call) = call {
        call.realloc(
            Func::ReallocArray,
            old as u64,
            ptr as u64,
            total as u64,
            usable(ptr),
        );
    }
    ptr
}

/// `free(3)`.
#[no_mangle]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    if ptr.is_null() {
        return;
    }
    let call = Call::begin_or_start(Op::Free);
    // SAFETY: forwards the caller's pointer to glibc.
    unsafe { __libc_free(ptr) };
    if let Some(call) = call {
        call.free(Func::Free, ptr as u64);
    }
}

/// `posix_memalign(3)`.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_power_of_two() || !align.is_multiple_of(std::mem::size_of::<*mut c_void>()) {
        return libc::EINVAL;
    }
    let call = Call::begin_or_start(Op::Alloc);
    // SAFETY: forwards to glibc with a valid alignment.
    let ptr = unsafe { __libc_memalign(align, size) };
    if let Some(call) = call {
        call.alloc(
            Func::PosixMemalign,
            ptr as u64,
            size as u64,
            usable(ptr),
            align as u64,
        );
    }
    if ptr.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: the caller passes a valid pointer to store the result in.
    unsafe { *out = ptr };
    0
}

/// `aligned_alloc(3)`.
#[no_mangle]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    let call = Call::begin_or_start(Op::Alloc);
    // SAFETY: forwards to glibc's memalign, which rounds an invalid alignment up.
    let ptr = unsafe { __libc_memalign(align, size) };
    if let Some(call) = call {
        call.alloc(
            Func::AlignedAlloc,
            ptr as u64,
            size as u64,
            usable(ptr),
            align as u64,
        );
    }
    ptr
}

/// `memalign(3)`.
#[no_mangle]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    let call = Call::begin_or_start(Op::Alloc);
    // SAFETY: forwards to glibc.
    let ptr = unsafe { __libc_memalign(align, size) };
    if let Some(call) = call {
        call.alloc(
            Func::Memalign,
            ptr as u64,
            size as u64,
            usable(ptr),
            align as u64,
        );
    }
    ptr
}

/// `valloc(3)`.
#[no_mangle]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    let call = Call::begin_or_start(Op::Alloc);
    // SAFETY: forwards to glibc.
    let ptr = unsafe { __libc_valloc(size) };
    if let Some(call) = call {
        call.alloc(
            Func::Valloc,
            ptr as u64,
            size as u64,
            usable(ptr),
            page_size(),
        );
    }
    ptr
}

/// `pvalloc(3)`.
#[no_mangle]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let call = Call::begin_or_start(Op::Alloc);
    // SAFETY: forwards to glibc.
    let ptr = unsafe { __libc_pvalloc(size) };
    if let Some(call) = call {
        call.alloc(
            Func::Pvalloc,
            ptr as u64,
            size as u64,
            usable(ptr),
            page_size(),
        );
    }
    ptr
}

type DlopenFn = unsafe extern "C" fn(*const c_char, c_int) -> *mut c_void;
type DlcloseFn = unsafe extern "C" fn(*mut c_void) -> c_int;
static REAL_DLOPEN: AtomicUsize = AtomicUsize::new(0);
static REAL_DLCLOSE: AtomicUsize = AtomicUsize::new(0);

/// The next definition of `name` after this library (the real one).
pub(crate) fn next_symbol(cache: &AtomicUsize, name: &CStr) -> usize {
    let mut f = cache.load(Ordering::Relaxed);
    if f == 0 {
        // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name.
        f = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
        cache.store(f, Ordering::Relaxed);
    }
    f
}

/// `dlopen(3)`: the new modules are added to the unwinder and the trace.
#[no_mangle]
pub unsafe extern "C" fn dlopen(file: *const c_char, mode: c_int) -> *mut c_void {
    let f = next_symbol(&REAL_DLOPEN, c"dlopen");
    if f == 0 {
        return std::ptr::null_mut();
    }
    // SAFETY: f is libc's dlopen, whose type is DlopenFn.
    let handle = unsafe { std::mem::transmute::<usize, DlopenFn>(f)(file, mode) };
    if !handle.is_null() {
        memtrace_recorder::modules_changed();
    }
    handle
}

/// `dlclose(3)`: the module list is refreshed after the close.
#[no_mangle]
pub unsafe extern "C" fn dlclose(handle: *mut c_void) -> c_int {
    let f = next_symbol(&REAL_DLCLOSE, c"dlclose");
    if f == 0 {
        return -1;
    }
    // SAFETY: f is libc's dlclose, whose type is DlcloseFn.
    let result = unsafe { std::mem::transmute::<usize, DlcloseFn>(f)(handle) };
    memtrace_recorder::modules_changed();
    result
}

/// `_exit(2)`: atexit handlers do not run, so the trace is finished here.
#[no_mangle]
pub extern "C" fn _exit(status: c_int) -> ! {
    memtrace_recorder::plumbing::finish();
    // SAFETY: exit_group ends the process; it does not return.
    unsafe {
        libc::syscall(libc::SYS_exit_group, status);
    }
    unreachable!("exit_group returned")
}

/// `_Exit(3)`: the same as `_exit`.
#[no_mangle]
pub extern "C" fn _Exit(status: c_int) -> ! {
    _exit(status)
}

/// `memtrace_phase("name")`: marks the start of a named phase from C or C++.
#[no_mangle]
pub unsafe extern "C" fn memtrace_phase(name: *const c_char) {
    if name.is_null() {
        return;
    }
    // SAFETY: the caller passes a NUL-terminated string.
    let name = unsafe { CStr::from_ptr(name) }.to_string_lossy();
    memtrace_recorder::phase(&name);
}

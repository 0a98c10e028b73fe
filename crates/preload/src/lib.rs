//! The memtrace `LD_PRELOAD` library.
//!
//! Interposes the C allocator (`malloc`, `calloc`, `realloc`,
//! `reallocarray`, `free`, `posix_memalign`, `aligned_alloc`, `memalign`,
//! `valloc`, `pvalloc`), `dlopen`/`dlclose` and `_exit`, and records each call
//! through `memtrace-recorder`; every exec function and `syscall` (`exec.rs`)
//! finish the trace before the image is replaced. C++ `new` and `delete` reach these through
//! libstdc++. The hooks forward to glibc's `__libc_*` entry points, so the
//! library needs no `dlsym` to find the real allocator, and its own Rust
//! allocations go there directly and are never recorded.
//!
//! Configured by environment variables (set by `memtrace run`):
//! `MEMTRACE_OUTPUT` (trace of this process; removed so that children use
//! default names), `MEMTRACE_DIR` (directory for default names),
//! `MEMTRACE_NO_FOLLOW=1` (remove the library from `LD_PRELOAD` so exec'd
//! children run untraced), `MEMTRACE_UNWIND=libgcc` (slow exact unwinder).
#![deny(missing_docs)]

// The unit-test harness of this crate must not interpose the C allocator
// nor start recording itself: it gets the library's own allocator only.
#[cfg(not(test))]
mod api;
#[cfg(not(test))]
mod exec;
#[cfg(not(test))]
mod init;
#[cfg(not(test))]
mod libc_alloc;
mod own_alloc;

/// The library's own allocations come from its own mappings: never through
/// the hooks, and never from the program's heap.
#[global_allocator]
static ALLOC: own_alloc::OwnAlloc = own_alloc::OwnAlloc;

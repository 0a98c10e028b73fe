//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::hint::black_box;

use memtrace_unwind::{backtrace_fast, backtrace_libgcc};

/// Room for any stack these tests build.
pub const MAX: usize = 256;

/// Both unwinders' results for one call site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub libgcc: Vec<u64>,
    pub fast: Vec<u64>,
}

impl Pair {
    /// Asserts that both paths agree and found a non-trivial stack.
    #[track_caller]
    pub fn assert_same(&self) {
        assert!(self.libgcc.len() >= 2, "libgcc found {:x?}", self.libgcc);
        assert_eq!(
            self.libgcc, self.fast,
            "libgcc (left) and framehop (right) disagree"
        );
    }
}

/// Calls both unwinders with `skip`; `out[0]` of each is the return address into the caller of
/// `capture`.
#[inline(never)]
pub fn capture(skip: usize) -> Pair {
    let mut a = [0u64; MAX];
    let mut b = [0u64; MAX];
    let na = backtrace_libgcc(skip, &mut a);
    let nb = backtrace_fast(skip, &mut b);
    black_box((&a, &b));
    Pair {
        libgcc: a[..na].to_vec(),
        fast: b[..nb].to_vec(),
    }
}

/// A non-tail-recursive chain of `depth + 1` frames of `recurse` above `capture`.
#[inline(never)]
pub fn recurse(depth: usize, skip: usize) -> Pair {
    let pair = if depth == 0 {
        capture(skip)
    } else {
        recurse(depth - 1, skip)
    };
    // Keeps the calls above out of tail position.
    black_box(&pair);
    pair
}

/// The chain of depths 1..=20, each checked for agreement and for the expected shape.
pub fn check_recursion_depths() {
    let recurse_addr = recurse as *const () as u64;
    for depth in 1..=20 {
        let pair = recurse(depth, 0);
        pair.assert_same();
        let s = &pair.fast;
        // s[0]: return into recurse(0) from capture; s[1..=depth]: returns into recurse from
        // recurse, all the same call site.
        assert!(s.len() > depth + 1, "depth {depth}: {s:x?}");
        for &ra in &s[..=depth] {
            assert!(
                ra > recurse_addr && ra - recurse_addr < 0x1000,
                "depth {depth}: {ra:#x} not inside recurse ({recurse_addr:#x})"
            );
        }
        assert_ne!(s[0], s[1]);
        assert!(s[1..=depth].iter().all(|&ra| ra == s[1]), "{s:x?}");
    }
}

/// One call site for `recurse(4, skip)`, whatever the caller's loop unrolling does.
#[inline(never)]
fn fixed_site(skip: usize) -> Pair {
    let pair = recurse(4, black_box(skip));
    black_box(&pair);
    pair
}

/// Same stack, different skips and truncations: results are suffixes / prefixes.
pub fn check_skip_and_truncation() {
    // Frames 0..=4 are in `recurse`, frame 5 in `fixed_site`; frame 6 (the return address into
    // this function) depends on how the loop below is compiled.
    const SAME: usize = 6;
    let full = fixed_site(0);
    full.assert_same();
    for skip in 0..SAME {
        let pair = fixed_site(skip);
        pair.assert_same();
        assert_eq!(
            pair.fast[..SAME - skip],
            full.fast[skip..SAME],
            "skip {skip}"
        );
    }
    let mut out = [0u64; 3];
    assert_eq!(memtrace_unwind::backtrace_fast(0, &mut out), 3);
    assert_eq!(memtrace_unwind::backtrace_libgcc(0, &mut out), 3);
    assert_eq!(memtrace_unwind::backtrace_fast(0, &mut []), 0);
    assert_eq!(memtrace_unwind::backtrace_libgcc(0, &mut []), 0);
    assert_eq!(memtrace_unwind::backtrace_fast(10_000, &mut out), 0);
    assert_eq!(memtrace_unwind::backtrace_libgcc(10_000, &mut out), 0);
}

/// Path name of the object containing `addr`, via dladdr.
pub fn object_of(addr: u64) -> String {
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only writes `info`.
    if unsafe { libc::dladdr(addr as *const libc::c_void, &mut info) } == 0
        || info.dli_fname.is_null()
    {
        return String::new();
    }
    // SAFETY: dli_fname is a NUL-terminated string owned by the loader.
    unsafe { std::ffi::CStr::from_ptr(info.dli_fname) }
        .to_string_lossy()
        .into_owned()
}

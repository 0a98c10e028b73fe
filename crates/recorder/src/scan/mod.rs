//! The exit-time reachability scan, inside the traced process and
//! conservative like LeakSanitizer's: every aligned word of the roots (the
//! writable segments of the loaded modules, each thread's stack from its
//! stack pointer up, its registers and its static thread-local storage) that
//! points into a live block marks it, and so on through the heap. The result
//! goes into the trace as a [`LeakScan`]; the classes (definitely,
//! indirectly, possibly lost, still reachable) and the cycles are worked out
//! from it by `memtrace leaks`.
//!
//! All of the recorder's `unsafe` reads of program memory are in `mark.rs`;
//! stopping the other threads is `stop.rs`.

mod mark;
mod roots;
mod stop;
mod verify;

use std::ops::Range;

use memtrace_format::{LeakScan, ScannedBlock};

use crate::clock::{monotonic_ns, ticks};
use crate::live::LiveBlocks;
use crate::memory::OrOom;

pub(crate) use stop::other_threads;

/// Where the exiting thread stood when it entered the recorder.
pub(crate) struct ExitContext {
    /// A stack address in the recorder's first frame: the program's frames
    /// lie above it.
    pub sp: u64,
    /// The callee-saved registers at that moment.
    pub registers: [u64; 6],
}

impl ExitContext {
    /// Captures the calling frame's stack address and callee-saved registers.
    #[inline(always)]
    pub fn capture() -> ExitContext {
        let marker = 0u64;
        ExitContext {
            sp: std::ptr::addr_of!(marker) as u64,
            registers: callee_saved_registers(),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn callee_saved_registers() -> [u64; 6] {
    let r: [u64; 6];
    // SAFETY: only copies registers into outputs; no memory is touched.
    unsafe {
        let (a, b, c, d, e, f): (u64, u64, u64, u64, u64, u64);
        std::arch::asm!(
            "mov {a}, rbx", "mov {b}, rbp", "mov {c}, r12",
            "mov {d}, r13", "mov {e}, r14", "mov {f}, r15",
            a = out(reg) a, b = out(reg) b, c = out(reg) c,
            d = out(reg) d, e = out(reg) e, f = out(reg) f,
            options(nomem, nostack, preserves_flags),
        );
        r = [a, b, c, d, e, f];
    }
    r
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn callee_saved_registers() -> [u64; 6] {
    [0; 6]
}

/// Scans the heap of this process. `skip_tids`: the recorder's own threads
/// (the writer), whose stacks hold event data, not program pointers;
/// `skip_stacks`: an address on each of their stacks.
/// `scan_managed`: also scan anonymous mappings the program manages itself
/// (only when the recorder's own memory is known: the preload library).
///
/// Fails, scanning nothing, when `/proc/self/maps` or `/proc/self/task`
/// cannot be read: without them every block would look lost, or when the
/// memory for the scan's tables (about 100 bytes a live block) cannot be
/// had (an error of kind `OutOfMemory`).
pub(crate) fn scan(
    live: &LiveBlocks,
    exit: &ExitContext,
    skip_tids: &[i32],
    skip_stacks: &[u64],
    scan_managed: bool,
) -> std::io::Result<LeakScan> {
    let started_ns = monotonic_ns();
    let ts = ticks();
    let blocks = live.sorted().or_oom()?;
    let sizes = crate::memory::try_collect(blocks.iter().map(|(a, b)| (*a, b.size))).or_oom()?;
    let mut marker = mark::Marker::new(&sizes).or_oom()?;
    drop(sizes);
    marker.ignore_stale(live.recently_freed().or_oom()?);

    // Everything that allocates or takes the loader's lock happens now,
    // before other threads are stopped.
    let own_code = scan as *const () as u64;
    let modules = roots::module_roots(own_code);
    let maps = roots::readable_mappings()
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot read /proc/self/maps: {e}")))?;
    let own = crate::own_memory::own_mappings();
    // The Rust front end's own buffers come from the program's allocator,
    // untracked: only the preload library can tell its memory apart.
    let managed = if scan_managed {
        roots::program_managed(&maps, &own, &|r| marker.gaps(r))
    } else {
        Vec::new()
    };
    // SAFETY: gettid has no preconditions.
    let me = unsafe { libc::gettid() };
    let mut skip = skip_tids.to_vec();
    skip.push(me);
    let tids = other_threads(&skip)
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot list /proc/self/task: {e}")))?;
    let mut ranges: Vec<Range<u64>> = Vec::new();
    for segment in &modules.segments {
        roots::push_clamped(&maps, segment.clone(), &mut ranges);
    }
    // The modules' data come first in `ranges` and keep their places.
    let n_before_managed = ranges.len();
    for range in &managed {
        roots::push_clamped(&maps, range.clone(), &mut ranges);
    }
    let mut allocator_ranges: Vec<Range<u64>> = Vec::new();
    for segment in &modules.allocator_segments {
        roots::push_clamped(&maps, segment.clone(), &mut allocator_ranges);
    }
    // Room for every thread's ranges, so that nothing grows while stopped.
    ranges.reserve((tids.len() + 1) * (modules.tls.len() + 2) * 4 + 64);
    let contexts = Vec::with_capacity(tids.len());

    let stopped = stop::stop(&tids, contexts);
    // A managed mapping that holds a stopped thread's stack pointer is a
    // stack (one without a guard page): scanned from the pointer up instead.
    let mut k = n_before_managed;
    while k < ranges.len() {
        let r = &ranges[k];
        let is_stack = stopped.threads.iter().any(|t| r.contains(&t.sp))
            || skip_stacks.iter().any(|sp| r.contains(sp));
        if is_stack || r.contains(&exit.sp) {
            ranges.swap_remove(k);
        } else {
            k += 1;
        }
    }
    let own_tp = roots::thread_pointer();
    let stacks =
        std::iter::once((exit.sp, own_tp)).chain(stopped.threads.iter().map(|t| (t.sp, t.tp)));
    let mut n_threads = 0u32;
    for (sp, tp) in stacks {
        if let Some(m) = roots::mapping_of(&maps, sp) {
            roots::push_clamped(&maps, sp..m.end, &mut ranges);
            n_threads += 1;
        }
        if tp != 0 {
            for &(offset, size) in &modules.tls {
                let start = tp.wrapping_sub(offset);
                roots::push_clamped(&maps, start..start + size, &mut ranges);
            }
            roots::push_clamped(&maps, tp..tp + roots::TCB_BYTES, &mut ranges);
        }
    }
    let root_bytes: u64 = ranges
        .iter()
        .chain(&allocator_ranges)
        .map(|r| r.end - r.start)
        .sum::<u64>()
        + 8 * exit.registers.len() as u64;
    marker.scan_values(&exit.registers);
    for (k, range) in ranges.into_iter().enumerate() {
        if k < n_before_managed {
            marker.scan_data_root(range);
        } else {
            marker.scan_root(range);
        }
    }
    for range in allocator_ranges {
        marker.scan_allocator_root(range);
    }
    let n_missed = stopped.n_missed;
    drop(stopped);

    // Lost blocks are referenced by nobody: the other threads may run again.
    let edges = marker.unreached_edges().or_oom()?;
    if std::env::var_os("MEMTRACE_LEAK_SCAN_VERIFY").is_some_and(|v| v != "0") {
        verify::report(&marker, &own, skip_stacks);
    }
    let scanned =
        crate::memory::try_collect(blocks.iter().zip(&marker.reach).map(|((addr, b), &reach)| {
            ScannedBlock {
                addr: *addr,
                size: b.size,
                stack: b.stack,
                reach,
            }
        }))
        .or_oom()?;
    Ok(LeakScan {
        ts,
        duration_ns: monotonic_ns().saturating_sub(started_ns),
        root_bytes,
        heap_bytes: marker.heap_bytes,
        n_threads,
        n_threads_unscanned: n_missed,
        blocks: scanned,
        edges,
    })
}

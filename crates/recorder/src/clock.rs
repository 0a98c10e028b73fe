//! The event clock: the invariant TSC where the CPU has one, else CLOCK_MONOTONIC.

use std::sync::atomic::{AtomicU8, Ordering};

use memtrace_format::TickSource;

const UNKNOWN: u8 = 0;
const TSC: u8 = 1;
const MONOTONIC: u8 = 2;
static SOURCE: AtomicU8 = AtomicU8::new(UNKNOWN);

/// Which clock [`ticks`] reads.
pub(crate) fn source() -> TickSource {
    match SOURCE.load(Ordering::Relaxed) {
        TSC => TickSource::Tsc,
        MONOTONIC => TickSource::MonotonicNs,
        _ => {
            let chosen = if invariant_tsc() { TSC } else { MONOTONIC };
            SOURCE.store(chosen, Ordering::Relaxed);
            source()
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn invariant_tsc() -> bool {
    // CPUID leaf 0x8000_0007, EDX bit 8: the TSC runs at a constant rate in
    // every power state, and is synchronized across cores.
    let max_ext = std::arch::x86_64::__cpuid(0x8000_0000).eax;
    max_ext >= 0x8000_0007 && std::arch::x86_64::__cpuid(0x8000_0007).edx & (1 << 8) != 0
}

#[cfg(not(target_arch = "x86_64"))]
fn invariant_tsc() -> bool {
    false
}

/// The current time in ticks.
///
/// Plain `rdtsc`, not the serializing `rdtscp`: on virtual machines the
/// latter costs twice as much (25 ns against 12 ns here), and a heap call
/// reads the clock twice. The price is that the CPU may execute the read a
/// few instructions early or late. Two threads' events are ordered by these
/// timestamps, so a block freed by one thread and handed out again to
/// another within those few nanoseconds could sort in the wrong order; the
/// allocator's own locking and per-thread caches make that window far
/// longer than the skew in practice.
#[inline(always)]
pub(crate) fn ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    if SOURCE.load(Ordering::Relaxed) == TSC {
        // SAFETY: rdtsc is available whenever SOURCE is TSC (checked by cpuid).
        return unsafe { std::arch::x86_64::_rdtsc() };
    }
    monotonic_ns()
}

/// Makes the next [`ticks`] wait until every earlier instruction has
/// completed (`lfence`; with a locked store or `mfence` before it, until
/// earlier stores are globally visible too). `rdtsc` is not ordered by
/// memory fences, and may otherwise execute before them. A no-op for
/// `CLOCK_MONOTONIC`, a system call or vDSO read that orders itself.
#[inline(always)]
pub(crate) fn fence_before_read() {
    #[cfg(target_arch = "x86_64")]
    if SOURCE.load(Ordering::Relaxed) == TSC {
        // SAFETY: lfence is part of SSE2, which every x86_64 CPU has.
        unsafe { std::arch::x86_64::_mm_lfence() };
    }
}

/// Makes the last [`ticks`] complete before any later instruction, memory
/// loads included (`lfence` after `rdtsc`).
#[inline(always)]
pub(crate) fn fence_after_read() {
    fence_before_read();
}

/// `CLOCK_MONOTONIC` in nanoseconds.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `CLOCK_REALTIME` in nanoseconds since the epoch.
pub(crate) fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

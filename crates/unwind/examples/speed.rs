//! Nanoseconds per stack for both unwinders at a fixed depth.
//!
//! `cargo run --release -p memtrace-unwind --example speed [frames] [iterations]`
//!
//! The call chain is deeper than `frames`, and `out` holds `frames` addresses, so every call
//! walks exactly `frames` frames (plus the two skipped ones inside the unwinder).

use std::hint::black_box;
use std::time::Instant;

use memtrace_unwind::{backtrace_fast, backtrace_libgcc, fallback_count};

type Unwind = fn(usize, &mut [u64]) -> usize;

#[inline(never)]
fn chain(n: usize, f: Unwind, out: &mut [u64]) -> usize {
    let r = if n == 0 {
        f(0, out)
    } else {
        chain(n - 1, f, out)
    };
    black_box(r)
}

/// This thread's CPU time in ns (not counting time other processes had the CPU).
fn thread_cpu_ns() -> u128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes `ts` only.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

/// Runs `iterations` stacks of `frames` with `f`; returns (wall, thread CPU) ns per stack.
fn measure(f: Unwind, frames: usize, iterations: u32) -> (f64, f64) {
    let mut out = vec![0u64; frames];
    assert_eq!(chain(frames + 4, f, &mut out), frames);
    let start = Instant::now();
    let cpu_start = thread_cpu_ns();
    for _ in 0..iterations {
        chain(frames + 4, f, black_box(&mut out));
    }
    let cpu = (thread_cpu_ns() - cpu_start) as f64;
    let wall = start.elapsed().as_nanos() as f64;
    let n = f64::from(iterations);
    (wall / n, cpu / n)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let frames: usize = args.next().map_or(12, |a| a.parse().expect("frames"));
    let iterations: u32 = args
        .next()
        .map_or(200_000, |a| a.parse().expect("iterations"));

    // Same answers from both, first (this is the main thread).
    let mut a = vec![0u64; frames];
    let mut b = vec![0u64; frames];
    assert_eq!(
        chain(frames + 4, backtrace_libgcc, &mut a),
        chain(frames + 4, backtrace_fast, &mut b)
    );
    // Different call sites for the two closures above only differ below `chain`.
    assert_eq!(a[..frames - 1], b[..frames - 1]);

    println!("ns per {frames}-frame stack (wall / thread CPU time)");
    for round in 0..5 {
        let (fast, fast_cpu) = measure(backtrace_fast, frames, iterations);
        let (slow, slow_cpu) = measure(backtrace_libgcc, frames, iterations / 10);
        println!(
            "round {round}: fast (framehop) {fast:6.1} / {fast_cpu:6.1}   \
             libgcc {slow:7.1} / {slow_cpu:7.1}   ratio {:.1}x",
            slow_cpu / fast_cpu
        );
    }
    // The chain is deep enough that the fast path never ran out of stack or fell back.
    assert_eq!(fallback_count(), 0);
}

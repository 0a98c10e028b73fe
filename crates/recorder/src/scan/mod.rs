//! The exit-time reachability scan, inside the traced process and
//! conservative like LeakSanitizer's: every aligned word of the roots (the
//! writable segments of the loaded modules, each thread's stack from its
//! stack pointer up, its registers and its static thread-local storage) that
//! points into a live block marks it, and so on through the heap. The result
//! goes into the trace as a [`LeakScan`]; the classes (definitely,
//! indirectly, possibly lost, still reachable) and the cycles are worked out
//! from it by `memtrace leaks`.
//!
//! # The scan cannot hurt the program
//! * Program memory is read only through `read.rs` (`process_vm_readv`, or
//!   a pipe): an address unmapped meanwhile is an error, counted, never a
//!   signal.
//! * Every other thread stays stopped (`stop.rs`) from before the live
//!   blocks are settled until the last read, the pointers between lost
//!   blocks included; the heap calls they made since the writer's last
//!   drain are applied first (`ScanInput::undrained`), so the blocks
//!   scanned are the blocks live at the stop.
//! * Nothing allocates while they are stopped (a stopped thread may hold
//!   the allocator's lock: glibc's for the Rust front end, and in the
//!   preload library the recorder's own allocator, whose class locks a
//!   thread stopped inside a hook may hold): every buffer is sized
//!   before, and what does not fit makes the scan incomplete instead.
//! * A scan that cannot vouch for its result says so ([`Incomplete`]):
//!   its time budget (`MEMTRACE_LEAK_SCAN_BUDGET_MS`, default 10 000)
//!   ran out, a stopped thread gave up waiting, a thread could not be
//!   stopped or woke, calls or edges did not fit.

mod mark;
mod read;
mod roots;
mod stop;
mod verify;

use std::io;

use memtrace_format::{Incomplete, LeakScan, ScannedBlock, ThreadItem};

use crate::clock::{monotonic_ns, ticks};
use crate::live::LiveBlocks;
use crate::memory::{try_with_capacity, OrOom};

/// Heap calls made between the writer's last drain and the stop that the
/// scan can take into account; more make it incomplete.
const LATE_CALLS: usize = 1 << 16;

/// The scan's time budget when `MEMTRACE_LEAK_SCAN_BUDGET_MS` does not
/// say: far above the half second a million live blocks take.
const DEFAULT_BUDGET_MS: u64 = 10_000;

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

/// Where [`ScanInput::undrained`] hands the items.
pub(crate) type ItemSink<'a> = &'a mut dyn FnMut(&ThreadItem);

/// What the scan works from.
pub(crate) struct ScanInput<'a> {
    /// The writer's table of live blocks, as of its last drain.
    pub live: &'a mut LiveBlocks,
    /// Where the exiting thread stood.
    pub exit: &'a ExitContext,
    /// The recorder's own threads (the writer), whose stacks hold event
    /// data, not program pointers: neither stopped nor scanned.
    pub skip_tids: &'a [i32],
    /// An address on each of their stacks.
    pub skip_stacks: &'a [u64],
    /// Also scan anonymous mappings the program manages itself (only when
    /// the recorder's own memory is known: the preload library).
    pub scan_managed: bool,
    /// Hands each item recorded since the last drain to the callback;
    /// false when some could not be seen. Called while the other threads
    /// are stopped: it must neither allocate nor wait for a lock.
    pub undrained: &'a dyn Fn(ItemSink) -> bool,
    /// Called right before the other threads are released.
    pub before_release: &'a dyn Fn(),
}

/// The scan's time budget in nanoseconds (`MEMTRACE_LEAK_SCAN_BUDGET_MS`).
fn budget_ns() -> u64 {
    std::env::var("MEMTRACE_LEAK_SCAN_BUDGET_MS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(DEFAULT_BUDGET_MS)
        .saturating_mul(1_000_000)
}

/// Scans the heap of this process.
///
/// Fails, scanning nothing and stopping no thread, when `/proc/self/maps`
/// or `/proc/self/task` cannot be read (without them every block would
/// look lost), when no way to read memory safely works, or when the
/// memory for the scan's tables (about 130 bytes a live block) cannot be
/// had (an error of kind `OutOfMemory`).
pub(crate) fn scan(input: ScanInput) -> io::Result<LeakScan> {
    let started_ns = monotonic_ns();
    let ts = ticks();
    let budget_ns = budget_ns();

    // Everything that allocates, or takes the loader's lock, happens now,
    // before the other threads are stopped.
    let mut rd = read::MemReader::new()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot read memory safely: {e}")))?;
    let own_code = scan as *const () as u64;
    let modules = roots::module_roots(own_code);
    let maps_before = roots::readable_mappings()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot read /proc/self/maps: {e}")))?;
    let mut maps = roots::MapsBuffer::for_maps_like(&maps_before).or_oom()?;
    let me = crate::thread::gettid();
    let mut skip = input.skip_tids.to_vec();
    skip.push(me);
    stop::list_threads(&skip, &mut Vec::new())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot list /proc/self/task: {e}")))?;
    let room = stop::Room::new().or_oom()?;
    let live = input.live;
    let capacity = live.len() + LATE_CALLS;
    if !live.reserve(LATE_CALLS) {
        return Err(crate::memory::out_of_memory());
    }
    let mut blocks = try_with_capacity(capacity).or_oom()?;
    let mut marker = mark::Marker::with_capacity(capacity).or_oom()?;
    // Without memory for it, no pointer is taken for stale (not a reason
    // to give up the scan).
    marker.ignore_stale(live.recently_freed().unwrap_or_default());
    let mut edges = try_with_capacity(2 * capacity + 1024).or_oom()?;
    let mut own_ranges = try_with_capacity(crate::own_memory::MAX_RANGES).or_oom()?;

    let stopped = stop::stop(&skip, room, budget_ns.saturating_add(stop::HOLD_MARGIN_NS));
    marker.set_deadline(monotonic_ns().saturating_add(budget_ns));

    let mut incomplete = 0u32;
    let mut flag = |reason: Incomplete| incomplete |= reason.bit();

    // The blocks live at the stop: the table, and the calls since.
    let mut n_applied = 0;
    let mut n_missed_calls = 0;
    let seen_all = (input.undrained)(&mut |item| {
        if matches!(item, ThreadItem::Heap(_)) {
            if n_applied < LATE_CALLS && live.apply(item) {
                n_applied += 1;
            } else {
                n_missed_calls += 1;
            }
        }
    });
    if !seen_all || n_missed_calls > 0 || !live.sorted_into(&mut blocks) {
        flag(Incomplete::CallsMissed);
    }
    marker.load(blocks.iter().map(|(addr, b)| (*addr, b.size)));
    // A block that lies in the recorder's memory was freed and unmapped by
    // a thread stopped before it recorded the free: its words are not read.
    crate::own_memory::own_ranges_into(&mut own_ranges);
    marker.leave_out_blocks_in(&own_ranges);
    let maps_now: &[roots::Mapping] = if maps.reread() {
        &maps.maps
    } else {
        flag(Incomplete::MapsStale);
        &maps_before
    };

    let mut root_bytes = 8 * input.exit.registers.len() as u64;
    marker.scan_values(&mut rd, &input.exit.registers);
    for segment in &modules.segments {
        roots::for_each_clamped(maps_now, segment.clone(), |r| {
            root_bytes += r.end - r.start;
            marker.scan_data_root(&mut rd, r);
        });
    }
    for segment in &modules.allocator_segments {
        roots::for_each_clamped(maps_now, segment.clone(), |r| {
            root_bytes += r.end - r.start;
            marker.scan_allocator_root(&mut rd, r);
        });
    }
    let own_tp = roots::thread_pointer();
    let stacks = std::iter::once((input.exit.sp, own_tp, None))
        .chain(stopped.threads.iter().map(|t| (t.sp, t.tp, None)))
        .chain(stopped.sleepers.iter().map(|s| (s.sp, 0, Some(s.args))));
    let mut n_threads = 0u32;
    for (sp, tp, args) in stacks {
        if let Some(args) = args {
            root_bytes += 8 * args.len() as u64;
            marker.scan_values(&mut rd, &args);
        }
        if let Some(m) = roots::mapping_of(maps_now, sp) {
            roots::for_each_clamped(maps_now, sp..m.end, |r| {
                root_bytes += r.end - r.start;
                marker.scan_root(&mut rd, r);
            });
            n_threads += 1;
        }
        if tp != 0 {
            for &(offset, size) in &modules.tls {
                let start = tp.wrapping_sub(offset);
                roots::for_each_clamped(maps_now, start..start + size, |r| {
                    root_bytes += r.end - r.start;
                    marker.scan_root(&mut rd, r);
                });
            }
            roots::for_each_clamped(maps_now, tp..tp + roots::TCB_BYTES, |r| {
                root_bytes += r.end - r.start;
                marker.scan_root(&mut rd, r);
            });
        }
    }
    if input.scan_managed {
        // A managed mapping that holds a thread's stack pointer is a stack
        // (one without a guard page), scanned from the pointer up above.
        let sps = std::iter::once(input.exit.sp)
            .chain(stopped.threads.iter().map(|t| t.sp))
            .chain(stopped.sleepers.iter().map(|s| s.sp))
            .chain(input.skip_stacks.iter().copied());
        let is_stack = |m: &roots::Mapping| sps.clone().any(|sp| (m.start..m.end).contains(&sp));
        // The recorder's own ranges and the module segments (scanned above
        // with their own rules) are cut out of each gap.
        let left_out = [
            &own_ranges[..],
            &modules.segments[..],
            &modules.allocator_segments[..],
        ];
        for m in maps_now {
            if is_stack(m) || !roots::is_program_managed(m, &mut rd) {
                continue;
            }
            let mut rest = m.start..m.end;
            while let Some(gap) = marker.first_gap(rest.clone()) {
                rest.start = gap.end;
                roots::for_each_part_outside(gap, &left_out, |part| {
                    root_bytes += part.end - part.start;
                    marker.scan_root(&mut rd, part);
                });
            }
        }
    }
    if !marker.unreached_edges(&mut rd, &mut edges) {
        flag(Incomplete::EdgesOverflow);
    }

    // The last read is done: what happened meanwhile decides whether the
    // result holds.
    let held = stopped.held();
    if marker.out_of_time {
        flag(Incomplete::TimeBudget);
    }
    if rd.n_failed > 0 {
        flag(Incomplete::ReadFailed);
    }
    if held.n_gave_up > 0 {
        flag(Incomplete::ThreadResumed);
    }
    if held.n_woke > 0 {
        flag(Incomplete::ThreadWoke);
    }
    if stopped.n_missed > 0 {
        flag(Incomplete::ThreadNotStopped);
    }
    let n_threads_unscanned = stopped.n_missed;

    (input.before_release)();
    drop(stopped);

    if std::env::var_os("MEMTRACE_LEAK_SCAN_VERIFY").is_some_and(|v| v != "0") {
        verify::report(&marker, &mut rd, input.skip_stacks);
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
        n_threads_unscanned,
        incomplete,
        n_unreadable: rd.n_unreadable,
        blocks: scanned,
        edges,
    })
}

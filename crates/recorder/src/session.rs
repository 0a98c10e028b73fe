//! The recording session: configuration, the trace file, the writer thread,
//! draining the rings, `fork` and the end of the process.
//!
//! # Ordering across threads
//! Threads push into their own rings; the writer drains them in turns and
//! writes a watermark `W` after each turn: every item with a timestamp below
//! `W` has been written. The reader merges threads by timestamp up to `W`.
//! A thread sets its ring's `in_flight` to the timestamp of its last item
//! (a lower bound for the next) *before* reading the clock, and resets it
//! after pushing. The writer reads the clock (`T`), makes every thread's
//! stores visible (`membarrier`, or SeqCst stores where that is missing),
//! then takes `W = min(T, every in_flight)` and drains. An item not drained
//! then has its timestamp above `W`.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use memtrace_format::{
    ClockSync, Codec, Module, Phase, RecorderKind, StackId, ThreadItem, Trailer, Writer,
    WriterBuffers,
};

use crate::clock::{self, monotonic_ns, ticks};
use crate::intern::{self, INTERNER};
use crate::live::LiveBlocks;
use crate::memory;
use crate::modules::loaded_modules;
use crate::output;
use crate::pace::Pace;
use crate::ring::Producer;
use crate::scan::{self, ExitContext};
use crate::sink::TraceFile;
use crate::spin::SpinLock;
use crate::thread::{self, ThreadRing, ThreadState, REGISTRY};

/// Where and how to record.
#[derive(Debug, Clone)]
pub struct Config {
    /// The trace file for this process; `None` picks
    /// `DIR/memtrace.<program>.<pid>.trace`.
    pub output: Option<PathBuf>,
    /// Directory for default-named traces (this process's children too).
    pub dir: PathBuf,
    /// Which recorder this is.
    pub recorder: RecorderKind,
    /// Start a writer thread (otherwise threads drain their rings themselves).
    pub writer_thread: bool,
    /// Programs this one executes are traced too (the preload library stays
    /// in their environment).
    pub follow_exec: bool,
}

// Recording while the low bit is set: ON, and FINISHING, the exit-time
// leak scan's time of stopping the other threads (their heap calls are
// still recorded, so that the scan sees the heap they leave).
const OFF: u8 = 0;
const ON: u8 = 1;
const DONE: u8 = 2;
const FINISHING: u8 = 3;
static STATE: AtomicU8 = AtomicU8::new(OFF);
static CONFIG: SpinLock<Option<Config>> = SpinLock::new(None);
static WRITER: SpinLock<Option<WriterState>> = SpinLock::new(None);
static SIDE: SpinLock<Vec<Side>> = SpinLock::new(Vec::new());
static KNOWN_MODULES: SpinLock<Vec<(String, u64)>> = SpinLock::new(Vec::new());
/// True once the writer thread runs (woken through `wake`).
static WRITER_RUNNING: AtomicBool = AtomicBool::new(false);
static STOP_WRITER: AtomicBool = AtomicBool::new(false);
static SEQCST_IN_FLIGHT: AtomicBool = AtomicBool::new(true);
/// The process whose trace the session's state belongs to. A child made by
/// `vfork` (which shares our memory) or by a raw `clone` (which runs no
/// `pthread_atfork` handler) has another pid and must not touch that state.
static SESSION_PID: AtomicU32 = AtomicU32::new(0);
/// The writer thread's id: its stack holds event data, which the leak scan
/// must not take for the program's pointers.
static WRITER_TID: AtomicI32 = AtomicI32::new(0);
/// An address on the writer thread's stack, whose mapping the leak scan
/// must not take for memory the program manages.
static WRITER_STACK: AtomicU64 = AtomicU64::new(0);

fn getpid() -> u32 {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() as u32 }
}

/// False in a child that shares or copied our state without the fork
/// handlers: a `vfork` child about to `exec`, or a raw `clone`.
fn in_session_process() -> bool {
    getpid() == SESSION_PID.load(Ordering::Relaxed)
}

/// Records that are not per-thread heap events.
enum Side {
    Module(u64, Module),
    ModuleGone(u64, u64),
    Phase(Phase),
    Note(String),
}

/// The writer's state. The file is created when recording starts (see
/// [`start`]), or in a forked child when its writer thread starts.
struct WriterState {
    writer: Option<Writer<TraceFile>>,
    /// The trailer was written (or writing stopped): no file is created again.
    ended: bool,
    /// The compression chosen for the trace (MEMTRACE_COMPRESSION).
    codec: Codec,
    /// Write uncompressed blocks while the writer falls behind (unless
    /// MEMTRACE_COMPRESSION asked for a level explicitly).
    adaptive: bool,
    /// `RING_FULL_STALLS` as the last turn saw it.
    stalls_seen: u64,
    /// Whether this turn can afford compression.
    pace: Pace,
    path: Option<PathBuf>,
    failed: bool,
    n_events: u64,
    n_threads: u64,
    last_sync_ns: u64,
    last_seal_ns: u64,
    last_maps_ns: u64,
    last_regions: Vec<memtrace_format::Region>,
    /// The blocks live now, for the exit-time scan (unless MEMTRACE_LEAK_SCAN=0).
    live: Option<LiveBlocks>,
    /// The writer's buffers, taken while memory is there (see `memory`),
    /// until the trace file is created.
    buffers: Option<WriterBuffers>,
    /// The stack nodes of a turn; this buffer and the trie's pending one
    /// trade places each turn, so both keep their room
    /// (`Interner::take_pending_into`).
    stack_nodes: Vec<(StackId, u64)>,
}

impl WriterState {
    fn new() -> Self {
        WriterState {
            writer: None,
            ended: false,
            codec: Codec::Zstd(1),
            adaptive: std::env::var_os("MEMTRACE_COMPRESSION").is_none(),
            stalls_seen: 0,
            pace: Pace::default(),
            path: None,
            failed: false,
            n_events: 0,
            n_threads: 0,
            last_sync_ns: 0,
            last_seal_ns: 0,
            last_maps_ns: 0,
            last_regions: Vec::new(),
            live: crate::leak_scan_enabled().then(LiveBlocks::default),
            buffers: WriterBuffers::try_new(),
            stack_nodes: {
                let mut nodes = Vec::new();
                // Without the memory, the trie's own buffer grows as needed.
                let _ = nodes.try_reserve(STACK_NODE_ROOM);
                nodes
            },
        }
    }
}

/// Stack nodes the two node buffers have room for from the start (16 KiB
/// each): more new nodes than this in one turn grow them.
const STACK_NODE_ROOM: usize = 1024;

/// True while events are being recorded.
#[inline(always)]
pub(crate) fn is_recording() -> bool {
    STATE.load(Ordering::Relaxed) & ON != 0
}

/// Starts recording with `config`. Only the first configuration counts.
/// Recording may already run (see [`start_early`]): the configuration then
/// applies from now on.
///
/// The trace file is created here, with its header written, before the
/// program's `main`: a program that lowers `RLIMIT_NOFILE` as its first act,
/// or is killed at once, still leaves a readable trace. When the file cannot
/// be created, one line on stderr says why and recording stops.
pub fn start(config: Config) {
    let nested = !thread::enter();
    let spawn = config.writer_thread;
    {
        let mut slot = CONFIG.lock();
        if slot.is_none() {
            *slot = Some(config);
        }
    }
    activate();
    if is_recording() {
        if let Some(ws) = WRITER.lock().as_mut() {
            let _ = create_trace(ws);
        }
    }
    if spawn && !WRITER_RUNNING.load(Ordering::Acquire) && is_recording() {
        spawn_writer();
    }
    if !nested {
        thread::leave();
    }
}

/// Starts recording before the configuration is known: the preload
/// library's hooks run before its constructor when other libraries'
/// constructors allocate (libstdc++'s exception pool, for one). Events wait
/// in the rings until [`start`] gives the output and starts the writer.
pub fn start_early() {
    let nested = !thread::enter();
    activate();
    if !nested {
        thread::leave();
    }
}

/// Stops recording for good and forgets what was recorded (the process
/// asked for no trace, e.g. `MEMTRACE_DISABLE=1`, after recording had begun).
pub fn abandon() {
    let nested = !thread::enter();
    STATE.store(DONE, Ordering::Release);
    for ring in REGISTRY.lock().drain(..) {
        ring.discard();
    }
    *WRITER.lock() = None;
    if !nested {
        thread::leave();
    }
}

static ACTIVATED: AtomicBool = AtomicBool::new(false);

/// Everything recording needs except the configuration and the writer: done once.
fn activate() {
    if ACTIVATED.swap(true, Ordering::AcqRel) {
        return;
    }
    SESSION_PID.store(getpid(), Ordering::Relaxed);
    clock::source();
    SEQCST_IN_FLIGHT.store(!register_membarrier(), Ordering::Relaxed);
    *WRITER.lock() = Some(WriterState::new());
    // SAFETY: registers plain extern "C" functions of this crate.
    unsafe {
        libc::pthread_atfork(
            Some(before_fork),
            Some(after_fork_parent),
            Some(after_fork_child),
        );
        libc::atexit(finish_at_exit);
    }
    crate::crash::install();
    STATE.store(ON, Ordering::Release);
}

/// True before recording was ever started.
#[inline(always)]
pub(crate) fn never_started() -> bool {
    STATE.load(Ordering::Relaxed) == OFF
}

extern "C" fn finish_at_exit() {
    // The program's frames and registers as exit left them, before the
    // recorder's own frames are pushed: the roots of the leak scan.
    let exit = ExitContext::capture();
    finish_with(Some(&exit));
}

/// Starts the writer with `pthread_create` rather than `std::thread`, so that
/// its very first instruction can mark it as the recorder's own: std's
/// thread start-up allocates before a Rust closure would run.
fn spawn_writer() {
    STOP_WRITER.store(false, Ordering::Relaxed);
    crate::wake::spawn(writer_main);
}

extern "C" fn writer_main(_: *mut libc::c_void) -> *mut libc::c_void {
    thread::ignore_this_thread();
    crate::crash::block_process_signals();
    // SAFETY: gettid has no preconditions.
    WRITER_TID.store(thread::gettid(), Ordering::Relaxed);
    let marker = 0u8;
    WRITER_STACK.store(std::ptr::addr_of!(marker) as u64, Ordering::Relaxed);
    // SAFETY: prctl(PR_SET_NAME) reads a NUL-terminated name.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"memtrace-writer".as_ptr()) };
    WRITER_RUNNING.store(true, Ordering::Release);
    writer_loop();
    // Never return: an exiting thread makes glibc unmap cached thread
    // stacks, which the leak scan may be reading at that moment.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn writer_loop() {
    // In a forked child the trace is created now rather than at the first
    // turn with data (in the first process, `start` created it already).
    if let Some(mut writer) = WRITER.try_lock() {
        if let Some(ws) = writer.as_mut().filter(|_| is_recording()) {
            // Without memory now, the first turn with data tries again.
            let _ = create_trace(ws);
        }
    }
    while !STOP_WRITER.load(Ordering::Relaxed) && is_recording() {
        crate::wake::wait(Duration::from_millis(10));
        if let Some(mut writer) = WRITER.try_lock() {
            if let Some(ws) = writer.as_mut() {
                drain(ws, false);
            }
        }
    }
}

/// A ring is more than half full: wake the writer early.
pub(crate) fn ring_half_full() {
    if WRITER_RUNNING.load(Ordering::Relaxed) {
        crate::wake::wake();
    }
}

/// Times a thread found its ring full: the writer compresses nothing on
/// the turn after one (see `pace`).
static RING_FULL_STALLS: AtomicU64 = AtomicU64::new(0);

/// A ring is full: wake the writer and wait until it has read from this
/// ring, or drain in this thread if there is no writer.
#[cold]
pub(crate) fn ring_full(producer: &Producer<ThreadItem>) {
    RING_FULL_STALLS.fetch_add(1, Ordering::Relaxed);
    if !in_session_process() {
        // A clone without fork handlers: nobody will drain this copy of the
        // rings. Stop recording here rather than wait forever.
        STATE.store(DONE, Ordering::Release);
        return;
    }
    if WRITER_RUNNING.load(Ordering::Acquire) {
        crate::wake::wake();
        wait_for_room(producer);
    } else if let Some(mut w) = WRITER.try_lock() {
        if let Some(ws) = w.as_mut() {
            drain(ws, false);
        }
    } else {
        std::thread::yield_now();
    }
}

/// The longest a producer waits for room before it looks again: a safety
/// net only, as the writer wakes it once it has read from the ring.
const ROOM_WAIT: Duration = Duration::from_millis(250);

/// Blocks on the ring's futex word until the writer has read from it.
/// Blocking rather than sleeping and polling: with a thousand threads whose
/// rings are full, each polling every few microseconds, the kernel's
/// wake-ups took both cores and the writer, one thread among them, starved
/// (a run of 1,000 busy threads went from about 60 s to over 10 min on a
/// loaded machine).
fn wait_for_room(producer: &Producer<ThreadItem>) {
    let ring = producer.ring();
    let word = &ring.room_wanted.0;
    word.store(1, Ordering::SeqCst);
    // Pairs with the fence in `room_made`: either the writer sees the 1
    // and wakes us once the ring is half empty, or we see that it is.
    std::sync::atomic::fence(Ordering::SeqCst);
    if !ring.half_empty() {
        crate::wake::wait_while(word, 1, ROOM_WAIT);
    }
    word.store(0, Ordering::Relaxed);
}

/// The writer has read from `ring`: wakes its producer if it waits for
/// room and the ring is half empty. A producer woken to a ring as full as
/// before would wait again at once: with a thousand threads and the writer
/// behind, once per ring and turn, half a million futex calls for 100
/// million events, each taking a core from the writer.
fn room_made(ring: &ThreadRing) {
    std::sync::atomic::fence(Ordering::SeqCst);
    let word = &ring.room_wanted.0;
    if word.load(Ordering::Relaxed) == 1 && ring.half_empty() {
        word.store(0, Ordering::Relaxed);
        crate::wake::wake_one(word);
    }
}

/// Sets this thread's in-flight bound before it reads the clock.
#[inline(always)]
pub(crate) fn mark_in_flight(ring: &ThreadRing, lower_bound: u64) {
    if SEQCST_IN_FLIGHT.load(Ordering::Relaxed) {
        ring.in_flight.0.store(lower_bound, Ordering::SeqCst);
        // The SeqCst store (a locked instruction) makes the bound globally
        // visible before the next memory access, but `rdtsc` is no memory
        // access: without `lfence` it may execute before the store, and the
        // item would carry a time the writer took for already passed.
        clock::fence_before_read();
    } else {
        ring.in_flight.0.store(lower_bound, Ordering::Relaxed);
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
    }
}

fn register_membarrier() -> bool {
    const REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;
    // SAFETY: membarrier registration takes no pointers.
    unsafe { libc::syscall(libc::SYS_membarrier, REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0 }
}

fn barrier() {
    const PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
    if !SEQCST_IN_FLIGHT.load(Ordering::Relaxed) {
        // SAFETY: membarrier takes no pointers.
        let ok = unsafe { libc::syscall(libc::SYS_membarrier, PRIVATE_EXPEDITED, 0, 0) } == 0;
        if ok {
            return;
        }
    }
    std::sync::atomic::fence(Ordering::SeqCst);
}

/// Whether the last phase boundary started a phase (a name) rather than
/// ended one (the empty name): the phase [`finish_with`] closes.
static PHASE_OPEN: AtomicBool = AtomicBool::new(false);

/// Ends the phase still open as the trace ends, so that its counters are
/// read at its end rather than left unread for want of a later boundary.
/// Not from inside a hook, where the thread's state is taken: there the
/// phase stays open, and `memtrace cache` ends it at the last resource
/// sample.
fn close_open_phase() {
    if PHASE_OPEN.load(Ordering::Relaxed) {
        crate::phase("");
    }
}

/// Records a phase boundary for the calling thread.
pub(crate) fn push_phase(state: &mut ThreadState, name: &str, counters: Vec<(String, u64)>) {
    PHASE_OPEN.store(!name.is_empty(), Ordering::Relaxed);
    mark_in_flight(state.ring(), state.last_ts);
    let ts = ticks();
    SIDE.lock().push(Side::Phase(Phase {
        ts,
        tid: state.ring().tid,
        name: name.to_string(),
        counters,
    }));
    state.last_ts = ts;
    state.ring().in_flight.0.store(u64::MAX, Ordering::Release);
}

/// Tells the user about a problem with recording: one line on stderr now,
/// and a note in the trace (shown by `memtrace report`).
pub fn warn(message: &str) {
    let nested = !thread::enter();
    eprintln!("memtrace: {message}");
    if !never_started() {
        SIDE.lock().push(Side::Note(message.to_string()));
    }
    if !nested {
        thread::leave();
    }
}

/// Re-reads the module list and records what was loaded or unloaded.
pub(crate) fn rescan_modules(state: &mut ThreadState) {
    mark_in_flight(state.ring(), state.last_ts);
    let ts = ticks();
    record_module_changes(ts);
    state.last_ts = ts;
    state.ring().in_flight.0.store(u64::MAX, Ordering::Release);
}

fn record_module_changes(ts: u64) {
    let now = loaded_modules();
    let mut known = KNOWN_MODULES.lock();
    let mut side = SIDE.lock();
    for m in &now {
        if !known.iter().any(|(p, b)| *p == m.path && *b == m.load_bias) {
            known.push((m.path.clone(), m.load_bias));
            side.push(Side::Module(ts, m.clone()));
        }
    }
    known.retain(|(p, b)| {
        let present = now.iter().any(|m| m.path == *p && m.load_bias == *b);
        if !present {
            side.push(Side::ModuleGone(ts, *b));
        }
        present
    });
}

/// One turn of the writer: drain every ring, write what was found.
fn drain(ws: &mut WriterState, last: bool) {
    if ws.failed || !in_session_process() {
        return;
    }
    thread::reap_late();
    let now_ticks = ticks();
    // `rdtsc` completes before the loads of the bounds below (the barrier
    // orders memory accesses only).
    clock::fence_after_read();
    barrier();
    let rings: Vec<Arc<ThreadRing>> = REGISTRY.lock().clone();
    let watermark = rings
        .iter()
        .map(|r| r.in_flight.0.load(Ordering::Acquire))
        .fold(now_ticks, u64::min);
    // Where each ring stands now: items up to there are written this turn.
    // Reading the positions before taking the stack nodes below makes every
    // node an item refers to visible.
    let marks: Vec<(bool, usize)> = rings
        .iter()
        .map(|r| (r.closed.load(Ordering::Acquire), r.published()))
        .collect();
    let nothing_new = rings
        .iter()
        .zip(&marks)
        .all(|(r, &(_, until))| r.is_drained(until));
    // Compress this turn only if the writer can afford it (see `pace`):
    // when the program makes events faster than this thread compresses
    // them, blocks are written raw rather than make the program wait (each
    // block names its codec).
    let stalls = RING_FULL_STALLS.load(Ordering::Relaxed);
    let stalled = stalls != ws.stalls_seen;
    ws.stalls_seen = stalls;
    let waiting: u64 = rings
        .iter()
        .zip(&marks)
        .map(|(r, &(_, until))| r.waiting(until) as u64)
        .sum();
    let turn_start_ns = monotonic_ns();
    // Normally the file exists since `start`; a forked child whose writer
    // thread has not run yet, or a process whose hooks ran but whose
    // constructor never did, creates it here.
    if ws.writer.is_none() {
        if nothing_new && !last {
            return;
        }
        match create_trace(ws) {
            Ok(()) => {}
            Err(NoTrace::NoMemory) => {
                // No file yet, and no memory to write one: drop what
                // waits (the rings must not fill up) and try next turn.
                drop_items(&rings, &marks);
                return;
            }
            Err(NoTrace::Ended) => return,
        }
    }
    let first_node = INTERNER.lock().take_pending_into(&mut ws.stack_nodes);
    let nodes = &ws.stack_nodes;
    let side = std::mem::take(&mut *SIDE.lock());
    let compress = !ws.adaptive || ws.pace.compress(turn_start_ns, waiting, stalled);
    let codec = if !compress || CRASHED.load(Ordering::Relaxed) {
        Codec::Raw
    } else {
        ws.codec
    };
    let Some(w) = ws.writer.as_mut() else { return };
    w.set_codec(codec);
    let mut counts = (0u64, 0u64);
    let live = &mut ws.live;
    let result = (|| -> io::Result<()> {
        w.stack_nodes(first_node, nodes)?;
        for record in &side {
            // Without memory for it, a side record is left out.
            unless_out_of_memory(match record {
                Side::Module(ts, m) => w.module_loaded(*ts, m),
                Side::ModuleGone(ts, bias) => w.module_unloaded(*ts, *bias),
                Side::Phase(p) => w.phase(p),
                Side::Note(text) => w.note(text),
            })?;
        }
        write_rings(w, &rings, &marks, live, &mut counts)?;
        // The heap's extent, every 100 ms when it changed; not when memory
        // is short (reading the maps takes some).
        let now_ns = monotonic_ns();
        if (now_ns - ws.last_maps_ns > 100_000_000 || last) && !memory::short() {
            ws.last_maps_ns = now_ns;
            if let Some(regions) = crate::maps::heap_regions() {
                if regions != ws.last_regions {
                    unless_out_of_memory(w.heap_regions(now_ticks, &regions))?;
                    ws.last_regions = regions;
                }
            }
            w.resources(&crate::resources::sample(now_ticks))?;
        }
        if let Some(live) = live.as_mut() {
            live.passed(watermark);
        }
        w.watermark(watermark)?;
        // Compress only now that the rings' slots are free again.
        w.seal_if_full()?;
        if now_ns - ws.last_sync_ns > 200_000_000 || last {
            w.clock_sync(ClockSync {
                ticks: ticks(),
                mono_ns: now_ns,
            })?;
            ws.last_sync_ns = now_ns;
        }
        if last || now_ns - ws.last_seal_ns > 250_000_000 {
            w.flush()?;
            ws.last_seal_ns = now_ns;
        }
        Ok(())
    })();
    let (n_events, n_threads) = counts;
    ws.n_events += n_events;
    ws.n_threads += n_threads;
    ws.pace.done(
        n_events,
        monotonic_ns().saturating_sub(turn_start_ns),
        codec != Codec::Raw,
    );
    if let Err(e) = result {
        fail(ws, &format!("writing the trace failed: {e}"));
    }
    // A ring closed before its positions were read is now empty for good.
    let closed: Vec<*const ThreadRing> = rings
        .iter()
        .zip(&marks)
        .filter(|(_, &(was_closed, _))| was_closed)
        .map(|(r, _)| Arc::as_ptr(r))
        .collect();
    if !closed.is_empty() {
        REGISTRY
            .lock()
            .retain(|r| !closed.contains(&Arc::as_ptr(r)));
    }
}

/// Writes what each ring holds up to its mark; `counts` gets the heap
/// events and thread starts written. Without memory to write a ring's
/// items, they are consumed all the same (the thread must not wait for
/// room) and counted as dropped; without memory for the live-block table,
/// it is given up, and with it the leak scan.
fn write_rings(
    w: &mut Writer<TraceFile>,
    rings: &[Arc<ThreadRing>],
    marks: &[(bool, usize)],
    live: &mut Option<LiveBlocks>,
    counts: &mut (u64, u64),
) -> io::Result<()> {
    let mut live_lost = false;
    for (ring, &(_, until)) in rings.iter().zip(marks) {
        let before = ring.consumed();
        ring.consume_until(until, |items| {
            let mut written = 0u64;
            // The counts and the live blocks look at each item while the
            // encoder has it in the cache: a ring's items are megabytes.
            let result = w.batch_inspect(ring.tid, items, |item| {
                match item {
                    ThreadItem::Heap(_) => written += 1,
                    ThreadItem::Start { .. } => counts.1 += 1,
                    ThreadItem::End { .. } => {}
                }
                if live.as_mut().is_some_and(|l| !l.apply(item)) {
                    *live = None;
                    live_lost = true;
                }
            });
            counts.0 += written;
            match result {
                // The items written were inspected, the others not.
                Err(e) if e.kind() == io::ErrorKind::OutOfMemory => {
                    memory::dropped(count_heap_events(items) - written);
                    Ok(())
                }
                other => other,
            }
        })?;
        if ring.consumed() != before {
            room_made(ring);
        }
        // The ring's slots are free again: compress now if the block is full,
        // so that blocks stay near their target size with many threads.
        w.seal_if_full()?;
    }
    if live_lost {
        unless_out_of_memory(w.note(
            "out of memory: the table of live blocks was given up, so there is no leak scan",
        ))?;
    }
    Ok(())
}

fn count_heap_events(items: &[ThreadItem]) -> u64 {
    items
        .iter()
        .filter(|i| matches!(i, ThreadItem::Heap(_)))
        .count() as u64
}

/// Consumes what the rings hold up to their marks without writing it,
/// counting the heap events as dropped.
fn drop_items(rings: &[Arc<ThreadRing>], marks: &[(bool, usize)]) {
    for (ring, &(_, until)) in rings.iter().zip(marks) {
        if ring.is_drained(until) {
            continue;
        }
        let _ = ring.consume_until(until, |items| {
            memory::dropped(count_heap_events(items));
            Ok::<(), ()>(())
        });
        room_made(ring);
    }
}

/// Success for a record left out for want of memory (see `memory`).
fn unless_out_of_memory(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::OutOfMemory => Ok(()),
        other => other,
    }
}

/// Stops recording after an I/O error (a full disk, say); the program goes
/// on. Events from then on are dropped; the blocks written before the error
/// stay readable, and the message says where the trace ends.
fn fail(ws: &mut WriterState, message: &str) {
    ws.failed = true;
    let written = ws.writer.take().map(|w| w.bytes_written());
    STATE.store(DONE, Ordering::Release);
    // Threads waiting for room would wait for a writer that reads no more;
    // woken, they see that recording ended and drop their events.
    for ring in REGISTRY.lock().iter() {
        crate::wake::wake_one(&ring.room_wanted.0);
    }
    match (written, &ws.path) {
        (Some(bytes), Some(path)) => eprintln!(
            "memtrace: {message}; recording stopped, the program continues; \
             the trace {} is incomplete (readable up to byte {bytes})",
            path.display()
        ),
        _ => eprintln!("memtrace: {message}; recording stopped, the program continues"),
    }
}

/// Creates the trace file and writes its header, unless it exists, was
/// ended, or writing failed; the modules loaded now go into the next turn.
/// Its buffers are those taken earlier while memory was there, or new ones.
fn create_trace(ws: &mut WriterState) -> Result<(), NoTrace> {
    if ws.writer.is_some() {
        return Ok(());
    }
    if ws.ended || ws.failed || !in_session_process() {
        return Err(NoTrace::Ended);
    }
    let Some(buffers) = ws.buffers.take().or_else(WriterBuffers::try_new) else {
        return Err(NoTrace::NoMemory);
    };
    let config = CONFIG.lock().clone().unwrap_or_else(|| Config {
        output: None,
        dir: PathBuf::from("."),
        recorder: RecorderKind::Preload,
        writer_thread: true,
        follow_exec: true,
    });
    match output::open_trace(&config, buffers) {
        Ok((w, path)) => {
            ws.codec = w.codec();
            ws.writer = Some(w);
            ws.path = Some(path);
            record_module_changes(0);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::OutOfMemory => Err(NoTrace::NoMemory),
        Err(e) => {
            fail(ws, &format!("cannot create the trace file: {e}"));
            Err(NoTrace::Ended)
        }
    }
}

/// Why [`create_trace`] made no file.
enum NoTrace {
    /// Recording ended, or failed (said already), or this process does not
    /// record.
    Ended,
    /// No memory for the writer's buffers: the next turn tries again.
    NoMemory,
}

/// Finishes the trace before `exec` replaces this program.
///
/// The explicit output name (`memtrace run -o FILE`) stands for the process,
/// so it passes to the program executed next: this image's finished trace
/// moves to its default name beside it, and the name to give the next image
/// is returned. `None` when there is no explicit name or children are not
/// traced.
pub fn finish_before_exec() -> Option<PathBuf> {
    if !in_session_process() {
        // A vfork child: the state is the parent's, which goes on recording.
        return None;
    }
    // Outside the guard below, which would keep the phase from being read.
    close_open_phase();
    let nested = !thread::enter();
    let (explicit, follow) = CONFIG
        .lock()
        .as_ref()
        .map_or((None, false), |c| (c.output.clone(), c.follow_exec));
    finish();
    let written = WRITER.lock().as_ref().and_then(|ws| ws.path.clone());
    let result = match explicit {
        Some(explicit) if follow => {
            if written.as_ref() == Some(&explicit) {
                output::move_for_exec(&explicit);
            }
            Some(explicit)
        }
        _ => None,
    };
    if !nested {
        thread::leave();
    }
    result
}

/// The exec after [`finish_before_exec`] failed and the process goes on
/// (untraced): the trace returns to the explicit name it moved from, where
/// `memtrace run` looks for it.
pub fn exec_failed() {
    let nested = !thread::enter();
    output::move_back_after_failed_exec();
    if !nested {
        thread::leave();
    }
}

/// Ends recording: drains every ring, writes the trailer, closes the file.
/// Safe to call more than once; events after it are not recorded.
pub fn finish() {
    finish_with(None);
}

/// Set while a fatal signal's handler drains: no compression (see crash.rs).
static CRASHED: AtomicBool = AtomicBool::new(false);

/// Ends recording from a fatal signal's handler: drains what was recorded,
/// notes the signal, writes the trailer. Gives up (the program still dies)
/// when the crash happened inside the recorder, or when the writer's lock
/// stays taken for two seconds.
pub(crate) fn finish_after_signal(sig: i32) {
    if !in_session_process() || !thread::enter() {
        return;
    }
    if STATE
        .compare_exchange(ON, DONE, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        STOP_WRITER.store(true, Ordering::Relaxed);
        CRASHED.store(true, Ordering::Relaxed);
        let start = monotonic_ns();
        let mut slot = loop {
            if let Some(slot) = WRITER.try_lock() {
                break Some(slot);
            }
            if monotonic_ns() - start > 2_000_000_000 {
                break None;
            }
            std::hint::spin_loop();
        };
        if let Some(ws) = slot.as_mut().and_then(|s| s.as_mut()) {
            drain(ws, true);
            let note = format!(
                "the program was killed by {} (signal {sig}); everything before it was recorded",
                crate::crash::signal_name(sig)
            );
            // No message on failure: printing allocates, and the program is dying.
            let _ = end_trace(ws, Some(&note));
        }
    }
    thread::leave();
}

/// Writes `note` (if any) and the trailer, and closes the trace.
fn end_trace(ws: &mut WriterState, note: Option<&str>) -> io::Result<()> {
    ws.ended = true;
    let Some(mut w) = ws.writer.take() else {
        return Ok(());
    };
    if let Some(note) = note {
        w.note(note)?;
    }
    let n_dropped = memory::n_dropped();
    if n_dropped > 0 {
        unless_out_of_memory(w.note(&memory::dropped_message(n_dropped)))?;
    }
    let trailer = Trailer {
        ts: ticks(),
        n_events: ws.n_events,
        n_stack_nodes: INTERNER.lock().n_nodes(),
        n_threads: ws.n_threads,
        n_dropped,
    };
    w.finish(&trailer).map(drop)
}

/// [`finish`], with the leak scan when `exit` says where the program stood.
fn finish_with(exit: Option<&ExitContext>) {
    if !in_session_process() {
        // A vfork child leaving by _exit: the state is the parent's.
        return;
    }
    // Before the leak scan, which is no part of the program's last phase.
    close_open_phase();
    let nested = !thread::enter();
    // With a leak scan to make, recording goes on until the scan has
    // stopped the other threads (it then sets DONE).
    let next = if exit.is_some() { FINISHING } else { DONE };
    if STATE
        .compare_exchange(ON, next, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        STOP_WRITER.store(true, Ordering::Relaxed);
        let mut slot = WRITER.lock();
        if let Some(ws) = slot.as_mut() {
            drain(ws, true);
            if let Some(exit) = exit {
                write_leak_scan(ws, exit);
                STATE.store(DONE, Ordering::Release);
                // The calls made until the scan stopped the threads.
                drain(ws, true);
            }
            if let Err(e) = end_trace(ws, None) {
                eprintln!("memtrace: writing the trace failed: {e}");
            }
            let n_dropped = memory::n_dropped();
            if n_dropped > 0 {
                eprintln!("memtrace: {}", memory::dropped_message(n_dropped));
            }
        }
        STATE.store(DONE, Ordering::Release);
    }
    if !nested {
        thread::leave();
    }
}

/// Runs the exit-time leak scan and writes it into the trace. A scan that
/// cannot be made (the program left no descriptor free to read
/// `/proc/self/maps`) is said once on stderr and in a trace note instead;
/// one without memory for its tables only in a note (the count of dropped
/// events has the stderr line).
fn write_leak_scan(ws: &mut WriterState, exit: &ExitContext) {
    let (Some(live), Some(w)) = (ws.live.as_mut(), ws.writer.as_mut()) else {
        return;
    };
    let writer_tid = WRITER_TID.load(Ordering::Relaxed);
    let preload = CONFIG
        .lock()
        .as_ref()
        .is_some_and(|c| c.recorder == RecorderKind::Preload);
    let writer_stack = WRITER_STACK.load(Ordering::Relaxed);
    let input = scan::ScanInput {
        live,
        exit,
        skip_tids: &[writer_tid],
        skip_stacks: &[writer_stack],
        scan_managed: preload,
        undrained: &undrained,
        // The trace ends where the scan looked: calls made once the
        // threads run again are not recorded.
        before_release: &|| STATE.store(DONE, Ordering::Release),
    };
    let written = match scan::scan(input) {
        Ok(result) => w.leak_scan(&result),
        Err(e) if e.kind() == io::ErrorKind::OutOfMemory => Err(memory::out_of_memory()),
        Err(e) => {
            let message = format!("no leak scan: {e}");
            eprintln!("memtrace: {message}");
            w.note(&message)
        }
    };
    match written {
        Err(e) if e.kind() == io::ErrorKind::OutOfMemory => {
            let _ = w.note("out of memory: no leak scan");
        }
        Err(e) => eprintln!("memtrace: writing the leak scan failed: {e}"),
        Ok(()) => {}
    }
}

/// Hands each item pushed since the last drain, in every ring, to `f`,
/// leaving them for the next drain; for the leak scan, while the other
/// threads are stopped: no allocation, no waiting. False when the ring
/// list is locked (a stopped thread was registering) or a ring is being
/// read: some items were not seen.
fn undrained(f: &mut dyn FnMut(&ThreadItem)) -> bool {
    let Some(rings) = REGISTRY.try_lock() else {
        return false;
    };
    rings.iter().all(|ring| {
        ring.peek(|items| {
            items.iter().for_each(&mut *f);
            Ok::<(), ()>(())
        })
        .is_some()
    })
}

extern "C" fn before_fork() {
    let nested = !thread::enter();
    crate::phase_counters::lock_for_fork();
    WRITER.lock_raw();
    REGISTRY.lock_raw();
    thread::LATE.lock_raw();
    INTERNER.lock_raw();
    SIDE.lock_raw();
    KNOWN_MODULES.lock_raw();
    CONFIG.lock_raw();
    if !nested {
        thread::leave();
    }
}

fn unlock_all() {
    CONFIG.unlock_raw();
    KNOWN_MODULES.unlock_raw();
    SIDE.unlock_raw();
    INTERNER.unlock_raw();
    thread::LATE.unlock_raw();
    REGISTRY.unlock_raw();
    WRITER.unlock_raw();
    crate::phase_counters::unlock_after_fork();
}

extern "C" fn after_fork_parent() {
    unlock_all();
}

/// In the child: forget the parent's threads, stacks and file; the child's
/// trace is created under its own pid when its writer thread starts (no
/// file is created in a fork handler).
extern "C" fn after_fork_child() {
    unlock_all();
    SESSION_PID.store(getpid(), Ordering::Relaxed);
    let nested = !thread::enter();
    if is_recording() {
        for ring in REGISTRY.lock().drain(..) {
            ring.discard();
        }
        thread::forget_current();
        thread::forget_late();
        intern::reset();
        SIDE.lock().clear();
        // The child's trace has none of the parent's phases.
        PHASE_OPEN.store(false, Ordering::Relaxed);
        KNOWN_MODULES.lock().clear();
        if let Some(config) = CONFIG.lock().as_mut() {
            // The explicit output name belongs to the parent.
            config.output = None;
        }
        {
            let mut slot = WRITER.lock();
            // The parent's writer: its file is closed here without writing,
            // so buffered parent data is not written twice.
            drop(slot.take());
            *slot = Some(WriterState::new());
        }
        memory::reset_count();
        if WRITER_RUNNING.swap(false, Ordering::AcqRel) {
            spawn_writer();
        }
    }
    if !nested {
        thread::leave();
    }
}

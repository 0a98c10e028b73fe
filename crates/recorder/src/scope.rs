//! Leak checks and heap statistics for a scope of code, for `cargo test`:
//! [`assert_no_leaks`], [`heap_stats`] and the [`LeakScope`] guard behind them.
//!
//! A scope belongs to the thread that opened it: it counts the blocks that
//! thread allocates while the scope is open, and follows each of them until
//! it is freed, by any thread. Tests running in parallel threads therefore
//! do not see each other's allocations. Nested scopes each count everything
//! allocated while they are open.
//!
//! While no scope is open anywhere, [`Tracking`](crate::Tracking) pays one
//! relaxed atomic load per call for this. While one is, every allocation of
//! its thread is unwound (raw return addresses only) and entered into a
//! process-wide table behind a spin lock, and every free or resize in the
//! process looks its address up there: slow, but only in tests. The stacks
//! of leaked blocks are symbolized when a check fails, from the files on
//! disk (cargo feature `symbolize`, off by default: return addresses
//! without it).
//!
//! The table's own memory is allocated under the recorder's reentrancy
//! guard, so it never enters the table, the counters or a trace.

use std::cell::Cell;
use std::fmt;
use std::hint::black_box;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rustc_hash::{FxBuildHasher, FxHashMap};

use crate::spin::SpinLock;
use crate::thread;
use crate::UnwindMode;

/// Heap statistics of one scope: the blocks its thread allocated while it
/// was open, and what became of them.
///
/// A `realloc` resizes a block: growing it adds to `bytes_allocated`,
/// shrinking it to `bytes_freed`, and it counts as no block allocated or
/// freed. Blocks allocated before the scope opened, or by other threads,
/// are not counted, even when they are freed or resized inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeapStats {
    /// Blocks allocated.
    pub blocks_allocated: u64,
    /// Bytes requested by those allocations, plus growth by `realloc`.
    pub bytes_allocated: u64,
    /// Of those blocks, how many were freed (by any thread).
    pub blocks_freed: u64,
    /// Bytes freed, plus shrinkage by `realloc`.
    pub bytes_freed: u64,
    /// The most bytes of the scope's blocks that were live at one time.
    pub peak_bytes: u64,
}

impl HeapStats {
    /// Blocks allocated and not freed.
    pub fn live_blocks(&self) -> u64 {
        self.blocks_allocated - self.blocks_freed
    }

    /// Bytes allocated and not freed.
    pub fn live_bytes(&self) -> u64 {
        self.bytes_allocated - self.bytes_freed
    }

    fn allocated(&mut self, bytes: u64) {
        self.blocks_allocated += 1;
        self.grown(bytes);
    }

    fn grown(&mut self, bytes: u64) {
        self.bytes_allocated += bytes;
        self.peak_bytes = self.peak_bytes.max(self.live_bytes());
    }

    fn freed(&mut self, bytes: u64) {
        self.blocks_freed += 1;
        self.bytes_freed += bytes;
    }
}

/// Return addresses kept per block, enough to get past the allocator's and
/// the collections' frames to the caller.
const STACK_DEPTH: usize = 48;

/// A block allocated inside a scope and not freed yet.
struct Tracked {
    size: u64,
    /// The innermost open scope it was allocated in.
    scope: u64,
    /// Return addresses, innermost first.
    stack: Box<[u64]>,
}

struct ScopeState {
    /// The scope that was innermost on the thread when this one opened (0: none).
    parent: u64,
    stats: HeapStats,
}

struct Table {
    blocks: FxHashMap<u64, Tracked>,
    scopes: FxHashMap<u64, ScopeState>,
    next_id: u64,
}

impl Table {
    /// Applies `f` to the stats of `scope` and of every scope around it.
    fn for_chain(&mut self, mut scope: u64, mut f: impl FnMut(&mut HeapStats)) {
        while let Some(state) = self.scopes.get_mut(&scope) {
            f(&mut state.stats);
            scope = state.parent;
        }
    }
}

static TABLE: SpinLock<Table> = SpinLock::new(Table {
    blocks: FxHashMap::with_hasher(FxBuildHasher),
    scopes: FxHashMap::with_hasher(FxBuildHasher),
    next_id: 1,
});

/// Scopes open in the process: while 0, the hooks return at once.
static OPEN_SCOPES: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// The innermost open scope of this thread, 0 when none (or paused).
    static CURRENT: Cell<u64> = const { Cell::new(0) };
    /// This thread's installation probe ([`is_installed`]).
    static PROBE: Cell<Probe> = const { Cell::new(Probe::Idle) };
}

/// Where a thread's installation probe is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Probe {
    Idle,
    /// Its allocation is on the way to the global allocator.
    Sent,
    /// [`Tracking`](crate::Tracking) saw it.
    Seen,
}

/// Set once a probe came back: the global allocator of a process never changes.
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Whether [`Tracking`](crate::Tracking) is this program's global
/// allocator (or the allocator that the global allocator calls).
///
/// The checks that count through `Tracking` ([`assert_no_leaks`],
/// [`heap_stats`], [`LeakScope::new`], [`stats`](crate::stats())) panic
/// when it is not, because they would see nothing and pass; this says so
/// without panicking.
///
/// The first call that answers `true` makes and frees one 1-byte
/// allocation and sees whether `Tracking` received it (a `Tracking` that
/// merely exists, or is called directly, is not installed); later calls
/// are one atomic load. That allocation counts in [`stats`](crate::stats())
/// and in a trace like any other of the program.
///
/// ```
/// // This doctest has no global allocator of its own.
/// assert!(!memtrace_recorder::is_installed());
/// ```
pub fn is_installed() -> bool {
    INSTALLED.load(Ordering::Relaxed) || probe()
}

#[cold]
#[inline(never)]
fn probe() -> bool {
    PROBE.with(|p| p.set(Probe::Sent));
    // With a scope counted as open, every allocation through `Tracking`
    // reaches `alloc_slow`, which marks this thread's probe seen.
    OPEN_SCOPES.fetch_add(1, Ordering::Relaxed);
    // black_box: the allocation must really happen.
    drop(black_box(Box::new(0u8)));
    OPEN_SCOPES.fetch_sub(1, Ordering::Relaxed);
    let seen = PROBE.with(|p| p.replace(Probe::Idle)) == Probe::Seen;
    if seen {
        INSTALLED.store(true, Ordering::Relaxed);
    }
    seen
}

/// Panics, naming `what` and the fix, unless [`is_installed`].
#[track_caller]
pub(crate) fn require_installed(what: &str) {
    if !is_installed() {
        panic!(
            "memtrace_recorder::{what} counts what `Tracking` sees, and `Tracking` is not the \
             global allocator of this binary, so it would see nothing. Install it in the \
             binary (each file of tests/ is a binary of its own): \
             `#[global_allocator] static ALLOC: memtrace_recorder::Tracking<std::alloc::System> \
             = memtrace_recorder::Tracking::untraced(std::alloc::System);`"
        );
    }
}

/// Runs `f` with the reentrancy guard set, so that what it allocates goes
/// straight to the wrapped allocator; `None` inside the recorder.
fn guarded<R>(f: impl FnOnce() -> R) -> Option<R> {
    if !thread::enter() {
        return None;
    }
    let r = f();
    thread::leave();
    Some(r)
}

/// After an allocation that returned `addr` (null on failure).
#[inline(always)]
pub(crate) fn on_alloc(addr: *mut u8, size: usize) {
    if OPEN_SCOPES.load(Ordering::Relaxed) != 0 && !addr.is_null() {
        alloc_slow(addr as u64, size as u64);
    }
}

/// Before `addr` is freed: after the free, another thread may get it back.
#[inline(always)]
pub(crate) fn on_free(addr: *mut u8) {
    if OPEN_SCOPES.load(Ordering::Relaxed) != 0 {
        free_slow(addr as u64);
    }
}

/// A block that a `realloc` is about to move or resize.
pub(crate) struct Resizing(Option<(u64, Tracked)>);

/// Before `realloc(addr, ..)`: takes the block out of the table while it moves.
#[inline(always)]
pub(crate) fn on_realloc_start(addr: *mut u8) -> Resizing {
    if OPEN_SCOPES.load(Ordering::Relaxed) == 0 {
        return Resizing(None);
    }
    let addr = addr as u64;
    Resizing(guarded(|| TABLE.lock().blocks.remove(&addr).map(|t| (addr, t))).flatten())
}

/// After the `realloc`: the block is back, at `new_addr` with `new_size`
/// bytes (or unchanged at its old address when `new_addr` is null).
#[inline(always)]
pub(crate) fn on_realloc_end(resizing: Resizing, new_addr: *mut u8, new_size: usize) {
    let Resizing(Some((old_addr, mut block))) = resizing else {
        return;
    };
    let (addr, size) = if new_addr.is_null() {
        (old_addr, block.size)
    } else {
        (new_addr as u64, new_size as u64)
    };
    // Nested inside the recorder this cannot be (the start took the guard).
    let _ = guarded(|| {
        let mut table = TABLE.lock();
        let old_size = block.size;
        table.for_chain(block.scope, |s| {
            if size >= old_size {
                s.grown(size - old_size);
            } else {
                s.bytes_freed += old_size - size;
            }
        });
        block.size = size;
        table.blocks.insert(addr, block);
    });
}

#[cold]
#[inline(never)]
fn alloc_slow(addr: u64, size: u64) {
    if PROBE.with(Cell::get) == Probe::Sent {
        PROBE.with(|p| p.set(Probe::Seen));
        return;
    }
    let scope = CURRENT.with(Cell::get);
    if scope == 0 {
        return;
    }
    let _ = guarded(|| {
        let mut frames = [0u64; STACK_DEPTH];
        let n = match crate::unwind_mode() {
            UnwindMode::Libgcc => memtrace_unwind::backtrace_libgcc(0, &mut frames),
            UnwindMode::Memo | UnwindMode::Fast => memtrace_unwind::backtrace_fast(0, &mut frames),
        };
        let block = Tracked {
            size,
            scope,
            stack: frames[..n].into(),
        };
        let mut table = TABLE.lock();
        table.for_chain(scope, |s| s.allocated(size));
        // An address still in the table was freed without this table seeing
        // it (by code that bypasses the global allocator); forget the old block.
        let stale = table.blocks.insert(addr, block);
        drop(table);
        drop(stale);
    });
}

#[cold]
#[inline(never)]
fn free_slow(addr: u64) {
    let _ = guarded(|| {
        let mut table = TABLE.lock();
        if let Some(block) = table.blocks.remove(&addr) {
            table.for_chain(block.scope, |s| s.freed(block.size));
            drop(table);
            drop(block);
        }
    });
}

/// Opens a scope on this thread.
fn open() -> u64 {
    let parent = CURRENT.with(Cell::get);
    let id = guarded(|| {
        let mut table = TABLE.lock();
        let id = table.next_id;
        table.next_id += 1;
        table.scopes.insert(
            id,
            ScopeState {
                parent,
                stats: HeapStats::default(),
            },
        );
        id
    })
    .expect("a leak scope cannot be opened from inside the allocator");
    OPEN_SCOPES.fetch_add(1, Ordering::Relaxed);
    CURRENT.with(|c| c.set(id));
    id
}

/// The stats of an open scope.
fn stats_of(id: u64) -> HeapStats {
    guarded(|| TABLE.lock().scopes.get(&id).map(|s| s.stats))
        .flatten()
        .unwrap_or_default()
}

/// A leaked block as the table holds it, copied out under the guard.
struct RawLeak {
    size: u64,
    stack: Vec<u64>,
}

/// Closes scope `id`: its leaked blocks pass to the scope around it (or
/// leave the table). Returns its stats and, when `want_leaks`, its blocks
/// still live, copied into memory allocated outside the guard (so that the
/// caller may free it normally).
fn close(id: u64, want_leaks: bool) -> (HeapStats, Vec<RawLeak>) {
    let closed = guarded(|| {
        let mut table = TABLE.lock();
        let state = table.scopes.remove(&id)?;
        // Children closed out of order get this scope's parent.
        for s in table.scopes.values_mut() {
            if s.parent == id {
                s.parent = state.parent;
            }
        }
        Some(state)
    })
    .flatten();
    let Some(state) = closed else {
        return (HeapStats::default(), Vec::new());
    };
    OPEN_SCOPES.fetch_sub(1, Ordering::Relaxed);
    CURRENT.with(|c| {
        if c.get() == id {
            c.set(state.parent);
        }
    });
    // Room for the copies, allocated outside the guard and outside any scope.
    let n_live = state.stats.live_blocks() as usize;
    let mut leaks: Vec<RawLeak> = Vec::new();
    if want_leaks {
        paused(|| {
            leaks = (0..n_live)
                .map(|_| RawLeak {
                    size: 0,
                    stack: Vec::with_capacity(STACK_DEPTH),
                })
                .collect();
        });
    }
    let n_copied = guarded(|| {
        let mut table = TABLE.lock();
        let mut n = 0;
        let mut gone = Vec::new();
        // The scope is out of the map, so its blocks' chains end at it:
        // they are the blocks still tagged with it.
        let parent = state.parent;
        for (&addr, block) in table.blocks.iter_mut() {
            if block.scope != id {
                continue;
            }
            if let Some(leak) = leaks.get_mut(n) {
                leak.size = block.size;
                leak.stack.extend_from_slice(&block.stack);
            }
            n += 1;
            if parent == 0 {
                gone.push(addr);
            } else {
                block.scope = parent;
            }
        }
        for addr in &gone {
            table.blocks.remove(addr);
        }
        drop(table);
        drop(gone);
        n
    });
    // Outside the guard: these entries were allocated outside it.
    paused(|| leaks.truncate(n_copied.unwrap_or(0)));
    (state.stats, leaks)
}

/// Runs `f` with this thread's scopes paused: what it allocates is not counted.
fn paused<R>(f: impl FnOnce() -> R) -> R {
    let saved = CURRENT.with(|c| c.replace(0));
    let r = f();
    CURRENT.with(|c| c.set(saved));
    r
}

/// A scope whose allocations are counted and checked for leaks: open it
/// with [`LeakScope::new`], end it with [`LeakScope::finish`] (or drop it
/// to end it without a check).
///
/// It counts the allocations of the thread that opened it, so it cannot be
/// sent to another thread.
///
/// ```
/// use memtrace_recorder::{LeakScope, Tracking};
/// use std::alloc::System;
///
/// #[global_allocator]
/// static ALLOC: Tracking<System> = Tracking::untraced(System);
///
/// fn main() {
///     let scope = LeakScope::new();
///     let v = vec![0u8; 100];
///     assert_eq!(scope.stats().live_bytes(), 100);
///     drop(v);
///     let stats = scope.finish().expect("nothing leaked");
///     assert_eq!((stats.blocks_allocated, stats.bytes_freed), (1, 100));
/// }
/// ```
///
/// The counts come from [`Tracking`](crate::Tracking): with another global
/// allocator, [`LeakScope::new`] panics (see [`is_installed`]).
pub struct LeakScope {
    id: u64,
    /// Tied to the opening thread.
    _thread: PhantomData<*const ()>,
}

impl LeakScope {
    /// Opens a scope on this thread; it is the innermost until it ends.
    ///
    /// # Panics
    ///
    /// When [`Tracking`](crate::Tracking) is not the global allocator
    /// ([`is_installed`]): the scope would see nothing.
    #[track_caller]
    pub fn new() -> LeakScope {
        require_installed("LeakScope");
        LeakScope {
            id: open(),
            _thread: PhantomData,
        }
    }

    /// The statistics so far.
    pub fn stats(&self) -> HeapStats {
        stats_of(self.id)
    }

    /// Ends the scope: its statistics, or the blocks it allocated and did
    /// not free, with their allocation stacks (symbolized).
    pub fn finish(self) -> Result<HeapStats, Leaks> {
        let (stats, raw) = self.close(true);
        if raw.is_empty() {
            return Ok(stats);
        }
        Err(paused(|| Leaks::new(stats, raw)))
    }

    /// Ends the scope: its statistics only.
    fn finish_stats(self) -> HeapStats {
        self.close(false).0
    }

    fn close(self, want_leaks: bool) -> (HeapStats, Vec<RawLeak>) {
        let id = self.id;
        std::mem::forget(self);
        close(id, want_leaks)
    }
}

impl Default for LeakScope {
    #[track_caller]
    fn default() -> Self {
        LeakScope::new()
    }
}

impl Drop for LeakScope {
    fn drop(&mut self) {
        let _ = close(self.id, false);
    }
}

/// Runs `f` and returns its result with the heap statistics of the run.
///
/// ```
/// use memtrace_recorder::{heap_stats, Tracking};
/// use std::alloc::System;
///
/// #[global_allocator]
/// static ALLOC: Tracking<System> = Tracking::untraced(System);
///
/// fn main() {
///     let (_, stats) = heap_stats(|| {
///         let mut v: Vec<u64> = Vec::with_capacity(4);
///         v.extend([1, 2, 3, 4, 5]); // grows the block (realloc): 32 -> 64 bytes
///     });
///     assert_eq!(stats.blocks_allocated, 1);
///     assert_eq!(stats.bytes_allocated, 64);
///     assert_eq!(stats.live_bytes(), 0);
/// }
/// ```
///
/// # Panics
///
/// When [`Tracking`](crate::Tracking) is not the global allocator
/// ([`is_installed`]), before running `f`.
#[track_caller]
pub fn heap_stats<R>(f: impl FnOnce() -> R) -> (R, HeapStats) {
    require_installed("heap_stats");
    let scope = LeakScope::new();
    let r = f();
    (r, scope.finish_stats())
}

/// Runs `f` and panics if it left blocks allocated on this thread unfreed,
/// listing each with its size and allocation stack (file:line). Returns
/// `f`'s result, which therefore must not own heap memory allocated inside
/// `f` (that would be a leak of the scope): check what you need inside.
///
/// Memory kept on purpose past the scope counts too: a cache filled or a
/// lazily initialized static first touched inside `f`. Touch such things
/// once before the check.
///
/// ```should_panic
/// use memtrace_recorder::{assert_no_leaks, Tracking};
/// use std::alloc::System;
///
/// #[global_allocator]
/// static ALLOC: Tracking<System> = Tracking::untraced(System);
///
/// fn main() {
///     assert_no_leaks(|| std::mem::forget(vec![1u32; 8])); // panics: 32 bytes in 1 block
/// }
/// ```
///
/// # Panics
///
/// When `f` leaks, and when [`Tracking`](crate::Tracking) is not the global
/// allocator ([`is_installed`]), before running `f`: the check would
/// otherwise pass without having seen anything.
#[track_caller]
pub fn assert_no_leaks<R>(f: impl FnOnce() -> R) -> R {
    require_installed("assert_no_leaks");
    let scope = LeakScope::new();
    let r = f();
    if let Err(leaks) = scope.finish() {
        panic!("{leaks}");
    }
    r
}

/// One frame of a leaked block's allocation stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackFrame {
    /// The return address (for an inlined frame, that of the frame it was
    /// inlined into).
    pub address: u64,
    /// The demangled function, if known.
    pub function: Option<String>,
    /// The source file, if known.
    pub file: Option<String>,
    /// The source line, if known.
    pub line: Option<u32>,
}

impl StackFrame {
    /// True for the allocator's, the recorder's and the standard library's
    /// frames, which a leak's stack leaves out at its top.
    fn is_internal(&self) -> bool {
        self.function.as_deref().is_some_and(internal_function)
    }
}

/// Paths of the allocator, the recorder and the standard library.
fn internal_path(path: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "memtrace_recorder::",
        "memtrace_unwind::",
        "__rust_",
        "__rustc::",
        "__rdl",
        "__rg_",
        "alloc::",
        "core::",
        "std::",
        "hashbrown::",
    ];
    PREFIXES.iter().any(|p| path.starts_with(p))
}

/// Whether a demangled function name is [`internal_path`]: `path::f`, or
/// `<Type as Trait>::f` whose type is internal, or a type parameter or
/// primitive (`<T as alloc::vec::SpecFromElem>::from_elem`) with an
/// internal trait. A program's own type implementing a std trait is not.
fn internal_function(name: &str) -> bool {
    let Some(qualified) = name.strip_prefix('<') else {
        return internal_path(name);
    };
    let ty = qualified.split(" as ").next().unwrap_or(qualified);
    let ty = ty.trim_end_matches('>');
    if internal_path(ty) {
        return true;
    }
    let bare = !ty.is_empty() && ty.chars().all(|c| c.is_alphanumeric() || c == '_');
    bare && qualified
        .split_once(" as ")
        .is_some_and(|(_, t)| internal_path(t))
}

impl fmt::Display for StackFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.function {
            Some(function) => write!(f, "{function}")?,
            None => write!(f, "{:#x}", self.address)?,
        }
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, " ({file}:{line})"),
            (Some(file), None) => write!(f, " ({file})"),
            _ => Ok(()),
        }
    }
}

/// Blocks with the same allocation stack, leaked by a scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeakedBlocks {
    /// How many blocks.
    pub blocks: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The allocation stack, innermost first, from the first frame that is
    /// not the allocator's or the standard library's.
    pub stack: Vec<StackFrame>,
}

/// What a scope left allocated: [`LeakScope::finish`]'s error. Its
/// `Display` is the message [`assert_no_leaks`] panics with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaks {
    /// The scope's statistics.
    pub stats: HeapStats,
    /// The leaked blocks grouped by allocation stack, most bytes first.
    pub groups: Vec<LeakedBlocks>,
}

/// Frames printed per stack in the message.
const PRINTED_FRAMES: usize = 6;

impl Leaks {
    fn new(stats: HeapStats, raw: Vec<RawLeak>) -> Leaks {
        let mut by_stack: FxHashMap<&[u64], (u64, u64)> = FxHashMap::default();
        for leak in &raw {
            let entry = by_stack.entry(&leak.stack).or_default();
            entry.0 += 1;
            entry.1 += leak.size;
        }
        let mut symbols = symbols::Symbols::new();
        let mut groups: Vec<LeakedBlocks> = by_stack
            .into_iter()
            .map(|(stack, (blocks, bytes))| {
                let frames: Vec<StackFrame> =
                    stack.iter().flat_map(|&a| symbols.frames(a)).collect();
                let first = frames.iter().position(|f| !f.is_internal()).unwrap_or(0);
                LeakedBlocks {
                    blocks,
                    bytes,
                    stack: frames[first..].to_vec(),
                }
            })
            .collect();
        groups.sort_by(|a, b| {
            b.bytes
                .cmp(&a.bytes)
                .then(b.blocks.cmp(&a.blocks))
                .then_with(|| {
                    a.stack
                        .first()
                        .map(|f| f.address)
                        .cmp(&b.stack.first().map(|f| f.address))
                })
        });
        Leaks { stats, groups }
    }

    /// Leaked blocks in all.
    pub fn blocks(&self) -> u64 {
        self.groups.iter().map(|g| g.blocks).sum()
    }

    /// Leaked bytes in all.
    pub fn bytes(&self) -> u64 {
        self.groups.iter().map(|g| g.bytes).sum()
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

impl fmt::Display for Leaks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (blocks, bytes) = (self.blocks(), self.bytes());
        writeln!(
            f,
            "{bytes} byte{} in {blocks} block{} allocated in the scope were not freed",
            plural(bytes),
            plural(blocks)
        )?;
        for g in &self.groups {
            writeln!(
                f,
                "{} byte{} in {} block{} allocated",
                g.bytes,
                plural(g.bytes),
                g.blocks,
                plural(g.blocks)
            )?;
            for (k, frame) in g.stack.iter().take(PRINTED_FRAMES).enumerate() {
                writeln!(f, "    {} {frame}", if k == 0 { "at" } else { "by" })?;
            }
        }
        if !cfg!(feature = "symbolize") {
            writeln!(
                f,
                "(return addresses only: memtrace-recorder's `symbolize` feature names \
                 functions and file:line)"
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Leaks {}

/// Return addresses to frames.
mod symbols {
    use super::StackFrame;

    /// Symbolizes from the module files on disk.
    #[cfg(feature = "symbolize")]
    pub(super) struct Symbols(memtrace_symbolize::Symbolizer);

    #[cfg(feature = "symbolize")]
    impl Symbols {
        pub(super) fn new() -> Symbols {
            let mut s = memtrace_symbolize::Symbolizer::new(Default::default());
            for m in crate::modules::loaded_modules() {
                s.add_module(memtrace_symbolize::ModuleSpec {
                    path: m.path,
                    build_id: m.build_id,
                    load_bias: m.load_bias,
                    segments: m
                        .segments
                        .iter()
                        .map(|seg| memtrace_symbolize::Segment {
                            vaddr: seg.vaddr,
                            memsz: seg.memsz,
                            executable: seg.flags & libc::PF_X != 0,
                        })
                        .collect(),
                });
            }
            Symbols(s)
        }

        /// The frames at a return address, inlined ones first.
        pub(super) fn frames(&mut self, address: u64) -> Vec<StackFrame> {
            let location = self.0.symbolize_return_address(address);
            if location.frames.is_empty() {
                return vec![unknown(address)];
            }
            location
                .frames
                .into_iter()
                .map(|f| StackFrame {
                    address,
                    function: f.function,
                    file: f.file,
                    line: f.line,
                })
                .collect()
        }
    }

    /// Without the `symbolize` feature: addresses only.
    #[cfg(not(feature = "symbolize"))]
    pub(super) struct Symbols;

    #[cfg(not(feature = "symbolize"))]
    impl Symbols {
        pub(super) fn new() -> Symbols {
            Symbols
        }

        pub(super) fn frames(&mut self, address: u64) -> Vec<StackFrame> {
            vec![unknown(address)]
        }
    }

    fn unknown(address: u64) -> StackFrame {
        StackFrame {
            address,
            function: None,
            file: None,
            line: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::internal_function;

    #[test]
    fn the_allocators_and_std_frames_are_internal_the_programs_are_not() {
        for name in [
            "alloc::vec::from_elem",
            "<alloc::vec::Vec<T,A> as core::clone::Clone>::clone",
            "<T as alloc::vec::spec_from_elem::SpecFromElem>::from_elem",
            "<u8 as alloc::vec::spec_from_elem::SpecFromElem>::from_elem",
            "__rust_alloc",
            "<memtrace_recorder::Tracking<A> as core::alloc::global::GlobalAlloc>::alloc",
            "std::collections::hash::map::HashMap<K,V,S>::insert",
        ] {
            assert!(internal_function(name), "{name}");
        }
        for name in [
            "scope::leak_some",
            "<mycrate::Config as core::clone::Clone>::clone",
            "<mycrate::Config>::new",
            "mycrate::alloc::pool",
        ] {
            assert!(!internal_function(name), "{name}");
        }
    }
}

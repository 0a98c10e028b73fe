//! The library's own memory, mapped with `mmap`: the recorder never takes
//! memory from the program's heap, so the heap the program sees (and that
//! `memtrace frag` measures) holds only the program's blocks.
//!
//! Small requests come from power-of-two size classes (16 B to 64 KiB), each
//! a free list plus a bump region carved from mapped chunks, behind a lock
//! per class; memory of a class is reused, never unmapped. Larger requests
//! (a big ring segment, the unwinder's memo) are mapped and unmapped whole,
//! so a thread's memory goes back to the system when it ends. The class
//! locks are `memtrace_recorder::plumbing::RawLock`s: a waiter sleeps on a futex
//! instead of spinning, and no lock is held across `mmap` (with 2,000
//! threads starting at once, hundreds of threads spun on one class lock
//! whose holder waited in `mmap`). `pthread_atfork` handlers take every
//! class lock around `fork`, so a child never inherits a held lock.
//!
//! When `mmap` fails (the program used up its address space), a large
//! request gets null, which the recorder's fallible allocations turn into
//! dropped work; a class that needs a new chunk takes a small one from a
//! reserve mapped at the first allocation, and tells the recorder
//! ([`memtrace_recorder::plumbing::memory_short`]), which then takes on no new
//! thread, ring segment or stack, so that the reserve lasts until the trace
//! is finished (see the recorder's `memory.rs`).
//!
//! This file is part of the preload ABI's unsafe core: an allocator.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use memtrace_recorder::plumbing::RawLock;

const N_CLASSES: usize = 13;
const SMALLEST: usize = 16;
const LARGEST: usize = SMALLEST << (N_CLASSES - 1);
/// A class's chunk: at least this, and 4 blocks. Every chunk is address
/// space a program under a limit cannot use: with 1 MiB chunks (and 16
/// blocks) the classes a traced program touches took 8 MiB of it.
const CHUNK: usize = 256 << 10;
const PAGE: usize = 4096;
/// The reserve: what the recorder's small allocations may still need once
/// `mmap` fails (finishing the trace: a few `Vec`s, notes, the leak scan's
/// root lists).
const RESERVE: usize = 512 << 10;

struct Class {
    lock: RawLock,
    state: UnsafeCell<ClassState>,
}

struct ClassState {
    free: *mut FreeNode,
    bump: usize,
    end: usize,
    /// A mapped chunk waiting to become the bump region: `(start, len)`.
    spare: Option<(usize, usize)>,
}

struct FreeNode {
    next: *mut FreeNode,
}

// SAFETY: `state` is only touched while `lock` is held.
unsafe impl Sync for Class {}

#[allow(clippy::declare_interior_mutable_const)]
const CLASS: Class = Class {
    lock: RawLock::new(),
    state: UnsafeCell::new(ClassState {
        free: ptr::null_mut(),
        bump: 0,
        end: 0,
        spare: None,
    }),
};
static CLASSES: [Class; N_CLASSES] = [CLASS; N_CLASSES];

impl Class {
    /// A block of `size` bytes (this class's size), or null when memory is short.
    fn take(&self, size: usize) -> *mut u8 {
        self.lock.lock();
        // SAFETY: the class lock is held.
        let block = unsafe { &mut *self.state.get() }.pop(size);
        self.lock.unlock();
        if !block.is_null() {
            return block;
        }
        // Map a chunk without holding the lock, then offer it: if another
        // thread refilled the class meanwhile, it is kept as the spare
        // region, or unmapped when there is one already. Its pages are not
        // touched until blocks are carved from them.
        let mut len = CHUNK.max(size * 4);
        let mut chunk = map(len);
        let reserved = chunk.is_null();
        if reserved {
            // Out of address space: a page, or one block, of the reserve.
            len = size.max(PAGE);
            chunk = from_reserve(len);
        }
        if chunk.is_null() {
            return ptr::null_mut();
        }
        self.lock.lock();
        // SAFETY: the class lock is held.
        let (block, unused) = unsafe { &mut *self.state.get() }.refill(chunk as usize, len, size);
        self.lock.unlock();
        // A piece of the reserve not needed after all is left unused (a
        // page at most): it is no mapping of its own to unmap.
        if unused && !reserved {
            memtrace_recorder::plumbing::forget_own_mapping(chunk as u64);
            // SAFETY: the chunk was mapped above with this length and never used.
            unsafe { libc::munmap(chunk.cast(), len) };
        }
        block
    }

    /// Puts a block of this class back.
    ///
    /// # Safety
    /// `block` came from this class and is no longer used.
    unsafe fn give_back(&self, block: *mut u8) {
        self.lock.lock();
        // SAFETY: the class lock is held; the block is at least 16 bytes and
        // aligned, so it can hold a FreeNode while it is free.
        unsafe {
            let state = &mut *self.state.get();
            let node: *mut FreeNode = block.cast();
            (*node).next = state.free;
            state.free = node;
        }
        self.lock.unlock();
    }
}

impl ClassState {
    /// A block from the free list, the bump region or the spare chunk;
    /// null when all are empty.
    fn pop(&mut self, size: usize) -> *mut u8 {
        if !self.free.is_null() {
            let node = self.free;
            // SAFETY: `node` is a freed block of this class: it holds a FreeNode.
            self.free = unsafe { (*node).next };
            return node.cast();
        }
        if self.bump + size > self.end {
            let Some((start, len)) = self.spare.take() else {
                return ptr::null_mut();
            };
            self.bump = start;
            self.end = start + len;
        }
        let b = self.bump;
        self.bump += size;
        b as *mut u8
    }

    /// Takes a block, offering the new chunk `[chunk, chunk + len)`: it
    /// becomes the bump region when the class has nothing else, else the
    /// spare one. True beside the block when the chunk was not needed.
    fn refill(&mut self, chunk: usize, len: usize, size: usize) -> (*mut u8, bool) {
        let block = self.pop(size);
        if block.is_null() {
            self.bump = chunk;
            self.end = chunk + len;
            return (self.pop(size), false);
        }
        if self.spare.is_none() {
            self.spare = Some((chunk, len));
            return (block, false);
        }
        (block, true)
    }
}

/// The class index for a layout, or `None` for a large one.
fn class_of(layout: Layout) -> Option<usize> {
    let size = layout.size().max(layout.align()).max(SMALLEST);
    if size > LARGEST || layout.align() > PAGE {
        return None;
    }
    Some((size.next_power_of_two() / SMALLEST).trailing_zeros() as usize)
}

fn map(len: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping; no existing memory is touched.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        ptr::null_mut()
    } else {
        // The leak scan must not read the recorder's buffers as program memory.
        memtrace_recorder::plumbing::note_own_mapping(p as u64, len as u64);
        p.cast()
    }
}

fn round_to_page(n: usize) -> usize {
    n.div_ceil(PAGE) * PAGE
}

/// The next free byte of the reserve, and its end; 0 before it is mapped.
static RESERVE_NEXT: AtomicUsize = AtomicUsize::new(0);
static RESERVE_END: AtomicUsize = AtomicUsize::new(0);

fn map_reserve() {
    let p = map(RESERVE);
    if !p.is_null() {
        RESERVE_END.store(p as usize + RESERVE, Ordering::Relaxed);
        RESERVE_NEXT.store(p as usize, Ordering::Release);
    }
}

/// `len` bytes of the reserve (page-aligned, as `len` is a multiple of a
/// page), or null once it is used up.
fn from_reserve(len: usize) -> *mut u8 {
    memtrace_recorder::plumbing::memory_short();
    let end = RESERVE_END.load(Ordering::Relaxed);
    let mut next = RESERVE_NEXT.load(Ordering::Acquire);
    loop {
        if next == 0 || next + len > end {
            return ptr::null_mut();
        }
        match RESERVE_NEXT.compare_exchange_weak(
            next,
            next + len,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => return next as *mut u8,
            Err(now) => next = now,
        }
    }
}

/// The global allocator of the preload library.
pub(crate) struct OwnAlloc;

// SAFETY: every block handed out is at least `layout.size()` bytes, aligned
// to `layout.align()` (class sizes are powers of two carved from page-aligned
// chunks; large blocks are page-aligned mappings), and belongs to one owner
// until `dealloc` puts it back on its class's list or unmaps it.
unsafe impl GlobalAlloc for OwnAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !FORK_HANDLERS.load(Ordering::Relaxed) && !FORK_HANDLERS.swap(true, Ordering::AcqRel) {
            register_fork_handlers();
            map_reserve();
        }
        let Some(index) = class_of(layout) else {
            if layout.align() > PAGE {
                // Mappings are only page-aligned; the recorder never asks for more.
                return ptr::null_mut();
            }
            return map(round_to_page(layout.size().max(1)));
        };
        CLASSES[index].take(SMALLEST << index)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let block = unsafe { self.alloc(layout) };
        // A large block is a fresh mapping, zero already: its pages stay
        // untouched (not resident) until used. A class block may be reused.
        if !block.is_null() && class_of(layout).is_some() {
            // SAFETY: the block has at least `layout.size()` writable bytes.
            unsafe { ptr::write_bytes(block, 0, layout.size()) };
        }
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let Some(index) = class_of(layout) else {
            memtrace_recorder::plumbing::forget_own_mapping(block as u64);
            // SAFETY: a large block is a whole mapping of this length.
            unsafe { libc::munmap(block.cast(), round_to_page(layout.size().max(1))) };
            return;
        };
        // SAFETY: the block came from this class (same layout) and is freed.
        unsafe { CLASSES[index].give_back(block) };
    }
}

extern "C" fn lock_all() {
    for c in &CLASSES {
        c.lock.lock();
    }
}

extern "C" fn unlock_all() {
    for c in CLASSES.iter().rev() {
        c.lock.unlock();
    }
}

static FORK_HANDLERS: AtomicBool = AtomicBool::new(false);

/// Takes every class lock around `fork`. Registered on the first allocation,
/// before the recorder registers its own handlers: child handlers run in the
/// order of registration, so these locks are free again before the
/// recorder's child handler allocates.
fn register_fork_handlers() {
    // SAFETY: registers plain extern "C" functions of this module.
    unsafe { libc::pthread_atfork(Some(lock_all), Some(unlock_all), Some(unlock_all)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_cover_sizes_and_alignments() {
        let l = |s, a| Layout::from_size_align(s, a).unwrap();
        assert_eq!(class_of(l(1, 1)), Some(0));
        assert_eq!(class_of(l(16, 8)), Some(0));
        assert_eq!(class_of(l(17, 8)), Some(1));
        assert_eq!(class_of(l(8, 64)), Some(2));
        assert_eq!(class_of(l(65536, 8)), Some(12));
        assert_eq!(class_of(l(65537, 8)), None);
        assert_eq!(class_of(l(16, 8192)), None);
    }

    /// Blocks of every class and some large ones, from several threads at
    /// once (this harness's global allocator is `OwnAlloc` too): each is
    /// aligned and keeps what was written into it while the other threads
    /// write theirs (no two live blocks overlap).
    #[test]
    fn blocks_are_aligned_and_disjoint_across_threads() {
        let layouts: Vec<Layout> = [1, 16, 17, 100, 4096, 65536, 65537, 300_000]
            .iter()
            .flat_map(|&s| [8, 64, 4096].map(|a| Layout::from_size_align(s, a).unwrap()))
            .collect();
        let workers: Vec<_> = (0..4u8)
            .map(|t| {
                let layouts = layouts.clone();
                std::thread::spawn(move || {
                    let mut live = Vec::new();
                    for round in 0..50u8 {
                        for &layout in &layouts {
                            // SAFETY: a non-zero-sized layout; freed below with the same one.
                            let p = unsafe { OwnAlloc.alloc(layout) };
                            assert!(!p.is_null());
                            assert_eq!(p as usize % layout.align(), 0, "{layout:?}");
                            // SAFETY: the block is `layout.size()` writable bytes.
                            unsafe { ptr::write_bytes(p, t * 64 + round, layout.size()) };
                            live.push((p as usize, layout, t * 64 + round));
                        }
                        for &(p, layout, byte) in &live {
                            // SAFETY: live blocks written above and not yet freed.
                            let b = unsafe {
                                std::slice::from_raw_parts(p as *const u8, layout.size())
                            };
                            assert!(b.iter().all(|&x| x == byte), "{layout:?} was overwritten");
                        }
                        for (p, layout, _) in live.drain(..) {
                            // SAFETY: allocated above with this layout.
                            unsafe { OwnAlloc.dealloc(p as *mut u8, layout) };
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
    }
}

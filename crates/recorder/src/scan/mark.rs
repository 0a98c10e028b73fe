//! Marking: from the roots, follow every word that points into a live block,
//! transitively, as valgrind's memcheck does. A block reached through
//! pointers to block starts only is [`Reach::Start`]; a chain with at least
//! one interior pointer makes it [`Reach::Interior`]; the rest stay
//! [`Reach::Unreached`].

use std::ops::Range;

use memtrace_format::Reach;

use crate::memory::try_collect;

/// The live blocks, sorted by address, with their marks.
pub(crate) struct Marker {
    starts: Vec<u64>,
    ends: Vec<u64>,
    pub reach: Vec<Reach>,
    work: Vec<u32>,
    /// Addresses of recently freed blocks, sorted: a pointer to one of
    /// them inside a live block, in a module's data, is a stale one.
    stale: Vec<u64>,
    /// Whether the words read now are a module's data (see `scan_data_root`).
    in_module_data: bool,
    lowest: u64,
    highest: u64,
    /// Bytes of blocks scanned.
    pub heap_bytes: u64,
}

impl Marker {
    /// `blocks`: `(address, size)` in address order, not overlapping. A
    /// zero-sized block counts one byte, so a pointer to it is found.
    /// `None` when the memory for the marks cannot be had.
    pub fn new(blocks: &[(u64, u64)]) -> Option<Marker> {
        let n = blocks.len();
        let starts = try_collect(blocks.iter().map(|&(addr, _)| addr))?;
        let ends = try_collect(blocks.iter().map(|&(addr, size)| addr + size.max(1)))?;
        let reach = try_collect((0..n).map(|_| Reach::Unreached))?;
        // Each block is pushed at most twice (unreached -> interior -> start):
        // the stack never grows while other threads are stopped.
        let mut work = Vec::new();
        work.try_reserve_exact(2 * n).ok()?;
        Some(Marker {
            lowest: starts.first().copied().unwrap_or(u64::MAX),
            highest: ends.last().copied().unwrap_or(0),
            starts,
            ends,
            reach,
            work,
            stale: Vec::new(),
            in_module_data: false,
            heap_bytes: 0,
        })
    }

    /// Takes `freed` (sorted addresses of recently freed blocks) for stale
    /// pointers in modules' data (see [`Marker::scan_data_root`]).
    pub fn ignore_stale(&mut self, freed: Vec<u64>) {
        self.stale = freed;
    }

    /// As [`Marker::scan_root`], for a module's writable data (`.data`,
    /// `.bss`): a word there equal to the address of a recently freed
    /// block that now falls inside a live block, not at its start, is a
    /// pointer the program kept after the free (a global array of freed
    /// blocks), whose memory the newer block took over; it is not
    /// followed. memcheck does not reuse memory this soon
    /// (`live::RECENT_FREE_BYTES`), so under it such a pointer never
    /// reaches a newer block either. Only here: in a thread's control block
    /// and in heap objects, pointers 16 bytes into a block are the norm
    /// (glibc's DTV, CPython's GC header) and may equal an old block's
    /// address by chance.
    pub fn scan_data_root(&mut self, range: Range<u64>) {
        self.in_module_data = true;
        self.scan_root(range);
        self.in_module_data = false;
    }

    /// The block that holds `word`, and whether `word` is its start.
    #[inline]
    pub fn find(&self, word: u64) -> Option<(u32, bool)> {
        if word < self.lowest || word >= self.highest {
            return None;
        }
        let i = self.starts.partition_point(|&s| s <= word).checked_sub(1)?;
        (word < self.ends[i]).then_some((i as u32, word == self.starts[i]))
    }

    /// The address of block `i`.
    pub fn start_of(&self, i: u32) -> u64 {
        self.starts[i as usize]
    }

    /// The parts of `range` outside every block and its 16-byte chunk
    /// header (glibc's `prev_size` and `size` words).
    pub fn gaps(&self, range: Range<u64>) -> Vec<Range<u64>> {
        let mut out = Vec::new();
        let mut at = range.start;
        let first = self.ends.partition_point(|&e| e <= range.start);
        for i in first..self.starts.len() {
            let chunk = self.starts[i].saturating_sub(16);
            if chunk >= range.end {
                break;
            }
            if chunk > at {
                out.push(at..chunk);
            }
            at = at.max(self.ends[i]);
        }
        if at < range.end {
            out.push(at..range.end);
        }
        out
    }

    fn reached(&mut self, word: u64, from_start_chain: bool) {
        let Some((i, is_start)) = self.find(word) else {
            return;
        };
        if self.in_module_data && !is_start && self.stale.binary_search(&word).is_ok() {
            return;
        }
        let reach = if from_start_chain && is_start {
            Reach::Start
        } else {
            Reach::Interior
        };
        if reach > self.reach[i as usize] {
            self.reach[i as usize] = reach;
            self.work.push(i);
        }
    }

    /// Marks from one root range (readable when the maps were read, 8-byte
    /// aligned), then everything reachable from it. The range is read a
    /// megabyte at a time, each piece only if it is still mapped: a thread
    /// that exits during the scan may unmap the stacks glibc keeps cached.
    pub fn scan_root(&mut self, range: Range<u64>) {
        const PIECE: u64 = 1 << 20;
        let mut at = range.start;
        while at < range.end {
            let end = range.end.min((at + PIECE) & !(PIECE - 1));
            if still_mapped(at..end) {
                for_each_word(at..end, |w| self.reached(w, true));
            }
            at = end;
        }
        self.propagate();
    }

    /// Marks from the C library's writable data, where glibc's malloc keeps
    /// its main arena: the top chunk, the bins and the last remainder are
    /// addresses of chunk headers, and a chunk's header lies in the last
    /// word of the block before it when that block's size is 1 to 8 bytes
    /// above a multiple of 16. Such a word is the allocator's, not a pointer
    /// of the program into that block, and is skipped: taken for one, it
    /// would make a lost block "possibly lost" whenever the chunk after it
    /// happens to be free.
    pub fn scan_allocator_root(&mut self, range: Range<u64>) {
        for_each_word(range, |w| {
            if !self.is_next_chunk_header(w) {
                self.reached(w, true);
            }
        });
        self.propagate();
    }

    /// True when `word` is where glibc puts the header of the chunk that
    /// follows a block, inside that block.
    pub fn is_next_chunk_header(&self, word: u64) -> bool {
        match self.find(word) {
            Some((i, false)) => {
                let start = self.starts[i as usize];
                let size = self.ends[i as usize] - start;
                word - start == next_chunk_offset(size)
            }
            _ => false,
        }
    }

    /// Marks from values held outside memory (saved registers).
    pub fn scan_values(&mut self, values: &[u64]) {
        for &v in values {
            self.reached(v, true);
        }
        self.propagate();
    }

    fn propagate(&mut self) {
        let in_module_data = std::mem::replace(&mut self.in_module_data, false);
        while let Some(i) = self.work.pop() {
            let i = i as usize;
            let range = self.words_of(i);
            self.heap_bytes += range.end - range.start;
            let start_chain = self.reach[i] == Reach::Start;
            for_each_word(range, |w| self.reached(w, start_chain));
        }
        self.in_module_data = in_module_data;
    }

    /// The 8-byte words a block's requested size covers.
    fn words_of(&self, i: usize) -> Range<u64> {
        let start = self.starts[i];
        let end = start + ((self.ends[i] - start) & !7);
        start..end
    }

    /// Pointers from each unreached block to unreached blocks (itself
    /// included), sorted, without duplicates; `None` when the memory for
    /// them cannot be had.
    pub fn unreached_edges(&mut self) -> Option<Vec<(u32, u32)>> {
        let mut edges = Vec::new();
        let mut targets = Vec::new();
        let mut enough = true;
        for i in 0..self.starts.len() {
            if self.reach[i] != Reach::Unreached {
                continue;
            }
            targets.clear();
            let range = self.words_of(i);
            self.heap_bytes += range.end - range.start;
            for_each_word(range, |w| {
                if let Some((j, _)) = self.find(w) {
                    if self.reach[j as usize] == Reach::Unreached {
                        enough &= targets.try_reserve(1).is_ok();
                        if enough {
                            targets.push(j);
                        }
                    }
                }
            });
            targets.sort_unstable();
            targets.dedup();
            if !enough || edges.try_reserve(targets.len()).is_err() {
                return None;
            }
            edges.extend(targets.iter().map(|&j| (i as u32, j)));
        }
        Some(edges)
    }
}

/// True when every page of `range` (at most a megabyte) is mapped.
fn still_mapped(range: Range<u64>) -> bool {
    const PAGE: u64 = 4096;
    let start = range.start & !(PAGE - 1);
    let len = range.end - start;
    let mut pages = [0u8; 257];
    if len.div_ceil(PAGE) > pages.len() as u64 {
        return false;
    }
    // SAFETY: mincore only writes one byte per page of the range into
    // `pages`, which has room for all of them; it fails with ENOMEM, and
    // touches nothing, when a page is not mapped.
    unsafe { libc::mincore(start as *mut libc::c_void, len as usize, pages.as_mut_ptr()) == 0 }
}

/// Offset from the start of a block of `size` bytes that glibc's malloc
/// returned to the header of the chunk after it: the block starts 16 bytes
/// into its chunk, whose size is the request plus an 8-byte header, rounded
/// up to 16, at least 32 (`request2size` on 64-bit glibc).
fn next_chunk_offset(size: u64) -> u64 {
    (size + 8).next_multiple_of(16).max(32) - 16
}

/// Calls `f` with every aligned 8-byte word of `range`.
#[inline]
fn for_each_word(range: Range<u64>, mut f: impl FnMut(u64)) {
    let mut p = range.start;
    while p + 8 <= range.end {
        // SAFETY: the caller passes ranges that are mapped and readable:
        // roots clamped to the readable mappings of /proc/self/maps, or live
        // heap blocks within their requested size. A volatile read, because
        // other threads' memory is read without their cooperation.
        let w = unsafe { std::ptr::read_volatile(p as *const u64) };
        f(w);
        p += 8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks laid out in a local buffer, pointing at each other.
    #[test]
    fn start_interior_and_unreached_chains_are_told_apart() {
        // Five 32-byte blocks in one buffer: 0 -> 1 (start), 1 -> 2 (interior),
        // 3 <-> 4 (a cycle nobody points to).
        let mut buf = vec![0u64; 20];
        let base = buf.as_ptr() as u64;
        let block = |i: u64| base + 32 * i;
        buf[0] = block(1);
        buf[4] = block(2) + 8;
        buf[12] = block(4);
        buf[16] = block(3);
        let blocks: Vec<(u64, u64)> = (0..5u32).map(|i| (block(u64::from(i)), 32)).collect();
        let mut m = Marker::new(&blocks).unwrap();
        let root = [block(0)];
        m.scan_values(&root);
        assert_eq!(
            m.reach,
            vec![
                Reach::Start,
                Reach::Start,
                Reach::Interior,
                Reach::Unreached,
                Reach::Unreached
            ]
        );
        assert_eq!(m.unreached_edges(), Some(vec![(3, 4), (4, 3)]));
        std::hint::black_box(&mut buf);
    }

    #[test]
    fn the_arenas_pointer_to_the_next_chunk_header_is_not_the_programs() {
        // A 1000-byte block lives in a 1008-byte chunk: the next chunk's
        // header is at offset 992, inside the block; a 24-byte block's
        // (32-byte chunk) is at offset 16. A 992-byte block ends before it.
        assert_eq!(next_chunk_offset(1000), 992);
        assert_eq!(next_chunk_offset(24), 16);
        assert_eq!(next_chunk_offset(992), 992);
        assert_eq!(next_chunk_offset(0), 16);
        let mut buf = vec![0u64; 8];
        let base = buf.as_ptr() as u64;
        let mut m = Marker::new(&[(base, 24), (base + 32, 24)]).unwrap();
        buf[0] = base + 16; // the arena's "top", say
        buf[1] = base + 32 + 8; // a real interior pointer
        m.scan_allocator_root(base..base + 16);
        assert_eq!(m.reach, vec![Reach::Unreached, Reach::Interior]);
        // The same word anywhere else is a pointer of the program.
        m.scan_values(&[base + 16]);
        assert_eq!(m.reach, vec![Reach::Interior, Reach::Interior]);
        std::hint::black_box(&mut buf);
    }

    #[test]
    fn a_pointer_to_a_freed_block_inside_a_newer_one_is_stale() {
        // A 64-byte block took over the chunks of two freed 24-byte blocks
        // at base + 16 and base + 48: a global still holds base + 48.
        let mut buf = vec![0u64; 12];
        let base = buf.as_ptr() as u64;
        // (The block's words are buf[2..10]; the module data, buf[10..12].)
        let mut m = Marker::new(&[(base + 16, 64)]).unwrap();
        m.ignore_stale(vec![base + 16, base + 48]);
        buf[10] = base + 48;
        m.scan_data_root(base + 80..base + 96);
        assert_eq!(m.reach, vec![Reach::Unreached]);
        // The same word elsewhere (a stack, the heap) is followed.
        m.scan_root(base + 80..base + 96);
        assert_eq!(m.reach, vec![Reach::Interior]);
        // Another interior pointer in the data makes it possibly lost.
        let mut m = Marker::new(&[(base + 16, 64)]).unwrap();
        m.ignore_stale(vec![base + 48]);
        buf[11] = base + 40;
        m.scan_data_root(base + 80..base + 96);
        assert_eq!(m.reach, vec![Reach::Interior]);
        // And a pointer to its start, stale or not, reaches it.
        let mut m = Marker::new(&[(base + 16, 64)]).unwrap();
        m.ignore_stale(vec![base + 16]);
        buf[11] = base + 16;
        m.scan_data_root(base + 80..base + 96);
        assert_eq!(m.reach, vec![Reach::Start]);
        std::hint::black_box(&mut buf);
    }

    #[test]
    fn a_start_pointer_found_later_upgrades_an_interior_block() {
        let mut buf = vec![0u64; 8];
        let base = buf.as_ptr() as u64;
        buf[0] = base + 32; // block 0 points at block 1's start
        let mut m = Marker::new(&[(base, 32), (base + 32, 32)]).unwrap();
        m.scan_values(&[base + 40]); // interior pointer to block 1
        assert_eq!(m.reach, vec![Reach::Unreached, Reach::Interior]);
        m.scan_values(&[base]);
        assert_eq!(m.reach, vec![Reach::Start, Reach::Start]);
        std::hint::black_box(&mut buf);
    }
}
